"""Live copies that outlive their runs, at scale: what they cost sluice.

    hydrations-bench.py setup CATALOG_JSON TABLES
    hydrations-bench.py run SLUICE_URL CATALOG_JSON HYDRATIONS TABLES

Creates TABLES Iceberg tables (pyiceberg, SQL catalog) with a few
snapshots each, plus `bench.free`, a table no copy follows; registers them;
creates HYDRATIONS hydrations spread over the TABLES, each by a run that
reports progress at a different snapshot (so their lags differ, all within
their threshold: live), then detaches (live followers, no run attached,
no lease). Then times, in the same run:
- listing all of them with their lag in pages of 1,000, beside reading the
  same 1,000 one by one (GET /v1/hydrations/{id});
- a refresh of one table after an append (reading its metadata and
  relagging its followers), beside the same on `bench.free`;
- a compaction's write lease granted and released, and the retention
  answer, on a table with followers, beside `bench.free`.
"""

import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration-tests/iceberg"))
import lake  # noqa: E402

SNAPSHOTS = 5
FREE = "bench.free"
ROUNDS = 200


def table_names(tables):
    return [f"bench.h{t:04d}" for t in range(tables)]




def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def setup_lake(props, tables):
    cat = lake.catalog(props)
    try:
        cat.create_namespace("bench")
    except Exception:
        pass
    ids = {}
    for name in table_names(tables) + [FREE]:
        cat.create_table(name, schema=lake.SCHEMA)
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()):
            lake.main(["", json.dumps(props), "append", name, "1"])
        table = cat.load_table(name)
        for _ in range(SNAPSHOTS - 1):
            table.append(lake_row())
        ids[name] = chain(cat.load_table(name))
    return ids


def chain(table):
    """The table's snapshot ids along its current branch, oldest first."""
    ids, snap = [], table.current_snapshot()
    while snap is not None:
        ids.append(snap.snapshot_id)
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    return list(reversed(ids))


def lake_row():
    import pyarrow as pa

    return pa.table({"id": pa.array([1], pa.int64()), "name": pa.array(["x"])})


