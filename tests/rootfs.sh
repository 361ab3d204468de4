#!/bin/bash
# tests/rootfs.sh DIR SUITE...
#
# Makes a minimal Debian root file system with systemd for each SUITE
# (bullseye: systemd 247; bookworm: systemd 252; trixie: systemd 257, and
# atop 2.11 as packaged, its services enabled) in DIR/SUITE, or a bare one
# with only make for SUITE-minbase (bookworm-minbase), with
# debootstrap from the machine's own Debian mirror and keyring
# (tests/debian-apt.sh reads them from /etc/apt). The tests boot them with
# systemd-nspawn (a throwaway overlay keeps them unchanged) to run
# netatopd's unit under a real systemd.
#
# Cached: a root file system that was completed (DIR/SUITE.ok lists what it
# was made with) is reused. Runs as root; progress on stderr.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"

# What the tests need in the guest beyond debootstrap's minbase: systemd,
# and where atop speaks netatop-bpf (2.9 and later), atop. NAME-minbase:
# the bare release with only make (tests/fresh-machine.sh).
packages() {
    case $1 in
    *-minbase) echo make ;;
    bullseye | bookworm) echo systemd,systemd-sysv,dbus ;;
    *) echo systemd,systemd-sysv,dbus,atop ;;
    esac
}

log() { printf 'rootfs: %s\n' "$*" >&2; }
die() { printf 'rootfs: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: $0 DIR SUITE..."
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is missing (make test installs it)"
mkdir -p -- "$1"
DIR=$(cd -- "$1" && pwd -P)
shift
. "$(dirname -- "$0")/debian-apt.sh"
read -r mirror keyring < <(debian_mirror) || die "no Debian mirror configured on this machine"

exec 9>"$DIR/.lock"
flock 9
for name in "$@"; do
    suite=${name%-minbase}
    root=$DIR/$name
    PACKAGES=$(packages "$name")
    RECIPE="minbase $PACKAGES v2"
    made=lib/systemd/systemd
    [ "$name" = "$suite" ] || made=usr/bin/make
    if [ -f "$root.ok" ] && [ "$(cat "$root.ok")" = "$RECIPE" ] && [ -x "$root/$made" ]; then
        log "$name: cached in $root"
        continue
    fi
    rm -rf -- "$root" "$root.ok"
    # debootstrap fails in a path with a space: it works in a temporary
    # directory, and the result is moved into place.
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/netatopd-rootfs.XXXXXX")
    trap 'rm -rf -- "$tmp"' EXIT
    log "$name: debootstrap $suite from $mirror (about 30 s)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" --keyring="$keyring" \
        "$suite" "$tmp/root" "$mirror" >"$DIR/$name.log" 2>&1; then
        tail -n 20 "$DIR/$name.log" >&2
        die "debootstrap of $suite failed (log: $DIR/$name.log)"
    fi
    rm -f -- "$tmp"/root/var/cache/apt/archives/*.deb
    mv -- "$tmp/root" "$root"
    rm -rf -- "$tmp"
    trap - EXIT
    printf '%s\n' "$RECIPE" >"$root.ok"
    log "$name: $(du -sh -- "$root" | cut -f1) in $root"
done
