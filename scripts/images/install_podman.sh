#!/usr/bin/env bash
# Install podman where there is no container engine (Debian; needs root), configured for these
# machines: cgroups v1 need runc (crun fails) and the cgroupfs manager, and the default
# nofile/nproc ulimits are refused (setrlimit EPERM). Idempotent.
set -euo pipefail
if ! command -v podman >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "podman is missing: apt-get install podman runc catatonit debootstrap (as root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends podman runc catatonit debootstrap >/dev/null
fi
conf=/etc/containers/containers.conf
if [ "$(id -u)" = 0 ] && ! grep -q '^runtime = "runc"' "$conf" 2>/dev/null; then
  mkdir -p /etc/containers
  cat > "$conf" <<'CONF'
[containers]
default_ulimits = []          # the default nofile/nproc limits are refused here (setrlimit EPERM)
[engine]
cgroup_manager = "cgroupfs"   # cgroups v1/hybrid: crun fails, runc works
runtime = "runc"
CONF
fi
podman --version
