"""A compaction job as sluice starts it through Glue: it reads its lease,
token, table and base snapshot from the job arguments, rewrites the
table's data files as one `replace` snapshot (same rows, other files:
what Iceberg calls a compaction) whose summary carries the token (`sluice.lease-token`, the fence carried into Iceberg), and exits.
It reads sluice's arguments with the client's `from_glue_args`.

    compact.py --catalog CATALOG_JSON --mode rewrite|noop|foreign-token
               --sluice-table NS.T --sluice-token N --sluice-lease-id ID
               [--sluice-base-snapshot-id S] [--sluice-expire-older-than T]
               [--sluice-run-id R] [--hold-seconds N] [--record FILE]

`noop` succeeds without writing (sluice must report no_new_snapshot);
`foreign-token` writes another token (sluice must report fence_mismatch).
`--record` appends the arguments it was started with, as JSON, to FILE.
"""

import json
import os
import sys
import time
import uuid

from pyiceberg.catalog import load_catalog
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Operation, Summary
from pyiceberg.table.update.snapshot import _OverwriteFiles

# The job's one dependency on sluice: its client (as Glue's
# --additional-python-modules would install it).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python", "src"))
from sluice_client import TOKEN_PROPERTY, from_glue_args  # noqa: E402


class _Rewrite(_OverwriteFiles):
    """Files swapped without changing a row, committed as Iceberg names that
    (`replace`, as Spark's rewrite_data_files does). pyiceberg writes
    summaries for append, overwrite and delete only: the totals are counted
    as an overwrite's, and the snapshot is named `replace`."""

    def _summary(self, snapshot_properties=None):
        counted = super()._summary(snapshot_properties or {})
        return Summary(operation=Operation.REPLACE, **counted.additional_properties)


def main(argv):
    glue = from_glue_args(argv)
    a = glue.arguments
    if "record" in a:
        with open(a["record"], "a") as f:
            f.write(json.dumps(a) + "\n")
    time.sleep(float(a.get("hold-seconds", "0")))
    mode = a.get("mode", "rewrite")
    if mode == "noop":
        return
    props = json.loads(a["catalog"])
    name = props.pop("name")
    table = load_catalog(name, **props).load_table(glue.table)
    base = glue.base_snapshot_id
    current = table.current_snapshot()
    if base and current is not None and current.snapshot_id != base:
        # Ingestion may append meanwhile: the rewrite still descends from it.
        print(f"base {base}, current {current.snapshot_id}", file=sys.stderr)
    # The fence carried into Iceberg: the lease's token in the summary.
    fence = glue.snapshot_properties()
    if mode == "foreign-token":
        fence[TOKEN_PROPERTY] = str(glue.token + 1000)
    rewrite(table, fence)


def rewrite(table, properties):
    """Rewrite every data file of `table` into new ones: one `replace`
    snapshot with `properties` in its summary."""
    old = [task.file for task in table.scan().plan_files()]
    df = table.scan().to_arrow()
    with table.transaction() as tx:
        new = list(
            _dataframe_to_data_files(
                table_metadata=tx.table_metadata, df=df, io=tx._table.io, write_uuid=uuid.uuid4()
            )
        )
        swap = _Rewrite(operation=Operation.OVERWRITE, transaction=tx, io=tx._table.io,
                        branch=MAIN_BRANCH, snapshot_properties=properties)
        with swap as ow:
            for f in old:
                ow.delete_data_file(f)
            for f in new:
                ow.append_data_file(f)


if __name__ == "__main__":
    main(sys.argv)
