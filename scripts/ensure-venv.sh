#!/usr/bin/env bash
# ensure-venv.sh VENV REQUIREMENTS: make VENV a Python venv holding exactly
# what REQUIREMENTS pins; pip runs only when the file changed since the venv
# was built. Two callers at once wait for each other (flock).
# PYTHON names the interpreter that creates the venv (default python3).
set -euo pipefail
venv=$1 reqs=$2
[ -f "$reqs" ] || { echo "ensure-venv: no $reqs" >&2; exit 1; }
mkdir -p "$venv"
exec 9>"$venv/.lock"
command -v flock >/dev/null && flock 9
stamp=$(cksum <"$reqs")
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
echo "ensure-venv: installing $reqs into $venv" >&2
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
printf '%s\n' "$stamp" >"$venv/.requirements.stamp"
