#!/bin/bash
# tests/vm/kernels.sh CACHE_DIR
#
# Debian's stock kernels the VM tests boot: 5.10 (Debian 11, from
# bullseye-security), 6.1 (Debian 12, bookworm and bookworm-security) and
# 6.12 (Debian 13, trixie), the newest build of each (the suites are named
# here, so the newest is the same whatever else the private configuration
# lists). They are downloaded through the tests' private apt
# configuration (tests/debian-apt.sh; nothing is written under /etc/apt), and
# for each, into CACHE_DIR/KVER/:
#   - vmlinux: the uncompressed ELF kernel out of the package's vmlinuz (the
#     method of the kernel tree's scripts/extract-vmlinux: find the compressed
#     payload, decompress it); qemu boots it through PVH, skipping seconds of
#     emulated decompression;
#   - lib/modules/KVER: the modules, with depmod run, for the initramfs.
# Cached: a kernel whose CACHE_DIR/KVER/.done exists is not fetched again.
# Prints one line per kernel: KVER DIR.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/../loud.sh"

CACHE=${1:?usage: kernels.sh CACHE_DIR}
mkdir -p -- "$CACHE"
CACHE=$(cd -- "$CACHE" && pwd -P)
HERE=$(cd -- "$(dirname -- "$0")" && pwd -P)
APT_DIR=${NETATOPD_APT_DIR:-$CACHE/apt}
log() { printf 'kernels: %s\n' "$*" >&2; }
die() { printf 'kernels: ERROR: %s\n' "$*" >&2; exit 1; }

# The kernels, as regular expressions over package names.
readonly WANT=(
    '^linux-image-5\.10\.0-[0-9]+-amd64$'
    '^linux-image-6\.1\.0-[0-9]+-amd64$'
    '^linux-image-6\.12\.[0-9]+(\+deb13)?-amd64$'
)

. "$HERE/../debian-apt.sh"
debian_apt_init "$APT_DIR" bullseye-security bookworm bookworm-security trixie
debian_apt_update

# The newest package whose name matches $1.
newest_pkg() {
    apt-cache search --names-only "$1" | awk '{print $1}' | grep -E "$1" | sort -V | tail -n1
}

is_elf() { [ "$(head -c4 -- "$1" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; }

# vmlinuz -> vmlinux: try each compression's magic, at each place it occurs,
# until the decompressed bytes are an ELF file.
extract_vmlinux() {
    local in=$1 out=$2 tmp=$2.tmp pos s magic cmd
    local specs=(
        '\x1f\x8b\x08|gunzip'
        '\xfd7zXZ\x00|unxz'
        '\x28\xb5\x2f\xfd|unzstd'
        '\x02\x21\x4c\x18|lz4 -d'
        'BZh|bunzip2'
        '\x5d\x00\x00\x00|unlzma'
    )
    for s in "${specs[@]}"; do
        magic=${s%%|*}
        cmd=${s#*|}
        command -v "${cmd%% *}" >/dev/null || continue
        for pos in $(LC_ALL=C grep -aboP "$magic" "$in" 2>/dev/null | cut -d: -f1 | head -n 20); do
            tail -c +$((pos + 1)) "$in" | $cmd >"$tmp" 2>/dev/null || true
            if [ -s "$tmp" ] && is_elf "$tmp"; then
                mv -- "$tmp" "$out"
                return 0
            fi
        done
    done
    rm -f -- "$tmp"
    die "no compressed ELF kernel found in $in"
}

fetch_one() {
    local re=$1 pkg kver dir deb
    pkg=$(newest_pkg "$re")
    [ -n "$pkg" ] || die "no package matches $re in the private apt configuration ($APT_DIR)"
    kver=${pkg#linux-image-}
    dir=$CACHE/$kver
    if [ ! -e "$dir/.done" ]; then
        log "fetching $pkg"
        rm -rf -- "$dir"
        mkdir -p -- "$dir/deb"
        (cd -- "$dir/deb" && apt-get -q download "$pkg" >&2) || die "apt-get download $pkg failed"
        deb=$(ls -- "$dir"/deb/*.deb)
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards \
            "./boot/vmlinuz-$kver" "./lib/modules/$kver/*" "./usr/lib/modules/$kver/*" 2>/dev/null || true
        if [ -d "$dir/usr/lib/modules" ]; then
            mkdir -p -- "$dir/lib"
            mv -- "$dir/usr/lib/modules" "$dir/lib/modules"
            rm -rf -- "$dir/usr"
        fi
        [ -f "$dir/boot/vmlinuz-$kver" ] && [ -d "$dir/lib/modules/$kver" ] ||
            die "$deb has no boot/vmlinuz-$kver or lib/modules/$kver"
        extract_vmlinux "$dir/boot/vmlinuz-$kver" "$dir/vmlinux"
        depmod -b "$dir" "$kver"
        rm -rf -- "$dir/deb" "$dir/boot"
        printf '%s\n' "$pkg" >"$dir/.done"
    fi
    printf '%s %s\n' "$kver" "$dir"
}

exec 9>"$CACHE/.lock"
flock 9
for re in "${WANT[@]}"; do
    fetch_one "$re"
done
