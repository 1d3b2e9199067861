#!/usr/bin/env bash
# HYDRATIONS (default 10000) live followers over TABLES (default 1000)
# tables, on SQLite, PostgreSQL and DynamoDB (moto's): listing them with
# their lag, one table's refresh relagging its followers, a compaction's
# grant and the retention answer on a followed table, each beside its
# baseline in the same run (scripts/hydrations-bench.py says what). The
# tables are real Iceberg tables in a pyiceberg SQL catalog on a local
# folder. BACKENDS (default "sqlite postgres dynamodb") picks the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
HYDRATIONS="${HYDRATIONS:-10000}"
TABLES="${TABLES:-1000}"
BACKENDS="${BACKENDS:-sqlite postgres dynamodb}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
db="sluice_hydrations_$$"
base="${DATABASE_URL%/*}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
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
# sluice first: iceberg-rust creates the SQL catalog's schema (pyiceberg's
# lacks a column it reads), then pyiceberg writes the tables into it.
serve 7921 --data-dir "$work/sqlite" --auth off
.venv-ingest/bin/python scripts/hydrations-bench.py setup "$catalog" "$TABLES"
if [[ " $BACKENDS " == *" sqlite "* ]]; then
  echo "== sqlite"
  .venv-ingest/bin/python scripts/hydrations-bench.py run http://127.0.0.1:7921 "$catalog" "$HYDRATIONS" "$TABLES"
fi
if [[ " $BACKENDS " == *" postgres "* ]]; then
  echo "== postgres"
  psql "$DATABASE_URL" -qc "CREATE DATABASE $db"
  serve 7922 --database-url "$base/$db" --auth off
  .venv-ingest/bin/python scripts/hydrations-bench.py run http://127.0.0.1:7922 "$catalog" "$HYDRATIONS" "$TABLES"
fi
[[ " $BACKENDS " == *" dynamodb "* ]] || exit 0
# moto answers one request at a time and slows as its tables grow: 50
# copies over 5 tables (the same ten per table) finish within minutes;
# 1,000 over 100 outlast the store's call budget (BENCHMARKS.md).
DYNAMO_HYDRATIONS="${DYNAMO_HYDRATIONS:-50}"
DYNAMO_TABLES="${DYNAMO_TABLES:-5}"
echo "== dynamodb (moto's, one request at a time: its speed is not DynamoDB's); $DYNAMO_HYDRATIONS over $DYNAMO_TABLES tables"
.venv-ingest/bin/python integration-tests/dynamodb/serial_moto.py 127.0.0.1 7925 >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do curl -sf http://127.0.0.1:7925/moto-api/ >/dev/null && break; sleep 0.1; done
url="dynamodb://bench?region=us-east-1&endpoint=http://127.0.0.1:7925"
"$bin/sluice" migrate --database-url "$url" 2>/dev/null
serve 7923 --database-url "$url" --auth off
.venv-ingest/bin/python scripts/hydrations-bench.py run http://127.0.0.1:7923 "$catalog" "$DYNAMO_HYDRATIONS" "$DYNAMO_TABLES"
