#!/usr/bin/env python3
"""Ingest an AWS DMS output prefix into a table, keeping the position in sluice.

This models an AWS Glue job reading what AWS DMS writes to S3 (here a local
folder) and merging it into a table (here a SQLite file):

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

Usage:
  dms_ingest.py --url URL --stream NAME --prefix DIR --target FILE --run-id ID
  dms_ingest.py --dump --target FILE       print the table's rows as JSON
  dms_ingest.py --schema-hash              print the schema hash to register

Test hooks (environment):
  CRASH_AFTER_WORK=N   SIGKILL ourselves right after the N-th merge reached the
                       table, before telling sluice (a Glue worker lost mid-batch).
  SLEEP_PER_BATCH=S    sleep S seconds after each committed batch.
"""

import argparse
import csv
import hashlib
import json
import os
import re
import signal
import sqlite3
import sys
import time
import urllib.error
import urllib.request

# The data columns the job knows how to merge; their hash is what the stream's
# expected_schema_hash is set to, so sluice refuses commits of another schema.
SCHEMA = ["id", "name", "amount"]
SCHEMA_HASH = hashlib.sha256(",".join(SCHEMA).encode()).hexdigest()

LOAD_FILE = re.compile(r"^(SEGMENT\d+_)?LOAD[0-9A-Fa-f]{8}\.csv$")
CDC_FILE = re.compile(r"^\d{8}-\d{9}\.csv$")

# Errors about a batch we held that mean another run may have taken over (our
# TTL ran out, or the batch was failed): drop the work and reopen, which
# resumes from whatever the bookmark says now.
LOST_BATCH = {"batch_expired", "batch_finished", "stale_token"}


class ApiError(Exception):
    """A non-2xx answer from sluice, with its JSON error body."""

    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body

    @property
    def type(self):
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("type") if isinstance(error, dict) else None


class Sluice:
    """The few calls of sluice's streams API the job uses."""

    def __init__(self, url, stream, token):
        self.base = url.rstrip("/") + "/v1/streams/" + stream
        self.token = token

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"error": {"type": f"http_{e.code}",
                                  "message": raw.decode(errors="replace")}}
            raise ApiError(e.code, body) from None

    def open_batch(self, run_id, ttl, wait):
        """Open a batch, waiting (up to `wait` seconds) while another run's
        batch is open: that is how a restarted run outlasts a killed one."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.call("POST", "/batches", {"run_id": run_id, "ttl_seconds": ttl})
            except ApiError as e:
                if e.status == 409 and e.type == "batch_open" and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise

    def heartbeat(self, batch, ttl):
        return self.call("POST", f"/batches/{batch['batch_id']}/heartbeat",
                         {"token": batch["token"], "ttl_seconds": ttl})

    def commit(self, batch, body):
        return self.call("POST", f"/batches/{batch['batch_id']}/commit",
                         dict(body, token=batch["token"]))

    def fail(self, batch, reason):
        try:
            return self.call("POST", f"/batches/{batch['batch_id']}/fail",
                             {"token": batch["token"], "reason": reason})
        except ApiError as e:
            # Already expired or failed: it is not open any more either way.
            if e.type not in LOST_BATCH:
                raise


# --- the source: what DMS has written so far --------------------------------

def list_files(prefix):
    """(LOAD files, CDC files) in the prefix, each sorted by name.

    Anything else (temporary names, other objects) is ignored, so a file only
    counts once it is there whole, as with an S3 object."""
    names = os.listdir(prefix)
    loads = sorted(n for n in names if LOAD_FILE.match(n))
    cdcs = sorted(n for n in names if CDC_FILE.match(n))
    return loads, cdcs


def stamp(cdc_file):
    """A CDC file's commit time, `YYYYMMDD-HHMMSSmmm`: its name without .csv.
    The format sorts as a string, so positions are compared as strings."""
    return cdc_file[: -len(".csv")]


def read_changes(path):
    """The file's rows as (op, id, name, amount); LOAD rows are inserts."""
    cdc = bool(CDC_FILE.match(os.path.basename(path)))
    expected = (["Op"] if cdc else []) + SCHEMA
    with open(path, newline="") as f:
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


# --- the target: a table and its snapshots -----------------------------------

def open_target(path):
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch's
    # merge is exactly one transaction. timeout: racing runs share the file.
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("CREATE TABLE IF NOT EXISTS rows("
               "id INTEGER PRIMARY KEY, name TEXT, amount INTEGER)")
    db.execute("CREATE TABLE IF NOT EXISTS snapshots("
               "id INTEGER PRIMARY KEY AUTOINCREMENT, files TEXT)")
    return db


