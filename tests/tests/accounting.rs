//! What netatopd counts, checked against the generator's own ground truth
//! through the socket atop uses. Root and BTF required; nothing is skipped.
//!
//! Every generator runs after the daemon's readiness probe has closed its
//! connection: counting never depends on a connected client.

use std::time::Duration;

use netatopd_tests::{
    assert_atop_btime, json, ok, query_on, record_for, records_for, run_lingering, run_to_exit,
    wait_until, Daemon,
};

/// Runs a lingering scenario and asserts netatopd reports exactly its truth.
fn exact(d: &Daemon, scenario: &str, args: &[&str]) -> netatopd_tests::Report {
    let (g, r) = run_lingering(scenario, args);
    let rec = record_for(&d.query(), r.pid);
    assert_eq!(
        rec.counters, r.counters,
        "{scenario}: counters differ from the truth {r:?}"
    );
    assert_eq!(rec.command_str(), "netatop-gen");
    assert_atop_btime(r.pid, rec.btime);
    g.finish();
    r
}

#[test]
fn udp_over_ipv4_and_ipv6() {
    let d = Daemon::start(&[]);
    for s in ["udp4", "udp6"] {
        let r = exact(&d, s, &["--count", "500", "--size", "1200"]);
        assert_eq!(
            (r.counters.udpsndpacks, r.counters.udprcvbytes),
            (500, 600_000)
        );
    }
}

#[test]
fn tcp_over_ipv4_and_ipv6_both_directions() {
    let d = Daemon::start(&[]);
    for s in ["tcp4", "tcp6"] {
        let r = exact(&d, s, &["--count", "300", "--size", "5000"]);
        assert_eq!(r.counters.tcpsndbytes, 2 * 300 * 5000);
        assert_eq!(r.counters.tcprcvbytes, r.counters.tcpsndbytes);
    }
}

#[test]
fn sendmmsg_and_recvmmsg_count_each_message() {
    let d = Daemon::start(&[]);
    let r = exact(&d, "mmsg", &["--count", "203", "--size", "64"]);
    assert_eq!((r.counters.udpsndpacks, r.counters.udprcvpacks), (203, 203));
}

#[test]
fn write_and_read_on_sockets() {
    let d = Daemon::start(&[]);
    let r = exact(&d, "rw", &["--count", "100", "--size", "700"]);
    assert!(r.counters.udpsndpacks == 100 && r.counters.tcpsndpacks >= 200);
}

#[test]
fn failed_calls_count_nothing() {
    let d = Daemon::start(&[]);
    let r = exact(&d, "fail", &["--count", "1000"]);
    // EAGAIN x1000, ECONNREFUSED, and sends on a reset TCP connection.
    assert!(r.failed_calls >= 2000, "too few failures produced: {r:?}");
    assert_eq!((r.counters.tcpsndpacks, r.counters.udprcvpacks), (0, 0));
}

#[test]
fn zero_length_datagrams_count_nothing() {
    let d = Daemon::start(&[]);
    let r = exact(&d, "zero", &["--count", "400", "--size", "100"]);
    assert_eq!((r.counters.udpsndpacks, r.failed_calls), (200, 400));
}

#[test]
fn peeked_data_counts_once() {
    let d = Daemon::start(&[]);
    let r = exact(&d, "peek", &["--count", "200", "--size", "512"]);
    assert!(r.peeked_calls >= 400);
    assert_eq!(
        (r.counters.udprcvpacks, r.counters.tcprcvbytes),
        (200, 200 * 512)
    );
}

#[test]
fn raw_sockets_count_nothing_beside_counted_udp() {
    let d = Daemon::start(&[]);
    // Raw UDP (v4, v6) and raw TCP sockets send 5 packets each and read
    // copies of the UDP pair's datagrams; only the pair counts.
    let r = exact(&d, "raw", &["--count", "5", "--size", "100"]);
    assert_eq!(
        (r.counters.udpsndpacks, r.counters.udpsndbytes),
        (5, 500),
        "{r:?}"
    );
    assert_eq!(r.counters.tcpsndpacks + r.counters.tcprcvpacks, 0);
    assert!(
        r.ignored_calls >= 3 * 5 + 5,
        "too few raw calls made: {r:?}"
    );
}

#[test]
fn mptcp_counts_as_tcp_once_both_ways() {
    let d = Daemon::start(&[]);
    for s in ["mptcp4", "mptcp6"] {
        let r = exact(&d, s, &["--count", "10", "--size", "1000"]);
        assert_eq!(
            (r.counters.tcpsndbytes, r.counters.tcprcvbytes),
            (20_000, 20_000)
        );
    }
}

