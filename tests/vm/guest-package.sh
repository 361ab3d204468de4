#!/bin/sh
# tests/vm/guest-package.sh: runs INSIDE a guest booted by tests/vm/package.sh,
# with systemd as PID 1, as the oneshot netatopd-vmtest.service. Everything it
# needs is in /mnt/vmtest (shared with the host): the packages and
# netatop-gen; atop, where checked, is in the root file system. It writes
# one line per check to /mnt/vmtest/out/results ("PASS what" or "FAIL
# what"), evidence beside it, prints VM-EXIT-STATUS=<failures> on the
# console and powers the guest off.

V=/mnt/vmtest
O=$V/out
mkdir -p "$O"
exec >"$O/guest.log" 2>&1
set -u
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
GEN=$V/bin/netatop-gen
COUNTERS="tcp_send_packets tcp_send_bytes tcp_recv_packets tcp_recv_bytes udp_send_packets udp_send_bytes udp_recv_packets udp_recv_bytes"
failures=0

say() { echo "$@" >>"$O/results"; echo "$@"; }
check() { # check WHAT COMMAND...
    what=$1
    shift
    if "$@"; then say "PASS $what"; else say "FAIL $what"; failures=$((failures + 1)); fi
}

# Waits (10 s at most) until netatopd's ActiveState is $1.
state_is() {
    i=0
    while [ $i -lt 100 ]; do
        [ "$(systemctl show -P ActiveState netatopd 2>/dev/null)" = "$1" ] && return 0
        i=$((i + 1))
        sleep 0.1
    done
    return 1
}

# The value of counter $2 in JSON file $1 (netatop-gen's report or a dump row).
value() { grep -o "\"$2\": *[0-9]*" "$1" | head -n1 | grep -o '[0-9]*$'; }

# Whether the counters of the process that netatop-gen's report $1 is about,
# read through the atop socket (netatopctl falls back to it when the
# control socket does not answer), equal the report's; the dump goes to $2.
exact() {
    pid=$(value "$1" pid)
    netatopctl --control-socket /nonexistent dump --json --raw --pid "$pid" >"$2" || return 1
    for k in $COUNTERS; do
        [ "$(value "$1" "$k")" = "$(value "$2" "$k")" ] || { echo "$k differs"; return 1; }
    done
}

# Starts netatop-gen $@ lingering, its stdin a pipe held open on fd 8 until
# `finish`; waits for its report in $O/$name.json.
linger() {
    start "$@"
    report "$1"
}

# The first half of `linger`: starts it.
start() {
    name=$1
    shift
    # A pipe on the guest's own /run: the 9p share takes no FIFOs.
    mkdir -p /run/vmtest
    rm -f "/run/vmtest/$name.hold"
    mkfifo "/run/vmtest/$name.hold"
    "$GEN" "$@" --linger <"/run/vmtest/$name.hold" >"$O/$name.json" &
    exec 8>"/run/vmtest/$name.hold"
}

# The second half: waits (3 minutes at most) for its report.
report() {
    i=0
    while [ ! -s "$O/$1.json" ] && [ $i -lt 1800 ]; do i=$((i + 1)); sleep 0.1; done
}

# Lets the lingering generator end, and reaps it.
finish() {
    exec 8>&-
    wait
}

# ---- 1. apt install: enabled, started through READY=1, answering -------------------
apt-get install -y -q "$V"/netatopd_*-1_*.deb >"$O/install.log" 2>&1
check "apt install ./netatopd_*.deb" grep -q 'Setting up netatopd' "$O/install.log"
check "the package enabled the unit" systemctl is-enabled --quiet netatopd
check "the unit is active (running)" state_is active
systemctl show netatopd -p ActiveState -p SubState -p NRestarts -p StatusText -p Type \
    -p CapabilityBoundingSet -p SystemCallFilter -p NoNewPrivileges -p PrivateNetwork \
    -p ProtectSystem >"$O/show"
check "running, through READY=1 (Type=notify, status set)" \
    grep -q '^StatusText=answering on /run/netatop-bpf-socket$' "$O/show"
check "no restart" grep -q '^NRestarts=0$' "$O/show"
check "capabilities: cap_chown cap_perfmon cap_bpf only" \
    grep -q '^CapabilityBoundingSet=cap_chown cap_perfmon cap_bpf$' "$O/show"