def main(argv):
    if argv[1] == "setup":
        setup_lake(json.loads(argv[2]), int(argv[3]))
        return
    base, props, n, tables = argv[2], json.loads(argv[3]), int(argv[4]), int(argv[5])
    names = table_names(tables)
    cat = lake.catalog(props)
    snapshots = {t: chain(cat.load_table(t)) for t in names}
    call(base, "PUT", "/v1/containers/bench", {"kind": "postgres", "url": "env:BENCH_URL"})
    for t in names + [FREE]:
        call(base, "PUT", f"/v1/tables/{t}", {"catalog": "local"})
        call(base, "POST", f"/v1/tables/{t}/refresh")

    def one(i):
        t = names[i % tables]
        h = call(base, "POST", "/v1/hydrations", {
            "table": t, "container": "bench", "target": f"h{i:05d}", "views": [f"v{i:05d}"],
            "lease_ttl_seconds": 3600, "run_id": f"bench-{i}",
            "lag_threshold_snapshots": SNAPSHOTS})
        # Counted from the newest: an earlier run of this script appended
        # to some tables.
        applied = snapshots[t][-1 - i % SNAPSHOTS]
        token = h["session"]["token"]
        live = call(base, "POST", f"/v1/hydrations/{h['id']}/progress", {
            "token": token, "phase": "catching_up", "snapshot_id": applied,
            "rows_copied": i, "rows_total": n})
        assert live["state"] == "live", live
        call(base, "POST", f"/v1/hydrations/{h['id']}/detach", {"token": token})
        return h["id"]

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(n)))
    print(f"created {n} live followers over {tables} tables (create, report, detach) "
          f"in {time.perf_counter() - start:.1f} s")

    def list_all():
        seen, after, pages = 0, None, 0
        while True:
            q = "?limit=1000" + (f"&after={after}" if after else "")
            page = call(base, "GET", "/v1/hydrations" + q)
            seen += len(page["hydrations"])
            pages += 1
            after = page["next_after"]
            if not after:
                return seen, pages

    def one_by_one():
        for i in ids[:1000]:
            call(base, "GET", f"/v1/hydrations/{i}")

    list_all()  # warm
    lists, singles = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        seen, pages = list_all()
        lists.append((time.perf_counter() - t0) / pages)
        t0 = time.perf_counter()
        one_by_one()
        singles.append(time.perf_counter() - t0)
    assert seen == n, (seen, n)
    behind = [h["lag"]["snapshots"] for h in call(base, "GET", "/v1/hydrations?limit=1000")["hydrations"]]
    page_ms, single_ms = statistics.median(lists) * 1000, statistics.median(singles) * 1000
    print(f"lag in the first page: {min(behind)} to {max(behind)} snapshots behind")
    print(f"list {n} in {pages} pages of 1000: median {page_ms:.1f} ms per page, "
          f"{page_ms * pages:.0f} ms in all")
    print(f"the same {min(n, 1000)} one by one: median {single_ms:.0f} ms; "
          f"a page is {single_ms / page_ms:.1f}x faster")

    # One table's refresh relagging its followers, beside a table none
    # follows; each round times both, one after the other, so that neither
    # side has the warmer caches.
    followed = names[0]
    per_table = sum(1 for i in range(n) if i % tables == 0)

    def paired(op, rounds):
        times = {followed: [], FREE: []}
        for _ in range(rounds):
            for table, spent in times.items():
                t0 = time.perf_counter()
                op(table)
                spent.append(time.perf_counter() - t0)
        return (statistics.median(times[followed]) * 1000, statistics.median(times[FREE]) * 1000)

    def append_and_refresh(table):
        cat.load_table(table).append(lake_row())
        t0 = time.perf_counter()
        call(base, "POST", f"/v1/tables/{table}/refresh")
        return time.perf_counter() - t0

    refreshes = {followed: [], FREE: []}
    for _ in range(15):
        for table, spent in refreshes.items():
            spent.append(append_and_refresh(table))
    refresh_followed = statistics.median(refreshes[followed]) * 1000
    refresh_free = statistics.median(refreshes[FREE]) * 1000
    page = call(base, "GET", f"/v1/hydrations?table={followed}&limit=1000")["hydrations"]
    assert all(h["state"] == "lagging" for h in page), page[0]
    print(f"refresh after an append, {per_table} followers relagged: median {refresh_followed:.1f} ms; "
          f"with none: {refresh_free:.1f} ms ({refresh_followed / refresh_free:.2f}x)")

    # A compaction's write lease, granted and released, and the retention
    # answer it is started with, beside a table none follows.
    def grant(table):
        lease = call(base, "POST", f"/v1/tables/{table}/leases",
                     {"mode": "write", "holder": "compaction", "ttl_seconds": 60})
        assert lease["state"] == "granted", lease
        req = urllib.request.Request(
            f"{base}/v1/leases/{lease['lease_id']}?token={lease['token']}", method="DELETE")
        urllib.request.urlopen(req, timeout=60).read()

    grant_followed, grant_free = paired(grant, ROUNDS)
    keep_followed, keep_free = paired(
        lambda table: call(base, "GET", f"/v1/tables/{table}/retention"), ROUNDS)
    pinned = call(base, "GET", f"/v1/tables/{followed}/retention")["pinned"]
    print(f"write lease grant + release with {per_table} live followers: median {grant_followed:.2f} ms; "
          f"with none: {grant_free:.2f} ms ({grant_followed / grant_free:.2f}x)")
    print(f"retention with {per_table} followers' pins ({len(pinned)} distinct): median "
          f"{keep_followed:.2f} ms; with none: {keep_free:.2f} ms ({keep_followed / keep_free:.2f}x)")


if __name__ == "__main__":
    main(sys.argv)
