#!/bin/busybox sh
# /init of the VM tests' initramfs (PID 1, busybox ash; tests/vm/initramfs.sh
# puts it there):
#   1. loads the virtio and 9p modules;
#   2. mounts the host's / (9p tag "host", read-only) on /newroot (with
#      VMTEST_REPO=1, an arm64 root under a tmpfs overlay instead, and the
#      checkout, tag "repo", at its own path in it);
#   3. mounts proc, sys, dev, bpffs, tmpfs on /tmp and /run inside it, the
#      run directory (9p tag "vmrun", read-write) on /run/vmtest, and the
#      host's / again, untouched, on /run/host;
#   4. raises the open-file limit (busybox leaves the hard limit at 4096),
#      chroots there and runs /run/vmtest/cmd.sh;
#   5. prints VM-EXIT-STATUS=N and powers off.
# With VMTEST_INIT=systemd on the kernel command line it boots the shared
# tree instead, with systemd as PID 1 (see below).
/bin/busybox --install -s /bin
export PATH=/bin
R=/newroot

status() { echo "VM-EXIT-STATUS=$1"; }
die() {
    echo "vm-init: FATAL: $*"
    status 255
    sleep 0.2
    poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

for m in $(cat /etc/modules.order); do
    insmod "/lib/modules/$m" || die "insmod $m failed"
done

P9OPTS="trans=virtio,version=9p2000.L,msize=262144"

# The shared tree (9p tag "host", read-only) as $R under a tmpfs overlay:
# writable, the writes staying in the guest.
overlay_root() {
    mkdir -p /lower /rw
    mount -t 9p -o "$P9OPTS,ro,cache=${VMTEST_9P_CACHE:-loose}" host /lower || die "mount 9p root failed"
    mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir -p /rw/upper /rw/work ||
        die "tmpfs for the overlay failed"
    mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay "$R" ||
        die "overlay root failed"
}

# VMTEST_INIT=systemd: the shared tree is a root file system with systemd;
# it becomes / under a tmpfs overlay (writes stay in the guest), the run
# directory is mounted on /mnt/vmtest, and systemd starts as PID 1 with
# netatopd-vmtest.service (which runs /mnt/vmtest/guest.sh) wanted.
if [ "${VMTEST_INIT:-chroot}" = systemd ]; then
    overlay_root
    [ -x "$R/lib/systemd/systemd" ] || die "the root file system has no systemd"
    mkdir -p "$R/mnt/vmtest"
    mount -t 9p -o "$P9OPTS,cache=none" vmrun "$R/mnt/vmtest" || die "mount 9p vmrun failed"
    cat >"$R/etc/systemd/system/netatopd-vmtest.service" <<'UNIT'
[Unit]
Description=netatopd's package test in a booted guest
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh /mnt/vmtest/guest.sh
StandardOutput=journal+console
StandardError=journal+console
UNIT
    umount /proc /sys /dev 2>/dev/null
    exec switch_root "$R" /lib/systemd/systemd
fi

if [ -n "${VMTEST_REPO:-}" ]; then
    # An arm64 guest: the shared root is arm64's (not the host's), under a
    # tmpfs overlay to make the checkout's mount point in.
    overlay_root
else
    mount -t 9p -o "$P9OPTS,ro,cache=${VMTEST_9P_CACHE:-loose}" host "$R" || die "mount 9p host failed"
fi
[ -x "$R/bin/sh" ] || die "host root has no /bin/sh"

mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount -t devtmpfs devtmpfs "$R/dev"
mkdir -p "$R/dev/pts" "$R/dev/shm" 2>/dev/null
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t bpf -o mode=0700 bpf "$R/sys/fs/bpf" || die "mount bpffs failed"
mount -t tracefs tracefs "$R/sys/kernel/tracing" 2>/dev/null
mount -t debugfs debugfs "$R/sys/kernel/debug" 2>/dev/null
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup" 2>/dev/null
if [ "${VMTEST_TMP:-tmpfs}" = overlay ]; then
    # host /tmp visible (read-only lower layer), writes go to a tmpfs upper layer
    mkdir -p /ovl && mount -t tmpfs -o mode=0755 tmpfs /ovl && mkdir -p /ovl/u /ovl/w &&
    mount -t overlay -o "lowerdir=$R/tmp,upperdir=/ovl/u,workdir=/ovl/w" overlay "$R/tmp" || die "overlay /tmp failed"
else
    mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
fi
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mkdir -p "$R/run/vmtest" "$R/run/host" "$R/run/lock"
mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,cache=none" vmrun "$R/run/vmtest" || die "mount 9p vmrun failed"
mount --bind "$R" "$R/run/host" 2>/dev/null   # host / without the overlays above (e.g. host /tmp)
# The checkout (and working directory) where the tmpfs above hides it: bound
# again at its own path from the host's tree (tests/vm/run.sh lists them).
if [ -f "$R/run/vmtest/expose" ]; then
    while IFS= read -r p; do
        case $p in /tmp/* | /run/*) ;; *) continue ;; esac
        [ -d "$R/run/host$p" ] && [ ! -e "$R$p" ] || continue
        mkdir -p "$R$p" && mount --bind "$R/run/host$p" "$R$p" || die "cannot show $p in the guest"
    done <"$R/run/vmtest/expose"
fi

# An arm64 guest: the checkout (9p tag "repo", read-only) at its own path.
if [ -n "${VMTEST_REPO:-}" ]; then
    p=$(cat "$R/run/vmtest/repo") || die "no /run/vmtest/repo"
    mkdir -p "$R$p" && mount -t 9p -o "$P9OPTS,ro,cache=loose" repo "$R$p" ||
        die "mount 9p repo on $p failed"
fi

ip link set lo up || die "lo up failed"
hostname vmtest
ulimit -n 65536 || die "ulimit -n failed"

[ -f "$R/run/vmtest/cmd.sh" ] || die "no /run/vmtest/cmd.sh"
chroot "$R" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb LANG=C.UTF-8 /bin/sh /run/vmtest/cmd.sh </dev/null
rc=$?
echo "$rc" > "$R/run/vmtest/exit-status" 2>/dev/null
echo
status "$rc"
# let the tty layer drain to the UART before the hard power-off
stty -F /dev/console -a >/dev/null 2>&1
sleep 0.1
poweroff -f
