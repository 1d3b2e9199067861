#!/usr/bin/env bash
# ensure-chromium.sh: Debian's chromium and its chromedriver, for the
# dashboard test (installed once; nothing is downloaded at test time).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
echo "ensure-chromium: installing chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get install -y -q chromium chromium-driver >/dev/null ||
  { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium chromium-driver >/dev/null; }
