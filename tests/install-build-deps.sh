#!/bin/bash
# tests/install-build-deps.sh: installs what building netatopd needs on
# Debian 12 (or similar), as root; `make build` and `make run` run it.
#   - clang: compiles the BPF programs;
#   - gcc, libc6-dev, make, pkg-config: build the vendored libbpf and link
#     the binaries;
#   - libelf-dev, zlib1g-dev: the static archives linked into the binaries
#     (nothing but libc is needed at run time);
#   - ca-certificates: cargo fetches the crates over HTTPS;
#   - git: the revision `--version` prints.
# Rust itself (cargo) must be there already: it is not a Debian package
# here. What only the tests use is installed by install-test-deps.sh.
# Idempotent and non-interactive; it prints what it installs, and every
# failure as one line saying what failed and what to do.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"

NEED_WHO=install-build-deps
# shellcheck source=tests/apt-need.sh
. "$(dirname -- "$0")/apt-need.sh"

command -v cargo >/dev/null ||
    need_fail "cargo not found" "install Rust (rustup, https://rustup.rs) and put cargo on PATH, then run it again"
need_root
need_packages clang gcc libc6-dev make pkg-config libelf-dev zlib1g-dev ca-certificates git
need_tools clang cc make pkg-config git
for a in libelf.a libz.a; do
    [ -f "/usr/lib/$(gcc -print-multiarch)/$a" ] ||
        need_fail "no /usr/lib/$(gcc -print-multiarch)/$a after installing" \
            "the static archives of libelf-dev and zlib1g-dev are needed: reinstall them"
done
need_log "what building netatopd needs is installed"
