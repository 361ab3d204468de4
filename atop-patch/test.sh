#!/bin/bash
# atop-patch/test.sh ATOP_SOURCE_DIR
#
# Runs the patch series end to end, as root, against real atop and the real
# netatopd. ATOP_SOURCE_DIR is a clean atop v2.13.0 source tree; it is not
# modified, because both builds happen in copies of it.
#
#   1. Builds atop from the tree as it is (unpatched) and with the series
#      applied (patched). Needs libncurses-dev, libglib2.0-dev and
#      zlib1g-dev.
#   2. Builds netatopd and netatop-gen (cargo), then starts netatopd on
#      /run/netatop-bpf-socket, with its own pin directory, pid file and
#      control socket.
#   3. Threads: a generator with 4 threads, each making a known number of
#      UDP round trips and then staying alive. `atop -K -P PRN` (patched)
#      must show each thread's exact counters and the process's sum.
#   4. PID reuse: a process sends and exits; a new process is steered onto
#      its pid (through ns_last_pid) and sends less. Patched atop must show
#      the new process's own counters. What unpatched atop shows is
#      reported, not asserted: it is the defect this series fixes.
#   5. Unpatched atop still gets exact process counters (TCP and UDP).
#   6. Raw logs: a log written by patched atop replays (`atop -r`) with
#      the generator's counters and the netatop flag set.
#   7. Whole records and no hang, against a stand-in service on the same
#      socket (netatopd stopped): one that sends each record in pieces with
#      pauses in between, and one that never answers. Patched atop must
#      read the split record exactly, and must finish despite the silent
#      service. What unpatched atop does is reported.
#
# Every process it starts, it stops by pid; netatopd unloads on SIGTERM.
set -euo pipefail

fail() { printf 'test.sh: FAIL: %s\n' "$*" >&2; exit 1; }
log() { printf 'test.sh: %s\n' "$*" >&2; }

[ $# -eq 1 ] || { echo "usage: $0 ATOP_SOURCE_DIR (a clean atop v2.13.0 tree)" >&2; exit 2; }
src=$(cd "$1" && pwd) || fail "no directory $1"
[ "$(id -u)" -eq 0 ] || fail "must run as root (netatopd loads BPF programs; atop -K reads its socket)"
grep -q 'ATOPVERS[[:space:]]*"2\.13\.0"' "$src/version.h" 2>/dev/null ||
    fail "$src is not an atop v2.13.0 tree (version.h)"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ ! -e /run/netatop-bpf-socket ] ||
    fail "/run/netatop-bpf-socket exists: stop the netatop service using it first"

work=$(mktemp -d /tmp/atop-patch-test.XXXXXX)
pids=()
netatopd_pid=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$netatopd_pid" ]; then
        kill "$netatopd_pid" 2>/dev/null || true
        wait "$netatopd_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# 1. Both builds of atop.
for variant in unpatched patched; do
    cp -a "$src" "$work/$variant"
    make -s -C "$work/$variant" clean >/dev/null 2>&1 || true
done
while read -r p; do
    [ -n "$p" ] || continue
    patch -p1 --batch --forward --quiet -d "$work/patched" <"$here/$p" || fail "$p does not apply"
    log "applied $p"
done <"$here/series"
for variant in unpatched patched; do
    make -s -C "$work/$variant" atop >"$work/$variant.build.log" 2>&1 ||
        { cat "$work/$variant.build.log" >&2; fail "building $variant atop"; }
    if grep -q 'warning:' "$work/$variant.build.log" && [ $variant = patched ]; then
        grep 'warning:' "$work/$variant.build.log" >&2
        fail "the patched build has warnings"
    fi
done
log "built atop $(sed -n 's/.*ATOPVERS[[:space:]]*"\(.*\)"/\1/p' "$src/version.h"), unpatched and patched"
patched=$work/patched/atop
unpatched=$work/unpatched/atop

# 2. netatopd and the generator.
(cd "$repo" && cargo build -q --workspace --bins) || fail "cargo build"
bin=$repo/target/debug
"$bin/netatopd" --foreground --control-socket "$work/control.sock" \
    --pin-dir /sys/fs/bpf/atop-patch-test --pid-file "$work/netatopd.pid" \
    2>"$work/netatopd.log" &
netatopd_pid=$!
for _ in $(seq 200); do
    [ -S /run/netatop-bpf-socket ] && [ -s "$work/netatopd.pid" ] && break
    kill -0 "$netatopd_pid" 2>/dev/null || { cat "$work/netatopd.log" >&2; fail "netatopd exited"; }
    sleep 0.05
done
[ -S /run/netatop-bpf-socket ] || fail "netatopd does not answer"
log "netatopd answering (pid $netatopd_pid)"

