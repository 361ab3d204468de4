//! The clocks of the programs' timestamps.

/// A clock in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clocks netatopd uses
    // (BOOTTIME, REALTIME) always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME in nanoseconds: the clock of the programs' timestamps
/// (bpf_ktime_get_boot_ns) and of a task's start_boottime.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// The Unix time, in whole seconds, of a CLOCK_BOOTTIME instant `boot_ns`:
/// both clocks read one after the other, so the answer is the same from
/// one call to the next while the system clock is not set.
pub fn unix_secs_of_boottime(boot_ns: u64) -> u64 {
    let boot_now = boottime_ns();
    let real_now = clock_ns(libc::CLOCK_REALTIME);
    (real_now.saturating_sub(boot_now.saturating_sub(boot_ns))) / 1_000_000_000
}
