#!/bin/bash
# tests/atop-setup.sh DIR
#
# Installs a private copy of Debian 13 (trixie)'s atop (2.11.x, the first
# Debian atop with the netatop-bpf client) into DIR on a Debian 12 machine,
# without touching any installed package:
#
#   1. sets up a private apt configuration (tests/debian-apt.sh, in
#      DIR/apt or $NETATOPD_APT_DIR) with a `trixie` suite taken from the
#      URIs and keyring of the machine's own Debian source; nothing is
#      written under /etc/apt (the files earlier versions wrote there,
#      recognised by their first line, are removed);
#   2. `apt-get download`s atop and the trixie libraries it needs into a cache
#      (DIR/debs, or $ATOP_SETUP_CACHE) and unpacks them with `dpkg -x` into
#      DIR/root;
#   3. writes DIR/atop, a wrapper that starts DIR/root/usr/bin/atop through
#      trixie's own dynamic loader with --library-path pointing into DIR/root;
#   4. checks that `DIR/atop -V` reports version 2.11.x.
#
# Idempotent: if DIR/atop already reports 2.11.x it exits 0 at once. Runs
# non-interactively as root. Concurrent runs are serialised with a lock, so
# parallel tests may all call it. Progress goes to stderr as "atop-setup: ...".

set -euo pipefail
# shellcheck source=tests/loud.sh
. "$(dirname -- "$0")/loud.sh"

readonly SUITE=trixie
readonly WANT_VERSION_RE='^2\.11\.'
# atop and the libraries its trixie build links against (checked below with
# the loader's --list; missing ones are reported or fetched automatically).
# libatomic1 comes in through glib 2.84.
readonly BASE_PKGS=(atop libc6 libglib2.0-0t64 libncursesw6 libtinfo6 libpcre2-8-0 zlib1g libatomic1)
# What earlier versions of this script wrote into /etc/apt.
readonly LEGACY_SOURCES=/etc/apt/sources.list.d/netatopd-${SUITE}.sources
readonly LEGACY_PIN=/etc/apt/preferences.d/netatopd-${SUITE}
HERE=$(cd -- "$(dirname -- "$0")" && pwd -P)
readonly HERE
readonly LOCK_FILE=/run/lock/netatopd-atop-setup.lock

log() { printf 'atop-setup: %s\n' "$*" >&2; }
die() { printf 'atop-setup: ERROR: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 DIR"
mkdir -p -- "$1" || die "cannot create $1"
DIR=$(cd -- "$1" && pwd -P)
readonly DIR
readonly WRAPPER=$DIR/atop
readonly ROOT=$DIR/root
CACHE=${ATOP_SETUP_CACHE:-$DIR/debs}
# The private apt configuration (tests/debian-apt.sh), shared with the other
# downloads of the tests.
APT_DIR=${NETATOPD_APT_DIR:-$DIR/apt}

# Prints the version reported by "$1 -V" if it is 2.11.x, fails otherwise.
atop_version_ok() {
    local out ver
    [ -x "$1" ] || return 1
    out=$(timeout 20 "$1" -V 2>&1 </dev/null) || true
    ver=$(printf '%s\n' "$out" | sed -n 's/^Version:[[:space:]]*\([0-9][0-9.]*\).*/\1/p' | head -n1)
    [[ $ver =~ $WANT_VERSION_RE ]] || return 1
    printf '%s\n' "$ver"
}

# ---- earlier versions' apt files ----------------------------------------------
# Earlier versions of this script added a trixie suite and a pin to the
# machine's own /etc/apt; remove exactly those files (recognised by their
# first line), nothing else.
for f in "$LEGACY_SOURCES" "$LEGACY_PIN"; do
    if [ -f "$f" ] && head -n1 -- "$f" | grep -q '^# Added by netatopd tests/atop-setup\.sh'; then
        rm -f -- "$f"
        log "removed $f, left by an earlier version of this script"
    fi
done

# ---- fast path --------------------------------------------------------------
if ver=$(atop_version_ok "$WRAPPER"); then
    log "atop $ver already set up in $DIR"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (it downloads packages with apt)"
for tool in apt-get apt-cache dpkg dpkg-deb flock timeout; do
    command -v "$tool" >/dev/null || die "required tool '$tool' not found"
done

mkdir -p -- "${LOCK_FILE%/*}"
exec 9>"$LOCK_FILE"
flock 9
# Another run may have finished the work while we waited for the lock.
if ver=$(atop_version_ok "$WRAPPER"); then
    log "atop $ver already set up in $DIR"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -o APT::Sandbox::User=root -o DPkg::Lock::Timeout=300)

