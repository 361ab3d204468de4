//! Scale: 10,000 processes in one response, all present, every record
//! whole; 20,000 live threads and 3,000 short-lived ones, every count
//! exact, nothing dropped, nothing left behind; and trickle readers of
//! another user against 20,000 threads' responses, closed in time while
//! the daemon's memory stays bounded.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use netatop_protocol::control::{self, Request, Response};
use netatop_protocol::{Counters, NetPerTask, RECORD_SIZE};
use zerocopy::IntoBytes;

use netatopd_tests::{
    connect_as_nobody, json, query_on, record_for, records_for, response_on, run_lingering, Daemon,
    Gen,
};

/// The tests here each take a third of the machine's pids (32,768 by
/// default): one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn ten_thousand_processes_arrive_whole_as_atop_reads_them() {
    let _serial = one_at_a_time();
    const N: usize = 10_000;
    let d = Daemon::start(&[]);
    let mut g = Gen::spawn("fork", &["--count", &N.to_string(), "--size", "77"]);
    let r = g.report();
    assert_eq!(r.children.len(), N);

    // Several clients at once, each reading one recv(96) per record as atop
    // does: a record split across reads fails the query.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut s = d.connect();
            std::thread::spawn(move || {
                let t = Instant::now();
                let recs = query_on(&mut s);
                (recs, t.elapsed())
            })
        })
        .collect();
    for c in clients {
        let (recs, took) = c.join().expect("client thread");
        eprintln!("query of {} records took {took:?}", recs.len());
        assert!(recs.len() >= N);
        for pid in &r.children {
            let rec = record_for(&recs, *pid);
            assert_eq!(
                (rec.counters.udpsndpacks, rec.counters.udpsndbytes),
                (1, 77),
                "child {pid}"
            );
            assert_eq!(rec.counters.udprcvpacks + rec.counters.tcpsndpacks, 0);
        }
    }
    // Clients that ask for ~1 MB and hang up without reading: the daemon
    // gets EPIPE, never SIGPIPE, and goes on serving.
    for _ in 0..3 {
        let mut s = d.connect();
        s.write_all(&[0u8; 3 * RECORD_SIZE]).unwrap();
        drop(s);
    }
    // The same over one kept connection, twice, as atop keeps it.
    let mut s = d.connect();
    for _ in 0..2 {
        assert!(query_on(&mut s).len() >= N);
    }

    // All children exit: one final record each, then nothing left in the kernel.
    g.finish();
    let recs = query_on(&mut s);
    for pid in &r.children {
        assert_eq!(record_for(&recs, *pid).counters.udpsndbytes, 77);
    }
    let left = |map: &str| -> usize {
        let keys = d.map_keys(map);
        keys.iter()
            .filter(|k| {
                let id = i32::from_ne_bytes(k[..4].try_into().unwrap());
                r.children.contains(&id)
            })
            .count()
    };
    let own: Vec<(i32, i32)> = r.children.iter().map(|&p| (p, p)).collect();
    let threads = d.threads_counted(&own);
    assert_eq!((left("procs"), threads, left("exited")), (0, 0, 0));
    let log = d.log();
    assert!(!log.contains("WARN"), "warnings during the test:\n{log}");
}

/// No socket call and no final total lost, by `netatopctl stats --json`.
fn nothing_lost(stats: &serde_json::Value) {
    for lost in [
        "thread_map_full",
        "proc_map_full",
        "thread_storage_failed",
        "exit_map_full",
    ] {
        assert_eq!(stats[lost], 0, "{lost}: {stats}");
    }
}

/// Every process with its threads, from the control socket.
fn processes_with_threads(d: &Daemon) -> Vec<control::Process> {
    let mut s = UnixStream::connect(d.control_socket()).expect("control socket");
    let req = Request::Processes {
        threads: true,
        exited: false,
    };
    match control::call(&mut s, &req).expect("a response") {
        Response::Processes(p) => p,
        other => panic!("not processes: {other:?}"),
    }
}

