#!/bin/bash
# tests/vm/run.sh KVER COMMAND [ARGS...]
#
# Boots kernel KVER (as tests/vm/kernels.sh left it in $VM_CACHE; a prefix
# such as 5.10, 6.1 or 6.12 will do) under qemu's TCG emulation (this
# machine has no usable hardware virtualisation; single-threaded TCG, since
# multi-threaded TCG once panicked a 6.12 guest), shares the host's /
# read-only over 9p, chroots into it and runs COMMAND there, in the host's
# working directory. The checkout and the working directory are seen at
# their own paths even where they lie under /tmp or /run (the guest's own
# tmpfs there); any other path under them is not. The console goes to stdout; the exit status is
# COMMAND's, or 124 (timeout), 125 (the VM ended without a status: a
# panic), 126 (qemu or the set-up failed). It always ends, and leaves no
# qemu running.
#
# Env: VM_CACHE (kernels), VM_TIMEOUT (s, 300), VM_MEM (MiB, 1024), VM_SMP
# (2), VM_APPEND (more kernel arguments), VM_KEEP=1 (keep the run directory),
# VM_TMP=tmpfs (an empty /tmp) or overlay (the host's /tmp under a tmpfs).
#
# VM_ARCH=arm64: boot one of the arm64 kernels (KVER ending in -arm64, its
# Image) under qemu-system-aarch64's virt machine instead, with VM_ROOT (an
# arm64 root file system: tests/vm/arm64-root.sh) shared as its root in
# place of the host's /, and the checkout shared read-only at its own path
# (the guest's root is then a tmpfs overlay over VM_ROOT, to mount it on).
#
# VM_SYSTEMD=ROOTFS: boot ROOTFS (a root file system with systemd) with
# systemd as PID 1 instead (tests/vm/init.sh); COMMAND is then ignored and
# VM_RUN=DIR is shared read-write on /mnt/vmtest, where DIR/guest.sh is run
# by a service and ends the boot. The status is the last VM-EXIT-STATUS
# line the guest prints on the console.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=$(cd "${VM_CACHE:?VM_CACHE: the kernels directory of tests/vm/kernels.sh}" && pwd)
[ $# -ge 2 ] || { echo "usage: run-vm.sh KVER COMMAND [ARGS...]" >&2; exit 126; }
want=$1; shift

# the machine: amd64's kernels are booted from vmlinux (PVH), arm64's from
# Image on the virt machine, with -cpu max and the cheap pointer
# authentication (its default one is slow under TCG): ARMv8.1+ atomics
# (LSE) and the rest, as servers have
arch=${VM_ARCH:-amd64}
case $arch in
amd64) image=vmlinux machine=(qemu-system-x86_64 -cpu max) console=ttyS0 ;;
arm64) image=Image machine=(qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on) console=ttyAMA0 ;;
*) echo "run-vm: VM_ARCH=$arch: amd64 or arm64" >&2; exit 126 ;;
esac

# resolve kernel
kdir=""
if [ -f "$CACHE/$want/$image" ]; then kdir=$CACHE/$want
else
    for d in "$CACHE/$want".[0-9]* "$CACHE/$want"-*; do   # 6.1 -> 6.1.0-50-amd64, not 6.12.*
        case $d in *-"$arch") [ -f "$d/$image" ] && kdir=$d ;; esac
    done
fi
[ -n "$kdir" ] || { echo "run-vm: kernel '$want' not in $CACHE (run tests/vm/kernels.sh $CACHE)" >&2; exit 126; }
kver=$(basename "$kdir")

# initramfs (rebuilt when missing or older than its inputs)
initrd=$kdir/initramfs.cpio.gz
if [ ! -s "$initrd" ] || [ "$HERE/init.sh" -nt "$initrd" ] || [ "$HERE/initramfs.sh" -nt "$initrd" ]; then
    if [ "$arch" = arm64 ]; then
        # The arm64 root's static busybox.
        export BUSYBOX=${VM_ROOT:?VM_ROOT: the arm64 root (tests/vm/arm64-root.sh)}/bin/busybox
    fi
    (exec 8>"$kdir/.initrd.lock" && flock 8 && "$HERE/initramfs.sh" "$kver" "$kdir" "$initrd") || exit 126
