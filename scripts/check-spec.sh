#!/usr/bin/env bash
# check-spec.sh [SPEC]: the committed OpenAPI document (default
# openapi/openapi.json) is one that standard tools accept whole:
#   1. every $ref resolves inside the document (a dangling one makes
#      schemathesis skip parts of operations and generators drop them);
#   2. openapi-spec-validator accepts it as OpenAPI 3.1 (unique operation
#      ids among its checks);
#   3. openapi-python-client generates a client from it without a warning
#      (a warning means an operation or a model left out), one module per
#      operation;
#   4. that client passes mypy --strict and imports.
# Builds nothing; the tools are pinned in scripts/requirements-spec.txt and
# installed into .venv-spec by scripts/ensure-venv.sh. Exits non-zero on
# the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SPEC=$(realpath "${1:-openapi/openapi.json}")
VENV=$ROOT/.venv-spec

log() { printf 'check-spec: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ -f "$SPEC" ] || die "no spec at $SPEC"
"$ROOT/scripts/ensure-venv.sh" "$VENV" "$ROOT/scripts/requirements-spec.txt"
PY=$VENV/bin/python

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-spec.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# 1 and 2: references, then the validator. Errors are printed one line
# each (the validator's own message quotes the whole document).
"$PY" - "$SPEC" <<'PY'
import json
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator

path = sys.argv[1]
with open(path) as f:
    spec = json.load(f)
if not str(spec.get("openapi", "")).startswith("3.1."):
    sys.exit(f"check-spec: {path} is OpenAPI {spec.get('openapi')!r}, not 3.1")


def refs(node, where):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                step = key.replace("~", "~0").replace("/", "~1")
                yield from refs(value, f"{where}/{step}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{where}/{i}")


def resolve(ref):
    """The node a local JSON-pointer reference names, or None."""
    if not ref.startswith("#/"):
        return None  # the document must stand alone
    node = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


found = list(refs(spec, "#"))
dangling = [(where, ref) for where, ref in found if resolve(ref) is None]
for where, ref in dangling:
    print(f"check-spec: unresolvable $ref {ref} at {where}", file=sys.stderr)
if dangling:
    sys.exit(f"check-spec: {len(dangling)} of {len(found)} references do not resolve")
print(f"check-spec: all {len(found)} references resolve", file=sys.stderr)

errors = list(OpenAPIV31SpecValidator(spec).iter_errors())
for error in errors:
    place = "/".join(str(p) for p in getattr(error, "absolute_path", []))
    print(f"check-spec: invalid at /{place}: {error.message}", file=sys.stderr)
if errors:
    sys.exit(f"check-spec: openapi-spec-validator found {len(errors)} errors")
print("check-spec: openapi-spec-validator: valid OpenAPI 3.1", file=sys.stderr)
PY

# 3: a client, as a user of the spec would generate one. No post hooks:
# the generator's ruff --fix rewrites its own annotations into ones mypy
# rejects; what is checked is what the generator emits.
printf 'post_hooks: []\n' >"$WORK/config.yaml"
(cd "$WORK" && "$VENV/bin/openapi-python-client" generate --path "$SPEC" \
  --config "$WORK/config.yaml" --meta none --output-path "$WORK/sluice_api_client" \
  --fail-on-warning) >"$WORK/generate.log" 2>&1 || {
  sed 's/^/  | /' "$WORK/generate.log" >&2
  die "openapi-python-client could not generate a whole client"
}
"$PY" - "$SPEC" "$WORK/sluice_api_client" <<'PY'
import json
import pathlib
import sys

spec = json.load(open(sys.argv[1]))
methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
operations = sum(1 for item in spec["paths"].values() for m in item if m in methods)
modules = [p for p in pathlib.Path(sys.argv[2], "api").glob("*/*.py") if p.name != "__init__.py"]
if len(modules) != operations:
    sys.exit(f"check-spec: the generated client has {len(modules)} operations, the spec {operations}")
print(f"check-spec: openapi-python-client generated all {operations} operations", file=sys.stderr)
PY

# 4: the generated client type-checks and imports.
(cd "$WORK" && "$VENV/bin/mypy" --strict --cache-dir "$WORK/.mypy_cache" sluice_api_client) >&2 ||
  die "the generated client does not pass mypy --strict"
(cd "$WORK" && "$PY" -c '
import importlib, pathlib
for p in sorted(pathlib.Path("sluice_api_client").rglob("*.py")):
    importlib.import_module(".".join(p.with_suffix("").parts).removesuffix(".__init__"))
') || die "the generated client does not import"
log "ok: $SPEC"