#[test]
fn tcp_spliced_to_and_from_pipes_counts() {
    let d = Daemon::start(&[]);
    // Spliced receives bypass recvmsg: they need an fexit (or kprobe)
    // program on tcp_splice_read, which not every kernel loads. netatopd
    // says which; both cases are exact.
    let stats = json(d.ctl().args(["stats", "--json"]));
    let mode = stats["attach_mode"]
        .as_str()
        .expect("attach_mode")
        .to_owned();
    let hooked = mode.contains("spliced TCP receives: fexit on tcp_splice_read")
        || mode.contains("spliced TCP receives: kprobe on tcp_splice_read");
    assert!(
        hooked || mode.contains("spliced TCP receives: not counted: "),
        "{mode}"
    );
    for s in ["splice4", "splice6"] {
        // 1 MiB each way: received by splicing the socket into a pipe,
        // sent by splicing a pipe into the socket.
        let (g, r) = run_lingering(s, &["--count", "256", "--size", "4096"]);
        assert_eq!(
            (r.counters.tcpsndbytes, r.counters.tcprcvbytes),
            (2 << 20, 2 << 20)
        );
        assert_eq!(r.spliced_recv_bytes, 1 << 20);
        let mut want = r.counters;
        if !hooked {
            want.tcprcvpacks -= r.spliced_recv_calls;
            want.tcprcvbytes -= r.spliced_recv_bytes;
        }
        assert_eq!(record_for(&d.query(), r.pid).counters, want, "{s}: {mode}");
        g.finish();
    }
}

#[test]
fn error_queue_reads_count_nothing() {
    let d = Daemon::start(&[]);
    // IP_RECVERR errors and SO_TIMESTAMPING transmit timestamps.
    let r = exact(&d, "errqueue", &["--count", "20", "--size", "100"]);
    assert_eq!(r.ignored_calls, 40, "{r:?}");
    assert_eq!((r.counters.udpsndpacks, r.counters.udprcvpacks), (40, 20));
}

#[test]
fn a_rename_after_traffic_shows_in_snapshots_and_the_final_record() {
    let d = Daemon::start(&[]);
    let mut early = d.connect();
    query_on(&mut early);
    let (g, r) = run_lingering("udp4", &["--count", "7", "--rename", "renamed-gen"]);
    let rec = record_for(&d.query(), r.pid);
    assert_eq!(
        (rec.command_str().as_str(), rec.counters),
        ("renamed-gen", r.counters)
    );
    let dump = ok(d
        .ctl()
        .args(["dump", "--raw", "--pid"])
        .arg(r.pid.to_string()));
    assert!(dump.contains("renamed-gen"), "{dump}");
    g.finish();
    let fin = record_for(&query_on(&mut early), r.pid);
    assert_eq!(
        (fin.command_str().as_str(), fin.counters),
        ("renamed-gen", r.counters)
    );
}

#[test]
fn exited_threads_stay_in_process_totals_and_leave_no_entries() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering(
        "threads",
        &["--threads", "8", "--count", "250", "--size", "333"],
    );
    assert_eq!(r.tids.len(), 8);
    let rec = record_for(&d.query(), r.pid);
    assert_eq!(rec.counters, r.counters);
    assert_eq!(r.counters.udpsndpacks, 8 * 250);
    // The threads were named "worker": the record carries the leader's name.
    assert_eq!(rec.command_str(), "netatop-gen");
    for tid in &r.tids {
        assert!(
            !d.thread_counted(*tid, r.pid),
            "entry of exited thread {tid} left behind"
        );
    }
    assert!(d.map_has("procs", r.pid as u32));
    g.finish();
}

#[test]
fn unix_socket_traffic_is_not_counted() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering("unix", &["--count", "300"]);
    assert!(records_for(&d.query(), r.pid).is_empty());
    assert!(!d.map_has("procs", r.pid as u32));
    g.finish();
}

