#!/usr/bin/env bash
# The DynamoDB backend's figures in BENCHMARKS.md, against moto's DynamoDB
# (moto is a single Python process: its speed is not DynamoDB's, so the
# ops/s say what sluice's path costs beside SQLite's on the same machine,
# not what AWS would serve). The count that carries over to AWS is the
# DynamoDB calls per lease operation: a counting proxy
# (scripts/count-calls.py) sits between sluice and moto.
#
# Two replicas share the table; the lease load (acquire + release, 70%
# reads, as scripts/bench.sh) runs against one replica, then against both,
# then the same load on SQLite; then the wake-up of a writer long-polling
# on one replica after a release on the other.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS="${RUN_SECONDS:-15}"
CLIENTS="${CLIENTS:-16}"
TABLES="${TABLES:-100}"
scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt >/dev/null
# PROFILE=debug measures the debug build (call counts do not depend on it);
# BIN=DIR measures the sluice and sluice-load already built in DIR.
PROFILE="${PROFILE:-release}"
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  if [ "$PROFILE" = release ]; then cargo build --release --bins --quiet; else cargo build --bins --quiet; fi
  bin="${CARGO_TARGET_DIR:-target}/$PROFILE"
fi
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true

wait_for() { # url, what
  for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done
  echo "$2 did not start" >&2; exit 1
}

# One request at a time: moto's transactions are not isolated between its
# threads (integration-tests/dynamodb/serial_moto.py says how).
.venv-ingest/bin/python integration-tests/dynamodb/serial_moto.py 127.0.0.1 7950 >"$work/moto.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:7950/moto-api/ moto
python3 scripts/count-calls.py 7951 http://127.0.0.1:7950 &
pids+=($!)
wait_for http://127.0.0.1:7951/counts "the counting proxy"

serve() { # port, storage flags...
  local port=$1; shift
  RUST_LOG=warn "$bin/sluice" serve --bind "127.0.0.1:$port" "$@" >>"$work/sluice-$port.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$port/readyz" "sluice on $port"
}

counts() { curl -sf http://127.0.0.1:7951/counts; }
reset() { curl -sf -X POST http://127.0.0.1:7951/counts/reset >/dev/null; }

# calls per operation: counts over a load run, less what the replicas do
# idle (measured first: the event-counter watch, the scheduler leader's
# heartbeat), over its operations.
per_op() { # counts-json, summary-json, idle-calls-per-second-json
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
counts, summary, idle = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
ops = summary["ops"]
background = sum(idle.values()) * summary["seconds"]
for k, rate in idle.items():
    counts[k] = max(0.0, counts.get(k, 0) - rate * summary["seconds"])
total = sum(counts.values())
parts = ", ".join(f"{k} {v / ops:.2f}" for k, v in sorted(counts.items()) if v)
print(f"  {ops} ops, {summary['ops_per_second']:.0f} ops/s, grant p50 {summary['grant_p50_ms']:.1f} ms, "
      f"p99 {summary['grant_p99_ms']:.1f} ms, errors {summary['errors']}")
print(f"  DynamoDB calls per lease op: {total / ops:.2f} ({parts}; "
      f"less {background:.0f} calls the idle replicas make in that time)")
PY
}

url="dynamodb://bench?region=us-east-1&endpoint=http://127.0.0.1:7951"
"$bin/sluice" migrate --database-url "$url" 2>/dev/null
export SLUICE_TOKEN
SLUICE_TOKEN=$("$bin/sluice" token create --name bench --role admin --database-url "$url" 2>/dev/null)
serve 7952 --database-url "$url" --auth on
serve 7953 --database-url "$url" --auth on

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "$PROFILE build; clients: $CLIENTS, $TABLES tables, $RUN_SECONDS s per run, read ratio 0.7, holds released at once"
"$bin/sluice-load" run --url http://127.0.0.1:7952 --clients 1 --tables "$TABLES" --namespace dyn \
  --seconds 0.5 --setup >/dev/null
reset; sleep 10
idle=$(counts | python3 -c 'import json,sys; print(json.dumps({k: v / 10 for k, v in json.load(sys.stdin).items()}))')
echo "idle calls per second: $idle (the replicas' event-counter watch, the scheduler leader's heartbeat)"

# One client first: no group commit to share calls, so the count is what
# each operation costs alone.
for label in "one replica, one client" "one replica" "two replicas"; do
  urls=(--url http://127.0.0.1:7952)
  [ "$label" = "two replicas" ] && urls+=(--url http://127.0.0.1:7953)
  clients=$CLIENTS
  [ "$label" = "one replica, one client" ] && clients=1
  reset
  summary=$("$bin/sluice-load" run "${urls[@]}" --clients "$clients" --tables "$TABLES" \
    --namespace dyn --seconds "$RUN_SECONDS" --history "$work/dyn-$label.jsonl")
  echo "dynamodb (moto), $label:"
  per_op "$(counts)" "$summary" "$idle"
  "$bin/sluice-load" check --url http://127.0.0.1:7952 --history "$work/dyn-$label.jsonl" | sed 's/^/  /'
done

SQLITE_TOKEN=$("$bin/sluice" token create --name bench --role admin --data-dir "$work/sqlite" 2>/dev/null)
serve 7954 --data-dir "$work/sqlite" --auth on
summary=$(SLUICE_TOKEN=$SQLITE_TOKEN "$bin/sluice-load" run --url http://127.0.0.1:7954 --clients "$CLIENTS" \
  --tables "$TABLES" --namespace dyn --seconds "$RUN_SECONDS" --setup)
echo "sqlite, the same load:"
python3 - "$summary" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
print(f"  {s['ops']} ops, {s['ops_per_second']:.0f} ops/s, grant p50 {s['grant_p50_ms']:.1f} ms, "
      f"p99 {s['grant_p99_ms']:.1f} ms, errors {s['errors']}")
PY

printf 'dynamodb, wake-up across replicas: '
"$bin/sluice-load" wake --reader-url http://127.0.0.1:7952 --writer-url http://127.0.0.1:7953 \
  --table bench.wake2 --rounds 30
