//! Scale: 10,000 processes in one response, all present, every record
//! whole; 20,000 live threads and 3,000 short-lived ones, every count
//! exact, nothing dropped, nothing left behind.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use netatop_protocol::control::{self, Request, Response};
use netatop_protocol::{Counters, RECORD_SIZE};

use netatopd_tests::{json, query_on, record_for, records_for, run_lingering, Daemon, Gen};

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
