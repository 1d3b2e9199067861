"""Parse a Prometheus text exposition from stdin with the reference parser
(prometheus_client's) and print its samples as JSON:
[{"family", "type", "name", "labels", "value"}, ...]. A malformed
exposition raises, and the script exits non-zero."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
