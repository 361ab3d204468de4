#!/bin/bash
# tests/vm/arm64-root.sh DIR: the user space the arm64 guests run the
# suites in (tests/vm/run.sh with VM_ARCH=arm64 shares it as their root):
# Debian 12's (bookworm's) arm64 minbase, with what the suites run
# (iproute2, procps, ethtool, nftables: network namespaces, veth and their
# settings for the wire suite) and a static busybox for the initramfs, in
# DIR/bookworm-arm64. The packages are downloaded and
# unpacked by debootstrap's first stage (--foreign) and the rest of its
# packages unpacked the same way: nothing of arm64 runs here, so nothing is
# configured (the suites need only the programs and their libraries).
# From the machine's own Debian mirror and keyring (tests/debian-apt.sh);
# nothing is written under /etc. Cached: DIR/bookworm-arm64/.done names the
# packages it was made with.
# Prints the root's path.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/../loud.sh"

DIR=${1:?usage: arm64-root.sh DIR}
HERE=$(cd -- "$(dirname -- "$0")" && pwd -P)
log() { printf 'arm64-root: %s\n' "$*" >&2; }
die() { printf 'arm64-root: ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is missing (make test installs it)"
mkdir -p -- "$DIR"
DIR=$(cd -- "$DIR" && pwd -P)
root=$DIR/bookworm-arm64
readonly INCLUDE=iproute2,procps,ethtool,nftables,busybox-static
# Made with these packages, and awk (a change here makes the root again).
readonly STAMP="$INCLUDE awk"
if [ "$(cat "$root/.done" 2>/dev/null)" = "$STAMP" ]; then
    printf '%s\n' "$root"
    exit 0
fi
# shellcheck source=tests/debian-apt.sh
. "$HERE/../debian-apt.sh"
read -r mirror keyring < <(debian_mirror) || die "no Debian mirror configured on this machine"

# debootstrap fails in a path with a space: it works in a temporary
# directory, moved into place when done.
work=$(mktemp -d /tmp/netatopd-arm64-root.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
log "debootstrap --foreign bookworm arm64 from $mirror (about a minute)"
debootstrap --foreign --arch=arm64 --variant=minbase --include="$INCLUDE" \
    --keyring="$keyring" bookworm "$work/root" "$mirror" >"$DIR/bookworm-arm64.log" 2>&1 ||
    die "debootstrap of bookworm arm64 failed (log: $DIR/bookworm-arm64.log)"
# Through the merged /usr's links (/bin is usr/bin), as dpkg would.
for deb in "$work"/root/var/cache/apt/archives/*.deb; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/root" --keep-directory-symlink
done
rm -rf -- "$work"/root/var/cache/apt/archives/*.deb "$work/root/debootstrap"
# What configuring would have made and the suites use: the users and
# groups, awk (an alternative, made by mawk's postinst), and /proc as a
# directory to mount on (the first stage links it).
cp -- "$work/root/usr/share/base-passwd/passwd.master" "$work/root/etc/passwd"
cp -- "$work/root/usr/share/base-passwd/group.master" "$work/root/etc/group"
[ -e "$work/root/usr/bin/awk" ] || ln -s mawk "$work/root/usr/bin/awk"
rm -f -- "$work/root/proc"
mkdir -p -- "$work/root/proc"
for p in bin/sh bin/awk bin/setpriv bin/ip sbin/sysctl sbin/ethtool sbin/nft bin/busybox lib/ld-linux-aarch64.so.1; do
    [ -e "$work/root/$p" ] || die "the arm64 root has no /$p"
done
file -b "$work/root/bin/busybox" | grep -q 'ARM aarch64.*statically linked' ||
    die "the arm64 root's busybox is not a static aarch64 binary"
printf '%s\n' "$STAMP" >"$work/root/.done"
rm -rf -- "$root"
mv -- "$work/root" "$root"
log "$root"
printf '%s\n' "$root"
