#!/usr/bin/env python3
"""A hydration job: one run of it copies an Iceberg table into a
PostgreSQL consumer container, or resumes the copy an earlier run left,
then applies the snapshots committed after what the copy holds, reporting
progress, until told to stop once live.

    hydrate.py --url URL --catalog CATALOG_JSON --table NS.NAME
               --container NAME --dsn postgres://USER@HOST:PORT/DB
               --target TABLE --view VIEW [--run-id ID] [--stop-file PATH]

The job speaks to sluice only through its client (`client.hydration`): the
hydration is the copy, and this run attaches to it as a session. In its
first hydration the copy's read lease pins the snapshot it copies first,
so neither compaction nor expiry removes what it still reads; once live,
sluice releases that lease and keeps a pin of its own at what the copy
applied. Every progress report carries the session's token, and a session
that is over stops the job before it writes more. Leaving the block
detaches the run; the next run resumes from the snapshot applied last.

The target table gets the columns of the table's current schema (a schema
change is a new hydration into a new target, and a view remap). Each
later snapshot is applied by key (`id`) from what that snapshot itself
changed, read from its manifests' entries (not by comparing the whole
table): the rows of the data files it added are upserted, and the keys of
the files it removed that no added file holds again are deleted (what a
copy-on-write writer does; a snapshot with delete files is applied by
comparing it with the target instead). A `replace` snapshot (a
compaction) changes no row and is stepped over.

Prints a JSON line with the hydration's id, whether it was resumed, the
session's token and where it starts, then one per progress report:
{"state", "snapshot_id", ...}.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse

import pg8000.native
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import DataFileContent, ManifestEntryStatus
from pyiceberg.table import FileScanTask
from pyiceberg.types import BooleanType, DoubleType, IntegerType, LongType

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python", "src"))
from sluice_client import ApiError, Client, NotFound, SluiceError  # noqa: E402

KEY = "id"


def connect(dsn):
    u = urllib.parse.urlparse(dsn)
    return pg8000.native.Connection(
        user=u.username or "postgres", password=u.password, host=u.hostname or "127.0.0.1",
        port=u.port or 5432, database=u.path.lstrip("/"))


def sql_type(iceberg_type):
    for kind, name in ((LongType, "bigint"), (IntegerType, "integer"),
                       (DoubleType, "double precision"), (BooleanType, "boolean")):
        if isinstance(iceberg_type, kind):
            return name
    return "text"


def ident(name):
    return ".".join(pg8000.native.identifier(part) for part in name.split("."))


class Target:
    """The physical table in the container, keyed by `id`."""

    def __init__(self, conn, name, fields, fresh):
        self.conn, self.name = conn, ident(name)
        self.columns = [f.name for f in fields]
        if KEY not in self.columns:
            raise ValueError(f"the table has no `{KEY}` column to apply changes by")
        columns = ", ".join(f"{pg8000.native.identifier(f.name)} {sql_type(f.field_type)}"
                            for f in fields)
        if fresh:
            # A snapshot copy starts again from nothing (a run that died
            # mid-copy left part of it).
            conn.run(f"DROP TABLE IF EXISTS {self.name}")
        conn.run(f"CREATE TABLE IF NOT EXISTS {self.name} ({columns}, PRIMARY KEY ({KEY}))")

    def rows(self):
        names = ", ".join(pg8000.native.identifier(c) for c in self.columns)
        k = self.columns.index(KEY)
        return {r[k]: tuple(r) for r in self.conn.run(f"SELECT {names} FROM {self.name}")}

    def apply(self, upserts, deletes):
        """One transaction: the container never shows half a snapshot."""
        names = [pg8000.native.identifier(c) for c in self.columns]
        params = ", ".join(f":c{i}" for i in range(len(names)))
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != KEY) or f"{KEY} = {KEY}"
        self.conn.run("BEGIN")
        try:
            for row in upserts:
                self.conn.run(
                    f"INSERT INTO {self.name} ({', '.join(names)}) VALUES ({params}) "
                    f"ON CONFLICT ({KEY}) DO UPDATE SET {updates}",
                    **{f"c{i}": v for i, v in enumerate(row)})
            for key in deletes:
                self.conn.run(f"DELETE FROM {self.name} WHERE {KEY} = :k", k=key)
            self.conn.run("COMMIT")
        except BaseException:
            self.conn.run("ROLLBACK")
            raise


def snapshot_rows(table, snapshot_id, columns):
    """The table's rows as of the snapshot, by key, in the target's columns
    (a column the snapshot's schema lacks reads as null)."""
    return as_rows(table.scan(snapshot_id=snapshot_id).to_arrow(), columns)


def as_rows(arrow, columns):
    """Arrow rows by key, in the target's columns (a column the data's
    schema lacks reads as null)."""
    present = set(arrow.column_names)
    return {r[KEY]: tuple(r.get(c) if c in present else None for c in columns)
            for r in arrow.to_pylist()}


def snapshot_changes(table, snapshot_id, columns):
    """What one snapshot changed, from its own manifest entries: (upserts,
    deletes), or None when it wrote delete files (then only a comparison
    of the whole snapshot tells)."""
    snapshot = table.snapshot_by_id(snapshot_id)
    added, removed = [], []
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot_id:
            continue  # carried over from an earlier snapshot
        # In a manifest this snapshot wrote, an added entry of this snapshot
        # is a file it added, and a deleted entry (whatever snapshot it
        # names: pyiceberg keeps the file's own) a file it removed.
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            if entry.data_file.content != DataFileContent.DATA:
                return None
            if entry.status == ManifestEntryStatus.ADDED and entry.snapshot_id == snapshot_id:
                added.append(entry.data_file)
            elif entry.status == ManifestEntryStatus.DELETED:
                removed.append(entry.data_file)
    scan = ArrowScan(table.metadata, table.io, table.schema(), row_filter=AlwaysTrue())

    def read(files):
        if not files:
            return {}
        return as_rows(scan.to_table([FileScanTask(f) for f in files]), columns)

    upserts = read(added)
    deletes = [key for key in read(removed) if key not in upserts]
    return list(upserts.values()), deletes


def later_snapshots(table, applied):
    """The snapshots after `applied` on the current branch, oldest first."""
    chain = []
    snap = table.current_snapshot()
    while snap is not None and snap.snapshot_id != applied:
        chain.append(snap.snapshot_id)
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    return list(reversed(chain))


def is_replace(table, snapshot_id):
    """A `replace` snapshot (compaction) rewrites files without changing a row."""
    summary = table.snapshot_by_id(snapshot_id).summary
    return summary is not None and str(getattr(summary.operation, "value", summary.operation)) == "replace"


def report(client, hydration, table_name, **progress):
    """Report progress; a snapshot sluice has not read from the catalog yet
    is found by asking it to refresh the table once."""
    try:
        return hydration.progress(**progress)
    except NotFound as e:
        if e.type != "snapshot_not_found":
            raise
        client.refresh_table(table_name)
        return hydration.progress(**progress)


def copy(client, hydration, table, table_name, target, pinned):
    """The snapshot phase: the pinned snapshot's rows, a quarter at a time."""
    rows = snapshot_rows(table, pinned, target.columns)
    total = len(rows)
    chunk = max(1, total // 4)
    batch = list(rows.values())
    for start in range(0, max(total, 1), chunk):
        hydration.check()
        target.apply(batch[start:start + chunk], [])
        body = report(client, hydration, table_name, phase="snapshot", snapshot_id=pinned,
                      rows_copied=min(start + chunk, total), rows_total=total)
        print(json.dumps({"state": body["state"], "snapshot_id": pinned,
                          "rows_copied": min(start + chunk, total)}), flush=True)


def run(args):
    client = Client(args.url, token=args.token)
    props = json.loads(args.catalog)
    table = load_catalog(props.pop("name"), **props).load_table(args.table)
    fields = table.schema().fields
    conn = connect(args.dsn)
    # The view exposes every column of the schema the copy is made in.
    with client.hydration(args.table, args.container, args.target, views=[args.view],
                          columns=[f.name for f in fields], lease_ttl=args.ttl,
                          session_ttl=args.ttl, wait=args.wait, lag_threshold_snapshots=0,
                          run_id=args.run_id) as hydration:
        table.refresh()
        # Copied whole already (catching up, or live): go on from what it
        # applied; otherwise copy the pinned snapshot (again).
        copied = hydration.state not in ("pending", "snapshot")
        start = hydration.applied_snapshot_id if copied else hydration.pin_snapshot_id
        if start is None:
            raise ValueError(f"{args.table} has no snapshot to copy")
        print(json.dumps({"hydration_id": hydration.id, "resumed": hydration.resumed,
                          "token": hydration.token, "state": hydration.state,
                          "start_snapshot_id": start}), flush=True)
        target = Target(conn, args.target, fields, fresh=not copied)
        if not copied:
            copy(client, hydration, table, args.table, target, start)
        applied = start
        while True:
            table.refresh()
            for snapshot_id in later_snapshots(table, applied):
                hydration.check()
                if is_replace(table, snapshot_id):
                    # A compaction: the same rows in other files, nothing to apply.
                    applied = snapshot_id
                    body = report(client, hydration, args.table, phase="catching_up",
                                  snapshot_id=applied)
                    print(json.dumps({"state": body["state"], "snapshot_id": applied,
                                      "stepped_over": "replace"}), flush=True)
                    continue
                changes = snapshot_changes(table, snapshot_id, target.columns)
                if changes is None:
                    want = snapshot_rows(table, snapshot_id, target.columns)
                    have = target.rows()
                    changes = ([row for key, row in want.items() if have.get(key) != row],
                               [key for key in have if key not in want])
                upserts, deletes = changes
                target.apply(upserts, deletes)
                applied = snapshot_id
                body = report(client, hydration, args.table, phase="catching_up",
                              snapshot_id=applied, rows_copied=len(upserts) + len(deletes))
                print(json.dumps({"state": body["state"], "snapshot_id": applied,
                                  "upserts": len(upserts), "deletes": len(deletes)}), flush=True)
            if hydration.state != "live":
                # Caught up: tell sluice (this is what makes it live).
                report(client, hydration, args.table, phase="catching_up", snapshot_id=applied)
                print(json.dumps({"state": hydration.state, "snapshot_id": applied}), flush=True)
            if hydration.state == "live" and args.stop_file and os.path.exists(args.stop_file):
                break
            time.sleep(args.every)
    print(json.dumps({"state": hydration.state, "snapshot_id": applied}), flush=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SLUICE_URL"))
    parser.add_argument("--token", default=os.environ.get("SLUICE_TOKEN"))
    parser.add_argument("--catalog", required=True, help="pyiceberg catalog properties, JSON")
    parser.add_argument("--table", required=True)
    parser.add_argument("--container", required=True, help="the container's name in sluice")
    parser.add_argument("--dsn", required=True, help="the container's PostgreSQL URL")
    parser.add_argument("--target", required=True)
    parser.add_argument("--view", required=True)
    parser.add_argument("--run-id", help="this run's id (default: a new one)")
    parser.add_argument("--stop-file", help="once live, stop when this file exists")
    parser.add_argument("--ttl", type=int, default=30,
                        help="the session's and the read lease's TTL in seconds")
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for the lease")
    parser.add_argument("--every", type=float, default=0.5, help="seconds between looks")
    args = parser.parse_args(argv)
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
