//! Processes and conditions waited on: signals to the test's children,
//! their exits, conditions polled until they hold, and the descriptor
//! limit a child starts with.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Sends signal `sig` to process `pid` (one of the test's own children).
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the callers
    // signal their own children, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sets the descriptor limit (soft, hard) of the calling process. Safe to
/// call between fork and exec: it neither allocates nor locks.
pub fn set_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit for the call's duration.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Polls `ready` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, ready: impl FnMut() -> bool) {
    assert!(
        waited(limit, ready),
        "timed out after {limit:?} waiting for {what}"
    );
}

/// Polls `ready` every 10 ms until it holds (true) or `limit` passes
/// (false), for a caller that says itself what it waited for.
pub fn waited(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while !ready() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Polls `ready` every few milliseconds until it holds, failing with
/// `log()` if `child` exits first or `limit` passes.
pub fn wait_while_alive(
    child: &mut Child,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let end = Instant::now() + limit;
    while !ready() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("{what}: it exited ({status}) first:\n{}", log());
        }
        assert!(
            Instant::now() < end,
            "{what}: not within {limit:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
