#!/usr/bin/env bash
# sluice's resident memory with many tables, on SQLite: TABLES tables
# (default 100,000) registered, then a read-lease load spread over all of
# them for RUN_SECONDS (default 10) with 64 clients. Prints the resident set
# at start, after registration and its peak (VmHWM), in MB.
set -euo pipefail
cd "$(dirname "$0")/.."
TABLES="${TABLES:-100000}"
RUN_SECONDS="${RUN_SECONDS:-10}"
cargo build --release --bins --quiet
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$("$bin/sluice" token create --name bench --role admin --data-dir "$work/db" 2>/dev/null)
RUST_LOG=warn "$bin/sluice" serve --bind "127.0.0.1:$port" --auth on --data-dir "$work/db" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk -v k="$1" '$1 == k":" { printf "%.1f", $2 / 1024 }' "/proc/$pid/status"; }
echo "at start: $(rss VmRSS) MB"
"$bin/sluice-load" --token "$token" run --url "http://127.0.0.1:$port" --clients 64 --tables "$TABLES" \
  --namespace many --seconds 1 --setup >/dev/null
echo "after registering $TABLES tables: $(rss VmRSS) MB"
"$bin/sluice-load" --token "$token" run --url "http://127.0.0.1:$port" --clients 64 --tables "$TABLES" \
  --namespace many --read-ratio 1 --seconds "$RUN_SECONDS" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("load: %.0f ops/s, %d errors" % (s["ops_per_second"], s["errors"]))'
echo "after the load: $(rss VmRSS) MB, peak $(rss VmHWM) MB"
