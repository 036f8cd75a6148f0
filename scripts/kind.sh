#!/usr/bin/env bash
# `make kind` / `make kind-down`: the whole system on a local kind cluster behind Traefik.
#   up:   create the cluster (k8s/kind-config.yaml), build the images (make images) and load
#         them into the node, install Traefik as the Ingress controller, `helm upgrade --install
#         --wait` the chart (k8s/values-kind.yaml), run `helm test`, print the URL.
#   down: delete the cluster (its volumes go with it).
# Needs kind and podman or docker on the machine; helm and kubectl come from
# scripts/install_helm.sh. Not runnable on the development machines (no Docker engine, no
# nested containers): written against the tools' documented behaviour, see the chart README.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-imgconv}
CONTEXT="kind-$CLUSTER"
NAMESPACE=${IMGCONV_NAMESPACE:-imgconv}
TAG=${IMGCONV_IMAGE_TAG:-dev}
# Pin for reproducible installs, e.g. TRAEFIK_CHART_VERSION=37.1.1; empty: the newest release.
TRAEFIK_CHART_VERSION=${TRAEFIK_CHART_VERSION:-}
bash scripts/install_helm.sh >/dev/null
HELM=.tools/bin/helm
KUBECTL=.tools/bin/kubectl

need() { command -v "$1" >/dev/null || { echo "make kind needs $1 ($2)" >&2; exit 1; }; }

up() {
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  ENGINE=${ENGINE:-$(command -v docker || command -v podman || true)}
  [ -n "$ENGINE" ] || { echo "make kind needs docker or podman" >&2; exit 1; }
  if [ "$(basename "$ENGINE")" = podman ]; then
    export KIND_EXPERIMENTAL_PROVIDER=podman
  fi

  if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 120s
  fi

  ENGINE=$ENGINE IMGCONV_IMAGE_TAG=$TAG make images
  archive=$(mktemp -d)
  trap 'rm -rf "$archive"' EXIT
  for image in imgconv imgconv-frontend; do
    "$ENGINE" save -o "$archive/$image.tar" "localhost/$image:$TAG"
    kind load image-archive "$archive/$image.tar" --name "$CLUSTER"
  done

  "$HELM" repo add traefik https://traefik.github.io/charts --force-update >/dev/null
  "$HELM" upgrade --install traefik traefik/traefik --kube-context "$CONTEXT" \
    --namespace traefik --create-namespace \
    ${TRAEFIK_CHART_VERSION:+--version "$TRAEFIK_CHART_VERSION"} \
    --values k8s/traefik-values.yaml --wait --timeout 5m

  "$HELM" upgrade --install imgconv charts/imgconv --kube-context "$CONTEXT" \
    --namespace "$NAMESPACE" --create-namespace \
    --values k8s/values-kind.yaml \
    --set "images.imgconv.tag=$TAG" --set "images.frontend.tag=$TAG" \
    --wait --timeout 10m
  "$HELM" test imgconv --kube-context "$CONTEXT" --namespace "$NAMESPACE" --logs --timeout 5m

  "$KUBECTL" --context "$CONTEXT" --namespace "$NAMESPACE" get pods
  echo
  echo "imgconv is up: http://127.0.0.1:8080/   (API: http://127.0.0.1:8080/api/v1, docs: kubectl port-forward svc/imgconv-api 8000)"
  echo "remove it with: make kind-down"
}

down() {
  need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  if [ -z "$(command -v docker || true)" ] && [ -n "$(command -v podman || true)" ]; then
    export KIND_EXPERIMENTAL_PROVIDER=podman
  fi
  kind delete cluster --name "$CLUSTER"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
