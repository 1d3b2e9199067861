#!/usr/bin/env bash
# The latency figures the black-box tests only bound (limits.rs: /healthz
# while slow-header clients hold connections; dashboard.rs: the first page
# of 10,000 tables): p50/p95/p99 of `GET /healthz` and of the dashboard's
# first page request (`GET /v1/tables?limit=50`, an operator's token, over
# TABLES tables), in three conditions on one server, one after the other:
#   idle;
#   SLOW clients (default 500) each sending its request head a byte a
#   second, reconnecting when the header deadline (3 s, as in limits.rs)
#   closes it, so that SLOW connections are always held;
#   CLIENTS clients (default 8) acquiring and releasing leases as fast as
#   they are answered.
# Each loaded condition is also given as a ratio to the idle one of the
# same run. One probe of each route every INTERVAL_MS (default 50) for
# PHASE_SECONDS (default 20) per condition, each on its own kept-alive
# connection. The clients are Python (standard library only) on the same
# machine as the server.
#
# BIN=path: the sluice binary to measure, or the directory holding it
# (nothing is built). Default: target/release/sluice, built beforehand
# with `cargo build --release --bins`.
set -euo pipefail
cd "$(dirname "$0")/.."
TABLES="${TABLES:-10000}"
SLOW="${SLOW:-500}"
CLIENTS="${CLIENTS:-8}"
PHASE_SECONDS="${PHASE_SECONDS:-20}"
INTERVAL_MS="${INTERVAL_MS:-50}"
if [ -n "${BIN:-}" ]; then
  if [ -d "$BIN" ]; then sluice="$BIN/sluice"; else sluice="$BIN"; fi
else
  sluice="${CARGO_TARGET_DIR:-target}/release/sluice"
fi
if [ ! -x "$sluice" ]; then
  echo "no sluice binary at $sluice: build it with \`cargo build --release --bins\`," >&2
  echo "or name one with BIN=target/debug (or BIN=path/to/sluice)" >&2
  exit 1
fi
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'tail -5 "$work/sluice.log" >&2' ERR

