#!/usr/bin/env python3
"""Ingest an AWS DMS output prefix into a table, keeping the position in sluice.

This models an AWS Glue job reading what AWS DMS writes to S3 (an
`s3://bucket/prefix/`, or a local folder) and merging it into an Iceberg
table in a Glue catalog (pyiceberg; the tests run it against moto's Glue
and S3). It speaks to sluice only through its client, `sluice_client`:

  * full-load files  LOAD00000001.csv, ... (or SEGMENTn_LOAD00000001.csv),
    columns id,name,amount;
  * CDC files named by time, 20240501-120000123.csv, columns Op,id,name,amount
    where Op is I (insert), U (update) or D (delete).

The job keeps no state of its own. Every batch starts by opening a batch on
the sluice stream; the answer carries the bookmark, which alone decides what
to do next: in phase `load` the LOAD files not done yet, in phase `delta` the
CDC files after the last one done. The same loop serves both phases, so the
job is started the same way before, during and after the full load.

Safety comes from two things: only one batch of a stream is open at a time
(a second run waits, a killed run's batch expires after its TTL), and merges
are idempotent (upserts and deletes by primary key), so redoing a batch whose
merge reached the table but whose commit never reached sluice is harmless.

Each batch's merge is one Iceberg commit whose snapshot records the sluice
batch (`sluice.batch-id` in its summary); the commit to sluice carries the
snapshot id.

Usage (catalog flags: --table NS.NAME [--catalog-uri URL] [--region R]):
  dms_ingest.py --url URL --stream NAME --prefix DIR|s3://B/P/ --table NS.NAME --run-id ID
  dms_ingest.py --setup --table NS.NAME --warehouse s3://BUCKET/   create them
  dms_ingest.py --dump --table NS.NAME       print the table's rows as JSON
  dms_ingest.py --snapshots --table NS.NAME  print its snapshots and batches
  dms_ingest.py --schema-hash                print the schema hash to register

Needs pyiceberg[glue,pyarrow] (integration-tests/ingest/requirements.txt).

Test hooks (environment):
  CRASH_AFTER_WORK=N   SIGKILL ourselves right after the N-th merge reached the
                       table, before telling sluice (a Glue worker lost mid-batch).
  SLEEP_PER_BATCH=S    sleep S seconds after each committed batch.
"""

import argparse
import csv
import hashlib
import io
import json
import os
import re
import signal
import sys
import time
import warnings

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import In

# The job's one dependency on sluice: its client (as Glue's
# --additional-python-modules would install it).
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python", "src"))
from sluice_client import ApiError, BatchLost, Client, SluiceError  # noqa: E402

# pyiceberg warns on stderr about what the job does on purpose.
warnings.filterwarnings("ignore", message="Delete operation did not match any records")

# The data columns the job knows how to merge; their hash is what the stream's
# expected_schema_hash is set to, so sluice refuses commits of another schema.
SCHEMA = ["id", "name", "amount"]
SCHEMA_HASH = hashlib.sha256(",".join(SCHEMA).encode()).hexdigest()

LOAD_FILE = re.compile(r"^(SEGMENT\d+_)?LOAD[0-9A-Fa-f]{8}\.csv$")
CDC_FILE = re.compile(r"^\d{8}-\d{9}\.csv$")


# --- the source: what DMS has written so far --------------------------------

