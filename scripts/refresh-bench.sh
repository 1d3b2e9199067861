#!/usr/bin/env bash
# The time to refresh TABLES (default 1000) tables' snapshot logs from moto's
# Glue catalog and S3, on SQLite and on PostgreSQL, beside pyiceberg reading
# the same metadata in the same run (scripts/refresh-bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
TABLES="${TABLES:-1000}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
db="sluice_refresh_$$"
base="${DATABASE_URL%/*}"
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
.venv-ingest/bin/moto_server -H 127.0.0.1 -p 7910 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7910/moto-api/ >/dev/null && break; sleep 0.1; done
cat >"$work/sluice.toml" <<TOML
[catalogs.lake]
kind = "glue"
uri = "http://127.0.0.1:7910"
warehouse = "s3://lake/"
region = "us-east-1"
[catalogs.lake.properties]
aws_access_key_id = "testing"
aws_secret_access_key = "testing"
"s3.endpoint" = "http://127.0.0.1:7910"
"s3.path-style-access" = "true"
TOML
serve() { # port, flags...
  local port=$1; shift
  RUST_LOG=warn "$bin/sluice" --config "$work/sluice.toml" serve --bind "127.0.0.1:$port" \
    --refresh-interval-seconds 86400 "$@" >>"$work/sluice-$port.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "sluice did not start" >&2; cat "$work/sluice-$port.log" >&2; exit 1
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $TABLES tables, one snapshot each"
echo "== sqlite"
serve 7911 --data-dir "$work/sqlite" --auth off
.venv-ingest/bin/python scripts/refresh-bench.py http://127.0.0.1:7910 http://127.0.0.1:7911 "$TABLES" --setup
echo "== postgres"
psql "$DATABASE_URL" -qc "CREATE DATABASE $db"
serve 7912 --database-url "$base/$db" --auth off
for i in $(seq 0 $((TABLES - 1))); do printf 'bench.t%05d\n' "$i"; done |
  xargs -P 8 -I{} curl -sf -X PUT "http://127.0.0.1:7912/v1/tables/{}" -H 'content-type: application/json' -d '{"catalog":"lake"}' -o /dev/null
.venv-ingest/bin/python scripts/refresh-bench.py http://127.0.0.1:7910 http://127.0.0.1:7912 "$TABLES"
