"""Listing hydrations with their lag: sluice answers a page from its store.

    hydrations-bench.py setup CATALOG_JSON TABLES
    hydrations-bench.py run SLUICE_URL CATALOG_JSON HYDRATIONS TABLES

Creates TABLES Iceberg tables (pyiceberg, SQL catalog) with a few
snapshots each, registers them, creates HYDRATIONS hydrations spread over
them with progress at different snapshots (so their lags differ), then
times listing all of them with their lag in pages of 1,000, beside reading
the same 1,000 one by one (GET /v1/hydrations/{id}) in the same run.
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
    for t in range(tables):
        name = f"bench.h{t:03d}"
        cat.create_table(name, schema=lake.SCHEMA)
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()):
            lake.main(["", json.dumps(props), "append", name, "1"])
        table = cat.load_table(name)
        for _ in range(SNAPSHOTS - 1):
            import pyarrow as pa

            table.append(pa.table({"id": pa.array([1], pa.int64()), "name": pa.array(["x"])}))
        ids[name] = [s.snapshot_id for s in cat.load_table(name).metadata.snapshots]
    return ids


def main(argv):
    if argv[1] == "setup":
        setup_lake(json.loads(argv[2]), int(argv[3]))
        return
    base, props, n, tables = argv[2], json.loads(argv[3]), int(argv[4]), int(argv[5])
    names = [f"bench.h{t:03d}" for t in range(tables)]
    cat = lake.catalog(props)
    snapshots = {t: [s.snapshot_id for s in cat.load_table(t).metadata.snapshots] for t in names}
    call(base, "PUT", "/v1/containers/bench", {"kind": "postgres", "url": "env:BENCH_URL"})
    for t in names:
        call(base, "PUT", f"/v1/tables/{t}", {"catalog": "local"})
        call(base, "POST", f"/v1/tables/{t}/refresh")

    def one(i):
        t = names[i % tables]
        h = call(base, "POST", "/v1/hydrations", {
            "table": t, "container": "bench", "target": f"h{i:05d}", "views": [f"v{i:05d}"],
            "lease_ttl_seconds": 3600, "run_id": f"bench-{i}"})
        applied = snapshots[t][i % SNAPSHOTS]
        call(base, "POST", f"/v1/hydrations/{h['id']}/progress", {
            "token": h["session"]["token"], "phase": "catching_up", "snapshot_id": applied,
            "rows_copied": i, "rows_total": n})
        return h["id"]

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(one, range(n)))
    print(f"created {n} hydrations with progress over {tables} tables in {time.perf_counter() - start:.1f} s")

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
    print(f"the same 1000 one by one: median {single_ms:.0f} ms; a page is {single_ms / page_ms:.1f}x faster")


if __name__ == "__main__":
    main(sys.argv)
