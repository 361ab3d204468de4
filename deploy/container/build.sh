#!/bin/bash
# deploy/container/build.sh BINDIR ARCHIVE (`make image` runs it): builds the
# image of deploy/container/Containerfile from BINDIR's static netatopd and
# netatopctl with podman (Debian package), tagged localhost/netatopd:VERSION,
# and saves it as an OCI archive at ARCHIVE. Nothing is pulled (FROM
# scratch). podman works in storage of its own, removed afterwards, as is
# whatever it makes under /var/lib/containers or /run that was not there.
set -euo pipefail
cd "$(dirname -- "$0")/../.."
bin=${1:?usage: build.sh BINDIR ARCHIVE}
out=${2:?usage: build.sh BINDIR ARCHIVE}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image=localhost/netatopd:$version
command -v podman >/dev/null || { echo "build.sh: no podman: apt-get install podman" >&2; exit 1; }
for b in netatopd netatopctl; do
    ldd "$bin/$b" 2>&1 | grep -qE 'statically linked|not a dynamic executable' ||
        { echo "build.sh: $bin/$b is not static (build with make, PROFILE=release)" >&2; exit 1; }
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
podman_ build --quiet -f deploy/container/Containerfile -t "$image" "$work/context" >/dev/null
rm -f "$out"
podman_ save --quiet --format oci-archive -o "$out" "$image"
echo "$out: $image, $(du -k "$out" | cut -f1) KiB"
