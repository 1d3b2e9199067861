#!/usr/bin/env bash
# What a long history costs the lease path, on SQLite: the same load (64
# clients, read leases over 1,000 tables) on a fresh database and on one
# holding an hour-equivalent history written beforehand (HISTORY_LEASES
# finished leases, default 1,000,000, and HISTORY_EVENTS events, default
# 10,000,000), alternated ROUNDS times (default 2). Prints ops/s and grant
# latency of each run and the mean ratio with history / without.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS="${RUN_SECONDS:-20}"
ROUNDS="${ROUNDS:-2}"
HISTORY_LEASES="${HISTORY_LEASES:-1000000}"
HISTORY_EVENTS="${HISTORY_EVENTS:-10000000}"
command -v sqlite3 >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null; }
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

serve() { # data dir
  RUST_LOG=warn "$bin/sluice" serve --bind 127.0.0.1:7993 --auth on --data-dir "$1" >>"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7993/readyz >/dev/null && return; sleep 0.1; done
  cat "$work/log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# A database with the 1,000 tables registered, and its token.
prepare() { # dir
  "$bin/sluice" token create --name bench --role admin --data-dir "$1" >"$1.token" 2>/dev/null
  serve "$1"
  "$bin/sluice-load" --token "$(cat "$1.token")" run --url http://127.0.0.1:7993 --clients 8 \
    --tables 1000 --namespace spread --seconds 1 --setup >/dev/null
  stop
}

prepare "$work/fresh"
prepare "$work/history"
# The history: finished (cancelled) leases spread over the tables, ids below
# every real one, no token; and old events, ids below every real one.
# Written while sluice is down.
echo "writing $HISTORY_LEASES finished leases and $HISTORY_EVENTS events" >&2
sqlite3 "$work/history/sluice.db" <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $HISTORY_LEASES)
INSERT INTO leases (id, table_name, seq, mode, holder, purpose, state, token, ttl_seconds,
  requested_at, granted_at, expires_at, ended_at, end_reason, idempotency_key, pin_snapshot_id, principal)
SELECT printf('00000000-0000-7000-8000-%012d', i), printf('spread.t%05d', i % 1000), -i, 'read',
  'history', NULL, 'cancelled', NULL, 30, 1700000000000 + i, NULL, 1700000030000 + i,
  1700000001000 + i, NULL, NULL, NULL, 'bench' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $HISTORY_EVENTS)
INSERT INTO events (id, at, kind, table_name, lease_id, data, actor, stream_name)
SELECT i - $HISTORY_EVENTS - 1, 1700000000000 + i / 10,
  'lease_requested', printf('spread.t%05d', i % 1000), NULL, '{}', 'bench', NULL FROM n;
COMMIT;
SQL
ls -l "$work/history/sluice.db" | awk '{printf "history database: %.0f MB\n", $5 / 1e6}' >&2

run() { # label dir
  serve "$2"
  printf '%-10s ' "$1"
  "$bin/sluice-load" --token "$(cat "$2.token")" run --url http://127.0.0.1:7993 --clients 64 \
    --tables 1000 --namespace spread --read-ratio 1 --seconds "$RUN_SECONDS" | tee -a "$work/$1.json"
  stop
}
for round in $(seq 1 "$ROUNDS"); do
  run fresh "$work/fresh"
  run history "$work/history"
done
python3 - "$work/fresh.json" "$work/history.json" <<'EOF'
import json, sys
rate = lambda p: [json.loads(l)["ops_per_second"] for l in open(p) if l.strip()]
fresh, history = rate(sys.argv[1]), rate(sys.argv[2])
print("mean ops/s without history %.0f, with history %.0f: ratio %.3f"
      % (sum(fresh) / len(fresh), sum(history) / len(history), sum(history) / sum(fresh)))
EOF