check "the system-call filter, with bpf" grep -q '^SystemCallFilter=.* bpf .*' "$O/show"
check "no new privileges, a network namespace of its own" \
    sh -c "grep -q '^NoNewPrivileges=yes' '$O/show' && grep -q '^PrivateNetwork=yes' '$O/show'"
check "netatopctl stats answers" sh -c "netatopctl stats >'$O/stats'"
linger udp1 udp4 --count 50 --size 300
check "a generator's traffic reads back exactly through the atop socket" \
    exact "$O/udp1.json" "$O/udp1.dump"
finish

# ---- 1b. totals per systemd unit: a transient service, its cgroup named by systemd ----
# Two generators in one unit: the first exits (its totals stay the unit's),
# the second lingers until the hold pipe closes; then the unit stops and
# systemd removes its cgroup: its final totals come once, marked removed.
rm -f /run/vmtest/web.hold
mkfifo /run/vmtest/web.hold
systemd-run --quiet --unit=netatop-web --service-type=exec sh -c \
    "'$GEN' udp4 --count 25 --size 120 >'$O/web1.json' && \
     exec '$GEN' udp4 --count 10 --size 300 --linger <'/run/vmtest/web.hold' >'$O/web2.json'"
exec 8>/run/vmtest/web.hold
report web1
report web2
want=$(for k in $COUNTERS; do
    echo $(($(value "$O/web1.json" "$k") + $(value "$O/web2.json" "$k")))
done | xargs)
# The counters of the row labelled $1 in `netatopctl dump --by $2 --raw $3`.
row() { netatopctl dump --by "$2" --raw ${3:-} | awk -v l="$1" '$1 == l { $1 = ""; print }' | xargs; }
web_exact() { [ "$(row netatop-web.service unit)" = "$want" ]; }
check "dump --by unit: the transient service's two generators, exactly" web_exact
netatopctl dump --by cgroup --raw >"$O/web.cgroups"
check "dump --by cgroup: its path as systemd names it" \
    grep -q '^/system.slice/netatop-web.service ' "$O/web.cgroups"
exec 8>&-
removed=""
i=0
while [ $i -lt 50 ]; do
    removed=$(netatopctl dump --by unit --exited --raw |
        awk '$1 == "netatop-web.service" && $2 == "(removed)" { $1 = ""; $2 = ""; print }' | xargs)
    [ -n "$removed" ] && break
    i=$((i + 1))
    sleep 0.1
done
check "the stopped unit's final totals, marked removed" [ "$removed" = "$want" ]

# ---- 1c. the Prometheus endpoint: off until enabled, unprivileged, exact ----------------
check "netatopd-metrics is installed and not enabled" \
    sh -c "systemctl cat netatopd-metrics >/dev/null && ! systemctl is-enabled --quiet netatopd-metrics"
check "the sockets let the package's group netatop in (0660)" \
    sh -c "[ \"\$(stat -c '%a %G' /run/netatopd/control.sock)\" = '660 netatop' ]"
# GET /metrics on loopback, with bash's /dev/tcp (the guest has no HTTP client).
scrape() {
    bash -c 'exec 3<>/dev/tcp/127.0.0.1/9977 &&
        printf "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && cat <&3' >"$O/scrape" 2>/dev/null
}
# Scrapes until line $1 is in the answer (10 s at most).
scraped() {
    i=0
    while [ $i -lt 100 ]; do
        scrape && grep -qxF "$1" "$O/scrape" && return 0
        i=$((i + 1))
        sleep 0.1
    done
    return 1
}
systemctl enable --now netatopd-metrics >"$O/metrics-enable.log" 2>&1
check "systemctl enable --now netatopd-metrics: it answers, netatopd up" scraped "netatopd_up 1"
mpid=$(systemctl show -P MainPID netatopd-metrics)
check "it runs as a user of its own (not root), with no capability" \
    sh -c "awk '/^Uid:/ { exit !(\$2 != 0) }' /proc/$mpid/status && grep -q '^CapEff:.0000000000000000$' /proc/$mpid/status"
rm -f /run/vmtest/scraped.hold
mkfifo /run/vmtest/scraped.hold
systemd-run --quiet --unit=netatop-scraped --service-type=exec sh -c \
    "exec '$GEN' udp4 --count 30 --size 200 --linger <'/run/vmtest/scraped.hold' >'$O/scraped.json'"
