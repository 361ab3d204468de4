//! Crashes, restarts and the pinned state: counting goes on while netatopd
//! is down, and the next netatopd reports the same totals.

use std::time::Duration;

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use netatopd_tests::{
    bin, fails, pin_dir_for, private_args, record_for, records_for, require_bpf_machine, run,
    run_lingering, run_to_exit, scratch_dir, thread_value, wait_until, Daemon, Gen,
};

/// The counters the pinned threads' counters (task storage or hash map)
/// hold for `tid`, read while no netatopd runs: (UDP datagrams sent, bytes
/// sent).
fn pinned_udp_sent(d: &Daemon, tid: i32) -> (u64, u64) {
    let map = MapHandle::from_pinned_path(d.pin_dir.join("threads")).expect("pinned threads map");
    let v = thread_value(&map, tid).unwrap_or_default();
    let word = |i: usize| {
        v.get(i * 8..i * 8 + 8)
            .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap()))
    };
    // struct counters: tcp snd packs/bytes, tcp rcv packs/bytes, udp snd ...
    (word(4), word(5))
}

#[test]
fn kill_9_and_restart_lose_nothing() {
    let mut d = Daemon::start(&[]);
    // 2,000 round trips of 300 bytes, one every 2 ms: about 4 s of traffic.
    let mut g = Gen::spawn(
        "udp4",
        &[
            "--linger",
            "--count",
            "2000",
            "--size",
            "300",
            "--pace-us",
            "2000",
        ],
    );
    let pid = g.pid();
    wait_until(
        Duration::from_secs(10),
        "the sender's first datagrams",
        || {
            records_for(&d.query(), pid)
                .first()
                .is_some_and(|r| r.counters.udpsndpacks >= 50)
        },
    );
    let before = record_for(&d.query(), pid).counters;
    d.kill9();

    // While netatopd is down the pinned programs go on counting.
    let (down, _) = pinned_udp_sent(&d, pid);
    assert!(down >= before.udpsndpacks);
    wait_until(
        Duration::from_secs(10),
        "counting while netatopd is down",
        || pinned_udp_sent(&d, pid).0 >= down + 50,
    );

    d.restart();
    assert!(
        d.log()
            .contains("adopted the programs and maps pinned under"),
        "{}",
        d.log()
    );
    let resumed = record_for(&d.query(), pid).counters;
    assert!(resumed.udpsndpacks >= down + 50, "{resumed:?}");
    let r = g.report();
    assert!(
        resumed.udpsndpacks < r.counters.udpsndpacks,
        "the sender must still be sending after the restart: {resumed:?} vs {:?}",
        r.counters
    );
    let after = record_for(&d.query(), pid);
    assert_eq!(after.counters, r.counters);
    assert_eq!(r.counters.udpsndpacks, 2000);
    assert_eq!(r.counters.udpsndbytes, 600_000);
    g.finish();
}

#[test]
fn a_process_that_exits_while_netatopd_is_down_is_still_reported() {
    let mut d = Daemon::start(&[]);
    d.kill9();
    let r = run_to_exit("udp6", &["--count", "77", "--size", "1000"]);
    let pid = r.pid;
    d.restart();
    let recs = d.query();
    let rec = record_for(&recs, pid);
    assert_eq!(rec.counters, r.counters);
    assert_eq!(rec.counters.udprcvbytes, 77_000);
    // Reported once: the next query of the same client does not repeat it.
    let mut conn = d.connect();
    let first = netatopd_tests::query_on(&mut conn);
    assert_eq!(records_for(&first, pid).len(), 1);
    assert!(records_for(&netatopd_tests::query_on(&mut conn), pid).is_empty());
}

#[test]
fn keep_counting_leaves_the_programs_pinned_and_sigterm_without_it_unloads() {
    let mut d = Daemon::start(&["--keep-counting"]);
    let (g, r) = run_lingering("udp4", &["--count", "10"]);
    assert!(d.stop().success());
    assert!(
        d.log().contains("the programs keep counting"),
        "{}",
        d.log()
    );
    assert!(d.pin_dir.join("meta").exists() && d.pin_dir.join("link_send").exists());
    assert!(!d.socket.exists(), "a clean stop removes the socket");
    assert!(!d.pid_file().exists(), "a clean stop removes the pid file");

    // Adopted by the next start, which (without --keep-counting) unloads.
    d.restart_with(&[]);
    assert_eq!(record_for(&d.query(), g.pid()).counters, r.counters);
    assert!(d.stop().success());
    assert!(d.log().contains("programs unloaded"), "{}", d.log());
    assert!(!d.pin_dir.exists(), "a clean stop removes every pin");
    g.finish();
}

