#!/bin/bash
# tests/package.sh [ARCH]: builds the Debian package and checks it, then
# checks `make install` and `make uninstall` (run by `make test`, as root).
# With ARCH arm64 (on an amd64 machine), the arm64 package of the aarch64
# build: steps 1 and 2 only, with nothing of it run here (its binaries
# run in the arm64 guests of tests/tests/kernels.rs); and that the arm64
# image (`make image TARGET=aarch64-unknown-linux-gnu`) is one.
#
#   1. `make deb`; the package's file list (`dpkg -c`), control fields and
#      maintainer scripts are what they must be;
#   2. lintian finds nothing (every tag of every level; the overrides in
#      debian/lintian-overrides are justified there);
#   3. the package installs with dpkg (the service is enabled; started only
#      where systemd runs, which it does not here), the installed binaries
#      and man pages work, and a purge removes every file and the enablement;
#   4. `make install` with PREFIX and DESTDIR puts every file in its place,
#      and `make uninstall` removes all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { printf 'package.sh: FAIL: %s\n' "$*" >&2; exit 1; }
log() { printf 'package.sh: %s\n' "$*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || fail "no version in Cargo.toml"
native=$(dpkg --print-architecture)
arch=${1:-$native}
case $arch in
"$native") target= ;;
arm64) target=TARGET=aarch64-unknown-linux-gnu ;;
*) fail "no package for architecture $arch here (amd64, or arm64 cross-built)" ;;
esac
# What `file` says of the package's binaries.
case $arch in
amd64) machine='x86-64' ;;
arm64) machine='ARM aarch64' ;;
esac
deb=target/debian/netatopd_${version}-1_${arch}.deb

# 2. lintian: nothing at any level (stderr has its note about running as root).
lint_clean() {
    local lint
    lint=$(lintian --pedantic --info --display-experimental \
        --fail-on error,warning,info,pedantic,experimental "$deb" 2>/dev/null) ||
        { echo "$lint" >&2; fail "lintian found problems in the $arch package"; }
    [ -z "$lint" ] || { echo "$lint" >&2; fail "lintian reported tags for the $arch package"; }
}

log "building $deb"
rm -f "$deb"
make -s deb $target >/dev/null
[ -f "$deb" ] || fail "make deb wrote no $deb"

# 1. Contents: exactly these files, with these modes.
want_files=$(cat <<EOF
-rw-r--r-- ./etc/default/netatopd
-rw-r--r-- ./etc/default/netatopd-metrics
-rw-r--r-- ./usr/lib/systemd/system/netatopd-metrics.service
-rw-r--r-- ./usr/lib/systemd/system/netatopd.service
-rw-r--r-- ./usr/share/bash-completion/completions/netatopctl
-rw-r--r-- ./usr/share/bash-completion/completions/netatopd
-rw-r--r-- ./usr/share/doc/netatopd/README.md
-rw-r--r-- ./usr/share/doc/netatopd/changelog.Debian.gz
-rw-r--r-- ./usr/share/doc/netatopd/copyright
-rw-r--r-- ./usr/share/fish/vendor_completions.d/netatopctl.fish
-rw-r--r-- ./usr/share/fish/vendor_completions.d/netatopd.fish
-rw-r--r-- ./usr/share/lintian/overrides/netatopd
-rw-r--r-- ./usr/share/man/man5/netatop-protocol.5.gz
-rw-r--r-- ./usr/share/man/man8/netatopctl.8.gz
-rw-r--r-- ./usr/share/man/man8/netatopd.8.gz
-rw-r--r-- ./usr/share/zsh/vendor-completions/_netatopctl
-rw-r--r-- ./usr/share/zsh/vendor-completions/_netatopd
-rwxr-xr-x ./usr/bin/netatopctl
-rwxr-xr-x ./usr/sbin/netatopd
EOF
)
got_files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $1, $6}' | sort)
if [ "$got_files" != "$(sort <<<"$want_files")" ]; then
    diff <(sort <<<"$want_files") <(echo "$got_files") >&2 || true
    fail "file list of $deb (dpkg -c) differs: < wanted, > found"