def merge(db, prefix, files):
    """Merge the files, in order, inside a transaction left open for the
    caller to commit; returns (counts, snapshot id).

    Upserts and deletes by primary key: replaying a file gives the same table."""
    counts = {"inserted": 0, "updated": 0, "deleted": 0}
    db.execute("BEGIN IMMEDIATE")
    for name in files:
        for op, id_, row_name, amount in read_changes(os.path.join(prefix, name)):
            if op == "D":
                counts["deleted"] += db.execute("DELETE FROM rows WHERE id = ?", (id_,)).rowcount
                continue
            existed = db.execute("SELECT 1 FROM rows WHERE id = ?", (id_,)).fetchone() is not None
            db.execute("INSERT INTO rows(id, name, amount) VALUES (?, ?, ?) "
                       "ON CONFLICT(id) DO UPDATE SET name = excluded.name, amount = excluded.amount",
                       (id_, row_name, amount))
            counts["updated" if existed else "inserted"] += 1
    snapshot_id = db.execute("INSERT INTO snapshots(files) VALUES (?)",
                             (json.dumps(files),)).lastrowid
    return counts, snapshot_id


def dump(path):
    db = open_target(path)
    rows = db.execute("SELECT id, name, amount FROM rows ORDER BY id").fetchall()
    print(json.dumps([list(r) for r in rows]))


# --- the job -----------------------------------------------------------------

def run(args):
    api = Sluice(args.url, args.stream, args.token)
    db = open_target(args.target)
    crash_after = int(os.environ.get("CRASH_AFTER_WORK") or 0)
    pause = float(os.environ.get("SLEEP_PER_BATCH") or 0)
    merges = 0
    while True:
        batch = api.open_batch(args.run_id, args.ttl, args.wait)
        loads, cdcs = list_files(args.prefix)
        step = plan(batch["bookmark"], loads, cdcs, args.files_per_batch, args.cdc_start)
        if step is None:
            # Nothing new: give the batch back now rather than let it expire,
            # so the next run does not wait for it.
            api.fail(batch, "idle")
            print(f"idle at version {batch['bookmark']['version']}", flush=True)
            return 0
        files, section, load_complete = step

        counts, snapshot_id = {"inserted": 0, "updated": 0, "deleted": 0}, None
        if files:
            try:
                counts, snapshot_id = merge(db, args.prefix, files)
                # Last check before the merge becomes visible in the table:
                # is the batch still ours? (This also extends its TTL.) A run
                # that stalled past its TTL must not overwrite what a newer
                # run has merged since.
                api.heartbeat(batch, args.ttl)
            except ApiError as e:
                db.execute("ROLLBACK")
                if e.type in LOST_BATCH:
                    print(f"lost batch {batch['batch_id']} ({e.type}); reopening", file=sys.stderr)
                    continue
                raise
            except (OSError, ValueError, sqlite3.Error) as e:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                api.fail(batch, f"error: {e}")
                raise
            db.execute("COMMIT")
            merges += 1
            if merges == crash_after:
                # The merge is in the table; sluice never hears of it.
                os.kill(os.getpid(), signal.SIGKILL)

        body = {"bookmark": section, "counts": counts, "schema_hash": SCHEMA_HASH}
        if load_complete:
            body["load_complete"] = True
        if snapshot_id is not None:
            body["snapshot_id"] = snapshot_id
        try:
            result = api.commit(batch, body)
        except ApiError as e:
            if e.type in LOST_BATCH:
                # The merge is in the table but not in the bookmark: the next
                # batch (ours or another run's) redoes it, idempotently.
                print(f"lost batch {batch['batch_id']} ({e.type}); reopening", file=sys.stderr)
                continue
            raise
        print(f"batch {batch['batch_id']} committed version {result['bookmark']['version']} "
              f"files {json.dumps(files)}", flush=True)
        if pause:
            time.sleep(pause)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="sluice's base URL")
    parser.add_argument("--stream", help="the sluice stream, e.g. sales.orders_cdc")
    parser.add_argument("--prefix", help="the DMS output folder")
    parser.add_argument("--target", help="the target table (a SQLite file)")
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
    parser.add_argument("--dump", action="store_true",
                        help="print the target's rows as JSON and exit")
    parser.add_argument("--schema-hash", action="store_true",
                        help="print the schema hash the job commits and exit")
    args = parser.parse_args(argv)

    if args.schema_hash:
        print(SCHEMA_HASH)
        return 0
    if args.dump:
        if not args.target:
            parser.error("--dump needs --target")
        dump(args.target)
        return 0
    missing = [f"--{n.replace('_', '-')}" for n in ("url", "stream", "prefix", "target", "run_id")
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
    except (OSError, ValueError, sqlite3.Error) as e:
        # OSError covers an unreachable server (urllib.error.URLError).
        print(json.dumps({"error": {"type": "job_error", "message": str(e)}}), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
