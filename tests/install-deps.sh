#!/bin/bash
# Installs what building and testing netatopd needs on Debian 12, as root:
# clang (compiles the BPF programs), libelf/zlib static archives (linked into
# the binaries), pkg-config and make; for the tests, systemd-analyze (verifies
# the unit) and setpriv (runs netatopd with the unit's capabilities).
# For the man pages and the package: mandoc (lint), man-db (rendering),
# lintian, dpkg-dev (dpkg-shlibdeps, for the package's dependencies).
# For the unit under a real systemd: systemd-container (systemd-nspawn) and
# debootstrap (the guests' root file systems).
# Idempotent and non-interactive.
set -euo pipefail

PKGS=(clang llvm libelf-dev zlib1g-dev pkg-config make systemd util-linux mandoc man-db lintian dpkg-dev
    systemd-container debootstrap)

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs Debian packages; netatopd also needs root to load BPF)"
    exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in cargo clang systemd-analyze setpriv mandoc man lintian dpkg-shlibdeps systemd-nspawn \
    debootstrap nsenter; do
    command -v "$tool" >/dev/null || { log "$tool not found after installing"; exit 1; }
done
log "build dependencies present"