fi
dpkg-deb -c "$deb" | awk '{print $2}' | grep -qvxE '0/0|root/root' && fail "files not owned by root"

# Control fields.
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = netatopd ] || fail "Package: $(field Package)"
[ "$(field Version)" = "${version}-1" ] || fail "Version: $(field Version)"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture: $(field Architecture)"
[ "$(field Section)" = net ] || fail "Section: $(field Section)"
[ "$(field Priority)" = optional ] || fail "Priority: $(field Priority)"
[ -z "$(field Depends)" ] || fail "Depends: $(field Depends) (the binaries are static: none)"
[ "$(field Conflicts)" = netatop-bpf ] || fail "Conflicts: $(field Conflicts)"
[[ "$(field Maintainer)" =~ ^.+\ \<.+@.+\>$ ]] || fail "Maintainer: $(field Maintainer)"
grep -q 'atop -K' <<<"$(field Description)" || fail "Description does not say what it is for"
[ "$(dpkg-deb -I "$deb" conffiles | xargs)" = "/etc/default/netatopd /etc/default/netatopd-metrics" ] ||
    fail "conffiles: $(dpkg-deb -I "$deb" conffiles)"

# Maintainer scripts: enable and start on install (start only where systemd
# runs), stop on removal, forget the enablement on purge.
ctl=$(mktemp -d)
pkgroot=$(mktemp -d)
trap 'rm -rf "$ctl" "$pkgroot"' EXIT
dpkg-deb -e "$deb" "$ctl"
grep -q 'deb-systemd-helper enable netatopd.service' "$ctl/postinst" || fail "postinst does not enable the unit"
grep -q 'if \[ -d /run/systemd/system \]' "$ctl/postinst" || fail "postinst does not check for systemd"
grep -q 'deb-systemd-invoke $_dh_action netatopd.service' "$ctl/postinst" || fail "postinst does not start the unit"
grep -q 'deb-systemd-invoke stop netatopd.service' "$ctl/prerm" || fail "prerm does not stop the unit"
grep -q 'deb-systemd-helper purge netatopd.service' "$ctl/postrm" || fail "postrm does not disable the unit on purge"
# The Prometheus endpoint's unit: installed, stopped on removal, never
# enabled by the package.
grep -q 'deb-systemd-helper update-state netatopd-metrics.service' "$ctl/postinst" ||
    fail "postinst does not register netatopd-metrics.service"
grep -q 'deb-systemd-invoke $_dh_action netatopd-metrics.service' "$ctl/postinst" &&
    fail "postinst starts netatopd-metrics.service (it is off until the admin enables it)"
# The group netatop is made by the unit (ExecStartPre), where systemd runs
# it: the scripts never touch /etc/group.
grep -q 'sysusers' "$ctl/postinst" && fail "postinst runs systemd-sysusers"
grep -q 'deb-systemd-invoke stop netatopd-metrics.service' "$ctl/prerm" || fail "prerm does not stop netatopd-metrics"
for s in postinst prerm postrm; do sh -n "$ctl/$s" || fail "$s is not valid sh"; done

# The unit in the package is the repository's.
dpkg-deb -x "$deb" "$pkgroot"
for unit in netatopd netatopd-metrics; do
    src=netatopd/systemd/$unit.service
    [ "$unit" = netatopd ] || src=netatopd/systemd/metrics/$unit.service
    cmp -s "$pkgroot/usr/lib/systemd/system/$unit.service" "$src" ||
        fail "the packaged unit differs from $src"
done
for b in usr/sbin/netatopd usr/bin/netatopctl; do
    kind=$(file -b "$pkgroot/$b")
    grep -qE 'statically linked|static-pie linked' <<<"$kind" && grep -q "$machine" <<<"$kind" ||
        fail "the packaged /$b is not a static $arch binary: $kind"
