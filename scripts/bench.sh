#!/usr/bin/env bash
# The figures in BENCHMARKS.md: lease operations per second and grant
# latency with 64 clients over 1,000 tables and over 1 hot table, on SQLite
# and on PostgreSQL; how soon a long-polling writer is answered after the
# release that lets it in, on one replica and across two; and batch
# open -> commit cycles per second over 1,000 streams. The load
# generator runs on the same machine as sluice (and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS="${RUN_SECONDS:-20}"
CLIENTS="${CLIENTS:-64}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

serve() { # port, storage flags...
  local port=$1; shift
  RUST_LOG=warn "$bin/sluice" serve --bind "127.0.0.1:$port" "$@" >>"$work/sluice-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "sluice on $port did not start" >&2; cat "$work/sluice-$port.log" >&2; exit 1
}

load() { # label, url, tables, namespace
  local label=$1 url=$2 tables=$3 ns=$4
  printf '%-34s ' "$label"
  "$bin/sluice-load" run --url "$url" --clients "$CLIENTS" --tables "$tables" --namespace "$ns" \
    --seconds "$RUN_SECONDS" --setup --history "$work/$ns.jsonl"
  "$bin/sluice-load" check --url "$url" --history "$work/$ns.jsonl" | sed 's/^/  /'
}

streams() { # label, url, namespace
  printf '%-34s ' "$1"
  "$bin/sluice-load" streams --url "$2" --clients "$CLIENTS" --streams 1000 --namespace "$3" \
    --seconds "$RUN_SECONDS" --setup
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "clients: $CLIENTS, $RUN_SECONDS s per run, read ratio 0.7, holds released at once"

# Authentication on, as in production: every call carries a bearer token.
export SLUICE_TOKEN
SLUICE_TOKEN=$("$bin/sluice" token create --name bench --role admin --data-dir "$work/sqlite" 2>/dev/null)
serve 7901 --data-dir "$work/sqlite" --auth on
# The 1,000-table runs are repeated: this shared 2-core machine varies by
# ±10% from one run to the next.
for run in 1 2 3; do load "sqlite, 1000 tables, run $run" http://127.0.0.1:7901 1000 "wide$run"; done
load "sqlite, 1 hot table" http://127.0.0.1:7901 1 hot
printf '%-34s ' "sqlite, wake-up"
"$bin/sluice-load" wake --reader-url http://127.0.0.1:7901 --rounds 100
for run in 1 2; do streams "sqlite, 1000 streams, run $run" http://127.0.0.1:7901 "cdc$run"; done

db="sluice_bench_$$"
base="${DATABASE_URL%/*}"
psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS '"$db"'" >/dev/null 2>&1; rm -rf "$work"' EXIT
SLUICE_TOKEN=$("$bin/sluice" token create --name bench --role admin --database-url "$base/$db" 2>/dev/null)
serve 7902 --database-url "$base/$db" --auth on
serve 7903 --database-url "$base/$db" --auth on
for run in 1 2 3; do load "postgres, 1000 tables, run $run" http://127.0.0.1:7902 1000 "wide$run"; done
load "postgres, 1 hot table" http://127.0.0.1:7902 1 hot
printf '%-34s ' "postgres, wake-up, one replica"
"$bin/sluice-load" wake --reader-url http://127.0.0.1:7902 --rounds 100
printf '%-34s ' "postgres, wake-up, across replicas"
"$bin/sluice-load" wake --reader-url http://127.0.0.1:7902 --writer-url http://127.0.0.1:7903 --table bench.wake2 --rounds 100
for run in 1 2; do streams "postgres, 1000 streams, run $run" http://127.0.0.1:7902 "cdc$run"; done
