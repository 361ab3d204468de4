#!/bin/bash
# tests/host-round.sh OPTION=WAY... -- COMMAND...
#
# Runs COMMAND (a round of tests, `make test` gives them) with netatopd
# forced to the given ways on this host's kernel: snapshot=map-walk sets
# NETATOPD_TEST_SNAPSHOT, thread-counters=hash-map NETATOPD_TEST_THREADS,
# attach=WAY NETATOPD_TEST_ATTACH (tests/src/daemon.rs passes them on as
# --snapshot, --thread-counters, --attach).
#
# A way this host's kernel cannot take (it lacks it, or a security policy
# of the host refuses its programs) is not forced: one line names it with
# the kernel's error, as `netatopd --version` reports it, and the round
# runs with the other ways; when none is left it is not run, the default
# round having covered it. This is for the host only: the booted VM
# kernels (tests/tests/kernels.rs) force every way they have and fail if
# one does not work there; and a way that loads but miscounts fails here.
set -euo pipefail
cd "$(dirname -- "$0")/.."

log() { printf 'host-round: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

netatopd=${NETATOPD_BIN:-target/debug/netatopd}
[ -x "$netatopd" ] || die "no $netatopd: cargo build --workspace --bins (make test does)"
version=$("$netatopd" --version) || die "$netatopd --version failed"

declare -a env=() forced=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    option=${1%%=*}
    way=${1#*=}
    case $option in
    snapshot) var=NETATOPD_TEST_SNAPSHOT ;;
    thread-counters) var=NETATOPD_TEST_THREADS ;;
    attach) var=NETATOPD_TEST_ATTACH ;;
    *) die "unknown option in $1 (snapshot=, thread-counters=, attach=)" ;;
    esac
    [ -n "$way" ] && [ "$way" != "$1" ] || die "usage: $0 OPTION=WAY... -- COMMAND..."
    line=$(grep -F -- "  $option $way: " <<<"$version" | head -n1) || line=
    state=${line#*"  $option $way: "}
    case $state in
    yes*)
        env+=("$var=$way")
        forced+=("--$option $way")
        ;;
    no:*)
        log "not forcing --$option $way: this host's kernel cannot take it:${state#no:}"
        ;;
    *)
        die "$netatopd --version does not say whether this kernel takes --$option $way:
$version"
        ;;
    esac
    shift
done
[ "${1:-}" = -- ] && [ $# -ge 2 ] || die "usage: $0 OPTION=WAY... -- COMMAND..."
shift
if [ ${#forced[@]} -eq 0 ]; then
    log "round not run: nothing left to force on this host (the booted kernels run it)"
    exit 0
fi
log "round with ${forced[*]}"
exec env "${env[@]}" "$@"
