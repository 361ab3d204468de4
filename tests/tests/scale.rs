//! 10,000 processes in one response: all present, every record whole.

use std::time::Instant;

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
    // The same over one kept connection, twice, as atop keeps it.
    let mut s = d.connect();
    for _ in 0..2 {
        assert!(query_on(&mut s).len() >= N);
    }
    g.finish();
}