#[test]
fn unload_removes_every_pinned_object_and_refuses_while_running() {
    let mut d = Daemon::start(&[]);
    let err = fails(d.command().arg("--unload"));
    assert!(
        err.contains(&format!("netatopd is already running (pid {}", d.pid())),
        "{err}"
    );
    assert!(
        d.pin_dir.join("meta").exists(),
        "a refused --unload removes nothing"
    );

    d.kill9();
    let out = run(d.command().arg("--unload"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        // 8 maps (with the two of the cgroups and the per-user counts),
        // and 6 links: send, receive, exit, exec, rename, cgroup removal.
        String::from_utf8_lossy(&out.stderr).contains("removed 14 pinned objects"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!d.pin_dir.exists());
    // With a pid file in a directory that is not there, the directory it
    // makes for its lock goes with it (a package's purge runs --unload).
    let gone = d.pid_file().parent().unwrap().join("made-for-unload");
    let out = run(std::process::Command::new(netatopd_tests::bin("netatopd"))
        .arg("--unload")
        .arg("--pin-dir")
        .arg(&d.pin_dir)
        .arg("--pid-file")
        .arg(gone.join("netatopd.pid")));
    assert!(out.status.success() && !gone.exists(), "{out:?}");
    // Nothing counts any more: a new start begins from nothing.
    d.restart();
    assert!(!d.log().contains("adopted"), "{}", d.log());
}

#[test]
fn a_second_instance_refuses_and_leaves_the_first_untouched() {
    let d = Daemon::start(&[]);
    let err = fails(&mut d.command());
    assert!(
        err.contains(&format!("netatopd is already running (pid {}", d.pid())),
        "{err}"
    );
    // The first one's socket and pins are intact.
    let _ = d.query();
    assert!(d.pin_dir.join("meta").exists());
}

/// Rewrites one 8-byte word of the pinned meta map (0 layout, 1 build).
fn tamper_meta(d: &Daemon, word: usize) {
    let map = MapHandle::from_pinned_path(d.pin_dir.join("meta")).expect("pinned meta");
    let key = 0u32.to_ne_bytes();
    let mut v = map.lookup(&key, MapFlags::ANY).unwrap().unwrap();
    v[word * 8] ^= 0xff;
    map.update(&key, &v, MapFlags::ANY).unwrap();
}

#[test]
fn programs_of_another_build_are_replaced_and_the_counts_kept() {
    let mut d = Daemon::start(&[]);
    let (g, r) = run_lingering("udp4", &["--count", "30"]);
    d.kill9();
    tamper_meta(&d, 1);
    d.restart();
    assert!(d.log().contains("replaced the programs"), "{}", d.log());
    assert_eq!(record_for(&d.query(), g.pid()).counters, r.counters);
    // The replacement counts: new traffic from a new process is seen.
    let (g2, r2) = run_lingering("tcp4", &["--count", "5"]);
    assert_eq!(record_for(&d.query(), g2.pid()).counters, r2.counters);
    g.finish();
    g2.finish();
}

#[test]
fn incompatible_pinned_state_is_discarded_with_a_log_line() {
    let mut d = Daemon::start(&[]);
    let (g, _) = run_lingering("udp4", &["--count", "30"]);
    d.kill9();
    tamper_meta(&d, 0);
    d.restart();
    let log = d.log();
    assert!(
        log.contains("discarded the state pinned under")
            && log.contains("another record layout")
            && log.contains("counters start from zero"),
        "{log}"
    );
    assert!(records_for(&d.query(), g.pid()).is_empty());
    g.finish();
}

/// A netatopd started with `option first`, a lingering generator counted
/// by it, then that netatopd killed and another started with `option
/// then`, which must discard the pinned state saying `why`. Returns the
/// new netatopd, the generator, its report, and what the first counted.
fn restarted_the_other_way(
    option: &str,
    first: &str,
    then: &str,
    why: &str,
) -> (
    Daemon,
    Gen,
    netatopd_tests::Report,
    netatop_protocol::Counters,
) {
    let mut d = Daemon::start(&[option, first]);
    let (g, r) = run_lingering("udp4", &["--count", "30"]);
    let before = record_for(&d.query(), r.pid).counters;
    d.kill9();
    d.restart_with(&[option, then]);
    let log = d.log();
    assert!(
        log.contains(why) && log.contains("counters start from zero"),
        "{option} {first} then {then}: {log}"
    );
    (d, g, r, before)
}

#[test]
fn threads_counters_kept_the_other_way_start_clean() {
    for (first, then, why) in [
        (
            "hash-map",
            "task-storage",
            "its threads' counters are in a hash map; this start keeps them in task-local storage",
        ),
        (
            "task-storage",
            "hash-map",
            "its threads' counters are in task-local storage; this start keeps them in a hash map",
        ),
    ] {
        let (d, g, r, before) = restarted_the_other_way("--thread-counters", first, then, why);
        assert_eq!(before, r.counters);
        let mode = netatopd_tests::json(d.ctl().args(["stats", "--json"]))["attach_mode"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let want = if then == "hash-map" {
            "hash map"
        } else {
            "task-local storage"
        };
        assert!(
            mode.contains(&format!("; thread counters: {want};")),
            "{mode}"
        );
        assert!(records_for(&d.query(), r.pid).is_empty());
        g.finish();
    }
}

/// Counters pinned by a netatopd that counted the other thing (socket
/// calls, or the wire) are never mixed with this one's: the start
/// discards them, saying why.
#[test]
fn counting_the_other_thing_starts_clean() {
    for (first, then, why) in [
        (
            "calls",
            "wire",
            "its counters count socket calls; this start counts what the wire carries",
        ),
        (
            "wire",
            "calls",
            "its counters count what the wire carries; this start counts socket calls",
        ),
    ] {
        let (d, g, r, before) = restarted_the_other_way("--count", first, then, why);
        assert!(before.udpsndpacks >= 30);
        let stats = netatopd_tests::json(d.ctl().args(["stats", "--json"]));
        assert_eq!(stats["count"], then, "{stats}");
        assert!(records_for(&d.query(), r.pid).is_empty());
        g.finish();
    }
}

/// Counting the wire, a netatopd that was killed leaves its programs
/// counting; what a process sends and receives meanwhile is counted, and
/// the next netatopd adopts it all.
#[test]
fn wire_counting_goes_on_across_a_restart() {
    let mut d = Daemon::start(&["--count", "wire"]);
    let mut g = Gen::spawn("udp4", &["--linger", "--wait-go", "--count", "30"]);
    d.kill9();
    g.go();
    let r = g.report();
    d.restart_with(&["--count", "wire"]);
    let log = d.log();
    assert!(log.contains("adopted"), "{log}");
    let rec = record_for(&d.query(), r.pid).counters;
    // Each datagram is a packet sent and one received (loopback), with
    // its IP and UDP headers.
    assert_eq!((rec.udpsndpacks, rec.udprcvpacks), (30, 30), "{rec:?}");
    assert_eq!(rec.udpsndbytes, r.counters.udpsndbytes + 30 * 28, "{rec:?}");
    let stats = netatopd_tests::json(d.ctl().args(["stats", "--json"]));
    assert_eq!(stats["count"], "wire");
    g.finish();
}

#[test]
fn other_map_sizes_start_clean() {
    let mut d = Daemon::start(&["--max-processes", "4096"]);
    d.kill9();
    d.restart_with(&["--max-processes", "8192"]);
    let log = d.log();
    assert!(
        log.contains("map procs has 4096 entries and --max-processes asks for 8192"),
        "{log}"
    );
}

#[test]
fn a_start_that_fails_after_loading_leaves_nothing_behind() {
    require_bpf_machine();
    let dir = scratch_dir();
    let pin_dir = pin_dir_for(&dir);
    let err = fails(
        std::process::Command::new(bin("netatopd"))
            // Its directory does not exist: binding fails, after loading.
            .args(private_args(&dir, &dir.join("missing/s"))),
    );
    assert!(err.contains("cannot listen on"), "{err}");
    assert!(!pin_dir.exists(), "pins left behind");
    assert!(!dir.join("control.sock").exists(), "socket left behind");
    assert!(!dir.join("netatopd.pid").exists(), "pid file left behind");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Makes `d` panic (a test hook of debug builds, on a statistics request),
/// and checks that it failed as a panic does.
fn panic_now(d: &mut Daemon) {
    let out = run(d.ctl().arg("stats"));
    assert!(!out.status.success(), "stats answered: {out:?}");
    let status = d.exit_status();
    assert_eq!(status.code(), Some(101), "{status}:\n{}", d.log());
    assert!(
        d.log()
            .contains("NETATOPD_TEST_PANIC_ON_STATS is set: a panic"),
        "{}",
        d.log()
    );
    assert!(
        d.log()
            .contains("netatopd failed; the programs keep counting, pinned under"),
        "{}",
        d.log()
    );
}

#[test]
fn a_panic_keeps_what_the_kernel_counted_however_netatopd_started() {
    for keep in [&[][..], &["--keep-counting"][..]] {
        let mut d = Daemon::builder()
            .args(keep)
            .env("NETATOPD_TEST_PANIC_ON_STATS", "1")
            .start();
        let (g, r) = run_lingering("udp4", &["--count", "300", "--size", "700"]);
        assert_eq!(record_for(&d.query(), g.pid()).counters, r.counters);
        // A fresh start, then an adopting one: both keep the pins.
        for (n, start) in ["fresh", "adopting"].into_iter().enumerate() {
            panic_now(&mut d);
            assert!(
                d.pin_dir.join("meta").exists() && d.pin_dir.join("link_exit").exists(),
                "{keep:?}, {start} start: the pins went with the panic"
            );
            d.restart();
            let adopted = d.log().matches("adopted the programs and maps").count();
            assert_eq!(adopted, n + 1, "{}", d.log());
            let rec = record_for(&d.query(), g.pid());
            assert_eq!(
                rec.counters, r.counters,
                "{keep:?}, after a {start} start's panic"
            );
        }
        assert_eq!(r.counters.udpsndpacks, 300);
        assert_eq!(r.counters.udpsndbytes, 210_000);
        g.finish();
    }
}