# A generator that stays alive (stdin is a pipe this script holds open) and
# prints its report; sets $gen_pid and $gen_report. With $want_pid set, the
# kernel's next pid is steered to it just before the fork (nothing else is
# forked in between).
n_gen=0
start_gen() {
    n_gen=$((n_gen + 1))
    local fifo=$work/gen$n_gen.in out=$work/gen$n_gen.json
    mkfifo "$fifo"
    exec {hold}<>"$fifo"
    [ -z "${want_pid:-}" ] || echo $((want_pid - 1)) >/proc/sys/kernel/ns_last_pid
    "$bin/netatop-gen" "$@" <&"$hold" >"$out" 2>>"$work/gen.log" &
    gen_pid=$!
    pids+=("$gen_pid")
    for _ in $(seq 400); do
        [ -s "$out" ] && break
        sleep 0.025
    done
    [ -s "$out" ] || fail "netatop-gen $* printed no report"
    gen_report=$out
}
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# The first sample of `atop -K -P PRN 1 2` (totals since each process
# started): "pid tgid isproc tcpsnd tcpssz tcprcv tcprsz udpsnd udpssz
# udprcv udprsz", one line per process and thread.
prn() {
    "$1" -K -P PRN 1 2 2>/dev/null | awk '
        $1 == "SEP" { exit }
        $1 == "PRN" { print $7, $21, $22, $11, $12, $13, $14, $15, $16, $17, $18 }'
}
counters() { json "$1" "' '.join(str(d[k]) for k in ['tcp_send_packets','tcp_send_bytes','tcp_recv_packets','tcp_recv_bytes','udp_send_packets','udp_send_bytes','udp_recv_packets','udp_recv_bytes'])"; }

# 3. Threads.
start_gen live-threads --linger --threads 4 --count 25 --size 300
pid=$gen_pid
out=$(prn "$patched")
sum=(0 0 0 0 0 0 0 0)
for i in 0 1 2 3; do
    tid=$(json "$gen_report" "d['threads'][$i]['tid']")
    want=$(json "$gen_report" "' '.join(str(d['threads'][$i][k]) for k in ['tcp_send_packets','tcp_send_bytes','tcp_recv_packets','tcp_recv_bytes','udp_send_packets','udp_send_bytes','udp_recv_packets','udp_recv_bytes'])")
    got=$(awk -v t="$tid" -v p="$pid" '$1 == t && $2 == p && $3 == "n" { $1 = $2 = $3 = ""; print substr($0, 4) }' <<<"$out")
    [ "$got" = "$want" ] || fail "thread $tid (worker-$i): atop shows '$got', truth '$want'"
    log "thread $tid (worker-$i): $got = truth"
    read -r -a w <<<"$want"
    for k in 0 1 2 3 4 5 6 7; do sum[k]=$((sum[k] + w[k])); done
done
[ "${sum[4]}" -eq $((25 * (1 + 2 + 3 + 4))) ] || fail "the generator's truth is not what was asked: ${sum[*]}"
got=$(awk -v p="$pid" '$1 == p && $3 == "y" { $1 = $2 = $3 = ""; print substr($0, 4) }' <<<"$out")
[ "$got" = "${sum[*]}" ] || fail "process $pid: atop shows '$got', the threads' sum is '${sum[*]}'"
log "process $pid: $got = the sum of its threads"
kill "$pid"

# 4. PID reuse.
"$bin/netatop-gen" udp4 --count 90 --size 500 >"$work/old.json" 2>>"$work/gen.log" </dev/null
old_pid=$(json "$work/old.json" "d['pid']")
old=$(counters "$work/old.json")
reused=
for _ in $(seq 50); do
    want_pid=$old_pid start_gen udp4 --linger --count 7 --size 50
    if [ "$gen_pid" -eq "$old_pid" ]; then reused=1; break; fi
    kill "$gen_pid"
done
[ -n "$reused" ] || fail "could not start a process on pid $old_pid again"
new=$(counters "$gen_report")
shown() { awk -v p="$old_pid" '$1 == p && $3 == "y" { $1 = $2 = $3 = ""; print substr($0, 4) }' <<<"$1"; }
got_unpatched=$(shown "$(prn "$unpatched")")
got=$(shown "$(prn "$patched")")
log "pid $old_pid reused: old process $old, new process $new"
log "  unpatched atop shows the new process with: ${got_unpatched:-nothing}$([ "$got_unpatched" = "$old" ] && echo ' (the old process'"'"'s totals)')"
[ "$got" = "$new" ] || fail "patched atop shows pid $old_pid with '$got', not the new process's '$new'"
log "  patched atop shows the new process with:   $got = its own counters"
kill "$gen_pid"