class Source:
    """DMS's output: an S3 prefix `s3://bucket/prefix/` (on the catalog's
    endpoint) or a local folder. Anything that is not a LOAD or CDC file
    (temporary names, other objects) is ignored, so a file only counts once
    it is there whole, as with an S3 object."""

    def __init__(self, prefix, endpoint, region):
        self.prefix = prefix
        self.s3 = None
        if prefix.startswith("s3://"):
            import boto3  # pyiceberg's Glue catalog brings it
            self.bucket, _, self.key_prefix = prefix[len("s3://"):].partition("/")
            if self.key_prefix and not self.key_prefix.endswith("/"):
                self.key_prefix += "/"
            self.s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint)

    def names(self):
        if self.s3 is None:
            return os.listdir(self.prefix)
        names = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key_prefix):
            names += [o["Key"][len(self.key_prefix):] for o in page.get("Contents", [])]
        return [n for n in names if "/" not in n]

    def list(self):
        """(LOAD files, CDC files), each sorted by name."""
        names = self.names()
        loads = sorted(n for n in names if LOAD_FILE.match(n))
        cdcs = sorted(n for n in names if CDC_FILE.match(n))
        return loads, cdcs

    def open(self, name):
        if self.s3 is None:
            return open(os.path.join(self.prefix, name), newline="")
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key_prefix + name)["Body"].read()
        return io.StringIO(body.decode(), newline="")


def stamp(cdc_file):
    """A CDC file's commit time, `YYYYMMDD-HHMMSSmmm`: its name without .csv.
    The format sorts as a string, so positions are compared as strings."""
    return cdc_file[: -len(".csv")]


def read_changes(source, path):
    """The file's rows as (op, id, name, amount); LOAD rows are inserts."""
    cdc = bool(CDC_FILE.match(path))
    expected = (["Op"] if cdc else []) + SCHEMA
    with source.open(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != expected:
            # Refuse before touching the table: a schema the job cannot merge.
            raise ValueError(f"{path}: header {header}, expected {expected}")
        for row in reader:
            if not row:
                continue
            if len(row) != len(expected):
                raise ValueError(f"{path}: row {row} does not have {len(expected)} columns")
            op, (id_, name, amount) = (row[0], row[1:]) if cdc else ("I", row)
            if op not in ("I", "U", "D"):
                raise ValueError(f"{path}: unknown Op {op!r}")
            yield op, int(id_), name, int(amount) if amount != "" else None


# --- the plan: what the bookmark says to do next ----------------------------

def plan(bookmark, loads, cdcs, per_batch, cdc_start):
    """The next step, from the bookmark alone: (files to merge, the bookmark
    section to commit, load_complete), or None when there is nothing to do."""
    if bookmark["phase"] == "load":
        load = bookmark.get("load") or {}
        done = load.get("files_done") or []
        pending = [f for f in loads if f not in done]
        take = pending[:per_batch]
        # Where CDC resumes once the load is over: the load's start, captured
        # once. DMS replays the changes made during the load; the idempotent
        # merge makes that overlap harmless.
        start = load.get("cdc_start") or {
            "file": None, "commit_timestamp": cdc_start, "position": None}
        # The load is over when every LOAD file is merged and DMS has moved on
        # to writing CDC files (until then more LOAD files may still come).
        load_complete = len(take) == len(pending) and bool(cdcs)
        if not take and not load_complete:
            return None
        section = {"files_done": done + take, "cdc_start": start}
        if load.get("high_water") is not None:
            section["high_water"] = load["high_water"]  # not ours; keep it
        return take, {"load": section}, load_complete

    # Phase delta: the CDC files after the last one done, and not before the
    # position's commit time (the load's start, right after the load).
    position = bookmark.get("delta") or {}
    after, since = position.get("file"), position.get("commit_timestamp")
    pending = [f for f in cdcs
               if (after is None or f > after) and (since is None or stamp(f) >= since)]
    take = pending[:per_batch]
    if not take:
        return None
    last = take[-1]
    return take, {"delta": {"file": last, "commit_timestamp": stamp(last), "position": None}}, False


# --- the target: an Iceberg table in a Glue catalog --------------------------

ARROW_SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("name", pa.string()),
    pa.field("amount", pa.int64()),
])