done
if [ "$arch" != "$native" ]; then
    lint_clean
    log "the $arch package: contents, control fields, maintainer scripts, static $arch binaries; lintian: clean"
    # And the image of the same build (`make image TARGET=...`): every
    # platform it names is this one.
    img=target/netatopd-image-$arch.tar
    [ -f "$img" ] || fail "no $img (make image $target)"
    platforms=$(tar -xOf "$img" --wildcards 'blobs/sha256/*' | grep -ao '"architecture":"[a-z0-9]*"' | sort -u)
    [ "$platforms" = "\"architecture\":\"$arch\"" ] || fail "$img is not an $arch image: $platforms"
    log "$img: an $arch image"
    exit 0
fi
"$pkgroot/usr/sbin/netatopd" --version | head -1 | grep -Eq "^netatopd ${version//./\\.} \(git [0-9a-f]{12}\)$" ||
    fail "packaged netatopd --version: $("$pkgroot/usr/sbin/netatopd" --version | head -1)"
log "contents, control fields and maintainer scripts as expected"

# The static netatopd looks group names up in /etc/group itself (a static
# program cannot load the C library's name-service modules): a name that
# is there resolves, one that is not is refused in one line, never a crash.
# Both stop at the pid file, in a directory that cannot be made, before
# anything is loaded.
group=$(awk -F: 'NF >= 3 { print $1; exit }' /etc/group)
static=$pkgroot/usr/sbin/netatopd
rc=0
out=$("$static" --socket-group "$group" --pid-file /proc/nonexistent/netatopd.pid 2>&1) || rc=$?
[ "$rc" = 1 ] && grep -q 'cannot create /proc/nonexistent' <<<"$out" ||
    fail "packaged netatopd --socket-group $group (in /etc/group): status $rc: $out"
rc=0
out=$("$static" --socket-group no-such-group-here --pid-file /proc/nonexistent/netatopd.pid 2>&1) || rc=$?
[ "$rc" = 1 ] && grep -q -- '--socket-group: no group named "no-such-group-here" in /etc/group' <<<"$out" ||
    fail "packaged netatopd --socket-group no-such-group-here: status $rc: $out"
log "the static netatopd resolves --socket-group from /etc/group and refuses an unknown one"

lint_clean
log "lintian: clean"

# 3. dpkg installs it, the service gets enabled, a purge removes everything.
if dpkg-query -W -f='${Status}' netatopd 2>/dev/null | grep -q installed; then
    fail "a netatopd package is already installed here; this test installs and purges its own"
fi
wants=/etc/systemd/system/multi-user.target.wants/netatopd.service
purge() { dpkg --purge netatopd >/dev/null 2>&1 || true; }
trap 'purge; rm -rf "$ctl" "$pkgroot"' EXIT
dpkg -i "$deb" >/dev/null || fail "dpkg -i failed"
dpkg-query -W -f='${Status}' netatopd | grep -qx 'install ok installed' || fail "not installed after dpkg -i"
[ -L "$wants" ] || fail "the service is not enabled after install ($wants missing)"
/usr/sbin/netatopd --version | grep -q 'verdict:' || fail "installed netatopd --version"
/usr/bin/netatopctl --version | head -1 | grep -q "^netatopctl $version" || fail "installed netatopctl --version"
for page in netatopd netatopctl netatop-protocol; do
    man -w "$page" >/dev/null 2>&1 || fail "man -w $page finds no installed page"
    MANPAGER=cat MANWIDTH=80 man "$page" 2>/dev/null | grep -q '^NAME' || fail "man $page does not render"
done
installed=$(dpkg -L netatopd | while read -r f; do [ -d "$f" ] || echo "$f"; done)
dpkg --purge netatopd >/dev/null || fail "dpkg --purge failed"
for f in $installed; do [ ! -e "$f" ] || fail "$f left after purge"; done
[ ! -e "$wants" ] && [ ! -L "$wants" ] || fail "$wants left after purge"
log "dpkg -i enables the service; dpkg --purge removes every file and the enablement"

