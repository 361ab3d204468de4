//! Every kind of traffic read back exactly through the atop socket, from
//! one netatopd, on whatever way of attaching and of taking snapshots it
//! runs with: the one it chooses, or the ones NETATOPD_TEST_ATTACH,
//! NETATOPD_TEST_SNAPSHOT and NETATOPD_TEST_THREADS force. `make test` runs
//! this file on the host and, through `tests/tests/kernels.rs`, inside
//! Debian's 5.10, 6.1 and 6.12 kernels booted under qemu, once per way each
//! kernel takes. NETATOPD_TEST_EXPECT_ATTACH and
//! NETATOPD_TEST_EXPECT_THREADS, when set, are the way of attaching and
//! the place of threads' counters netatopd must choose by itself.

use netatop_protocol::Counters;
use netatopd_tests::{
    json, query_on, record_for, records_for, run_lingering, run_to_exit, Daemon, Report,
};

/// What netatopd says about how it is attached (`netatopctl stats`).
fn attach_mode(d: &Daemon) -> String {
    json(d.ctl().args(["stats", "--json"]))["attach_mode"]
        .as_str()
        .expect("attach_mode")
        .to_owned()
}

/// Runs a lingering scenario and asserts netatopd reports `want(report)`.
fn check(d: &Daemon, scenario: &str, args: &[&str], want: impl Fn(&Report) -> Counters) {
    let (g, r) = run_lingering(scenario, args);
    let rec = record_for(&d.query(), r.pid);
    assert_eq!(rec.counters, want(&r), "{scenario}: truth {r:?}");
    assert_eq!(rec.command_str(), "netatop-gen");
    g.finish();
}

/// Whether this kernel makes MPTCP sockets.
fn has_mptcp() -> bool {
    // SAFETY: socket has no memory arguments; the descriptor is closed.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_MPTCP) };
    if fd >= 0 {
        // SAFETY: closing the descriptor just made.
        unsafe { libc::close(fd) };
        return true;
    }
    let err = std::io::Error::last_os_error();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EPROTONOSUPPORT),
        "MPTCP socket: {err}"
    );
    false
}

fn exact(d: &Daemon, scenario: &str, args: &[&str]) {
    check(d, scenario, args, |r| r.counters);
}

#[test]
fn every_kind_of_traffic_reads_back_exactly() {
    let d = Daemon::start(&[]);
    let mode = attach_mode(&d);
    eprintln!("attached as: {mode}");
    if let Ok(want) = std::env::var("NETATOPD_TEST_ATTACH") {
        assert!(mode.starts_with(&format!("{want} (")), "{mode}");
    }
    if let Ok(want) = std::env::var("NETATOPD_TEST_EXPECT_ATTACH") {
        assert!(mode.starts_with(&format!("{want} (")), "{mode}");
    }
    if let Ok(want) = std::env::var("NETATOPD_TEST_EXPECT_THREADS") {
        assert!(
            mode.contains(&format!("; thread counters: {want}")),
            "{mode}"
        );
    }
    if std::env::var("NETATOPD_TEST_THREADS").as_deref() == Ok("hash-map") {
        assert!(mode.contains("; thread counters: hash map"), "{mode}");
    }
    let small = ["--count", "40", "--size", "700"];
    for s in ["udp4", "udp6", "tcp4", "tcp6", "mmsg", "rw"] {
        exact(&d, s, &small);
    }
    // Failed calls, zero-length datagrams and peeked data count nothing.
    for s in ["fail", "zero", "peek"] {
        exact(&d, s, &["--count", "30", "--size", "300"]);
    }
    // Raw sockets and error-queue reads count nothing; MPTCP counts as TCP
    // (where the kernel has it: Debian 11's 5.10 is built without).
    for s in ["raw", "errqueue"] {
        exact(&d, s, &["--count", "10", "--size", "200"]);
    }
    if has_mptcp() {
        for s in ["mptcp4", "mptcp6"] {
            exact(&d, s, &["--count", "10", "--size", "200"]);
        }
    } else {
        eprintln!("this kernel has no MPTCP (socket() says EPROTONOSUPPORT): not exercised");
    }
    // sendfile(), a page or less per call: one send each.
    for s in ["sendfile4", "sendfile6"] {
        exact(&d, s, &["--count", "20", "--size", "4096"]);
    }
    // Spliced receives where the kernel runs a hook for them.
    let hooked = !mode.contains("spliced TCP receives: not counted");
    check(&d, "splice4", &["--count", "20", "--size", "4096"], |r| {
        let mut c = r.counters;
        if !hooked {
            c.tcprcvpacks -= r.spliced_recv_calls;
            c.tcprcvbytes -= r.spliced_recv_bytes;
        }
        c
    });
    // A multithreaded process: each thread's own counters, and their sum.
    let (g, r) = run_lingering(
        "live-threads",
        &["--threads", "3", "--count", "15", "--size", "100"],
    );
    let mut sum = Counters::default();
    for t in &r.threads {
        sum.add(&t.counters);
    }
    assert_eq!(record_for(&d.query(), r.pid).counters, sum);
    let dump = json(
        d.ctl()
            .args(["dump", "--json", "--threads", "--pid"])
            .arg(r.pid.to_string()),
    );
    let threads = dump[0]["threads"].as_array().expect("threads");
    for t in &r.threads {
        let row = threads
            .iter()
            .find(|row| row["tid"] == t.tid)
            .unwrap_or_else(|| panic!("thread {} missing from {dump}", t.tid));
        assert_eq!(netatopd_tests::json_counters(row), t.counters);
        assert_eq!(row["name"], t.name, "{dump}");
    }
    g.finish();
    // An exit: the final totals in the next response of a connected client.
    let mut s = d.connect();
    query_on(&mut s);
    let r = run_to_exit("udp6", &["--count", "25", "--size", "321"]);
    let recs = query_on(&mut s);
    assert_eq!(
        records_for(&recs, r.pid)
            .last()
            .expect("final record")
            .counters,
        r.counters
    );
    // A rename after the traffic shows.
    let (g, r) = run_lingering("udp4", &["--count", "5", "--rename", "renamed-gen"]);
    assert_eq!(record_for(&d.query(), r.pid).command_str(), "renamed-gen");
    g.finish();
}

/// A netatopd killed with -9 and started again: what was counted before is
/// kept (the maps are pinned). Traffic while it is down is counted where
/// the links are pinned; where the kernel cannot pin them (kprobes before
/// Linux 5.15) it is not, as netatopd says.
#[test]
fn a_kill_keeps_what_was_counted() {
    let mut d = Daemon::start(&[]);
    let pinned_links = !attach_mode(&d).contains("kprobe links not pinned");
    let (before, rb) = run_lingering("udp4", &["--count", "30", "--size", "111"]);
    d.kill9();
    let (during, rd) = run_lingering("tcp4", &["--count", "20", "--size", "222"]);
    d.restart();
    let recs = d.query();
    assert_eq!(record_for(&recs, rb.pid).counters, rb.counters);
    if pinned_links {
        assert_eq!(record_for(&recs, rd.pid).counters, rd.counters);
    } else {
        assert!(
            records_for(&recs, rd.pid).is_empty(),
            "counted while the kprobes were detached: {recs:?}"
        );
    }
    before.finish();
    during.finish();
    // Counting goes on after the restart.
    let (g, r) = run_lingering("udp4", &["--count", "7", "--size", "70"]);
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    g.finish();
}
