#!/usr/bin/env bash
# sluice at scale (scripts/scale-bench.py): TABLES (default 100,000)
# registered tables, ICEBERG (default 1,000) of them real Iceberg tables in
# moto's Glue, two replicas on one PostgreSQL database, an SQS queue of AWS
# events. Prints each replica's CPU and RSS at rest, the catalog calls a
# minute at rest and with 1 % of the Iceberg tables committing a minute
# (counted at scripts/count-calls.py in front of moto), and how fresh the
# log is after a commit, with its event and without.
# PROFILE=debug measures the debug build (no release build needed).
set -euo pipefail
cd "$(dirname "$0")/.."
export TABLES="${TABLES:-100000}" ICEBERG="${ICEBERG:-1000}" COMMITS="${COMMITS:-40}"
PROFILE="${PROFILE:-release}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
scripts/ensure-postgres.sh
scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
if [ "$PROFILE" = release ]; then cargo build --release --bins --quiet; else cargo build --bins --quiet; fi
bin="${CARGO_TARGET_DIR:-target}/$PROFILE"
work=$(mktemp -d)
pids=()
db="sluice_scale_$$"
base="${DATABASE_URL%/*}"
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.5; psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; rm -rf "$work"' EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
.venv-ingest/bin/moto_server -H 127.0.0.1 -p 7920 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7920/moto-api/ >/dev/null && break; sleep 0.1; done
# Every AWS call sluice makes (Glue, S3, SQS) is counted on its way to moto.
.venv-ingest/bin/python scripts/count-calls.py 7921 http://127.0.0.1:7920 &
pids+=($!)
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7921/counts >/dev/null && break; sleep 0.1; done
queue=$(.venv-ingest/bin/python -c '
import boto3
sqs = boto3.client("sqs", endpoint_url="http://127.0.0.1:7920", region_name="us-east-1")
print(sqs.create_queue(QueueName="sluice-events")["QueueUrl"])')
cat >"$work/sluice.toml" <<TOML
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:7921"
[events]
queue_url = "$queue"
[catalogs.lake]
kind = "glue"
uri = "http://127.0.0.1:7921"
warehouse = "s3://lake/"
region = "us-east-1"
pin_tags = false
[catalogs.lake.properties]
aws_access_key_id = "testing"
aws_secret_access_key = "testing"
"s3.endpoint" = "http://127.0.0.1:7921"
"s3.path-style-access" = "true"
TOML
psql "$DATABASE_URL" -qc "CREATE DATABASE $db"
serve() { # port
  RUST_LOG=info "$bin/sluice" --config "$work/sluice.toml" serve --bind "127.0.0.1:$1" \
    --database-url "$base/$db" --auth off >>"$work/sluice-$1.log" 2>&1 &
  pids+=($!)
  echo $! >"$work/pid-$1"
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "sluice did not start" >&2; cat "$work/sluice-$1.log" >&2; exit 1
}
serve 7922
serve 7923
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $PROFILE build $(git rev-parse --short HEAD)"
.venv-ingest/bin/python scripts/scale-bench.py http://127.0.0.1:7920 http://127.0.0.1:7921 "$queue" \
  "http://127.0.0.1:7922=$(cat "$work/pid-7922")" "http://127.0.0.1:7923=$(cat "$work/pid-7923")"
grep -h "reconciled every" "$work"/sluice-*.log | sed 's/\x1b\[[0-9;]*m//g' | tail -1
