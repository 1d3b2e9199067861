#!/usr/bin/env bash
# Every test: formatting, lints, the rules' unit and property tests, and the
# black-box tests of the built binary on SQLite, PostgreSQL and moto's
# DynamoDB (leases, errors, long-polls, two replicas, kill -9 under load,
# streams and a DMS-shaped ingestion job on Iceberg tables, OpenAPI drift),
# and deploy/'s checks (scripts/check-deploy.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# Each step says how long it took, so a slower run shows where the time went.
step() {
  local start=$SECONDS
  "$@"
  printf 'test.sh: %ss  %s\n' "$((SECONDS - start))" "$*" >&2
}
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
step scripts/ensure-postgres.sh
# Databases left by earlier runs (each test makes its own).
if command -v psql >/dev/null; then
  psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'sluice_it_%'" 2>/dev/null |
    while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
fi
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets --quiet -- -D warnings
# --all-targets: the same features as `cargo test` below, so nothing builds twice.
step cargo build --workspace --all-targets --quiet
# The ingestion tests run a Python job (pyiceberg) against moto's Glue and
# S3; the DynamoDB backend's tests run on moto's DynamoDB from the same venv.
step scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
# The dashboard test drives a real headless browser; the DynamoDB skew test
# runs a replica under libfaketime.
step scripts/ensure-debian.sh chromium chromium-driver faketime
step cargo test --workspace
# deploy/: rendered, schema-checked, linted, and run as written (drift.py).
step scripts/check-deploy.sh
# The Python client Glue jobs import: mypy --strict, then its tests against
# the built binary (a lease revoked mid-block, sluice killed mid-batch).
step scripts/ensure-venv.sh .venv-client clients/python/requirements-dev.txt
step .venv-client/bin/mypy --strict clients/python/src
step .venv-client/bin/python -m unittest discover -s clients/python/tests
# schemathesis against the committed spec on a live server: no 5xx, no
# response outside the spec, no invalid request accepted.
step scripts/fuzz.sh
# The committed spec as standard tools take it: every $ref resolves, an
# OpenAPI 3.1 validator accepts it, a generated client type-checks.
step scripts/check-spec.sh
