#!/usr/bin/env bash
# `make images`: build localhost/imgconv and localhost/imgconv-frontend (tag: IMGCONV_IMAGE_TAG,
# default dev) with podman, or docker where there is one, and print their sizes.
#   IMGCONV_IMAGE_BASES=official (default) builds on python:3.11-slim-bookworm / node:20-bookworm-slim;
#   IMGCONV_IMAGE_BASES=standin builds on local Debian stand-ins (machines without a registry).
# Layers are cached by the engine: a rebuild after a source change reuses the dependency layers.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$ENGINE" ] || { echo "make images needs podman or docker" >&2; exit 1; }
ENGINE=$(basename "$ENGINE")
TAG=${IMGCONV_IMAGE_TAG:-dev}
REPOSITORY=${IMGCONV_IMAGE_REPOSITORY:-localhost}
VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)

common=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION")
python_base=() node_base=()
if [ "${IMGCONV_IMAGE_BASES:-official}" = standin ]; then
  read -r standin_python standin_node < <(ENGINE=$ENGINE bash scripts/images/standin_bases.sh)
  python_base=(--build-arg "BASE=$standin_python")
  node_base=(--build-arg "BASE=$standin_node")
fi
# Behind a TLS-intercepting proxy pip and npm must trust its CA: mount the machine's bundle for
# the build only (podman), never copy it into an image.
ca=${IMGCONV_BUILD_CA_BUNDLE:-$(awk -F' *= *' '$1 == "cert" {print $2; exit}' /etc/pip.conf 2>/dev/null || true)}
if [ -n "$ca" ] && [ "$ENGINE" = podman ]; then
  common+=(--network host -v "$ca:$ca:ro" --build-arg "PIP_CERT=$ca" --build-arg "NODE_EXTRA_CA_CERTS=$ca")
fi

# podman writes OCI images by default, which drop HEALTHCHECK; the docker format keeps it.
[ "$ENGINE" = podman ] && common+=(--format docker)

start=$(date +%s)
"$ENGINE" build "${common[@]}" "${python_base[@]}" -t "$REPOSITORY/imgconv:$TAG" -f Dockerfile .
"$ENGINE" build "${common[@]}" "${node_base[@]}" -t "$REPOSITORY/imgconv-frontend:$TAG" frontend
echo "built in $(( $(date +%s) - start )) s:"
for image in imgconv imgconv-frontend; do
  size=$("$ENGINE" image inspect --format '{{.Size}}' "$REPOSITORY/$image:$TAG")
  printf '  %-40s %6d MB\n' "$REPOSITORY/$image:$TAG" $(( size / 1000 / 1000 ))
done
