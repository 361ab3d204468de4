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
#     file: the image's and the cross build's binaries are of their
#     architecture;
#   - busybox-static, cpio, xz-utils, zstd, kmod, qemu-system-x86 and
#     qemu-system-arm: the VM tests boot other kernels, amd64 and arm64,
#     under qemu (TCG) from an initramfs.
# The two qemu packages are installed in the version of the machine's
# qemu-utils if it has one (often from bookworm-backports), so that
# installing them never removes that.
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
    systemd-container debootstrap podman runc file busybox-static cpio xz-utils zstd kmod)
QEMU=(qemu-system-x86 qemu-system-arm)
# --list: the packages, one a line (tests/fresh-machine.sh checks that the
# build installs none of them).
if [ "${1:-}" = --list ]; then
    printf '%s\n' "${PKGS[@]}" "${QEMU[@]}"
    exit 0
fi

need_root
# qemu last, and apart.
need_packages "${PKGS[@]}"

utils=$(installed_version qemu-utils)
want=()
for q in "${QEMU[@]}"; do
    have=$(installed_version "$q")
    if [ -z "$have" ] || { [ -n "$utils" ] && [ "$have" != "$utils" ]; }; then
        want+=("$q")
    fi
done
if [ ${#want[@]} -gt 0 ] && [ -n "$utils" ]; then
    # That version is in the release's backports (or updates): a private
    # apt configuration lists them without touching /etc/apt.
    need_log "installing ${want[*]} $utils (the version of the installed qemu-utils)"
    codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || need_fail "no VERSION_CODENAME in /etc/os-release" \
        "install ${want[*]} in the version of qemu-utils ($utils) by hand"
    # shellcheck source=tests/debian-apt.sh
    . "$HERE/debian-apt.sh"
    debian_apt_init "${NETATOPD_APT_DIR:-$HERE/../target/apt}" \
        "$codename" "$codename-updates" "$codename-security" "$codename-backports" >"$NEED_LOG" 2>&1 &&
        debian_apt_update >>"$NEED_LOG" 2>&1 ||
        need_fail "the private apt configuration for $codename-backports failed" \
            "check the network and the Debian source in /etc/apt, then run it again"
    debian_apt_installing
    pinned=()
    for q in "${want[@]}"; do pinned+=("$q=$utils"); done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -t "$codename-backports" "${pinned[@]}" >"$NEED_LOG" 2>&1 ||
        need_fail "apt-get install ${want[*]} ($utils) failed" \
            "install ${want[*]} in the version of qemu-utils ($utils), or remove qemu-utils, and run it again"
    unset APT_CONFIG
elif [ ${#want[@]} -gt 0 ]; then
    need_packages "${want[@]}"
fi
need_tools systemd-analyze setpriv mandoc man lintian dpkg-shlibdeps ip ethtool nft systemd-nspawn \
    debootstrap nsenter qemu-system-x86_64 qemu-system-aarch64 busybox cpio xz zstd depmod modprobe
need_log "what the tests need is installed"
