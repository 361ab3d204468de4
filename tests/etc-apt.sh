#!/bin/bash
# tests/etc-apt.sh record FILE | check FILE
#
# `make test` must leave the machine's package sources as it found them: it
# records a digest of everything under /etc/apt (names, types, modes, owners
# and contents) before it starts and checks it at the end, failing with the
# difference if anything changed.
#
# `record` first removes the trixie suite and pin that earlier versions of
# tests/atop-setup.sh wrote there (only those two files, recognised by their
# first line): they are the one change to /etc/apt a test run makes.
set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"

readonly ETC_APT=${NETATOPD_ETC_APT:-/etc/apt}
log() { printf 'etc-apt: %s\n' "$*" >&2; }

listing() {
    (cd -- "$ETC_APT" && find . -printf '%y %m %u:%g %p -> %l\n' | sort)
    (cd -- "$ETC_APT" && find . -type f -print0 | sort -z | xargs -0r sha256sum)
}

case ${1:-}:${2:-} in
record:?*)
    for f in "$ETC_APT/sources.list.d/netatopd-trixie.sources" "$ETC_APT/preferences.d/netatopd-trixie"; do
        if [ -f "$f" ] && head -n1 -- "$f" | grep -q '^# Added by netatopd tests/atop-setup\.sh'; then
            rm -f -- "$f"
            log "removed $f, left by an earlier version of tests/atop-setup.sh"
        fi
    done
    mkdir -p -- "$(dirname -- "$2")"
    listing >"$2"
    log "recorded $ETC_APT ($(wc -l <"$2") lines) in $2"
    ;;
check:?*)
    [ -f "$2" ] || { log "no record $2: run '$0 record $2' first"; exit 1; }
    if ! diff -u "$2" <(listing) >&2; then
        log "FAIL: $ETC_APT changed during the tests (- before, + after)"
        exit 1
    fi
    log "$ETC_APT is as it was before the tests"
    ;;
*)
    log "usage: $0 record FILE | check FILE"
    exit 2
    ;;
esac