# ---- 1. the trixie suite, in a private apt configuration ---------------------
. "$HERE/debian-apt.sh"
debian_apt_init "$APT_DIR" "$SUITE"
debian_apt_update
apt-cache show "atop/$SUITE" >/dev/null 2>&1 ||
    die "the private apt configuration ($APT_DIR) knows no atop/$SUITE"

# ---- 2. download and unpack -------------------------------------------------
mkdir -p -- "$CACHE"
CACHE=$(cd -- "$CACHE" && pwd -P)

# Downloads the trixie version of every package given into $CACHE, except
# those whose .deb is already there (checked by size and SHA256 from the
# package index), and prints the .deb paths, one a line. One apt-cache and at
# most one apt-get call: each apt call re-reads all package lists.
fetch_debs() {
    local info rec deb
    local -a want=() debs=() get=()
    for rec in "$@"; do want+=("$rec/$SUITE"); done
    info=$(apt-cache show --no-all-versions "${want[@]}" 2>&1) ||
        die "apt-cache show ${want[*]} failed: $(printf '%s\n' "$info" | grep -E '^[EW]:' | head -n3)"
    # One "package version arch size sha256" line per record.
    while read -r pkg ver arch size sha; do
        # apt-get download names the file package_version_arch.deb with the
        # epoch colon escaped as %3a.
        deb=$CACHE/${pkg}_${ver//:/%3a}_${arch}.deb
        if [ -f "$deb" ] && [ "$(stat -c %s "$deb")" = "$size" ] &&
            [ "$(sha256sum <"$deb" | cut -d' ' -f1)" = "$sha" ]; then
            log "cached $(basename -- "$deb")"
        else
            rm -f -- "$deb"
            get+=("$pkg/$SUITE")
        fi
        debs+=("$deb")
    done < <(printf '%s\n' "$info" | awk '
        /^Package: /      { p = $2 }
        /^Version: /      { v = $2 }
        /^Architecture: / { a = $2 }
        /^Size: /         { z = $2 }
        /^SHA256: /       { h = $2 }
        /^$/ { if (p != "") print p, v, a, z, h; p = v = a = z = h = "" }
        END  { if (p != "") print p, v, a, z, h }')
    [ ${#debs[@]} -eq $# ] || die "apt knows only ${#debs[@]} of the $# packages $*"
    if [ ${#get[@]} -gt 0 ]; then
        log "downloading ${get[*]}"
        (cd -- "$CACHE" && apt-get "${APT_OPTS[@]}" download "${get[@]}" >&2) ||
            die "apt-get download ${get[*]} failed"
    fi
    for deb in "${debs[@]}"; do
        [ -f "$deb" ] || die "apt-get download left no $deb"
        printf '%s\n' "$deb"
    done
}

arch=$(dpkg --print-architecture)
case $arch in
    amd64) triplet=x86_64-linux-gnu ;;
    arm64) triplet=aarch64-linux-gnu ;;
    i386) triplet=i386-linux-gnu ;;
    *) triplet=$(uname -m)-linux-gnu ;;
esac

declare -a PKGS=("${BASE_PKGS[@]}")
declare -A HAVE=()
for p in "${PKGS[@]}"; do HAVE[$p]=1; done

# Unpacks all packages of PKGS into a fresh DIR/root (atomically replaced).
unpack_all() {
    local tmp=$DIR/.root.tmp.$$ deb p
    rm -rf -- "$tmp"
    mkdir -p -- "$tmp"
    local -a debs=()
    mapfile -t debs < <(fetch_debs "${PKGS[@]}"; echo "rc=$?")
    [ "${debs[-1]}" = rc=0 ] || exit 1
    unset 'debs[-1]'
    for deb in "${debs[@]}"; do
        dpkg -x "$deb" "$tmp" || die "dpkg -x $deb failed"
    done
    rm -rf -- "$ROOT"
    mv -- "$tmp" "$ROOT"
    log "unpacked ${#PKGS[@]} packages into $ROOT"
}

# Directories of DIR/root holding shared libraries, the multiarch one first.
lib_path() {
    local d out=""
    for d in "$ROOT/usr/lib/$triplet" "$ROOT/lib/$triplet" "$ROOT/usr/lib" "$ROOT/lib"; do
        [ -d "$d" ] || continue
        compgen -G "$d/*.so*" >/dev/null || continue
        out=${out:+$out:}$d
    done
    printf '%s\n' "$out"
}

find_loader() {
    local l
    for l in "$ROOT/usr/lib/$triplet"/ld-linux*.so.* "$ROOT/lib/$triplet"/ld-linux*.so.* \
        "$ROOT/usr/lib64"/ld-linux*.so.* "$ROOT/lib64"/ld-linux*.so.*; do
        [ -f "$l" ] && { printf '%s\n' "$l"; return 0; }
    done
    return 1
}

# Lists the libraries atop needs that are missing from DIR/root: one line per
# library, "NAME not found" or "NAME HOSTPATH" when it would be taken from the
# host (outside DIR/root), which must not happen.
missing_libs() {
    local loader=$1 libpath=$2
    "$loader" --library-path "$libpath" --list "$ROOT/usr/bin/atop" 2>&1 |
        awk -v root="$ROOT/" '
            /=> not found/ { print $1, "not-found"; next }
            / => / {
                # The path may have spaces: all between "=> " and " (0x...)".
                path = $0
                sub(/^[^=]*=> /, "", path)
                sub(/ \(0x[0-9a-f]*\)$/, "", path)
                if (index(path, root) != 1) print $1, path
            }
        '
}

# Host package owning a file, for mapping a host library to its trixie package.
# Tries the path as given, resolved, and with/without /usr (usrmerge: dpkg
# knows /usr/lib/... while the loader reports /lib/...).
host_pkg_of() {
    local p real out
    real=$(readlink -f -- "$1" || true)
    for p in "$1" "$real" "/usr$1" "${1#/usr}"; do
        [ -n "$p" ] || continue
        out=$(dpkg -S "$p" 2>/dev/null | head -n1 | sed 's/:.*//; s/,.*//') || true
        [ -n "$out" ] && { printf '%s\n' "$out"; return 0; }
    done
    return 0
}

for round in 1 2 3 4 5; do
    unpack_all
    [ -x "$ROOT/usr/bin/atop" ] || die "no usr/bin/atop in the atop package"
    LOADER=$(find_loader) || die "no ld-linux loader found in $ROOT (libc6/$SUITE unpacked?)"
    LIBPATH=$(lib_path)
    missing=$(missing_libs "$LOADER" "$LIBPATH")
    [ -z "$missing" ] && break
    added=0
    while read -r lib where; do
        [ -n "$lib" ] || continue
        pkg=""
        if [ "$where" != not-found ]; then
            pkg=$(host_pkg_of "$where")
            [ -n "$pkg" ] || pkg=$(host_pkg_of "$(readlink -f "$where")")
        fi
        cand=""
        for c in "${pkg:+$pkg}" "${pkg:+${pkg}t64}"; do
            [ -n "$c" ] || continue
            if apt-cache show --no-all-versions "$c/$SUITE" >/dev/null 2>&1; then cand=$c; break; fi
        done
        if [ -z "$cand" ]; then
            die "atop needs $lib ($where) and no $SUITE package providing it is known; add it to BASE_PKGS"
        fi
        if [ -z "${HAVE[$cand]:-}" ]; then
            log "atop also needs $lib: adding $cand/$SUITE"
            PKGS+=("$cand"); HAVE[$cand]=1; added=1
        fi
    done <<<"$missing"
    [ "$added" = 1 ] || die "atop still lacks libraries after unpacking: $missing"
done
[ -z "$missing" ] || die "could not resolve atop's libraries: $missing"
log "all of atop's libraries resolve inside $ROOT"

# ---- 3. the wrapper ---------------------------------------------------------
{
    printf '#!/bin/sh\n'
    printf '# Generated by netatopd tests/atop-setup.sh: trixie atop run with its own\n'
    printf '# trixie glibc and libraries from %s.\n' "$ROOT"
    printf 'exec %q --library-path %q %q "$@"\n' "$LOADER" "$LIBPATH" "$ROOT/usr/bin/atop"
} >"$WRAPPER.tmp"
# %q may produce bash-only $'...' quoting for odd characters; use bash then.
if grep -q "\\$'" "$WRAPPER.tmp"; then sed -i '1s|.*|#!/bin/bash|' "$WRAPPER.tmp"; fi
chmod 755 "$WRAPPER.tmp"
mv -f -- "$WRAPPER.tmp" "$WRAPPER"
log "wrote $WRAPPER"

# ---- 4. verify --------------------------------------------------------------
if ver=$(atop_version_ok "$WRAPPER"); then
    log "OK: $WRAPPER runs atop $ver"
else
    out=$(timeout 20 "$WRAPPER" -V 2>&1 </dev/null) || true
    die "$WRAPPER -V does not report a 2.11.x version; it printed: ${out:-<nothing>}"
fi
