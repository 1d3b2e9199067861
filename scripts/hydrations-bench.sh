#!/usr/bin/env bash
# Listing HYDRATIONS (default 10000) hydrations with their lag in pages of
# 1,000, on SQLite and on PostgreSQL, beside reading 1,000 of them one by
# one in the same run (scripts/hydrations-bench.py). The tables are real
# Iceberg tables in a pyiceberg SQL catalog on a local folder.
set -euo pipefail
cd "$(dirname "$0")/.."
HYDRATIONS="${HYDRATIONS:-10000}"
TABLES="${TABLES:-20}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
db="sluice_hydrations_$$"
base="${DATABASE_URL%/*}"
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; rm -rf "$work"' EXIT
trap 'tail -5 "$work"/sluice-*.log >&2' ERR
mkdir -p "$work/warehouse"
catalog=$(printf '{"name":"local","type":"sql","uri":"sqlite:///%s/catalog.db","warehouse":"file://%s/warehouse"}' "$work" "$work")
cat >"$work/sluice.toml" <<TOML
[catalogs.local]
kind = "sql"
uri = "sqlite://$work/catalog.db?mode=rwc"
warehouse = "file://$work/warehouse"
TOML
serve() { # port, flags...
  local port=$1; shift
  RUST_LOG=warn "$bin/sluice" --config "$work/sluice.toml" serve --bind "127.0.0.1:$port" \
    --refresh-interval-seconds 86400 "$@" >>"$work/sluice-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "sluice did not start" >&2; cat "$work/sluice-$port.log" >&2; exit 1
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $HYDRATIONS hydrations over $TABLES tables"
echo "== sqlite"
# sluice first: iceberg-rust creates the SQL catalog's schema (pyiceberg's
# lacks a column it reads), then pyiceberg writes the tables into it.
serve 7921 --data-dir "$work/sqlite" --auth off
.venv-ingest/bin/python scripts/hydrations-bench.py setup "$catalog" "$TABLES"
.venv-ingest/bin/python scripts/hydrations-bench.py run http://127.0.0.1:7921 "$catalog" "$HYDRATIONS" "$TABLES"
echo "== postgres"
psql "$DATABASE_URL" -qc "CREATE DATABASE $db"
serve 7922 --database-url "$base/$db" --auth off
.venv-ingest/bin/python scripts/hydrations-bench.py run http://127.0.0.1:7922 "$catalog" "$HYDRATIONS" "$TABLES"
