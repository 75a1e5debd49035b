#!/usr/bin/env bash
# Install everything piprov and its virtual Pi lab need on a Debian 12 machine
# (as root), then a virtualenv in .venv with piprov installed in it.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv            # piprov itself
  debootstrap systemd-container   # lab: node image and systemd-nspawn
  iproute2 iptables               # lab: bridge, veths, namespaces, DNAT for --rtt
  avahi-daemon avahi-utils        # lab: mDNS as HypriotOS has it; avahi-browse for benchmarks
  docker.io docker-registry       # lab: image building helpers, the lab registry
  etcd-server etcd-client         # lab: the real etcd put into the etcd image
  busybox-static                  # lab: the workload image
  ca-certificates psmisc
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages and boots containers)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  # A third-party apt source that cannot be reached must not stop us: the
  # Debian archive is what we need.
  apt-get update -q || echo "setup.sh: warning: apt-get update reported errors, continuing" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's kubectl (package kubernetes-client) is what the lab tests speak to the
# cluster with. Some images already ship another /usr/bin/kubectl, which makes
# the package uninstallable; unpack the package into our own tools folder instead.
TOOLS=/opt/piprov-tools
if [ ! -x "$TOOLS/usr/bin/kubectl" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null)
  mkdir -p "$TOOLS"
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$TOOLS"
  rm -rf "$tmp"
fi

if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/pip ]; then
  # Debian's own interpreter: the one a fresh machine has. A venv left
  # half-made by an interrupted run is made again.
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
fi
stamp=.venv/.piprov-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
ln -sf "$TOOLS/usr/bin/kubectl" .venv/bin/kubectl
echo "setup.sh: ready (.venv/bin/piprov)"
