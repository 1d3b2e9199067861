"""sluice at scale: see scripts/scale-bench.sh, which starts moto, the
counting proxy, the queue and two replicas, then runs this.

    scale-bench.py MOTO_URL PROXY_URL QUEUE_URL SLUICE_URL=PID SLUICE_URL=PID

TABLES, ICEBERG and COMMITS come from the environment.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import boto3
import pyarrow as pa
from pyiceberg.catalog import load_catalog

HERE = os.path.dirname(os.path.abspath(__file__))
LAKE = os.path.join(HERE, "..", "integration-tests", "iceberg", "lake.py")
TICK = os.sysconf("SC_CLK_TCK")


def props(moto):
    return {
        "type": "glue",
        "glue.endpoint": moto, "glue.region": "us-east-1",
        "glue.access-key-id": "testing", "glue.secret-access-key": "testing",
        "s3.endpoint": moto, "s3.region": "us-east-1",
        "s3.access-key-id": "testing", "s3.secret-access-key": "testing",
        "warehouse": "s3://lake/",
    }


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as answer:
        return json.load(answer)


def metric(url, name):
    with urllib.request.urlopen(f"{url}/metrics", timeout=60) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def counts(proxy):
    with urllib.request.urlopen(f"{proxy}/counts") as answer:
        return json.load(answer)


def catalog_calls(before, after):
    keys = ("GetTables", "GetTable", "GET:metadata")
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def table_event(name):
    database, table = name.split(".")
    return json.dumps({
        "version": "0", "id": str(time.time()), "detail-type": "Glue Data Catalog Table State Change",
        "source": "aws.glue", "account": "123456789012", "time": "2026-12-07T00:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"databaseName": database, "tableName": table, "typeOfChange": "UpdateTable",
                   "changedPartitions": []},
    })


def append(cat, name):
    t = cat.load_table(name)
    t.append(pa.table({"id": pa.array([1], pa.int64()), "name": pa.array(["x"], pa.string())}))
    return cat.load_table(name).current_snapshot().snapshot_id


def shown(url, name, snapshot, timeout=300.0):
    """Seconds until the log of `name` has `snapshot` as current."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        page = call("GET", f"{url}/v1/tables/{name}/snapshots?limit=1")
        if page["catalog_state"] and page["catalog_state"]["current_snapshot_id"] == snapshot:
            return time.perf_counter() - started
        time.sleep(0.02)
    return float("inf")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    moto, proxy, queue = sys.argv[1:4]
    replicas = [tuple(a.split("=")) for a in sys.argv[4:6]]
    n, iceberg, commits = int(os.environ["TABLES"]), int(os.environ["ICEBERG"]), int(os.environ["COMMITS"])
    url = replicas[0][0]

    started = time.perf_counter()
    subprocess.run([sys.executable, LAKE, json.dumps({"name": "lake", **props(moto)}), "wide", "wide.t",
                    str(iceberg)], check=True)
    real = [f"wide.t{i:04d}" for i in range(iceberg)]
    # The rest in databases of 100 that Glue does not have (listed, found
    # missing, recorded without a read).
    others = [f"reg{i // 100:04d}.t{i:06d}" for i in range(n - iceberg)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda t: call("PUT", f"{url}/v1/tables/{t}", {}), real + others))
    print(f"setup: {iceberg} Iceberg tables in moto's Glue, {n} registered: {time.perf_counter() - started:.0f} s")

    # The first pass after registration reads every Iceberg table once.
    deadline = time.time() + 1800
    while True:
        reads = [metric(u, 'sluice_catalog_calls_total{kind="read"}') for u, _ in replicas]
        if max(reads) >= iceberg:
            break
        assert time.time() < deadline, reads
        time.sleep(1)
    leader = max(range(2), key=lambda i: reads[i])
    lurl, lpid = replicas[leader]
    furl, fpid = replicas[1 - leader]
    passes = metric(lurl, "sluice_snapshot_reconcile_passes_total")
    while metric(lurl, "sluice_snapshot_reconcile_passes_total") < passes + 2:
        time.sleep(1)
    interval = metric(lurl, "sluice_snapshot_reconcile_interval_seconds")
    last_pass = metric(lurl, "sluice_snapshot_reconcile_last_pass_seconds")
    print(f"reconcile: every {interval:.1f} s, a pass over {n} tables takes {last_pass:.2f} s")

    def window(seconds, work=None):
        c0, t0 = counts(proxy), time.perf_counter()
        cpu0 = [cpu_seconds(lpid), cpu_seconds(fpid)]
        if work:
            work(seconds)
        else:
            time.sleep(seconds)
        took = time.perf_counter() - t0
        cpu = [(cpu_seconds(p) - c) / took * 100 for p, c in zip((lpid, fpid), cpu0)]
        calls = {k: v * 60 / took for k, v in catalog_calls(c0, counts(proxy)).items()}
        return cpu, calls

    cpu, calls = window(60)
    print(f"at rest:   leader {cpu[0]:5.2f} % of a core, follower {cpu[1]:5.2f} %; "
          f"catalog calls a minute: {calls['GetTables']:.0f} GetTables, {calls['GetTable']:.0f} GetTable, "
          f"{calls['GET:metadata']:.0f} metadata reads")
    cat = load_catalog("lake", **props(moto))

    def committing(seconds):
        # 1 % of the Iceberg tables a minute.
        per_minute = max(1, iceberg // 100)
        for i in range(int(seconds / 60 * per_minute)):
            t0 = time.perf_counter()
            append(cat, real[(i * 37) % iceberg])
            time.sleep(max(0.0, 60 / per_minute - (time.perf_counter() - t0)))

    cpu, calls = window(60, committing)
    print(f"1 %/min:   leader {cpu[0]:5.2f} % of a core, follower {cpu[1]:5.2f} %; "
          f"catalog calls a minute: {calls['GetTables']:.0f} GetTables, {calls['GetTable']:.0f} GetTable, "
          f"{calls['GET:metadata']:.0f} metadata reads")

    sqs = boto3.client("sqs", endpoint_url=moto, region_name="us-east-1")
    with_events = []
    for i in range(commits):
        name = real[(i * 53 + 11) % iceberg]
        snapshot = append(cat, name)
        sqs.send_message(QueueUrl=queue, MessageBody=table_event(name))
        with_events.append(shown(lurl, name, snapshot))
    print(f"freshness with events ({commits} commits): event to log p50 {pct(with_events, 50):.2f} s, "
          f"p99 {pct(with_events, 99):.2f} s")
    without = []
    for i in range(max(1, commits // 4)):
        name = real[(i * 71 + 5) % iceberg]
        snapshot = append(cat, name)
        without.append(shown(lurl, name, snapshot))
    print(f"freshness without events ({len(without)} commits): commit to log p50 {pct(without, 50):.2f} s, "
          f"p99 {pct(without, 99):.2f} s (the reconcile interval bounds it)")
    print(f"RSS: leader {rss_mib(lpid):.0f} MiB, follower {rss_mib(fpid):.0f} MiB")


if __name__ == "__main__":
    main()
