#!/usr/bin/env bash
# The scheduler's costs, on SQLite with a release build, against moto's
# Glue behind the Glue double (scripts/scheduler-bench.py):
# 1. RUNS (default 1000) runs in flight followed by one leader, at two
#    Glue call budgets: Glue calls per second, and the time from Glue's
#    terminal state to sluice's;
# 2. JOBS (default 10000) job definitions with cron schedules spread over
#    the hour: time per scheduler tick, beside the same server with none.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1000}"
JOBS="${JOBS:-10000}"
scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
[ -n "${NO_BUILD:-}" ] || cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
trap 'tail -5 "$work"/*.log >&2' ERR
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
moto_port=$(free_port); double_port=$(free_port)
.venv-ingest/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$moto_port/moto-api/" >/dev/null && break; sleep 0.1; done
.venv-ingest/bin/python integration-tests/glue/glue_double.py "$double_port" "http://127.0.0.1:$moto_port" >"$work/double.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$double_port/_double/calls" >/dev/null && break; sleep 0.1; done
cat >"$work/sluice.toml" <<TOML
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:$double_port"
TOML
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
serve() { # name, port, flags...
  local name=$1 port=$2; shift 2
  RUST_LOG=warn,sluice_scheduler=info "$bin/sluice" --config "$work/sluice.toml" serve \
    --bind "127.0.0.1:$port" --auth off --data-dir "$work/$name" "$@" >>"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "sluice did not start" >&2; cat "$work/$name.log" >&2; exit 1
}
stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; moto 5.2.5 behind the Glue double (moto is not Glue's speed)"
for rate in 10 50; do
  echo "== $RUNS runs in flight, --glue-calls-per-second $rate"
  port=$(free_port)
  serve "runs-$rate" "$port" --glue-calls-per-second "$rate"
  .venv-ingest/bin/python scripts/scheduler-bench.py runs "http://127.0.0.1:$port" \
    "http://127.0.0.1:$double_port" "http://127.0.0.1:$moto_port" "$RUNS" "bench-$rate"
  stop_last
done
for jobs in 0 "$JOBS"; do
  echo "== $jobs cron job definitions"
  port=$(free_port)
  serve "jobs-$jobs" "$port"
  .venv-ingest/bin/python scripts/scheduler-bench.py jobs "http://127.0.0.1:$port" \
    "http://127.0.0.1:$moto_port" "$jobs" "$work/jobs-$jobs.log"
  stop_last
done
