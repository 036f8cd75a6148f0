#!/usr/bin/env bash
# Stand-ins for the official base images on machines that cannot pull from a registry: Debian
# bookworm from the Debian mirror with debootstrap (Python 3.11 like python:3.11-slim-bookworm;
# Node.js 18 for the frontend, which Next.js 14 supports). Built once, reused when they exist.
# Prints the two image names. Needs root and podman.
set -euo pipefail
ENGINE=${ENGINE:-podman}
PYTHON_BASE=localhost/imgconv-standin-python:bookworm
NODE_BASE=localhost/imgconv-standin-node:bookworm
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if ! "$ENGINE" image exists "$PYTHON_BASE"; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >&2
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "$ENGINE" import - "$PYTHON_BASE" >&2
fi
if ! "$ENGINE" image exists "$NODE_BASE"; then
  context=$(mktemp -d)
  cat > "$context/Dockerfile" <<DOCKERFILE
FROM $PYTHON_BASE
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
DOCKERFILE
  "$ENGINE" build --network host -t "$NODE_BASE" "$context" >&2
  rm -rf "$context"
fi
echo "$PYTHON_BASE $NODE_BASE"
