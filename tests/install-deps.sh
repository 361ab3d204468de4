#!/bin/bash
# Installs what building and testing netatopd needs on Debian 12, as root:
# clang (compiles the BPF programs), libelf/zlib static archives (linked into
# the binaries), pkg-config and make; for the tests, systemd-analyze (verifies
# the unit) and setpriv (runs netatopd with the unit's capabilities).
# For the man pages and the package: mandoc (lint), man-db (rendering),
# lintian, dpkg-dev (dpkg-shlibdeps, for the package's dependencies).
# For the wire tests: iproute2 (network namespaces, veth, nstat), ethtool (offloads
# off) and nftables (packets lost on the way in).
# For the unit under a real systemd: systemd-container (systemd-nspawn) and
# debootstrap (the guests' root file systems).
# Idempotent and non-interactive.
set -euo pipefail

PKGS=(clang llvm libelf-dev zlib1g-dev pkg-config make systemd util-linux mandoc man-db lintian dpkg-dev
    iproute2 ethtool nftables
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
# The VM tests boot other kernels under qemu (TCG): qemu-system-x86, and a
# static busybox, cpio, xz and zstd for their initramfs. qemu-system-x86 is
# installed in the version of the machine's qemu-utils if it has one (often
# from bookworm-backports), so that installing it never removes that.
vm_pkgs=(busybox-static cpio xz-utils zstd kmod)
missing=()
for p in "${vm_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
utils=$(dpkg-query -W -f='${Status} ${Version}' qemu-utils 2>/dev/null | sed -n 's/^install ok installed //p')
have=$(dpkg-query -W -f='${Status} ${Version}' qemu-system-x86 2>/dev/null | sed -n 's/^install ok installed //p')
if [ -z "$have" ] || { [ -n "$utils" ] && [ "$have" != "$utils" ]; }; then
    if [ -n "$utils" ]; then
        log "installing qemu-system-x86 $utils (the version of the installed qemu-utils)"
        codename=$(. /etc/os-release && printf '%s' "$VERSION_CODENAME")
        # shellcheck source=tests/debian-apt.sh
        . "$(dirname -- "$0")/debian-apt.sh"
        debian_apt_init "${NETATOPD_APT_DIR:-$(dirname -- "$0")/../target/apt}" \
            "$codename" "$codename-updates" "$codename-security" "$codename-backports"
        debian_apt_update
        debian_apt_installing
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -t "$codename-backports" "qemu-system-x86=$utils" >/dev/null
        unset APT_CONFIG
    else
        log "installing qemu-system-x86"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
    fi
fi
for tool in cargo clang systemd-analyze setpriv mandoc man lintian dpkg-shlibdeps systemd-nspawn \
    debootstrap nsenter qemu-system-x86_64 busybox cpio zstd; do
    command -v "$tool" >/dev/null || { log "$tool not found after installing"; exit 1; }
done
log "build dependencies present"