fi

# per-run directory, shared read-write with the guest at /run/vmtest
if [ -n "${VM_SYSTEMD:-}" ]; then
    run=$(cd "${VM_RUN:?VM_RUN: the directory shared with a systemd guest}" && pwd)
    VM_KEEP=1
else
    run=$(mktemp -d "${TMPDIR:-/tmp}/netatopd-vm.XXXXXX")
fi
{
    echo '#!/bin/sh'
    printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
    printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$run/cmd.sh"
# Where the checkout lies under /tmp or /run, which the guest mounts
# tmpfs on, init.sh binds it there again from the host's tree: these
# paths, one a line (the checkout, and the working directory).
printf '%s\n' "$(cd "$HERE/../.." && pwd -P)" "$PWD" > "$run/expose"

root=/
boot=""
repo=()
if [ "$arch" = arm64 ]; then
    root=$(cd "$VM_ROOT" && pwd)
    boot="VMTEST_REPO=1"
    checkout=$(cd "$HERE/../.." && pwd -P)
    printf '%s\n' "$checkout" > "$run/repo"
    repo=(-virtfs "local,path=${checkout//,/,,},mount_tag=repo,security_model=none,readonly=on,multidevs=remap")
fi
if [ -n "${VM_SYSTEMD:-}" ]; then
    root=$(cd "$VM_SYSTEMD" && pwd)
    boot="VMTEST_INIT=systemd systemd.unit=multi-user.target systemd.wants=netatopd-vmtest.service"
fi

qpid=""
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill -KILL "$qpid" 2>/dev/null; fi
    if [ -f "$run/qemu.pid" ]; then
        p=$(cat "$run/qemu.pid" 2>/dev/null)
        [ -n "$p" ] && case $(cat /proc/"$p"/comm 2>/dev/null) in qemu-system-*) kill -KILL "$p" 2>/dev/null ;; esac
    fi
    [ "${VM_KEEP:-0}" = 1 ] || rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s.%N)
{ timeout -k 5 "${VM_TIMEOUT:-300}" "${machine[@]}" \
    -accel tcg,thread=single -smp "${VM_SMP:-2}" -m "${VM_MEM:-1024}" \
    -nodefaults -no-user-config -display none -serial stdio -no-reboot \
    -kernel "$kdir/$image" -initrd "$initrd" \
    -append "console=$console panic=-1 quiet VMTEST_TMP=${VM_TMP:-tmpfs} $boot ${VM_APPEND:-}" \
    "${repo[@]}" \
    -virtfs local,path="${root//,/,,}",mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="${run//,/,,}",mount_tag=vmrun,security_model=none \
    -pidfile "$run/qemu.pid" \
    </dev/null 2>"$run/qemu.stderr"; echo $? > "$run/qemu.rc"; } | sed -u 's/\r$//' | tee "$run/console.log" &
qpid=$!   # pid of the pipeline's last element; qemu itself is found via the pidfile
wait "$qpid"
t1=$(date +%s.%N)

st=$(grep -a '^VM-EXIT-STATUS=[0-9]*$' "$run/console.log" | tail -n1 | cut -d= -f2)
secs=$(awk "BEGIN{print $t1-$t0}")
qrc=$(cat "$run/qemu.rc" 2>/dev/null)
if [ -n "$st" ]; then rc=$st
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then rc=124; echo "run-vm: TIMEOUT after ${VM_TIMEOUT:-300}s" >&2
elif ! grep -q . "$run/console.log"; then rc=126; echo "run-vm: qemu failed (rc=$qrc)" >&2
else rc=125; echo "run-vm: VM ended without VM-EXIT-STATUS (qemu rc=$qrc)" >&2
fi
grep -v 'terminating on signal' "$run/qemu.stderr" >&2 2>/dev/null
printf 'run-vm: kernel=%s status=%s time=%.2fs\n' "$kver" "$rc" "$secs" >&2
exit "$rc"
