#!/bin/bash
# tests/install-test-deps.sh: installs what only the tests use, on Debian 12,
# as root (`make test` runs it after install-build-deps.sh):
#   - systemd (systemd-analyze verifies the unit), util-linux (setpriv runs
#     netatopd with the unit's capabilities; nsenter);
#   - mandoc (lint) and man-db (rendering) for the man pages; lintian and
#     dpkg-dev (dpkg-shlibdeps) for the package;
#   - iproute2 (network namespaces, veth, nstat), ethtool (offloads off) and
#     nftables (packets lost on the way in) for the wire tests;
#   - systemd-container (systemd-nspawn) and debootstrap: the unit under a
#     real systemd, and the fresh machine;
#   - podman and runc: the container image built and run as the DaemonSet's
#     pod template runs it (runc: crun refuses hosts of mixed cgroup v1/v2);
#   - busybox-static, cpio, xz-utils, zstd, kmod and qemu-system-x86: the VM
#     tests boot other kernels under qemu (TCG) from an initramfs.
# qemu-system-x86 is installed in the version of the machine's qemu-utils if
# it has one (often from bookworm-backports), so that installing it never
# removes that.
# Idempotent and non-interactive; it prints what it installs, and every
# failure as one line saying what failed and what to do.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"

NEED_WHO=install-test-deps
HERE=$(cd -- "$(dirname -- "$0")" && pwd -P)
# shellcheck source=tests/apt-need.sh
. "$HERE/apt-need.sh"

PKGS=(systemd util-linux mandoc man-db lintian dpkg-dev iproute2 ethtool nftables
    systemd-container debootstrap podman runc busybox-static cpio xz-utils zstd kmod qemu-system-x86)
# --list: the packages, one a line (tests/fresh-machine.sh checks that the
# build installs none of them).
if [ "${1:-}" = --list ]; then
    printf '%s\n' "${PKGS[@]}"
    exit 0
fi

need_root
# qemu-system-x86 last, and apart.
need_packages "${PKGS[@]:0:${#PKGS[@]}-1}"

utils=$(installed_version qemu-utils)
have=$(installed_version qemu-system-x86)
if [ -z "$have" ] || { [ -n "$utils" ] && [ "$have" != "$utils" ]; }; then
    if [ -n "$utils" ]; then
        # That version is in the release's backports (or updates): a private
        # apt configuration lists them without touching /etc/apt.
        need_log "installing qemu-system-x86 $utils (the version of the installed qemu-utils)"
        codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
        [ -n "$codename" ] || need_fail "no VERSION_CODENAME in /etc/os-release" \
            "install qemu-system-x86 in the version of qemu-utils ($utils) by hand"
        # shellcheck source=tests/debian-apt.sh
        . "$HERE/debian-apt.sh"
        debian_apt_init "${NETATOPD_APT_DIR:-$HERE/../target/apt}" \
            "$codename" "$codename-updates" "$codename-security" "$codename-backports" >"$NEED_LOG" 2>&1 &&
            debian_apt_update >>"$NEED_LOG" 2>&1 ||
            need_fail "the private apt configuration for $codename-backports failed" \
                "check the network and the Debian source in /etc/apt, then run it again"
        debian_apt_installing
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -t "$codename-backports" "qemu-system-x86=$utils" >"$NEED_LOG" 2>&1 ||
            need_fail "apt-get install qemu-system-x86=$utils failed" \
                "install qemu-system-x86 in the version of qemu-utils ($utils), or remove qemu-utils, and run it again"
        unset APT_CONFIG
    else
        need_packages qemu-system-x86
    fi
fi
need_tools systemd-analyze setpriv mandoc man lintian dpkg-shlibdeps ip ethtool nft systemd-nspawn \
    debootstrap nsenter qemu-system-x86_64 busybox cpio xz zstd depmod modprobe
need_log "what the tests need is installed"
