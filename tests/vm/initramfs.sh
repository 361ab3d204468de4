#!/bin/bash
# tests/vm/initramfs.sh KVER MODDIR OUT.cpio.gz
#
# The VM tests' initramfs: a static busybox, tests/vm/init.sh as /init, and
# the modules a Debian kernel needs for the 9p share of the host's / over
# virtio-pci (virtio, virtio_pci, 9pnet_virtio, 9p are modules before 6.12),
# decompressed, in insmod order; and veth, for the wire tests' network
# namespaces. MODDIR holds lib/modules/KVER (tests/vm/kernels.sh).
# EXTRA_MODULES="a b" adds more.
set -euo pipefail
KVER=${1:?usage: mkinitramfs.sh KVER MODDIR OUT.cpio.gz}
MODDIR=$(cd "${2:?}" && pwd)
OUT=${3:?}
HERE=$(cd "$(dirname "$0")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 ||
    { echo "initramfs: $BUSYBOX is not a static busybox (Debian package busybox-static)" >&2; exit 1; }
[ -f "$MODDIR/lib/modules/$KVER/modules.dep" ] || depmod -b "$MODDIR" "$KVER"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,proc,sys,newroot,lib/modules,etc}
cp "$BUSYBOX" "$work/bin/busybox"
ln -s busybox "$work/bin/sh"
install -m 0755 "$HERE/init.sh" "$work/init"

# insmod order (deduplicated, built-in ones skipped). modprobe takes the
# names after the first as module parameters unless given -a.
: > "$work/etc/modules.order"
# shellcheck disable=SC2086
modprobe -d "$MODDIR" -S "$KVER" -a --show-depends virtio_pci 9pnet_virtio 9p overlay veth ${EXTRA_MODULES:-} |
# The path is all that follows "insmod " up to the module's suffix: it may
# have spaces (the checkout's path).
sed -n 's/^insmod \(.*\.ko\(\.xz\|\.zst\|\.gz\)\?\) *$/\1/p' | awk '!seen[$0]++' |
while IFS= read -r ko; do
    name=$(basename "$ko"); name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
    case "$ko" in
        *.xz)  xz -dc "$ko"    > "$work/lib/modules/$name" ;;
        *.zst) zstd -qdc "$ko" > "$work/lib/modules/$name" ;;
        *.gz)  gzip -dc "$ko"  > "$work/lib/modules/$name" ;;
        *)     cp "$ko" "$work/lib/modules/$name" ;;
    esac
    echo "$name" >> "$work/etc/modules.order"
done
echo "$KVER" > "$work/etc/kver"

mkdir -p "$(dirname "$OUT")"
(cd "$work" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -1 > "$OUT.tmp")
mv "$OUT.tmp" "$OUT"
echo "initramfs: $OUT ($(du -k "$OUT" | cut -f1) KiB; modules: $(tr '\n' ' ' < "$work/etc/modules.order"))" >&2
