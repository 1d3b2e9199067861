#!/usr/bin/env bash
# Validates deploy/ offline: the kustomize overlays render; the rendered
# manifests pass the Kubernetes schema; checkov passes on the Dockerfile, the
# rendered manifests and the Terraform module (skips are in place, each with
# its reason); terraform fmt and validate pass on the module; hadolint and
# yamllint pass; and drift.py checks that every command, flag, variable and
# configuration file the deploy files use is one the built binary accepts,
# then runs the compose stack's and the Kubernetes Job's and Deployment's
# commands for real on PostgreSQL.
# Needs: the debug binary (cargo build), PostgreSQL at $DATABASE_URL,
# moto in .venv-ingest (scripts/ensure-venv.sh), kubectl 1.21 or later,
# terraform and the AWS provider in a mirror (below).
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
venv=.venv-deploy
scripts/ensure-venv.sh "$venv" integration-tests/deploy/requirements.txt
out=target/deploy
mkdir -p "$out"

# kustomize is kubectl's: 1.21 or later carries kustomize 4+. Nothing the
# registries here offer does (Debian's kubernetes-client is 1.20, whose
# kustomize 2 cannot read these files), so a machine without it is told.
if ! kubectl kustomize --help >/dev/null 2>&1; then
  echo "check-deploy: needs kubectl 1.21 or later (kustomize 4+) on the PATH" >&2
  exit 1
fi
for overlay in base overlays/production; do
  name=${overlay##*/}
  kubectl kustomize "deploy/kubernetes/$overlay" >"$out/kubernetes-$name.yaml"
  # 1.30: the oldest release whose preStop takes `sleep` (the image has no shell).
  for version in 1.30.0 1.34.0; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/kubernetes-$name.yaml"
  done
done

# checkov asks its SaaS for guidelines unless told not to: offline here.
checkov() {
  "$venv/bin/checkov" --quiet --compact --skip-download --download-external-modules false "$@"
}
checkov --framework dockerfile -f deploy/docker/Dockerfile
checkov --framework kubernetes -f "$out/kubernetes-base.yaml" -f "$out/kubernetes-production.yaml"
checkov --framework terraform -d deploy/terraform/aws

# terraform fmt, and validate against the AWS provider's schema from a
# provider mirror: a copy of the module, and of its example root module, is
# initialised from the mirror and validated. This kind of machine comes with
# both (terraform on the PATH, the provider in /opt/tf-plugins); no registry
# reached here serves the provider, so nothing can install it. Without them
# the check fails: a skip is only ever asked for, with SLUICE_SKIP_TERRAFORM=1.
terraform_missing() {
  if [ "${SLUICE_SKIP_TERRAFORM:-}" = 1 ]; then
    echo "check-deploy: $1: skipped (SLUICE_SKIP_TERRAFORM=1)" >&2
  else
    echo "check-deploy: $1 (SLUICE_SKIP_TERRAFORM=1 skips it)" >&2
    exit 1
  fi
}
mirror=${TF_PLUGIN_MIRROR:-/opt/tf-plugins}
if ! command -v terraform >/dev/null; then
  terraform_missing "no terraform on the PATH: terraform fmt and validate"
else
  terraform fmt -check -recursive deploy/terraform
  if [ -d "$mirror/registry.terraform.io/hashicorp/aws" ]; then
    tf=$(mktemp -d)
    trap 'rm -rf "$tf"' EXIT
    printf '%s\n' 'provider_installation {' \
      "  filesystem_mirror { path = \"$mirror\" }" \
      '}' >"$tf/cli.tfrc"
    cp -r deploy/terraform/aws "$tf/aws"
    for dir in "$tf/aws" "$tf/aws/examples/complete"; do
      (cd "$dir" && export TF_CLI_CONFIG_FILE="$tf/cli.tfrc" &&
        terraform init -backend=false -input=false -no-color >/dev/null &&
        terraform validate -no-color)
    done
  else
    terraform_missing "no AWS provider mirror at $mirror (TF_PLUGIN_MIRROR): terraform validate"
  fi
fi

"$venv/bin/hadolint" deploy/docker/Dockerfile
"$venv/bin/yamllint" --strict -c deploy/.yamllint.yaml deploy/compose deploy/kubernetes "$out"/kubernetes-*.yaml

"$venv/bin/python" integration-tests/deploy/drift.py target/debug/sluice "$out/kubernetes-production.yaml"