exec 8>/run/vmtest/scraped.hold
report scraped
check "a unit's traffic, scraped, exactly (per unit, the default)" \
    scraped "netatop_udp_send_bytes_total{unit=\"netatop-scraped.service\"} $(value "$O/scraped.json" udp_send_bytes)"
exec 8>&-
systemctl disable --now netatopd-metrics >>"$O/metrics-enable.log" 2>&1
journalctl -u netatopd-metrics --no-pager -q >"$O/metrics-journal" 2>&1
check "no permission denial in netatopd-metrics's journal" \
    sh -c "! grep -qiE 'permission denied|not permitted|read-only' '$O/metrics-journal'"

# ---- 2. the sandbox over a minute of traffic, queries and a client flood -------------
start steady udp4 --count 30000 --size 200 --pace-us 2000 --name steady
n=0
while [ $n -lt 60 ]; do
    netatopctl dump --threads --exited >/dev/null
    netatopctl stats >/dev/null
    if [ $n = 30 ]; then
        i=0
        while [ $i -lt 200 ]; do
            netatopctl --control-socket /nonexistent dump >/dev/null 2>&1 &
            i=$((i + 1))
        done
    fi
    n=$((n + 1))
    sleep 1
done
report steady
check "the steady generator's minute reads back exactly" exact "$O/steady.json" "$O/steady.dump"
finish
journalctl -u netatopd --no-pager -q -p warning >"$O/warnings" 2>&1
check "no warning in netatopd's journal" sh -c "! grep -q . '$O/warnings'"
journalctl -k --no-pager -q >"$O/kernel-log" 2>&1
# type=1326: a seccomp action logged by the audit subsystem.
check "no seccomp or audit denial in the kernel log" \
    sh -c "! grep -qE 'type=1326|apparmor=\"DENIED\"|avc: +denied' '$O/kernel-log'"
journalctl -u netatopd --no-pager -q >"$O/journal" 2>&1
check "no permission denial in netatopd's journal" \
    sh -c "! grep -qiE 'permission denied|not permitted|read-only' '$O/journal'"
systemd-analyze security netatopd --no-pager >"$O/security" 2>&1
check "systemd-analyze security netatopd" grep -q 'Overall exposure level for netatopd.service' "$O/security"

# ---- 3. restart and upgrade ------------------------------------------------------------
linger keep udp4 --count 40 --size 100
check "the package keeps counting across a restart by default (--keep-counting)" \
    grep -q '^NETATOPD_OPTS="--keep-counting --socket-mode 0660 --socket-group netatop"' /etc/default/netatopd
systemctl restart netatopd
check "systemctl restart: active again" state_is active
check "systemctl restart: the counters go on" exact "$O/keep.json" "$O/keep.restart.dump"
apt-get install -y -q "$V"/netatopd_*-2_*.deb >"$O/upgrade.log" 2>&1
check "upgrade to a higher version" sh -c "dpkg-query -W -f='\${Version}' netatopd | grep -q -- '-2\$'"
check "upgrade: active again" state_is active
check "upgrade: the counters go on" exact "$O/keep.json" "$O/keep.upgrade.dump"
sed -i 's/^NETATOPD_OPTS=.*/NETATOPD_OPTS=""/' /etc/default/netatopd
# The daemon stopped still had --keep-counting: its successor adopts.
systemctl restart netatopd
check "started without --keep-counting: active again" state_is active
check "started without --keep-counting: it adopts what was left counting" \
    exact "$O/keep.json" "$O/keep.adopted.dump"
systemctl restart netatopd
check "stopped without --keep-counting: active again" state_is active
pid=$(value "$O/keep.json" pid)
netatopctl --control-socket /nonexistent dump --json --raw --pid "$pid" >"$O/keep.reset.dump"
check "without --keep-counting a restart starts from zero" \
    sh -c "! grep -q '\"pid\": $pid' '$O/keep.reset.dump'"
finish

