//! A PID reused by a new process starts from zero. Its own test binary, so
//! no other test forks while the PID is being steered.

use std::fs;

use netatopd_tests::{query_on, record_for, records_for, run_to_exit, Daemon, Gen};

/// Starts a lingering generator with pid `pid`, steering the kernel's next
/// pid through ns_last_pid (root only); retries when another fork wins.
fn spawn_with_pid(pid: i32, scenario: &str, args: &[&str]) -> Gen {
    for _ in 0..50 {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("ns_last_pid");
        let g = Gen::spawn(scenario, args);
        if g.pid() == pid {
            return g;
        }
        drop(g);
    }
    panic!("could not get pid {pid} again after 50 tries");
}

#[test]
fn a_reused_pid_starts_from_zero() {
    let d = Daemon::start(&[]);
    let old_r = run_to_exit("udp4", &["--count", "700", "--size", "100"]);

    let mut new = spawn_with_pid(
        old_r.pid,
        "udp4",
        &["--linger", "--count", "3", "--size", "10"],
    );
    let new_r = new.report();
    let mut atop = d.connect();
    let recs = query_on(&mut atop);
    // The old process's final record, then the new process's own record
    // (atop keeps the later one of equal ids).
    let both = records_for(&recs, old_r.pid);
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0].counters, new_r.counters, "live record first");
    assert_eq!(
        both[1].counters, old_r.counters,
        "final record of the exited one last"
    );
    // Next time, on the same connection, only the new process.
    assert_eq!(
        record_for(&query_on(&mut atop), new_r.pid).counters,
        new_r.counters
    );
    new.finish();
}
