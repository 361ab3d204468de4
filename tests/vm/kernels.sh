#!/bin/bash
# tests/vm/kernels.sh CACHE_DIR [ARCH]
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
# With ARCH arm64, Debian's arm64 kernels of the same releases instead (5.10
# from bullseye: its security suite lists arm64 kernels it does not serve),
# through a private configuration of their own that lists arm64 packages
# (CACHE_DIR/apt-arm64), and for each, in CACHE_DIR/KVER/ (KVER ends in
# -arm64): Image, the uncompressed kernel out of vmlinuz (gzip, or an EFI
# zboot image whose header gives the compressed payload), which qemu's virt
# machine boots; and the modules.
# Cached: a kernel whose CACHE_DIR/KVER/.done exists is not fetched again.
# Prints one line per kernel: KVER DIR.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/../loud.sh"

CACHE=${1:?usage: kernels.sh CACHE_DIR [ARCH]}
ARCH=${2:-amd64}
mkdir -p -- "$CACHE"
CACHE=$(cd -- "$CACHE" && pwd -P)
HERE=$(cd -- "$(dirname -- "$0")" && pwd -P)
APT_DIR=${NETATOPD_APT_DIR:-$CACHE/apt}
log() { printf 'kernels: %s\n' "$*" >&2; }
die() { printf 'kernels: ERROR: %s\n' "$*" >&2; exit 1; }

# The kernels, as regular expressions over package names.
case $ARCH in
amd64 | arm64) ;;
*) die "no kernels for architecture $ARCH (amd64 or arm64)" ;;
esac
readonly WANT=(
    "^linux-image-5\.10\.0-[0-9]+-$ARCH\$"
    "^linux-image-6\.1\.0-[0-9]+-$ARCH\$"
    "^linux-image-6\.12\.[0-9]+(\\+deb13)?-$ARCH\$"
)

. "$HERE/../debian-apt.sh"
if [ "$ARCH" = amd64 ]; then
    debian_apt_init "$APT_DIR" bullseye-security bookworm bookworm-security trixie
else
    DEBIAN_APT_ARCHITECTURES="amd64 $ARCH" debian_apt_init "$CACHE/apt-$ARCH" bullseye bookworm \
        bookworm-security trixie
fi
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

# An arm64 vmlinuz -> Image: an Image already, gzip, or an EFI zboot image
# ("zimg" at byte 4, then the payload's offset and size, and at byte 24 its
# compression).
extract_image() {
    local in=$1 out=$2 off size comp
    if [ "$(dd if="$in" bs=1 skip=56 count=4 status=none)" = ARMd ]; then
        cp -- "$in" "$out.tmp" # not compressed (5.10's)
    elif [ "$(head -c2 -- "$in" | od -An -tx1 | tr -d ' \n')" = 1f8b ]; then
        gunzip -c -- "$in" >"$out.tmp"
    elif [ "$(dd if="$in" bs=1 skip=4 count=4 status=none)" = zimg ]; then
        off=$(od -An -tu4 -j8 -N4 -- "$in" | tr -d ' ')
        size=$(od -An -tu4 -j12 -N4 -- "$in" | tr -d ' ')
        comp=$(dd if="$in" bs=1 skip=24 count=8 status=none | tr -d '\0')
        case $comp in
        gzip) tail -c +$((off + 1)) -- "$in" | head -c "$size" | gunzip -c >"$out.tmp" ;;
        zstd | zstd22) tail -c +$((off + 1)) -- "$in" | head -c "$size" | unzstd -c >"$out.tmp" ;;
        xzkern) tail -c +$((off + 1)) -- "$in" | head -c "$size" | unxz -c >"$out.tmp" ;;
        *) die "$in: an EFI zboot image compressed with '$comp', which this script does not unpack" ;;
        esac
    else
        die "$in is neither an arm64 Image, gzip, nor an EFI zboot image"
    fi
    # An arm64 Image has "ARMd" at byte 56.
    [ "$(dd if="$out.tmp" bs=1 skip=56 count=4 status=none)" = ARMd ] ||
        die "what $in holds is not an arm64 Image"
    mv -- "$out.tmp" "$out"
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
        (cd -- "$dir/deb" && apt-get -q download "$pkg:$ARCH" >&2) || die "apt-get download $pkg failed"
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
        if [ "$ARCH" = amd64 ]; then
            extract_vmlinux "$dir/boot/vmlinuz-$kver" "$dir/vmlinux"
        else
            extract_image "$dir/boot/vmlinuz-$kver" "$dir/Image"
        fi
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
