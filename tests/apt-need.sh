#!/bin/bash
# tests/apt-need.sh: sourced by the two installers (install-build-deps.sh,
# install-test-deps.sh). Installs Debian packages that are missing, says
# which, and turns every failure into one line naming what failed and what
# to do. Nothing here can end a script under `set -e` by a query that is
# allowed to fail (a package dpkg has never heard of is simply missing).
#
#   . tests/apt-need.sh
#   NEED_WHO=install-build-deps
#   need_root
#   need_packages clang make ...      # installs the missing ones
#   need_tools clang make ...         # each must be on PATH afterwards

NEED_WHO=${NEED_WHO:-install}
# apt's own output goes here; its tail is shown when apt fails.
NEED_LOG=${NEED_LOG:-$(mktemp "${TMPDIR:-/tmp}/netatopd-apt.XXXXXX")}
trap 'rm -f -- "$NEED_LOG"' EXIT

need_log() { printf '%s: %s\n' "$NEED_WHO" "$*" >&2; }

# need_fail WHAT TODO: the one line, after the tail of apt's output.
need_fail() {
    if [ -s "$NEED_LOG" ]; then
        tail -n 15 -- "$NEED_LOG" | sed 's/^/    /' >&2
    fi
    need_log "ERROR: $1: $2"
    exit 1
}

need_root() {
    [ "$(id -u)" -eq 0 ] ||
        need_fail "not root" "run it as root (it installs Debian packages; netatopd also needs root to load BPF)"
    command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
        need_fail "no apt-get or dpkg-query" "this installer is for Debian 12 or similar; install the packages it lists by hand"
}

# The installed version of package $1, or nothing (never fails).
installed_version() {
    local out
    out=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || out=
    case $out in
    'install ok installed '*) printf '%s\n' "${out#install ok installed }" ;;
    esac
}

# The packages of "$@" that are not installed, one a line.
missing_packages() {
    local p
    for p in "$@"; do
        [ -n "$(installed_version "$p")" ] || printf '%s\n' "$p"
    done
}

# apt-get update, once per run of the installer.
NEED_UPDATED=
need_update() {
    [ -z "$NEED_UPDATED" ] || return 0
    need_log "apt-get update"
    env -u APT_CONFIG apt-get update -q >"$NEED_LOG" 2>&1 ||
        need_fail "apt-get update failed" "check the network and the sources in /etc/apt, then run it again"
    NEED_UPDATED=1
}

# need_packages PKG...: installs those missing, printing their names, with
# the machine's own apt configuration (never a private one in APT_CONFIG,
# whose dpkg status is not the machine's).
need_packages() {
    local -a missing
    mapfile -t missing < <(missing_packages "$@")
    [ ${#missing[@]} -gt 0 ] || return 0
    need_update
    need_log "installing ${missing[*]}"
    env -u APT_CONFIG DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >"$NEED_LOG" 2>&1 ||
        need_fail "apt-get install ${missing[*]} failed" \
            "read apt's message above, fix it (dpkg --configure -a, free disk space, the network) and run it again"
}

# need_tools TOOL...: each must now be on PATH.
need_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || need_fail "$t not found after installing" \
            "install the Debian package that has it (apt-file search bin/$t) and run it again"
    done
}
