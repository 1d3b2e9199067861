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
# A from-scratch build (CI's) gains nothing from incremental state; writing
# it costs time. Set CARGO_INCREMENTAL=1 to keep it between local runs.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
step scripts/ensure-postgres.sh
# Databases left by earlier runs (each test makes its own).
if command -v psql >/dev/null; then
  psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'sluice_it_%'" 2>/dev/null |
    while read -r db; do psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
fi
step cargo fmt --all -- --check
# The Python venvs and Debian packages the later steps use install while
# the Rust code compiles (mostly downloads, not CPU). Each step still
# ensures its own: ensure-venv.sh takes a lock, so one that comes first
# waits for the install under way.
prepare() {
  scripts/ensure-venv.sh .venv-ingest integration-tests/ingest/requirements.txt
  scripts/ensure-debian.sh chromium chromium-driver faketime
  scripts/ensure-venv.sh .venv-client clients/python/requirements-dev.txt
  scripts/ensure-venv.sh .venv-deploy integration-tests/deploy/requirements.txt
  scripts/ensure-venv.sh .venv-fuzz scripts/requirements-fuzz.txt
  scripts/ensure-venv.sh .venv-spec scripts/requirements-spec.txt
}
mkdir -p target
prepare >target/prepare.log 2>&1 &
prepared=$!
step cargo clippy --workspace --all-targets --quiet -- -D warnings
# --all-targets: the same features as `cargo test` below, so nothing builds twice.
step cargo build --workspace --all-targets --quiet
# The ingestion tests run a Python job (pyiceberg) against moto's Glue and
# S3; the DynamoDB backend's tests run on moto's DynamoDB from the same venv.
# The dashboard test drives a real headless browser; the DynamoDB skew test
# runs a replica under libfaketime.
waited=$SECONDS
if ! wait "$prepared"; then
  cat target/prepare.log >&2
  exit 1
fi
printf 'test.sh: %ss  waiting for the venvs and packages\n' "$((SECONDS - waited))" >&2
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