# ---- 3b. a locked-memory limit too low (kernels before 5.11 charge maps to it) ---------
case $(uname -r) in
5.10.*)
    mkdir -p /etc/systemd/system/netatopd.service.d
    printf '[Service]\nLimitMEMLOCK=8M\n' >/etc/systemd/system/netatopd.service.d/memlock.conf
    systemctl daemon-reload
    systemctl restart netatopd
    i=0
    until journalctl -u netatopd --no-pager -q -o cat | grep -q 'cannot create the BPF maps'; do
        i=$((i + 1))
        [ $i -lt 100 ] || break
        sleep 0.1
    done
    journalctl -u netatopd --no-pager -q -o cat | grep 'cannot create the BPF maps' | tail -n1 >"$O/memlock.err"
    check "LimitMEMLOCK=8M: one line with the limit, what the maps need and what to change" \
        grep -q 'locked-memory limit (RLIMIT_MEMLOCK), which is 8.0 MiB, and at the sizes chosen they need [0-9.]* MiB.*LimitMEMLOCK=infinity' "$O/memlock.err"
    rm -r /etc/systemd/system/netatopd.service.d
    systemctl daemon-reload
    systemctl restart netatopd
    check "the unit's own LimitMEMLOCK=infinity again: active" state_is active
    ;;
esac

# ---- 4. the largest map sizes, then apt purge ------------------------------------------
# Before Linux 5.11 every map counts, at its full size, against the unit's
# locked-memory limit (about 3 GiB here).
max="--max-threads 4194304 --max-processes 4194304 --max-pending-exits 4194304 --max-cgroups 1048576 --max-removed-cgroups 1048576"
sed -i "s/^NETATOPD_OPTS=.*/NETATOPD_OPTS=\"--thread-counters hash-map $max\"/" /etc/default/netatopd
systemctl restart netatopd
check "the largest map sizes: active again" state_is active
netatopctl stats >"$O/stats.max" 2>&1
check "the largest map sizes: netatopctl stats answers, with maps of 4194304" \
    sh -c "grep -q '^processes: .*(map of 4194304)' '$O/stats.max' && grep -q '^threads: .*(map of 4194304)' '$O/stats.max'"
linger big udp4 --count 20 --size 100
check "the largest map sizes: a generator's traffic reads back exactly" exact "$O/big.json" "$O/big.dump"
finish

apt-get purge -y -q netatopd >"$O/purge.log" 2>&1
check "apt purge: the service is gone" sh -c "! systemctl is-active --quiet netatopd"
check "apt purge: nothing pinned" test ! -e /sys/fs/bpf/netatopd
check "apt purge: no socket left" test ! -e /run/netatop-bpf-socket
check "apt purge: no file of the package left" \
    sh -c "! dpkg -L netatopd >/dev/null 2>&1 && test ! -e /etc/default/netatopd && test ! -e /usr/sbin/netatopd && test ! -e /usr/lib/systemd/system/netatopd.service"

# ---- 5. atop's daily log with -K (where the root file system has atop) ---------------
if command -v atop >/dev/null; then
    apt-get install -y -q "$V"/netatopd_*-1_*.deb >"$O/reinstall.log" 2>&1
    check "netatopd installed again" state_is active
    atop -V >"$O/atop-version" 2>&1
    check "atop 2.11 installed, its services enabled as packaged" \
        sh -c "grep -q 'Version: 2\.11' '$O/atop-version' && systemctl is-enabled --quiet atop atopacct"
    sed -i 's/^LOGOPTS=.*/LOGOPTS="-K"/; s/^LOGINTERVAL=.*/LOGINTERVAL=2/' /etc/default/atop
    systemctl restart atop
    log=/var/log/atop/atop_$(date +%Y%m%d)
    linger daily udp4 --count 120 --size 250 --name atop-daily
    pid=$(value "$O/daily.json" pid)
    # PRN: host epoch date time interval pid (name) state k tcpsnd tcpssz tcprcv
    # tcprsz udpsnd udpssz udprcv udprsz ...: the sum of the samples is the total.
    # Until a sample after the traffic is in the log (two minutes at most).
    deadline=$(($(date +%s) + 120))
    while [ "$(date +%s)" -lt $deadline ]; do
        atop -r "$log" -P PRN >"$O/atop-prn" 2>&1
        awk -v pid="$pid" '$1 == "PRN" && $7 == pid { s += $15; b += $16 } END { print s + 0, b + 0 }' \
            "$O/atop-prn" >"$O/atop-sum"
        [ "$(cat "$O/atop-sum")" = "120 30000" ] && break
        sleep 0.5
    done
    systemctl stop atop
    finish
    check "atop -r shows the daily log's network counters, exactly" \
        test "$(cat "$O/atop-sum")" = "120 30000"
fi

echo "$failures" >"$O/failures"
echo "VM-EXIT-STATUS=$failures" >/dev/console
systemctl poweroff --no-block
