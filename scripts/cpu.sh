#!/usr/bin/env bash
# What a lease operation costs, measured side by side in one run: the same
# load (sluice-load: CLIENTS clients taking and releasing leases) against
# sluice on SQLite, sluice on PostgreSQL and the peer, etcd (lock/unlock
# through its v3 JSON gateway, fsync on; installed from Debian's packages
# when missing), over TABLES tables with read leases and over one hot table
# with write leases (etcd's locks are exclusive on both). For each it prints
# ops/s, grant p50/p99, and the CPU microseconds per operation spent by the
# server, by the database's processes and by the load generator (utime +
# stime over the run, read from /proc), and ops/s as a ratio to etcd's.
# Every sluice run is then checked by the history checker.
#
# Environment: RUN_SECONDS (default 20), CLIENTS (64), TABLES (1000),
# DATABASE_URL (the PostgreSQL server to use; default the local one),
# PROFILE (release; `debug` only to try the script quickly), SYSTEMS (which
# to run, default "sqlite postgres etcd"; the ratios need etcd), ROUNDS
# (default 1: the systems measured in turn that many times, each round on
# fresh storage; the ratio of a round is to that round's etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS="${RUN_SECONDS:-20}"
CLIENTS="${CLIENTS:-64}"
TABLES="${TABLES:-1000}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
SYSTEMS="${SYSTEMS:-sqlite postgres etcd}"
ROUNDS="${ROUNDS:-1}"
runs() { [[ " $SYSTEMS " == *" $1 "* ]]; }
if runs etcd && ! command -v etcd >/dev/null; then
  echo "installing etcd-server from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then cargo build --release --bins --quiet; else cargo build --bins --quiet; fi
bin="${CARGO_TARGET_DIR:-target}/$PROFILE"
tck=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# "pid ticks" for each pid given (utime + stime, fields 14 and 15).
ticks_of() {
  local pid
  for pid in "$@"; do
    [ -r "/proc/$pid/stat" ] || continue
    # After the command name's closing parenthesis, field 3 comes first.
    read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat") || continue
    echo "$pid $((f[11] + f[12]))"
  done
}

# Ticks spent between two snapshots, over the processes of the second
# (a process started meanwhile counts from zero).
spent() { # before-file after-file
  python3 - "$1" "$2" <<'EOF'
import sys
before = dict(l.split() for l in open(sys.argv[1]) if l.strip())
after = dict(l.split() for l in open(sys.argv[2]) if l.strip())
print(sum(int(t) - int(before.get(p, 0)) for p, t in after.items()))
EOF
}

db_pids() { pgrep -x postgres || true; }

# Run the load generator; its summary JSON on stdout, and its own CPU
# ticks (as its waiting parent sees them) in $work/load.ticks.
load_run() {
  bash -c '"$@" > "'"$work"'/load.json"; read -r -a f < <(sed "s/^.*) //" /proc/$$/stat); echo $((f[13] + f[14])) > "'"$work"'/load.ticks"' _ "$@"
}

rows=()
# One measured run: label, server pid, whether the database counts, load command...
measure() {
  local label=$1 server=$2 with_db=$3; shift 3
  ticks_of "$server" >"$work/s0"
  if [ "$with_db" = yes ]; then ticks_of $(db_pids) >"$work/d0"; else : >"$work/d0"; fi
  load_run "$@"
  ticks_of "$server" >"$work/s1"
  if [ "$with_db" = yes ]; then ticks_of $(db_pids) >"$work/d1"; else : >"$work/d1"; fi
  rows+=("$(python3 - "$label" "$tck" "$(spent "$work/s0" "$work/s1")" "$(spent "$work/d0" "$work/d1")" \
    "$(cat "$work/load.ticks")" "$work/load.json" <<'EOF'
import json, sys
label, tck, server, db, load, path = sys.argv[1:]
s = json.load(open(path))
us = lambda ticks: int(ticks) / int(tck) * 1e6 / max(s["ops"], 1)
print(json.dumps({"label": label, "ops_per_second": s["ops_per_second"],
                  "p50": s["grant_p50_ms"], "p99": s["grant_p99_ms"], "errors": s["errors"],
                  "server_us": us(server), "db_us": us(db), "load_us": us(load)}))
EOF
)")
}

serve_sluice() { # port, storage flags...
  local port=$1; shift
  RUST_LOG=warn "$bin/sluice" serve --bind "127.0.0.1:$port" --auth on "$@" >>"$work/sluice-$port.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "sluice on $port did not start" >&2; cat "$work/sluice-$port.log" >&2; exit 1
}