def catalog(args):
    """The Glue catalog; `--catalog-uri` points Glue and S3 at an emulator.
    Credentials come from the environment (the default AWS chain)."""
    props = {"type": "glue", "glue.region": args.region, "s3.region": args.region}
    if args.warehouse:
        props["warehouse"] = args.warehouse
    if args.catalog_uri:
        props.update({"glue.endpoint": args.catalog_uri, "s3.endpoint": args.catalog_uri})
    for env, keys in (("AWS_ACCESS_KEY_ID", ("glue.access-key-id", "s3.access-key-id")),
                      ("AWS_SECRET_ACCESS_KEY", ("glue.secret-access-key", "s3.secret-access-key"))):
        if os.environ.get(env):
            props.update({k: os.environ[env] for k in keys})
    return load_catalog("lake", **props)


def setup(args):
    """Create the warehouse bucket, the namespace and the table, as the
    platform does before any job runs."""
    import boto3  # pyiceberg's Glue catalog brings it
    s3 = boto3.client("s3", region_name=args.region, endpoint_url=args.catalog_uri)
    bucket = args.warehouse.removeprefix("s3://").split("/")[0]
    s3.create_bucket(Bucket=bucket)
    lake = catalog(args)
    namespace, _ = args.table.rsplit(".", 1)
    lake.create_namespace_if_not_exists(namespace)
    lake.create_table_if_not_exists(args.table, schema=ARROW_SCHEMA)


def merge(table, source, files, properties):
    """Stage the files' changes in one Iceberg transaction and return it,
    uncommitted, with the counts. The last change to a key wins; rows are
    upserted and deleted by key, so replaying files gives the same table
    (and no new snapshot when nothing changes)."""
    net = {}
    for name in files:
        for op, id_, row_name, amount in read_changes(source, name):
            net[id_] = None if op == "D" else {"id": id_, "name": row_name, "amount": amount}
    upserts = [row for row in net.values() if row is not None]
    deletes = [id_ for id_, row in net.items() if row is None]
    counts = {"inserted": 0, "updated": 0, "deleted": 0}
    txn = table.transaction()
    if deletes:
        present = table.scan(row_filter=In("id", deletes), selected_fields=("id",)).to_arrow()
        if present.num_rows:
            txn.delete(In("id", deletes), snapshot_properties=properties)
            counts["deleted"] = present.num_rows
    if upserts:
        result = txn.upsert(pa.Table.from_pylist(upserts, schema=ARROW_SCHEMA),
                            join_cols=["id"], snapshot_properties=properties)
        counts["inserted"], counts["updated"] = result.rows_inserted, result.rows_updated
    return txn, counts


def dump(args):
    rows = catalog(args).load_table(args.table).scan().to_arrow().to_pylist()
    print(json.dumps(sorted([r["id"], r["name"], r["amount"]] for r in rows)))


def snapshots(args):
    """Every snapshot of the table with the sluice batch it records."""
    table = catalog(args).load_table(args.table)
    print(json.dumps([
        {"snapshot_id": snap.snapshot_id,
         "batch_id": snap.summary.additional_properties.get("sluice.batch-id") if snap.summary else None}
        for snap in table.snapshots()]))


# --- the job -----------------------------------------------------------------