#[test]
fn twenty_thousand_live_threads_and_three_thousand_short_lived_count_exactly() {
    const FARMS: usize = 20;
    const THREADS: usize = 1000;
    const SHORT: usize = 3000;
    let _serial = one_at_a_time();
    let d = Daemon::start(&[]);
    let farms: Vec<_> = (0..FARMS)
        .map(|_| {
            run_lingering(
                "thread-farm",
                &[
                    "--threads",
                    &THREADS.to_string(),
                    "--count",
                    "2",
                    "--size",
                    "64",
                ],
            )
        })
        .collect();
    let (short, short_r) = run_lingering(
        "threads",
        &[
            "--threads",
            &SHORT.to_string(),
            "--count",
            "1",
            "--size",
            "32",
        ],
    );
    assert_eq!(short_r.tids.len(), SHORT);

    // Through the atop socket: each process's exact total.
    let mut atop = d.connect();
    let recs = query_on(&mut atop);
    for (_, r) in &farms {
        assert_eq!(r.threads.len(), THREADS);
        let mut sum = r.counters;
        for t in &r.threads {
            sum.add(&t.counters);
        }
        assert_ne!(sum, Counters::default());
        assert_eq!(record_for(&recs, r.pid).counters, sum, "process {}", r.pid);
    }
    assert_eq!(record_for(&recs, short_r.pid).counters, short_r.counters);

    // Every thread's own record, live ones only.
    let procs = processes_with_threads(&d);
    let threads: HashMap<i32, Counters> = procs
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| (t.tid, t.counters)))
        .collect();
    for (_, r) in &farms {
        for t in &r.threads {
            assert_eq!(threads.get(&t.tid), Some(&t.counters), "thread {}", t.tid);
        }
    }
    for tid in &short_r.tids {
        assert!(!threads.contains_key(tid), "exited thread {tid} listed");
    }
    let s = json(d.ctl().args(["stats", "--json"]));
    assert!(
        s["threads"].as_u64().unwrap() >= (FARMS * THREADS) as u64,
        "{s}"
    );
    nothing_lost(&s);

    // All of them exit: each process's final record, then nothing of them
    // left in the kernel.
    let pids: Vec<i32> = farms
        .iter()
        .map(|(_, r)| r.pid)
        .chain([short_r.pid])
        .collect();
    let tids: Vec<i32> = farms
        .iter()
        .flat_map(|(_, r)| r.threads.iter().map(|t| t.tid))
        .chain(short_r.tids.iter().copied())
        .collect();
    let farms_threads: Vec<(i32, i32)> = farms
        .iter()
        .flat_map(|(_, r)| r.threads.iter().map(|t| (t.tid, r.pid)))
        .chain(short_r.tids.iter().map(|&t| (t, short_r.pid)))
        .collect();
    let totals: Vec<Counters> = pids
        .iter()
        .map(|&p| record_for(&recs, p).counters)
        .collect();
    for (g, _) in farms {
        g.finish();
    }
    short.finish();
    let recs = query_on(&mut atop);
    for (pid, total) in pids.iter().zip(&totals) {
        let mine = records_for(&recs, *pid);
        assert_eq!(mine.len(), 1, "one final record of {pid}");
        assert_eq!(&mine[0].counters, total, "final record of {pid}");
    }
    for pid in &pids {
        assert!(
            !d.map_has("procs", *pid as u32),
            "process {pid} left in procs"
        );
        assert!(
            !d.map_has("exited", *pid as u32),
            "process {pid} left in exited"
        );
    }
    let owned: Vec<(i32, i32)> = farms_threads.into_iter().collect();
    let left = d.threads_counted(&owned);
    assert_eq!(left, 0, "threads with counters left");
    let listed = processes_with_threads(&d)
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .filter(|t| tids.contains(t))
        .count();
    assert_eq!(listed, 0, "exited threads listed");
    let s = json(d.ctl().args(["stats", "--json"]));
    nothing_lost(&s);
}

