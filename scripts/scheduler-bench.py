"""The scheduler's costs (see scheduler-bench.sh).

    scheduler-bench.py runs SLUICE DOUBLE MOTO RUNS GLUE_JOB
    scheduler-bench.py jobs SLUICE MOTO JOBS LOG

runs: RUNS runs of one job start and stay RUNNING in Glue; after 40 s of
steady following, the double ends them all at once; prints the Glue calls
per second while they ran, and the time from Glue's terminal state to
sluice's (each run's running->succeeded event) as p50 / p99 / max.

jobs: JOBS job definitions whose cron schedules spread over the hour
(`M * * * *`, M = i % 60: about JOBS/60 fire each minute), then 70 s of
the leader's ticks; prints the mean and max tick time it logged.
"""

import json
import re
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime


def call(base, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


def glue(moto, action, body):
    return call(
        moto,
        "POST",
        "/",
        body,
        {
            "X-Amz-Target": f"AWSGlue.{action}",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/glue/aws4_request, SignedHeaders=host, Signature=0",
        },
    )


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def runs(sluice, double, moto, n, job):
    glue(moto, "CreateJob", {"Name": job, "Role": "arn:aws:iam::123456789012:role/glue",
                             "Command": {"Name": "glueetl", "ScriptLocation": "s3://s/j.py"},
                             "ExecutionProperty": {"MaxConcurrentRuns": n}})
    call(double, "POST", "/_double/script", {"outcomes": {job: ["RUNNING"] * n}})
    call(sluice, "PUT", f"/v1/jobs/{job}", {"glue_job_name": job, "kind": "other", "max_concurrent_runs": n})
    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda _: call(sluice, "POST", f"/v1/jobs/{job}/runs", {})["id"], range(n)))
    t0 = time.time()
    while True:
        page = call(sluice, "GET", f"/v1/runs?job={job}&state=running&limit=1000")
        if len(page["runs"]) >= n:
            break
        if time.time() - t0 > 600:
            raise SystemExit("runs did not all start")
        time.sleep(0.5)
    started = time.time() - t0
    before = call(double, "GET", "/_double/calls").get("GetJobRun", 0)
    time.sleep(40)
    polls = call(double, "GET", "/_double/calls").get("GetJobRun", 0) - before
    finish = call(double, "POST", "/_double/finish", {"job": job})
    t1 = time.time()
    while True:
        page = call(sluice, "GET", f"/v1/runs?job={job}&state=succeeded&limit=1000")
        if len(page["runs"]) >= n or time.time() - t1 > 900:
            break
        time.sleep(1)
    lags = []
    cursor = 0
    while True:
        page = call(sluice, "GET", f"/v1/events?kind=run_state_changed&after={cursor}&limit=1000")
        for e in page["events"]:
            if e["data"]["job"] == job and e["data"]["to"] == "succeeded":
                lags.append(ts(e["at"]) - finish["at"])
        if not page["events"]:
            break
        cursor = page["next_after"]
    lags.sort()
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
    print(f"  {n} runs started and running in {started:.1f} s")
    print(f"  GetJobRun while {n} ran: {polls / 40:.1f} calls/s")
    print(f"  Glue terminal -> sluice succeeded ({len(lags)} runs): p50 {q(0.5):.1f} s, p99 {q(0.99):.1f} s, max {lags[-1]:.1f} s")


def jobs(sluice, moto, n, log):
    glue(moto, "CreateJob", {"Name": "cron-bench", "Role": "arn:aws:iam::123456789012:role/glue",
                             "Command": {"Name": "glueetl", "ScriptLocation": "s3://s/j.py"},
                             "ExecutionProperty": {"MaxConcurrentRuns": 1000}})
    t0 = time.time()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: call(sluice, "PUT", f"/v1/jobs/cron-{i:05d}", {
            "glue_job_name": "cron-bench", "kind": "other", "schedule": f"{i % 60} * * * *",
            "timezone": "Europe/Paris", "max_concurrent_runs": 1000}), range(n)))
    if n:
        print(f"  {n} definitions in {time.time() - t0:.1f} s")
    start = time.time()
    time.sleep(70)
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(log) if "scheduler ticks" in l]
    stats = []
    for line in lines:
        fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
        stats.append((int(fields["ticks"]), float(fields["mean_ms"].strip('"')),
                      float(fields["max_ms"].strip('"'))))
    if not stats:
        raise SystemExit("no tick statistics logged")
    mean = statistics.mean(s[1] for s in stats[-2:])
    peak = max(s[2] for s in stats[-2:])
    fired = len(call(sluice, "GET", "/v1/runs?limit=1000")["runs"])
    print(f"  tick: mean {mean:.3f} ms, max {peak:.3f} ms (last {sum(s[0] for s in stats[-2:])} ticks); {fired} runs fired in {time.time() - start:.0f} s")


if __name__ == "__main__":
    if sys.argv[1] == "runs":
        runs(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    else:
        jobs(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