def run(args):
    client = Client(args.url, token=args.token)
    source = Source(args.prefix, args.catalog_uri, args.region)
    lake = catalog(args)
    crash_after = int(os.environ.get("CRASH_AFTER_WORK") or 0)
    pause = float(os.environ.get("SLEEP_PER_BATCH") or 0)
    merges = 0
    while True:
        try:
            with client.batch(args.stream, run_id=args.run_id, ttl=args.ttl,
                              wait=args.wait) as batch:
                loads, cdcs = source.list()
                step = plan(batch.bookmark, loads, cdcs, args.files_per_batch, args.cdc_start)
                if step is None:
                    # Nothing new: give the batch back now rather than let it
                    # expire, so the next run does not wait for it.
                    batch.fail("idle")
                    print(f"idle at version {batch.bookmark['version']}", flush=True)
                    return 0
                files, section, load_complete = step

                counts, snapshot_id = {"inserted": 0, "updated": 0, "deleted": 0}, None
                if files:
                    # The snapshot names the batch that wrote it: the table's
                    # history and the bookmark's can be joined.
                    properties = {"sluice.stream": args.stream, "sluice.batch-id": batch.batch_id,
                                  "sluice.token": str(batch.token)}
                    table = lake.load_table(args.table)
                    txn, counts = merge(table, source, files, properties)
                    # Last check before the merge becomes visible in the
                    # table: is the batch still ours? A run that stalled past
                    # its TTL must not overwrite what a newer run merged since.
                    batch.heartbeat()
                    snapshot = txn.commit_transaction().current_snapshot()
                    snapshot_id = snapshot.snapshot_id if snapshot else None
                    merges += 1
                    if merges == crash_after:
                        # The merge is in the table; sluice never hears of it.
                        os.kill(os.getpid(), signal.SIGKILL)

                result = batch.commit(bookmark=section, counts=counts,
                                      load_complete=load_complete, snapshot_id=snapshot_id,
                                      schema_hash=SCHEMA_HASH)
        except BatchLost as e:
            # Another run may own the stream now. A merge already in the table
            # but not in the bookmark is redone by the next batch, idempotently.
            print(f"lost batch {batch.batch_id} ({e.reason}); reopening", file=sys.stderr)
            continue
        print(f"batch {batch.batch_id} committed version {result['bookmark']['version']} "
              f"files {json.dumps(files)}", flush=True)
        if pause:
            time.sleep(pause)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="sluice's base URL")
    parser.add_argument("--stream", help="the sluice stream, e.g. sales.orders_cdc")
    parser.add_argument("--prefix", help="the DMS output: s3://bucket/prefix/ or a folder")
    parser.add_argument("--table", help="the Iceberg table, namespace.name")
    parser.add_argument("--warehouse", help="the warehouse, s3://bucket/ (for --setup)")
    parser.add_argument("--catalog-uri", default=None,
                        help="Glue and S3 endpoint (emulators only; default: AWS)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--run-id", help="this run's id (e.g. the Glue job run id)")
    parser.add_argument("--ttl", type=int, default=2, help="batch TTL in seconds (default 2)")
    parser.add_argument("--files-per-batch", type=int, default=1)
    parser.add_argument("--cdc-start", default=None,
                        help="when the full load started, YYYYMMDD-HHMMSSmmm: where CDC "
                             "resumes after the load (used only while the bookmark has none)")
    parser.add_argument("--wait", type=float, default=60,
                        help="seconds to wait for another run's open batch (default 60)")
    parser.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"),
                        help="bearer token (default: $SLUICE_TOKEN)")
    parser.add_argument("--setup", action="store_true",
                        help="create the warehouse bucket, namespace and table, and exit")
    parser.add_argument("--dump", action="store_true",
                        help="print the table's rows as JSON and exit")
    parser.add_argument("--snapshots", action="store_true",
                        help="print the table's snapshots and the batches that wrote them, and exit")
    parser.add_argument("--schema-hash", action="store_true",
                        help="print the schema hash the job commits and exit")
    args = parser.parse_args(argv)

    if args.schema_hash:
        print(SCHEMA_HASH)
        return 0
    for flag, action, needs in (("setup", setup, ("table", "warehouse")),
                                ("dump", dump, ("table",)),
                                ("snapshots", snapshots, ("table",))):
        if getattr(args, flag):
            missing = [f"--{n}" for n in needs if not getattr(args, n)]
            if missing:
                parser.error(f"--{flag} needs " + ", ".join(missing))
            action(args)
            return 0
    missing = [f"--{n.replace('_', '-')}" for n in ("url", "stream", "prefix", "table", "run_id")
               if not getattr(args, n)]
    if missing:
        parser.error("missing " + ", ".join(missing))
    if args.files_per_batch < 1:
        parser.error("--files-per-batch must be at least 1")

    try:
        return run(args)
    except ApiError as e:
        print(json.dumps(e.body), file=sys.stderr)
        return 1
    except (SluiceError, OSError, ValueError) as e:
        print(json.dumps({"error": {"type": "job_error", "message": str(e)}}), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
