#!/usr/bin/env bash
# PostgreSQL's plan cache mode against the lease path: custom plans (the
# default sluice sets) and generic plans, alternated ROUNDS times on fresh
# databases: one client over 10 tables (latency), 64 clients over 1,000
# tables (throughput), and the wake-up of a long-polling writer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
base="${DATABASE_URL%/*}"
summary='import json,sys; d=json.load(sys.stdin); print(round(d["ops_per_second"]), "ops/s, grant p50", d["grant_p50_ms"], "ms, p99", d["grant_p99_ms"], "ms")'
for round in $(seq 1 "$ROUNDS"); do
  for mode in force_custom_plan force_generic_plan; do
    db="sluice_plan_$$"
    psql "$DATABASE_URL" -qc "CREATE DATABASE $db"
    url="$base/$db?options=-c%20plan_cache_mode%3D$mode"
    SLUICE_TOKEN=$("$bin/sluice" token create --name bench --role admin --database-url "$url" 2>/dev/null)
    export SLUICE_TOKEN
    RUST_LOG=warn "$bin/sluice" serve --bind 127.0.0.1:7904 --database-url "$url" --auth on >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7904/readyz >/dev/null && break; sleep 0.1; done
    echo "== round $round, $mode"
    printf '1 client, 10 tables:      '
    "$bin/sluice-load" run --url http://127.0.0.1:7904 --clients 1 --tables 10 --namespace one \
      --seconds 5 --setup | python3 -c "$summary"
    printf '64 clients, 1000 tables:  '
    "$bin/sluice-load" run --url http://127.0.0.1:7904 --clients 64 --tables 1000 --namespace wide \
      --seconds 10 --setup | python3 -c "$summary"
    printf 'wake-up, 200 rounds:      '
    "$bin/sluice-load" wake --reader-url http://127.0.0.1:7904 --rounds 200 --table bench.wake
    kill "$pid"; wait "$pid" 2>/dev/null || true
    psql "$DATABASE_URL" -qc "DROP DATABASE $db"
  done
done