/// A daemon's resident memory, in bytes.
fn rss(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Whether the other end of `s` has closed, whatever is left to read.
fn hung_up(s: &UnixStream) -> bool {
    let mut fd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; a zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n == 1 && fd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

#[test]
fn trickle_readers_of_another_user_are_closed_and_hold_bounded_memory() {
    const FARMS: usize = 20;
    const THREADS: usize = 1000;
    const READERS: usize = 16;
    const CAP: u64 = 8 << 20;
    let _serial = one_at_a_time();
    let d = Daemon::builder()
        .open_to_all()
        .args(&["--client-timeout", "3"])
        .args(&["--max-unprivileged-output", &CAP.to_string()])
        .start();
    let farms: Vec<_> = (0..FARMS)
        .map(|_| {
            run_lingering(
                "thread-farm",
                &["--threads", &THREADS.to_string(), "--count", "1"],
            )
        })
        .collect();
    // Root's thread responses: about 2 MB each, built whole.
    let threads_request = NetPerTask::THREADS_REQUEST;
    let mut root = d.connect();
    root.write_all(threads_request.as_bytes()).unwrap();
    let whole = response_on(&mut root);
    assert!(whole.len() > FARMS * THREADS, "{} records", whole.len());
    let response_bytes = (whole.len() * RECORD_SIZE) as u64;
    let baseline = rss(&d);
    // The first farm's total: its leader's and its threads' counts.
    let first = &farms[0].1;
    let mut farm_total = first.counters;
    for t in &first.threads {
        farm_total.add(&t.counters);
    }

    // nobody's readers (--max-clients-per-user of them): each asks for
    // eight thread responses at once, then takes 6 KiB every 50 ms
    // (120 KiB/s), forever: its output always moves, but a response takes
    // it 16 s. Those answered past the cap wait until others are gone.
    let mut readers: Vec<UnixStream> = (0..READERS)
        .map(|_| {
            let mut s = connect_as_nobody(&d.socket).expect("nobody connects");
            for _ in 0..8 {
                s.write_all(threads_request.as_bytes()).unwrap();
            }
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    // Per reader: when its first byte came, and when it was closed.
    let mut first_byte: Vec<Option<Instant>> = vec![None; READERS];
    let mut closed: Vec<Option<Instant>> = vec![None; READERS];
    let mut peak = baseline;
    while closed.iter().any(Option::is_none) {
        if start.elapsed() > Duration::from_secs(120) {
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "trickle readers still connected after 120 s (--client-timeout 3): {} answered, \
                 {} closed; the log ends {tail:#?}",
                first_byte.iter().flatten().count(),
                closed.iter().flatten().count()
            );
        }
        for (i, s) in readers.iter_mut().enumerate() {
            if closed[i].is_some() {
                continue;
            }
            // Closed by the daemon: with most of a response still unread
            // in its socket, only poll can tell.
            if hung_up(s) {
                closed[i] = Some(Instant::now());
                continue;
            }
            let mut some = [0u8; 6 << 10];
            match s.read(&mut some) {
                Ok(0) => closed[i] = Some(Instant::now()),
                Ok(_) => {
                    first_byte[i].get_or_insert_with(Instant::now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("a trickle reader: {e}"),
            }
        }
        peak = peak.max(rss(&d));
        // Root is served exactly meanwhile.
        let recs = query_on(&mut root);
        assert_eq!(record_for(&recs, first.pid).counters, farm_total);
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed_after = start.elapsed();
    // Each was closed within the timeout (and its sixteenth, and the
    // second housekeeping may take) of its first byte, however it read.
    for (first, end) in first_byte.iter().zip(&closed) {
        let first = first.expect("every reader was answered at last");
        let took = end.unwrap() - first;
        assert!(
            took < Duration::from_millis(6_500),
            "closed {took:?} after its first byte"
        );
    }
    let log = d.log();
    assert_eq!(
        log.matches("of uid 65534 disconnected: its responses")
            .count(),
        READERS,
        "{log}"
    );
    // What nobody's clients made it hold: the cap, one response answered
    // past it, the pages of the responses they had partly taken (a buffer
    // keeps them until it is given back), and 4 MiB for the allocator.
    // Without the cap it would be some 6 MB per reader.
    let grew = peak.saturating_sub(baseline);
    let bound = CAP + 4 * response_bytes + (4 << 20);
    eprintln!(
        "{READERS} trickle readers: closed within {closed_after:?}; the daemon grew by {} KiB \
         (bound {} KiB; responses of {} KiB)",
        grew >> 10,
        bound >> 10,
        response_bytes >> 10
    );
    assert!(grew <= bound, "grew by {grew} bytes, bound {bound}");
    for (g, _) in farms {
        g.finish();
    }
}