#[test]
fn exited_process_is_reported_once_to_each_client_then_freed() {
    let d = Daemon::start(&[]);
    let mut early = d.connect();
    assert!(records_for(&netatopd_tests::query_on(&mut early), 0).is_empty());

    let r = run_to_exit("udp4", &["--count", "321", "--size", "99"]);

    // Connected at the exit: the final totals in its next response, once.
    let first = netatopd_tests::query_on(&mut early);
    assert_eq!(record_for(&first, r.pid).counters, r.counters);
    assert!(records_for(&netatopd_tests::query_on(&mut early), r.pid).is_empty());

    // Connected after the exit, within the grace period: once as well.
    let mut late = d.connect();
    assert_eq!(
        record_for(&netatopd_tests::query_on(&mut late), r.pid).counters,
        r.counters
    );
    assert!(records_for(&netatopd_tests::query_on(&mut late), r.pid).is_empty());

    // Nothing of it is left in the kernel.
    assert!(!d.map_has("procs", r.pid as u32));
    assert!(!d.thread_counted(r.pid, r.pid));
    assert!(!d.map_has("exited", r.pid as u32));
}

#[test]
fn exited_process_after_the_grace_period_is_not_sent_to_new_clients() {
    let d = Daemon::start(&["--exit-grace", "0"]);
    let r = run_to_exit("udp4", &["--count", "10"]);
    // Connected after the exit, with no grace period: never due it, whether
    // the daemon has collected the exit yet or collects it during this query.
    assert!(records_for(&d.query(), r.pid).is_empty());
    assert!(!d.map_has("procs", r.pid as u32));
}

#[test]
fn exits_no_client_had_are_counted_as_lost() {
    let d = Daemon::start(&["--exit-grace", "0"]);
    // A client connected when this process exits has it.
    let mut c = d.connect();
    query_on(&mut c);
    let had = run_to_exit("udp4", &["--count", "10"]);
    assert_eq!(
        record_for(&query_on(&mut c), had.pid).counters,
        had.counters
    );
    drop(c);
    // With none connected, these three exit unseen, and expire.
    let lost: Vec<_> = (0..3)
        .map(|_| run_to_exit("udp6", &["--count", "10"]))
        .collect();
    let line = |pid: i32| format!("the final totals of pid {pid} (netatop-gen) expired before");
    wait_until(Duration::from_secs(10), "the unseen exits expire", || {
        lost.iter().all(|r| d.log().contains(&line(r.pid)))
    });
    assert!(!d.log().contains(&line(had.pid)), "{}", d.log());
    // The count is the records logged as expired (other processes of the
    // host may exit meanwhile): read it between two looks at the log.
    let expired = || {
        d.log()
            .matches("expired before any client had them")
            .count() as u64
    };
    wait_until(
        Duration::from_secs(10),
        "a count between two equal logs",
        || {
            let before = expired();
            let s = json(d.ctl().args(["stats", "--json"]));
            s["exited_undelivered"] == before && expired() == before
        },
    );
    let n = expired();
    assert!(n >= 3);
    let text = ok(d.ctl().arg("stats"));
    assert!(
        text.contains("expired before any client had them"),
        "{text}"
    );
    let metrics = ok(d.ctl().args(["export", "--format", "prometheus"]));
    let lost_line = metrics
        .lines()
        .find(|l| l.starts_with("netatop_exited_lost_total{why=\"expired\"} "))
        .expect("the export's lost exits");
    let exported: u64 = lost_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(exported >= n && exported <= expired(), "{lost_line}, {n}");
}

#[test]
fn exec_by_a_thread_that_is_not_the_leader_keeps_every_count() {
    let d = Daemon::start(&[]);
    let mut s = d.connect();
    netatopd_tests::query_on(&mut s);
    // The leader, then a second thread, then the program that thread
    // execs (with the process's pid): 20 round trips each.
    let (g, r) = run_lingering("exec-thread", &["--count", "20", "--size", "150"]);
    assert_eq!(r.counters.udpsndpacks, 3 * 20);
    assert_eq!(r.counters.udprcvbytes, 3 * 20 * 150);
    let rec = record_for(&netatopd_tests::query_on(&mut s), r.pid);
    assert_eq!(rec.counters, r.counters);
    assert_eq!(rec.command_str(), "netatop-gen");
    // The exec'ing thread now has the process's pid: one thread with
    // counters, under that pid.
    assert!(d.thread_counted(r.pid, r.pid));
    g.finish();
    let finals = records_for(&netatopd_tests::query_on(&mut s), r.pid);
    assert_eq!(finals.len(), 1, "{finals:?}");
    assert_eq!(finals[0].counters, r.counters);
    assert!(!d.map_has("procs", r.pid as u32));
    assert!(!d.thread_counted(r.pid, r.pid));
}