py=$(
  cat <<'PY'
import asyncio, http.client, json, os, random, sys, threading, time

def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

def call(c, method, path, token=None, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    return r.status, data

def setup(port, token, tables):
    """TABLES tables `lake.tNNNNN`, 8 at a time; the 16 of the lease load."""
    names = [f"bench.t{i:02}" for i in range(16)] + [f"lake.t{i:05}" for i in range(tables)]
    def work(k):
        c = conn(port)
        for name in names[k::8]:
            status, data = call(c, "PUT", f"/v1/tables/{name}", token, {})
            assert status == 201, (status, data)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()

async def slow_one(port, head, stop_at):
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        try:
            for i in range(10_000):
                writer.write(head[i:i + 1] if i < len(head) else b"a")
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        break  # closed at the header deadline: connect again
                except asyncio.TimeoutError:
                    pass
        except OSError:
            pass
        finally:
            writer.close()

async def slow_all(port, n, seconds):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    stop_at = time.monotonic() + seconds
    async def staggered(k):
        await asyncio.sleep(k / n)  # spread the connects over a second
        await slow_one(port, head, stop_at)
    await asyncio.gather(*(staggered(k) for k in range(n)))

def load(port, token, clients):
    """Leases on 16 tables (70 % read), acquired and released at once."""
    done = [0]
    def work(k):
        try:
            run(k)
        except BaseException as e:
            print(f"lease client {k}: {e!r}", file=sys.stderr, flush=True)
            os._exit(1)
    def run(k):
        c = conn(port)
        rng = random.Random(k)
        while True:
            table = f"bench.t{rng.randrange(16):02}"
            mode = "read" if rng.random() < 0.7 else "write"
            status, data = call(c, "POST", f"/v1/tables/{table}/leases", token,
                                {"mode": mode, "holder": f"bench-{k}", "ttl_seconds": 30,
                                 "wait_seconds": 30})
            assert status in (200, 201, 202), (status, data)
            lease = json.loads(data)
            if lease["state"] != "granted":
                continue  # its wait ran out: drop it (30 s TTL)
            status, data = call(c, "DELETE", f"/v1/leases/{lease['lease_id']}?token={lease['token']}", token)
            assert status == 200, (status, data)
            done[0] += 1
    for k in range(clients):
        threading.Thread(target=work, args=(k,), daemon=True).start()
    start = time.monotonic()
    while True:
        time.sleep(5)
        print(f"{done[0] / (time.monotonic() - start):.0f}", flush=True)

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]

def measure(port, token, seconds, interval_ms):
    health, page = conn(port), conn(port)
    out = {"healthz": [], "page": []}
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        for name, c, path, tok in (("healthz", health, "/healthz", None),
                                   ("page", page, "/v1/tables?limit=50", token)):
            t = time.perf_counter()
            status, data = call(c, "GET", path, tok)
            out[name].append((time.perf_counter() - t) * 1000)
            assert status == 200, (path, status, data)
        time.sleep(interval_ms / 1000)
    print(json.dumps({k: {"p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99),
                          "max": max(v), "n": len(v)} for k, v in out.items()}))

mode, port = sys.argv[1], int(sys.argv[2])
if mode == "setup":
    setup(port, sys.argv[3], int(sys.argv[4]))
elif mode == "slow":
    asyncio.run(slow_all(port, int(sys.argv[3]), float(sys.argv[4])))
elif mode == "load":
    load(port, sys.argv[3], int(sys.argv[4]))
elif mode == "measure":
    measure(port, sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
PY
)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data="$work/data"
RUST_LOG=warn "$sluice" serve --bind "127.0.0.1:$port" --data-dir "$data" --auth on \
  --header-read-timeout-seconds 3 --refresh-interval-seconds 86400 >>"$work/sluice.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "sluice did not start" >&2; cat "$work/sluice.log" >&2; exit 1; }
admin=$("$sluice" token create --name bench-admin --role admin --data-dir "$data" 2>>"$work/sluice.log")
operator=$("$sluice" token create --name bench-operator --role operator --data-dir "$data" 2>>"$work/sluice.log")

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; binary $sluice"
echo "$TABLES tables, $SLOW slow-header clients, $CLIENTS lease clients, ${PHASE_SECONDS} s per condition, a probe every ${INTERVAL_MS} ms"
started=$(date +%s)
python3 -c "$py" setup "$port" "$admin" "$TABLES"
echo "registered $TABLES tables (and 16 for the lease load) in $(($(date +%s) - started)) s"

declare -A figures
measure() { # name
  figures[$1]=$(python3 -c "$py" measure "$port" "$operator" "$PHASE_SECONDS" "$INTERVAL_MS")
}
stop_last() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

measure idle
python3 -c "$py" slow "$port" "$SLOW" "$((PHASE_SECONDS + 10))" &
pids+=($!)
sleep 4 # every slow client connected, and the first ones closed and back
held=$(ss -Htn state established "( sport = :$port )" | wc -l)
measure slow
stop_last
sleep 4 # the last slow connections closed at their deadline
python3 -c "$py" load "$port" "$admin" "$CLIENTS" >"$work/load.out" &
pids+=($!)
sleep 2
measure load
kill -0 "${pids[-1]}" 2>/dev/null || { echo "the lease load stopped early" >&2; exit 1; }
stop_last
rate=$(tail -1 "$work/load.out")

echo "connections held open during the slow-header condition: $held (server side)"
echo "lease load: about ${rate:-?} acquire+release pairs/s"
echo
echo "| condition | /healthz p50 | p95 | p99 | first page p50 | p95 | p99 | probes |"
echo "|---|---|---|---|---|---|---|---|"
python3 - "${figures[idle]}" "${figures[slow]}" "${figures[load]}" "$SLOW" "$CLIENTS" <<'PY'
import json, sys
idle, slow, load = (json.loads(a) for a in sys.argv[1:4])
names = {"idle": "idle", "slow": f"{sys.argv[4]} slow-header clients",
         "load": f"{sys.argv[5]} clients acquiring and releasing"}
for key, row in (("idle", idle), ("slow", slow), ("load", load)):
    cells = []
    for route in ("healthz", "page"):
        for p in ("p50", "p95", "p99"):
            ms = row[route][p]
            cell = f"{ms:.2f} ms"
            if key != "idle":
                cell += f" ({ms / idle[route][p]:.1f}×)"
            cells.append(cell)
    print(f"| {names[key]} | " + " | ".join(cells) + f" | {row['healthz']['n']} |")
print()
print("(×: the ratio to the idle condition of this run; max /healthz "
      + ", ".join(f"{k} {r['healthz']['max']:.1f} ms" for k, r in (("idle", idle), ("slow", slow), ("load", load)))
      + "; max first page "
      + ", ".join(f"{k} {r['page']['max']:.1f} ms" for k, r in (("idle", idle), ("slow", slow), ("load", load)))
      + ")")
PY
