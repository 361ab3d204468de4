//! 10,000 processes in one response: all present, every record whole.

use std::io::Write;
use std::time::Instant;

use netatop_protocol::RECORD_SIZE;

use netatopd_tests::{query_on, record_for, Daemon, Gen};

#[test]
fn ten_thousand_processes_arrive_whole_as_atop_reads_them() {
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
    assert_eq!((left("procs"), left("threads"), left("exited")), (0, 0, 0));
    let log = d.log();
    assert!(!log.contains("WARN"), "warnings during the test:\n{log}");
}
