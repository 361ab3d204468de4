#!/bin/bash
# tests/vm/package.sh: the Debian package under a real systemd (run by
# `make test` after tests/package.sh has built it).
#
# Boots Debian 11's userland (tests/rootfs.sh) on Debian 11's 5.10 kernel,
# Debian 12's on 6.1 and Debian 13's on 6.12 (tests/vm/kernels.sh), each
# with systemd as PID 1
# (tests/vm/run.sh, VM_SYSTEMD), and runs tests/vm/guest-package.sh there:
#   1. `apt install ./netatopd_*.deb`: enabled, started through READY=1,
#      netatopctl answers, a generator's traffic reads back exactly;
#      a transient service's traffic reads back exactly per unit
#      (`dump --by unit`), and its final totals come marked removed once
#      it stops; the Prometheus endpoint (netatopd-metrics.service) is
#      installed but not enabled, the sockets let its group in, and once
#      enabled it runs unprivileged and serves a unit's traffic exactly;
#   2. the sandbox: capabilities and filter as the unit says, no warning or
#      denial over a minute of traffic, queries and a 200-client flood,
#      `systemd-analyze security` recorded;
#   3. `systemctl restart` and an upgrade to a higher version keep the
#      counters (the package's default --keep-counting); without it, a
#      daemon adopts what was left counting, and its own restart starts
#      from zero;
#   4. the largest map sizes the options allow: active, and answering
#      (on 5.10 the maps count against the unit's locked-memory limit);
#      then `apt purge` leaves nothing: service, pins, socket, files;
#   5. (Debian 13, whose root file system has atop 2.11 as packaged) the
#      daily log written with -K: `atop -r` shows the generator's exact
#      counters.
# The guests' root file systems are not changed (an overlay takes their
# writes). Prints each check; fails if any failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { printf 'vm/package.sh: FAIL: %s\n' "$*" >&2; exit 1; }
log() { printf 'vm/package.sh: %s\n' "$*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
deb=target/debian/netatopd_${version}-1_${arch}.deb
[ -f "$deb" ] || fail "no $deb: run tests/package.sh (make test does)"
kernels=${NETATOPD_TEST_KERNELS:-target/kernels}
rootfs=${NETATOPD_TEST_ROOTFS:-target/rootfs}
# The release build's, static like the package's binaries: it runs on
# every guest's userland (Debian 11's glibc is older than this machine's).
gen=target/x86_64-unknown-linux-gnu/release/netatop-gen
[ -x "$gen" ] || fail "no $gen: make deb (tests/package.sh) builds it"

# An upgrade: the same package with a higher version.
work=target/vm/package
rm -rf "$work"
mkdir -p "$work"
dpkg-deb -R "$deb" "$work/unpacked"
sed -i "s/^Version: .*/Version: ${version}-2/" "$work/unpacked/DEBIAN/control"
upgrade=$work/netatopd_${version}-2_${arch}.deb
dpkg-deb -b --root-owner-group "$work/unpacked" "$upgrade" >/dev/null
rm -rf "$work/unpacked"

# Boots one guest (KERNEL:SUITE); its status goes to its run directory.
guest() {
    local kernel=${1%%:*} suite=${1#*:} run rc=0
    run=$work/$suite
    mkdir -p "$run/bin"
    cp "$deb" "$upgrade" "$run/"
    cp "$gen" "$run/bin/"
    cp tests/vm/guest-package.sh "$run/guest.sh"
    # 2 GiB: the largest map sizes' buckets take about 400 MiB.
    VM_SYSTEMD=$rootfs/$suite VM_RUN=$run VM_CACHE=$kernels VM_TIMEOUT=900 VM_MEM=2048 \
        bash tests/vm/run.sh "$kernel" /bin/true >"$run/console.log" 2>"$run/run.log" || rc=$?
    echo "$rc" >"$run/status"
}

# NETATOPD_VM_GUESTS="5.10:bullseye" runs only those. Two at a time: each
# guest's emulation takes one CPU.
guests=${NETATOPD_VM_GUESTS:-5.10:bullseye 6.1:bookworm 6.12:trixie}
for pair in $guests; do
    while [ "$(jobs -rp | wc -l)" -ge "${NETATOPD_VM_PARALLEL:-2}" ]; do wait -n || true; done
    log "Linux ${pair%%:*} with Debian ${pair#*:}'s userland and systemd: booting"
    guest "$pair" &
done
wait

status=0
for pair in $guests; do
    kernel=${pair%%:*}
    suite=${pair#*:}
    run=$work/$suite
    rc=$(cat "$run/status" 2>/dev/null || echo 126)
    log "Linux $kernel with Debian $suite's userland: $(tail -n1 "$run/run.log")"
    if [ -f "$run/out/results" ]; then
        sed 's/^/    /' "$run/out/results" >&2
    fi
    if [ "$rc" != 0 ] || grep -q '^FAIL' "$run/out/results" 2>/dev/null || [ ! -f "$run/out/results" ]; then
        log "Linux $kernel ($suite): failed (status $rc); the guest's log:"
        tail -n 40 "$run/out/guest.log" >&2 2>/dev/null || tail -n 40 "$run/console.log" >&2
        status=1
    fi
    if [ -f "$run/out/security" ]; then
        log "systemd-analyze security netatopd ($suite): $(grep 'Overall exposure level' "$run/out/security")"
    fi
done
[ "$status" = 0 ] || fail "the package failed under systemd (evidence in $work)"
log "all passed"
