"""Send every operation that takes a JSON body one that names a key twice,
and require 400 `duplicate_key` with the JSON error body: schemathesis
cannot generate such bodies (JSON objects it builds have distinct keys).

Usage: duplicate-keys.py SPEC BASE_URL TOKEN
"""
import json
import sys
import urllib.error
import urllib.request
import uuid

spec_path, base, token = sys.argv[1:4]
spec = json.load(open(spec_path))
values = {"table": "fuzz.a", "stream": "fuzz.s", "version": "1"}
failures = []
checked = 0
for path, item in spec["paths"].items():
    for method, op in item.items():
        if "requestBody" not in op:
            continue
        url = path
        for param in op.get("parameters", []):
            if param["in"] == "path":
                name = param["name"]
                url = url.replace("{%s}" % name, values.get(name, str(uuid.uuid4())))
        request = urllib.request.Request(
            base + url,
            data=b'{"reason":"a","reason":"b","run_id":"a","run_id":"b"}',
            method=method.upper(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + token},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        checked += 1
        try:
            kind = json.loads(body)["error"]["type"]
        except (ValueError, KeyError, TypeError):
            kind = None
        if (status, kind) != (400, "duplicate_key"):
            failures.append("%s %s: %s %r" % (method.upper(), url, status, body[:200]))
print("duplicate keys: %d operations checked, %d failures" % (checked, len(failures)))
for failure in failures:
    print("  " + failure)
sys.exit(1 if failures or checked == 0 else 0)