# 5. Unpatched atop, exact process counters.
start_gen tcp4 --linger --count 40 --size 1200
want=$(counters "$gen_report")
got=$(awk -v p="$gen_pid" '$1 == p && $3 == "y" { $1 = $2 = $3 = ""; print substr($0, 4) }' <<<"$(prn "$unpatched")")
[ "$got" = "$want" ] || fail "unpatched atop shows '$got' for a TCP generator, truth '$want'"
log "unpatched atop, TCP generator $gen_pid: $got = truth"
start_gen udp6 --linger --count 33 --size 700
want=$(counters "$gen_report")
got=$(awk -v p="$gen_pid" '$1 == p && $3 == "y" { $1 = $2 = $3 = ""; print substr($0, 4) }' <<<"$(prn "$unpatched")")
[ "$got" = "$want" ] || fail "unpatched atop shows '$got' for a UDP generator, truth '$want'"
log "unpatched atop, UDP generator $gen_pid: $got = truth"

# 6. Raw logs keep the network counters.
"$patched" -K -w "$work/raw" 1 2 >/dev/null 2>&1 || fail "atop -w"
replay=$("$patched" -r "$work/raw" -P PRN 2>/dev/null | awk -v p="$gen_pid" '
    $1 == "SEP" { exit }
    $1 == "PRN" && $7 == p && $22 == "y" { print $10, $11, $12, $13, $14, $15, $16, $17, $18 }')
[ "$replay" = "y $want" ] || fail "atop -r of a raw log shows '$replay' for $gen_pid, not 'y $want'"
log "raw log replayed with atop -r: netatop flag and counters $want kept"

# 7. Whole records and no hang: netatopd makes way for a stand-in service.
kill "$netatopd_pid"
wait "$netatopd_pid" 2>/dev/null || true
netatopd_pid=
[ ! -e /run/netatop-bpf-socket ] || fail "netatopd left its socket behind"
cat >"$work/standin.py" <<'PY'
import os, signal, socket, struct, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
mode, pid, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
path = "/run/netatop-bpf-socket"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(8)
open(ready, "w").close()
record = struct.pack("=iIQ16s8Q", pid, 0, 0, b"standin", 11, 1100, 12, 1200, 13, 1300, 14, 1400)
end = bytes(96)
conns = []
try:
    while True:
        c, _ = srv.accept()
        conns.append(c)  # kept open: the silent mode never answers
        if mode == "split":
            while len(c.recv(96, socket.MSG_WAITALL)) == 96:
                for piece in (record[:40], record[40:70], record[70:], end[:50], end[50:]):
                    c.sendall(piece)
                    time.sleep(0.05)
finally:
    os.unlink(path)
PY
sleep 300 </dev/null &
target=$!
pids+=("$target")
standin() {
    rm -f "$work/ready"
    python3 "$work/standin.py" "$1" "$target" "$work/ready" &
    standin_pid=$!
    pids+=("$standin_pid")
    for _ in $(seq 200); do [ -e "$work/ready" ] && return; sleep 0.025; done
    fail "the stand-in service did not start"
}
stop_standin() {
    kill "$standin_pid"
    wait "$standin_pid" 2>/dev/null || true
    [ ! -e /run/netatop-bpf-socket ] || fail "the stand-in service left its socket behind"
}
row() { awk -v p="$target" '$1 == p && $3 == "y" { $1 = $2 = $3 = ""; print substr($0, 4) }'; }
want="11 1100 12 1200 13 1300 14 1400"

standin split
got=$(prn "$patched" | row)
[ "$got" = "$want" ] || fail "patched atop read a record sent in pieces as '$got', not '$want'"
log "record sent in 3 pieces: patched atop reads $got = what was sent"
got=$(timeout 20 "$unpatched" -K -P PRN 1 2 2>/dev/null | awk '$1 == "SEP" { exit } $1 == "PRN"' | awk '{print $7, $21, $22, $11, $12, $13, $14, $15, $16, $17, $18}' | row || true)
log "  unpatched atop reads: ${got:-no counters for the process}"
stop_standin

standin silent
start=$(date +%s)
timeout 30 "$patched" -K -P PRN 1 2 >/dev/null 2>&1 || fail "patched atop did not finish within 30 s against a silent service"
log "silent service: patched atop finished in $(($(date +%s) - start)) s"
start=$(date +%s)
if timeout 15 "$unpatched" -K -P PRN 1 2 >/dev/null 2>&1; then
    log "  unpatched atop finished in $(($(date +%s) - start)) s"
else
    log "  unpatched atop still hung after 15 s (stopped by timeout)"
fi
stop_standin

log "all passed"
