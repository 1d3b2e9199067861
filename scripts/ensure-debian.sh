#!/usr/bin/env bash
# ensure-debian.sh PACKAGE...: Debian's packages the tests run, installed
# once (nothing is downloaded at test time): chromium and chromium-driver
# for the dashboard test, faketime for the DynamoDB clock-skew test.
set -euo pipefail
missing=()
for package in "$@"; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ensure-debian: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get install -y -q "${missing[@]}" >/dev/null ||
  { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