sluice_runs() { # label, storage flags...
  local label=$1; shift
  local port token url
  port=$(free_port)
  token=$("$bin/sluice" token create --name bench --role admin "$@" 2>/dev/null)
  serve_sluice "$port" "$@"
  url="http://127.0.0.1:$port"
  # Register the tables (unmeasured), then measure each shape.
  "$bin/sluice-load" --token "$token" run --url "$url" --clients "$CLIENTS" --tables "$TABLES" \
    --namespace spread --seconds 1 --setup >/dev/null
  "$bin/sluice-load" --token "$token" run --url "$url" --clients 1 --tables 1 \
    --namespace hot --seconds 0.2 --setup >/dev/null
  measure "$label, $TABLES tables, read" "$server_pid" "$with_db" \
    "$bin/sluice-load" --token "$token" run --url "$url" --clients "$CLIENTS" --tables "$TABLES" \
    --namespace spread --read-ratio 1 --seconds "$RUN_SECONDS" --history "$work/spread.jsonl"
  "$bin/sluice-load" --token "$token" check --url "$url" --history "$work/spread.jsonl" >&2
  measure "$label, 1 hot table, write" "$server_pid" "$with_db" \
    "$bin/sluice-load" --token "$token" run --url "$url" --clients "$CLIENTS" --tables 1 \
    --namespace hot --read-ratio 0 --seconds "$RUN_SECONDS" --history "$work/hot.jsonl"
  "$bin/sluice-load" --token "$token" check --url "$url" --history "$work/hot.jsonl" >&2
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
}

dbs=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true
  for d in "${dbs[@]}"; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1; done
  rm -rf "$work"' EXIT
for round in $(seq 1 "$ROUNDS"); do
# Dirty pages left by the build (or the last round) would slow the fsyncs
# of the first system measured.
sync
if runs sqlite; then
with_db=no
sluice_runs "r$round sluice on SQLite" --data-dir "$work/sqlite-$round"
fi

if runs postgres; then
db="sluice_cpu_$$_$round"
psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
dbs+=("$db")
with_db=yes
sluice_runs "r$round sluice on PostgreSQL" --database-url "${DATABASE_URL%/*}/$db"
fi

if runs etcd; then
# The peer: one etcd member, fsync on (its default), on free ports.
client_port=$(free_port); peer_port=$(free_port)
etcd --name bench --data-dir "$work/etcd-$round" \
  --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "bench=http://127.0.0.1:$peer_port" --log-level error >"$work/etcd.log" 2>&1 &
etcd_pid=$!
pids+=("$etcd_pid")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$client_port/health" >/dev/null && break
  sleep 0.1
done
etcd_url="http://127.0.0.1:$client_port"

measure "r$round etcd $(etcd --version | head -1 | awk '{print $3}'), $TABLES locks" "$etcd_pid" no \
  "$bin/sluice-load" etcd --url "$etcd_url" --clients "$CLIENTS" --tables "$TABLES" --seconds "$RUN_SECONDS"
measure "r$round etcd, 1 hot lock" "$etcd_pid" no \
  "$bin/sluice-load" etcd --url "$etcd_url" --clients "$CLIENTS" --tables 1 --seconds "$RUN_SECONDS"
kill "$etcd_pid"; wait "$etcd_pid" 2>/dev/null || true
fi

done

echo "$(nproc) cores, $CLIENTS clients, $RUN_SECONDS s per run; CPU in µs per operation (acquire or release; lock or unlock)"
printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys
from collections import defaultdict
rows = [json.loads(l) for l in sys.stdin]
shape = lambda r: "write" if "hot" in r["label"] else "read"
peer = {(r["label"].split()[0], shape(r)): r["ops_per_second"] for r in rows if r["label"].split()[1].startswith("etcd")}
nan = float("nan")
print("%-44s %9s %8s %8s %9s %8s %8s %7s %6s" % ("run", "ops/s", "p50 ms", "p99 ms", "server", "db", "load", "errors", "×etcd"))
by_config = defaultdict(list)
for r in rows:
    rnd, config = r["label"].split(" ", 1)
    ratio = r["ops_per_second"] / peer.get((rnd, shape(r)), nan)
    by_config[config].append((r["ops_per_second"], peer.get((rnd, shape(r)), nan)))
    print("%-44s %9.0f %8.2f %8.2f %9.1f %8.1f %8.1f %7d %6.2f" % (r["label"], r["ops_per_second"], r["p50"], r["p99"],
          r["server_us"], r["db_us"], r["load_us"], r["errors"], ratio))
print("mean over rounds (ops/s, and the sum of ops/s over the sum of etcd ops/s of the same rounds):")
for config, runs in by_config.items():
    print("  %-42s %9.0f %6.2f" % (config, sum(o for o, _ in runs) / len(runs), sum(o for o, _ in runs) / sum(p for _, p in runs)))
'