# 4. make install / make uninstall with PREFIX and DESTDIR.
stage=$(mktemp -d)
trap 'purge; rm -rf "$ctl" "$pkgroot" "$stage"' EXIT
make -s install PREFIX=/usr/local DESTDIR="$stage" >/dev/null
want_installed=$(cat <<EOF
/etc/default/netatopd
/etc/default/netatopd-metrics
/usr/local/bin/netatopctl
/usr/local/lib/systemd/system/netatopd-metrics.service
/usr/local/lib/systemd/system/netatopd.service
/usr/local/sbin/netatopd
/usr/local/share/bash-completion/completions/netatopctl
/usr/local/share/bash-completion/completions/netatopd
/usr/local/share/fish/vendor_completions.d/netatopctl.fish
/usr/local/share/fish/vendor_completions.d/netatopd.fish
/usr/local/share/man/man5/netatop-protocol.5
/usr/local/share/man/man8/netatopctl.8
/usr/local/share/man/man8/netatopd.8
/usr/local/share/zsh/vendor-completions/_netatopctl
/usr/local/share/zsh/vendor-completions/_netatopd
EOF
)
got_installed=$(cd "$stage" && find . -type f | sed 's|^\.||' | sort)
if [ "$got_installed" != "$want_installed" ]; then
    diff <(echo "$want_installed") <(echo "$got_installed") >&2 || true
    fail "make install: files differ: < wanted, > found"
fi
grep -qx 'ExecStart=/usr/local/sbin/netatopd $NETATOPD_OPTS' "$stage/usr/local/lib/systemd/system/netatopd.service" ||
    fail "make install: the unit does not start /usr/local/sbin/netatopd"
grep -qx 'ExecStart=/usr/local/bin/netatopctl serve $NETATOPD_METRICS_OPTS' \
    "$stage/usr/local/lib/systemd/system/netatopd-metrics.service" ||
    fail "make install: the metrics unit does not start /usr/local/bin/netatopctl"
for unit in netatopd netatopd-metrics; do
    systemd-analyze verify --man=no "$stage/usr/local/lib/systemd/system/$unit.service" 2>&1 |
        grep -v 'is not executable\|No such file' | grep . &&
        fail "systemd-analyze verify: the installed $unit.service has problems"
done
"$stage/usr/local/sbin/netatopd" --version | head -1 | grep -q "^netatopd $version" || fail "installed netatopd does not run"
grep -q 'complete -F _netatopctl' "$stage/usr/local/share/bash-completion/completions/netatopctl" ||
    fail "bash completion for netatopctl is not a completion script"
bash -n "$stage/usr/local/share/bash-completion/completions/netatopd" || fail "bash completion for netatopd does not parse"
# An admin's settings survive a reinstall; unchanged ones go with uninstall.
echo 'NETATOPD_OPTS="--keep-counting"' >"$stage/etc/default/netatopd"
make -s install PREFIX=/usr/local DESTDIR="$stage" >/dev/null
grep -q keep-counting "$stage/etc/default/netatopd" || fail "make install overwrote /etc/default/netatopd"
make -s uninstall PREFIX=/usr/local DESTDIR="$stage" >/dev/null
left=$(cd "$stage" && find . -type f | sed 's|^\.||')
[ "$left" = /etc/default/netatopd ] || fail "make uninstall left: $left"
cp netatopd/systemd/netatopd.default "$stage/etc/default/netatopd"
make -s uninstall PREFIX=/usr/local DESTDIR="$stage" >/dev/null
left=$(cd "$stage" && find . -type f)
[ -z "$left" ] || fail "make uninstall left: $left"
log "make install and make uninstall (PREFIX=/usr/local, DESTDIR) as expected"
log "all passed"
