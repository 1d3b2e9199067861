#!/usr/bin/env bash
# A/B of two sluice builds, alternated in one run on this machine: lease
# acquire + release over 1,000 tables and stream open -> commit cycles over
# 1,000 streams, on SQLite and on PostgreSQL, authentication on. Each round
# serves A then B on fresh storage with the same load generator (B's
# sluice-load), so the two see the same machine minutes apart.
#
#   scripts/ab.sh DIR_A DIR_B      # each holds release `sluice` + `sluice-load`
#   ROUNDS=3 RUN_SECONDS=10 CLIENTS=64 by default
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2
ROUNDS="${ROUNDS:-3}"
RUN_SECONDS="${RUN_SECONDS:-10}"
CLIENTS="${CLIENTS:-64}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
load="$b/sluice-load"
work=$(mktemp -d)
pid=""
dbs=()
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  sleep 0.3
  for db in "${dbs[@]}"; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

serve() { # bin, storage flags...
  local bin=$1; shift
  RUST_LOG=warn "$bin/sluice" serve --bind 127.0.0.1:7911 --auth on "$@" >>"$work/sluice.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -sf http://127.0.0.1:7911/readyz >/dev/null && return 0
    sleep 0.1
  done
  echo "sluice did not start" >&2; cat "$work/sluice.log" >&2; exit 1
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

# One server of `bin` on fresh storage of `kind`: leases, then streams.
measure() { # label, bin, kind
  local label=$1 bin=$2 kind=$3 storage
  if [ "$kind" = sqlite ]; then
    storage=(--data-dir "$work/$label-$RANDOM")
    SLUICE_TOKEN=$("$bin/sluice" token create --name bench --role admin "${storage[@]}" 2>/dev/null)
  else
    local db="sluice_ab_$$_$RANDOM"
    dbs+=("$db")
    psql "$DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
    storage=(--database-url "${DATABASE_URL%/*}/$db")
    SLUICE_TOKEN=$("$bin/sluice" token create --name bench --role admin "${storage[@]}" 2>/dev/null)
  fi
  export SLUICE_TOKEN
  serve "$bin" "${storage[@]}"
  printf '%-22s leases  ' "$label $kind"
  "$load" run --url http://127.0.0.1:7911 --clients "$CLIENTS" --tables 1000 --namespace ab \
    --seconds "$RUN_SECONDS" --setup
  printf '%-22s streams ' "$label $kind"
  "$load" streams --url http://127.0.0.1:7911 --clients "$CLIENTS" --streams 1000 --namespace ab \
    --seconds "$RUN_SECONDS" --setup
  stop
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -sr)"
echo "A: $a  B: $b  rounds: $ROUNDS, $RUN_SECONDS s per run, $CLIENTS clients"
for round in $(seq 1 "$ROUNDS"); do
  for kind in sqlite postgres; do
    measure "round $round A" "$a" "$kind"
    measure "round $round B" "$b" "$kind"
  done
done
