#!/bin/bash
# tests/fresh-machine.sh DIR: the README's commands on a fresh Debian 12
# (run by `make test`, as root).
#
# A bare Debian 12 (debootstrap --variant=minbase, plus make to type the
# README's command with), cached in DIR/bookworm-minbase and copied afresh
# for every run, gets only the host's Rust toolchain (bind-mounted
# read-only, as the project's machines ship it), the site's certificate
# authorities, if the machine has any, and a copy of this checkout
# (its committed files and uncommitted changes) in "/tmp/fresh clone",
# a path with a space in it. There, in a container (systemd-nspawn, the
# host's network), as root:
#   1. `make build` builds from nothing, prints what it installs, and
#      installs none of the test-only packages;
#   2. `make run` serves: a generator's known traffic reads back exactly
#      through netatopctl, then the daemon is stopped;
#   3. tests/install-test-deps.sh installs the rest from that state, and
#      prints what it installs.
# apt's downloaded archives are kept in DIR/apt-archives, so a second run
# downloads nothing again (crates are fetched each time). Prints the time
# each step took; leaves nothing running or mounted.
set -euo pipefail

log() { printf 'fresh-machine: %s\n' "$*" >&2; }
fail() { printf 'fresh-machine: FAIL: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || { log "usage: $0 DIR"; exit 2; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (debootstrap, systemd-nspawn)"
for t in debootstrap systemd-nspawn git rustc; do
    command -v "$t" >/dev/null || fail "$t is missing (make test installs what the tests need)"
done
REPO=$(cd -- "$(dirname -- "$0")/.." && pwd -P)
mkdir -p -- "$1"
DIR=$(cd -- "$1" && pwd -P)

exec 8>"$DIR/.fresh.lock"
flock 8

# The bare Debian 12, made once.
bash "$REPO/tests/rootfs.sh" "$DIR" bookworm-minbase || fail "cannot make the bare Debian 12"
base=$DIR/bookworm-minbase

root=$DIR/run
bpffs=$DIR/bpffs
nspawn_run=/run/systemd/nspawn
created_run=
[ -e "$nspawn_run" ] || created_run=1
cleanup() {
    mountpoint -q -- "$bpffs" && umount -l -- "$bpffs"
    rm -rf -- "$root"
    [ -z "$created_run" ] || rm -rf -- "$nspawn_run"
}
trap cleanup EXIT
rm -rf -- "$root"
cp -a -- "$base" "$root"

# The site's own certificate authorities, as this machine's provisioning
# puts them: where the network's HTTPS is inspected, cargo reaches the
# crates registry only with them. ca-certificates, which the build
# installs, adds them to the trust store.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    mkdir -p -- "$root/usr/local/share/ca-certificates"
    cp -- /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi

# The checkout as it stands: its commits, plus what is changed and not yet
# committed, plus new files git does not ignore.
clone="$root/tmp/fresh clone"
git clone -q --no-hardlinks -- "$REPO" "$clone"
git -C "$REPO" diff --binary HEAD >"$DIR/changes.diff"
if [ -s "$DIR/changes.diff" ]; then
    git -C "$clone" apply --whitespace=nowarn "$DIR/changes.diff" || fail "cannot apply the uncommitted changes to the copy"
fi
git -C "$REPO" ls-files -z --others --exclude-standard |
    (cd -- "$REPO" && xargs -0r cp --parents -a -t "$clone") || fail "cannot copy the new files"

# The Rust toolchain, as rustup installed it on the host.
sysroot=$(rustc --print sysroot)
[ -x "$sysroot/bin/cargo" ] || fail "no cargo in the toolchain $sysroot"
mkdir -p -- "$DIR/apt-archives/partial" "$bpffs"
mount -t bpf -o mode=0700 bpf "$bpffs" || fail "cannot mount a bpffs on $bpffs"

# The steps, run inside as root; each prints its own output into the log.
cat >"$root/root/steps.sh" <<'EOF'
#!/bin/sh
# Runs as PID 1's child in the container: $1 is the step.
set -u
cd "/tmp/fresh clone" || exit 1
installed() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 == "ii" { print $2 }' | sort; }
case $1 in
build)
    installed >/root/before
    make build || exit 1
    installed >/root/after
    ;;
