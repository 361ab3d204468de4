#!/bin/bash
# tests/install-cross-deps.sh TARGET DIR: what building netatopd for another
# architecture needs (`make build TARGET=aarch64-unknown-linux-gnu` runs it;
# plain `make build` does not), as root, on Debian 12 x86_64:
#   - gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (Debian packages,
#     installed): the C cross compiler, for the vendored libbpf and the
#     link, and glibc's static archives for aarch64;
#   - Rust for aarch64: Debian's own compiler, `rustc-web` of the machine's
#     release (1.96 on Debian 12), with its standard library for x86_64 (the
#     build scripts) and for arm64 (`libstd-rust-web-dev:arm64`). rustup
#     cannot fetch another target's standard library here, and a standard
#     library works only with the compiler of exactly its version, so the
#     four packages are taken at one version and unpacked into DIR/rust;
#     the compiler's one shared library from elsewhere, LLVM, is installed
#     (the Debian package its Depends names);
#   - libelf-dev:arm64 and zlib1g-dev:arm64, unpacked into DIR/sysroot: the
#     static libelf.a and libz.a linked into the binaries, and their headers.
# Packages of arm64 are downloaded through a private apt configuration
# (tests/debian-apt.sh, in DIR/apt, with both architectures' lists) and
# unpacked, never installed: the machine's dpkg architectures and /etc/apt
# stay as they are. Cached: a DIR/VERSION.done is not made again.
# Writes what the build's shell sources (DIR/env.sh: the compiler, linker
# and libraries for TARGET).
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"

TARGET=${1:?usage: install-cross-deps.sh TARGET DIR}
DIR=${2:?usage: install-cross-deps.sh TARGET DIR}
HERE=$(cd -- "$(dirname -- "$0")" && pwd -P)
NEED_WHO=install-cross-deps
# shellcheck source=tests/apt-need.sh
. "$HERE/apt-need.sh"

case $TARGET in
aarch64-unknown-linux-gnu) arch=arm64 triplet=aarch64-linux-gnu ;;
*) need_fail "no cross build for $TARGET" \
    "build for x86_64-unknown-linux-gnu (the default) or aarch64-unknown-linux-gnu" ;;
esac
[ "$(dpkg --print-architecture)" = amd64 ] ||
    need_fail "cross builds are set up on x86_64 (amd64) machines only" \
        "on an $arch machine, build natively: make build"
need_root
need_packages "gcc-$triplet" "libc6-dev-$arch-cross" dpkg-dev
need_tools "$triplet-gcc" dpkg-deb

mkdir -p -- "$DIR"
# Its path as given (a link without spaces, where the checkout's has some).
DIR=$(cd -- "$DIR" && pwd)
# shellcheck source=tests/debian-apt.sh
. "$HERE/debian-apt.sh"
codename=$(debian_codename)
DEBIAN_APT_ARCHITECTURES="amd64 $arch" debian_apt_init "$DIR/apt" "$codename" \
    "$codename-security" "$codename-updates"
debian_apt_update ||
    need_fail "the private apt configuration ($DIR/apt) could not be updated" \
        "check the network and the Debian sources in /etc/apt, then run it again"

# The newest version of package $1 the private configuration knows.
newest() {
    apt-cache show "$1" 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n1 |
        grep . || need_fail "no package $1 in the private apt configuration" \
            "check that Debian $codename's sources in /etc/apt are reachable"
}
rust=$(newest rustc-web:amd64)
[ "$(newest "libstd-rust-web-dev:$arch")" = "$rust" ] ||
    need_fail "rustc-web $rust has no libstd-rust-web-dev:$arch of its version" \
        "wait for Debian's mirror to carry both, then run it again"
stamp=$DIR/$rust-$arch.done
# The standard library's package is named for the compiler's release.
stdlib=libstd-rust-web-$(printf '%s' "$rust" | grep -oE '^[0-9]+\.[0-9]+')

# LLVM, the compiler's shared library, as the package names it.
llvm=$(apt-cache show "$stdlib:amd64=$rust" 2>/dev/null |
    sed -n 's/^Depends: //p' | head -n1 | tr ',' '\n' | grep -oE 'libllvm[0-9]+' | head -n1) ||
    need_fail "no LLVM named in libstd-rust-web's dependencies" "report this (Debian's packaging changed)"
# Installed into this machine (need_packages uses its own apt
# configuration, not the private one).
need_packages "$llvm"

if [ ! -f "$stamp" ]; then
    need_log "unpacking rustc-web $rust (x86_64, and its $arch standard library), libelf and zlib for $arch"
    debs=$DIR/debs
    rm -rf -- "$debs" "$DIR/rust" "$DIR/sysroot" "$DIR"/*.done
    mkdir -p -- "$debs"
    (cd "$debs" && apt-get download -q "rustc-web:amd64=$rust" "$stdlib:amd64=$rust" \
        "libstd-rust-web-dev:amd64=$rust" "libstd-rust-web-dev:$arch=$rust" \
        "libelf-dev:$arch" "zlib1g-dev:$arch" >"$NEED_LOG" 2>&1) ||
        need_fail "apt-get download of rustc-web $rust and the $arch libraries failed" \
            "read apt's message above, fix it (network, disk space) and run it again"
    for d in "$debs"/rustc-web_*.deb "$debs"/libstd-rust-web*.deb; do dpkg-deb -x "$d" "$DIR/rust"; done
    for d in "$debs"/libelf-dev_*.deb "$debs"/zlib1g-dev_*.deb; do dpkg-deb -x "$d" "$DIR/sysroot"; done
    rm -rf -- "$debs"
    # The compiler finds its own libraries through this (they have no
    # RUNPATH); its sysroot is DIR/rust/usr, from where it lies.
    cat >"$DIR/rust/rustc" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$DIR/rust/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$DIR/rust/usr/bin/rustc" "\$@"
EOF
    chmod 0755 "$DIR/rust/rustc"
    "$DIR/rust/rustc" --print target-libdir --target "$TARGET" >/dev/null ||
        need_fail "the unpacked rustc-web $rust does not run" "remove $DIR and run it again"
    for a in libelf.a libz.a; do
        [ -f "$DIR/sysroot/usr/lib/$triplet/$a" ] ||
            need_fail "no $a for $arch in the unpacked packages" "remove $DIR and run it again"
    done
    touch -- "$stamp"
fi

# What cargo needs to build for TARGET, for the build's shell to source.
upper=$(printf '%s' "$TARGET" | tr 'a-z-' 'A-Z_')
under=$(printf '%s' "$TARGET" | tr '-' '_')
cat >"$DIR/env.sh" <<EOF
# Written by tests/install-cross-deps.sh for $TARGET (rustc-web $rust).
export RUSTC='$DIR/rust/rustc'
export CARGO_TARGET_${upper}_LINKER=$triplet-gcc
export CC_${under}=$triplet-gcc
export AR_${under}=$triplet-ar
export LIBBPF_SYS_LIBRARY_PATH_${under}='$DIR/sysroot/usr/lib/$triplet'
export LIBBPF_SYS_EXTRA_CFLAGS='-I$DIR/sysroot/usr/include'
EOF
need_log "building for $TARGET with rustc-web $rust ($DIR/env.sh)"
