#!/usr/bin/env bash
# The soak: the lease load on two sluice replicas sharing a PostgreSQL of
# the script's own, through a TCP proxy (scripts/tcp-nemesis.py), while a
# nemesis takes turns: a replica paused (SIGSTOP) past the leases' TTLs,
# PostgreSQL paused, the link to PostgreSQL blackholed for 10 s, then
# dropped (every connection reset) for 5 s. Each round's history is checked
# (sluice-load check: no double grant, no lost acknowledged grant or
# release, tokens increasing per table) until TARGET_OPS checked operations
# (default 1,000,000; an operation is a grant or a release). Prints one
# line per round and the totals.
#
# Environment: TARGET_OPS, ROUND_SECONDS (default 60), CLIENTS (default
# 32), TABLES (default 64), TTL (lease TTL, default 3), BIN (a folder with
# sluice and sluice-load; default target/release, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_OPS="${TARGET_OPS:-1000000}"
ROUND_SECONDS="${ROUND_SECONDS:-60}"
CLIENTS="${CLIENTS:-32}"
TABLES="${TABLES:-64}"
TTL="${TTL:-3}"
if [ -z "${BIN:-}" ]; then
  cargo build --release --bins --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release"
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  [ -f "$work/pg/postmaster.pid" ] && run_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# PostgreSQL refuses to run as root: as the postgres user then.
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# --- PostgreSQL of our own, and the proxy in front of it. ---
mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work" "$work/pg"
run_pg "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
pg_port=$(free_port)
run_pg "$pg_bin/pg_ctl" -D "$work/pg" -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" \
  -l "$work/pg/log" -w start >/dev/null
psql "postgres://postgres@127.0.0.1:$pg_port/postgres" -qc "CREATE DATABASE soak"
proxy_port=$(free_port)
echo pass >"$work/mode"
python3 scripts/tcp-nemesis.py "$proxy_port" "$pg_port" "$work/mode" 2>/dev/null &
pids+=($!)
db="postgres://postgres@127.0.0.1:$proxy_port/soak"
"$BIN/sluice" migrate --database-url "$db" >/dev/null

# --- Two replicas. ---
urls=()
replica_pids=()
for i in 1 2; do
  port=$(free_port)
  RUST_LOG=warn "$BIN/sluice" serve --bind "127.0.0.1:$port" --database-url "$db" --auth off \
    >>"$work/sluice$i.log" 2>&1 &
  pids+=($!)
  replica_pids+=($!)
  urls+=("--url" "http://127.0.0.1:$port")
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
done
postgres_pids() { # the postmaster and every backend
  local pm
  pm=$(head -1 "$work/pg/postmaster.pid")
  echo "$pm" $(pgrep -P "$pm")
}

nemesis() { # round number: one fault, starting a third of the way in
  sleep $((ROUND_SECONDS / 3))
  case $(($1 % 4)) in
    0) kill -STOP "${replica_pids[0]}"; sleep $((TTL * 3)); kill -CONT "${replica_pids[0]}"; echo "replica paused $((TTL * 3)) s" ;;
    1) local p; p=$(postgres_pids); kill -STOP $p; sleep $((TTL * 3)); kill -CONT $p; echo "postgres paused $((TTL * 3)) s" ;;
    2) echo blackhole >"$work/mode"; sleep 10; echo pass >"$work/mode"; echo "link blackholed 10 s" ;;
    3) echo drop >"$work/mode"; sleep 5; echo pass >"$work/mode"; echo "link dropped 5 s" ;;
  esac
}

total=0
round=0
setup=--setup
started=$SECONDS
printf '%-6s %-28s %10s %10s %8s\n' round fault operations holds retries
while [ "$total" -lt "$TARGET_OPS" ]; do
  history="$work/history-$round.jsonl"
  nemesis "$round" >"$work/fault" &
  fault_pid=$!
  "$BIN/sluice-load" run "${urls[@]}" --clients "$CLIENTS" --tables "$TABLES" --namespace soak \
    --seconds "$ROUND_SECONDS" --ttl "$TTL" --wait 5 --hold-ms 2 $setup --history "$history" >"$work/summary.json"
  setup=
  wait "$fault_pid"
  # The checker reads the event log through either replica.
  if ! "$BIN/sluice-load" check --url "${urls[1]}" --history "$history" >"$work/check.txt" 2>&1; then
    cat "$work/check.txt" >&2
    echo "soak: round $round FAILED the history check" >&2
    exit 1
  fi
  holds=$(wc -l <"$history")
  ops=$((holds * 2))
  retries=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("retries", 0))' "$work/summary.json")
  printf '%-6s %-28s %10s %10s %8s\n' "$round" "$(cat "$work/fault")" "$ops" "$holds" "$retries"
  total=$((total + ops))
  round=$((round + 1))
  # A fresh history per round: the checker replays the whole event log.
  psql "postgres://postgres@127.0.0.1:$pg_port/soak" -qc "TRUNCATE events" 2>/dev/null || true
done
echo "soak: $total checked operations in $round rounds ($((SECONDS - started)) s), 0 violations"
