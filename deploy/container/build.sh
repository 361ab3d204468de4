#!/bin/bash
# deploy/container/build.sh BINDIR ARCHIVE [ARCH] (`make image` runs it):
# builds the image of deploy/container/Containerfile from BINDIR's static
# netatopd and netatopctl with podman (Debian package), tagged
# localhost/netatopd:VERSION, for ARCH (amd64 or arm64, that of the
# binaries; amd64 if not given), and saves it as an OCI archive at ARCHIVE.
# Nothing runs inside the image while it is built, so an arm64 one is built
# here without emulation. Nothing is pulled (FROM
# scratch). podman works in storage of its own, removed afterwards, as is
# whatever it makes under /var/lib/containers or /run that was not there.
set -euo pipefail
cd "$(dirname -- "$0")/../.."
bin=${1:?usage: build.sh BINDIR ARCHIVE}
out=${2:?usage: build.sh BINDIR ARCHIVE}
arch=${3:-amd64}
case $arch in
amd64) machine=x86-64 ;;
arm64) machine=aarch64 ;;
*) echo "build.sh: no image for architecture $arch (amd64 or arm64)" >&2; exit 1 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image=localhost/netatopd:$version
command -v podman >/dev/null || { echo "build.sh: no podman: apt-get install podman" >&2; exit 1; }
command -v file >/dev/null || { echo "build.sh: no file: apt-get install file" >&2; exit 1; }
for b in netatopd netatopctl; do
    kind=$(file -b "$bin/$b")
    grep -qE 'statically linked|static-pie linked' <<<"$kind" ||
        { echo "build.sh: $bin/$b is not static (build with make, PROFILE=release): $kind" >&2; exit 1; }
    grep -q "$machine" <<<"$kind" ||
        { echo "build.sh: $bin/$b is not an $arch binary: $kind" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/netatopd-image.XXXXXX")
made=()
for p in /var/lib/containers /run/containers /run/libpod; do
    [ -e "$p" ] || made+=("$p")
done
podman_() {
    podman --root "$work/storage" --runroot "$work/run" --tmpdir "$work/tmp" \
        --storage-driver vfs --events-backend none "$@"
}
cleanup() {
    podman_ rmi -a -f >/dev/null 2>&1 || true
    rm -rf "$work"
    for p in "${made[@]}"; do rm -rf "$p"; done
}
trap cleanup EXIT
mkdir "$work/context"
cp "$bin/netatopd" "$bin/netatopctl" "$work/context/"
podman_ build --quiet --arch "$arch" -f deploy/container/Containerfile -t "$image" "$work/context" >/dev/null
rm -f "$out"
podman_ save --quiet --format oci-archive -o "$out" "$image"
echo "$out: $image, $(du -k "$out" | cut -f1) KiB"
