//! Real atop: the private atop 2.11.1 the tests run, its parseable PRN
//! lines, and the start time it computes for a process.

use std::fs;
use std::path::PathBuf;

use netatop_protocol::Counters;

/// The private atop 2.11.1 that `make test` installs (tests/atop-setup.sh)
/// and names in NETATOPD_TEST_ATOP; fails without it, never skips.
pub fn atop_binary() -> PathBuf {
    let atop = PathBuf::from(std::env::var_os("NETATOPD_TEST_ATOP").expect(
        "NETATOPD_TEST_ATOP is not set: run `make test`, which installs atop 2.11.1 \
         privately with tests/atop-setup.sh and sets it",
    ));
    assert!(atop.exists(), "{} does not exist", atop.display());
    atop
}

/// Counters of one PRN process line: `PRN host epoch date time interval pid
/// (name) state flag tcpsnd tcpssz tcprcv tcprsz udpsnd udpssz udprcv udprsz
/// 0 0 tgid isproc`. Thread lines (isproc `n`) are skipped.
pub fn parse_prn(line: &str) -> Option<(i32, Counters)> {
    let rest = line.strip_prefix("PRN ")?;
    let pid: i32 = rest.split_whitespace().nth(5)?.parse().ok()?;
    let after = &rest[rest.rfind(')')? + 1..];
    if after.split_whitespace().last()? != "y" {
        return None;
    }
    let v: Vec<u64> = after
        .split_whitespace()
        .skip(2)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some((pid, Counters::from_fields(v.try_into().ok()?)))
}

fn clock_ns(clock: libc::clockid_t) -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Asserts `btime` is what atop computes for live process `pid`: atop takes
/// the boot time in clock ticks as the real-time clock minus the time since
/// boot, adds /proc/PID/stat's start time (ticks) and divides by the tick
/// rate. Two atop instances can differ by one tick in that boot time, so
/// each of the three neighbouring values is atop's answer for some instance.
pub fn assert_atop_btime(pid: i32, btime: u64) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u128;
    let boot_ticks = clock_ns(libc::CLOCK_REALTIME) * hz / 1_000_000_000
        - clock_ns(libc::CLOCK_BOOTTIME) * hz / 1_000_000_000;
    let pstat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after_comm = &pstat[pstat.rfind(')').expect("comm in stat") + 2..];
    // Field 22 overall; after "pid (comm) " it is the 20th.
    let start: u128 = after_comm
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .expect("starttime in /proc/PID/stat");
    let atop: Vec<u64> = (boot_ticks - 1..=boot_ticks + 1)
        .map(|b| ((start + b) / hz) as u64)
        .collect();
    assert!(
        atop.contains(&btime),
        "btime {btime} of pid {pid} is not atop's {atop:?}"
    );
}
