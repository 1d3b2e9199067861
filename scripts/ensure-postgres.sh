#!/usr/bin/env bash
# Make sure the PostgreSQL server behind DATABASE_URL answers. When it is a
# local server that is down (or not installed), install and start it.
set -euo pipefail
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$hostport" ] && port=5432

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if answers; then exit 0; fi
case "$host" in
  127.0.0.1|localhost|::1) ;;
  *) echo "PostgreSQL at $host:$port does not answer (DATABASE_URL=$url)" >&2; exit 1 ;;
esac
if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "installing PostgreSQL" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  version=$(ls /etc/postgresql | head -n1)
  # Trust local TCP connections, as the test URL has no password.
  sed -i 's/^\(host.*127.0.0.1\/32\s*\)\S*$/\1trust/; s/^\(host.*::1\/128\s*\)\S*$/\1trust/' \
    "/etc/postgresql/$version/main/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
for _ in $(seq 1 50); do answers && exit 0; sleep 0.2; done
echo "PostgreSQL did not start on $host:$port" >&2
exit 1