run)
    make run >/root/run.log 2>&1 &
    i=0
    until [ -S /run/netatop-bpf-socket ] && ./target/x86_64-unknown-linux-gnu/release/netatopctl dump --raw >/root/dump 2>/root/dump.err; do
        i=$((i + 1))
        [ $i -lt 600 ] || { echo "netatopd did not serve within 60 s"; cat /root/run.log; exit 1; }
        sleep 0.1
    done
    # Known traffic, read back exactly (by name: the container's pids are
    # not the ones netatopd reports).
    ./target/x86_64-unknown-linux-gnu/release/netatop-gen udp4 --count 50 --size 300 --name fresh-gen >/root/gen.json || exit 1
    ./target/x86_64-unknown-linux-gnu/release/netatopctl dump --exited --json --raw --command fresh-gen >/root/gen.dump || exit 1
    for k in tcp_send_packets tcp_send_bytes tcp_recv_packets tcp_recv_bytes \
        udp_send_packets udp_send_bytes udp_recv_packets udp_recv_bytes; do
        want=$(grep -o "\"$k\": *[0-9]*" /root/gen.json | grep -o '[0-9]*$')
        got=$(grep -o "\"$k\": *[0-9]*" /root/gen.dump | grep -o '[0-9]*$')
        [ -n "$want" ] && [ "$want" = "$got" ] || { echo "$k: netatop-gen says $want, netatopctl $got"; exit 1; }
    done
    pid=$(cat /run/netatopd/netatopd.pid)
    kill -TERM "$pid"
    wait
    cat /root/run.log
    grep -q "started: .*socket /run/netatop-bpf-socket" /root/run.log && grep -q "programs unloaded" /root/run.log || exit 1
    ;;
test-deps)
    bash tests/install-test-deps.sh || exit 1
    installed >/root/after-tests
    ;;
esac
EOF
chmod +x "$root/root/steps.sh"

# step NAME: runs steps.sh NAME in the container, its output in
# $DIR/NAME.log; prints the seconds it took.
step() {
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    SYSTEMD_NSPAWN_TMPFS_TMP=0 systemd-nspawn --quiet --register=no --keep-unit \
        --directory="$root" --resolv-conf=copy-host --timezone=off \
        --capability=CAP_BPF,CAP_PERFMON --system-call-filter="bpf perf_event_open" \
        --bind-ro="$sysroot" --bind="$DIR/apt-archives:/var/cache/apt/archives" \
        --bind="$bpffs:/sys/fs/bpf" \
        --setenv=PATH="$sysroot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --setenv=HOME=/root --setenv=CARGO_HOME=/root/.cargo \
        /root/steps.sh "$1" >"$DIR/$1.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    secs=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
    return $rc
}

# The packages only the tests use, as install-test-deps.sh lists them.
test_only=$(bash "$REPO/tests/install-test-deps.sh" --list)

step build || { tail -n 30 "$DIR/build.log" >&2; fail "make build failed on a fresh Debian 12 (log: $DIR/build.log)"; }
log "make build: built from nothing in ${secs} s"
grep -E '^install-build-deps: installing ' "$DIR/build.log" >&2 ||
    fail "make build did not say what it installs"
new=$(comm -13 "$root/root/before" "$root/root/after")
for p in $test_only; do
    if grep -qx -- "$p" <<<"$new"; then
        fail "make build installed $p, which only the tests use"
    fi
done
log "make build installed none of the test-only packages"
[ -x "$clone/target/x86_64-unknown-linux-gnu/release/netatopd" ] && [ -x "$clone/target/x86_64-unknown-linux-gnu/release/netatopctl" ] ||
    fail "make build left no target/x86_64-unknown-linux-gnu/release/netatopd and netatopctl"

step run || { tail -n 30 "$DIR/run.log" >&2; fail "make run did not serve (log: $DIR/run.log)"; }
log "make run: served in ${secs} s (build up to date); a generator's traffic read back exactly"

step test-deps || { tail -n 30 "$DIR/test-deps.log" >&2; fail "install-test-deps.sh failed after make build (log: $DIR/test-deps.log)"; }
log "install-test-deps.sh: done in ${secs} s"
grep -E '^install-test-deps: installing ' "$DIR/test-deps.log" >&2 ||
    fail "install-test-deps.sh did not say what it installs"
for p in $test_only; do
    grep -qx -- "$p" "$root/root/after-tests" || fail "install-test-deps.sh did not install $p"
done
log "all passed"
