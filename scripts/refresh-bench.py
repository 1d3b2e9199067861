"""Time to read 1,000 tables' Iceberg metadata: pyiceberg's own load_table
(the peer) against sluice's refresh of each table's snapshot log.

    refresh-bench.py MOTO_URL SLUICE_URL TABLES [--setup]

--setup creates the tables in moto's Glue catalog (one append each) and
registers them in sluice. Every pass uses 8 threads.
"""

import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from pyiceberg.catalog import load_catalog

THREADS = 8


def catalog(moto):
    return load_catalog(
        "lake",
        **{
            "type": "glue",
            "glue.endpoint": moto, "glue.region": "us-east-1",
            "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
            "s3.endpoint": moto, "s3.region": "us-east-1",
            "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
            "warehouse": "s3://lake/",
        },
    )


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    token = os.environ.get("SLUICE_TOKEN")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req) as answer:
        return json.load(answer)


def timed(label, work, items):
    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, items))
    seconds = time.perf_counter() - started
    print(f"{label:<44} {seconds:7.2f} s  ({len(items) / seconds:7.1f} tables/s)")
    return seconds, results


def main():
    moto, sluice, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cat = catalog(moto)
    names = [f"bench.t{i:05d}" for i in range(n)]
    if "--setup" in sys.argv:
        import boto3

        boto3.client("s3", endpoint_url=moto, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="lake")
        cat.create_namespace("bench")
        schema = pa.schema([("id", pa.int64())])

        def create(name):
            t = cat.create_table(name, schema=schema)
            t.append(pa.table({"id": [1, 2, 3]}))
            call("PUT", f"{sluice}/v1/tables/{name}", {"catalog": "lake"})

        timed("setup: create, append, register", create, names)
    peer, _ = timed("pyiceberg load_table (peer)", lambda name: cat.load_table(name).metadata.snapshots, names)
    first, results = timed("sluice refresh", lambda name: call("POST", f"{sluice}/v1/tables/{name}/refresh"), names)
    added = sum(len(r["added"]) for r in results)
    again, _ = timed("sluice refresh again (nothing new)", lambda name: call("POST", f"{sluice}/v1/tables/{name}/refresh"), names)
    print(f"snapshots added on the first pass: {added}")
    print(f"ratio sluice / pyiceberg: first {first / peer:.2f}, again {again / peer:.2f}")


if __name__ == "__main__":
    main()
