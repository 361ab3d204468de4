//! Sections 6 and 7: processes coming and going under netatopd (exit
//! churn), and netatopd itself starting.

use std::time::{Duration, Instant};

use netatop_protocol::{query, ReadMode};
use netatopd_tests::{wait_until, Daemon, Gen};

use crate::measure::median;
use crate::programs::BpfStats;
use crate::Scale;

/// Section 6: exit churn, processes that each send one datagram and exit,
/// with netatopd stopped and running; every final total checked once.
pub fn churn(s: &Scale) {
    println!("## 6. Exit churn\n");
    let n = s.churn;
    let run = || -> (f64, Vec<i32>) {
        let t = Instant::now();
        let mut g = Gen::spawn("churn", &["--count", &n.to_string(), "--size", "32"]);
        let r = g.report();
        let secs = t.elapsed().as_secs_f64();
        g.finish();
        (secs, r.children)
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut checked = false;
    let mut figures = Vec::new();
    for round in 0..s.churn_rounds {
        off.push(run().0);
        let d = Daemon::start(&[]);
        let mut conn = d.connect();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let _ = query(&mut conn, ReadMode::AsAtop).expect("query");
        let stats = (round == 0).then(BpfStats::enable);
        let (secs, children) = run();
        on.push(secs);
        if let Some(stats) = stats {
            figures = stats.read();
        }
        if round == 0 {
            // Every final total arrives, exactly, and nothing stays behind.
            let mut got = std::collections::HashMap::new();
            wait_until(Duration::from_secs(60), "every exit delivered", || {
                for r in query(&mut conn, ReadMode::AsAtop).expect("query") {
                    got.insert(r.id, r.counters);
                }
                children.iter().all(|p| got.contains_key(p))
            });
            assert!(children
                .iter()
                .all(|p| got[p].udpsndpacks == 1 && got[p].udpsndbytes == 32));
            for map in ["procs", "exited"] {
                assert!(
                    children.iter().all(|&p| !d.map_has(map, p as u32)),
                    "entries left in {map}"
                );
            }
            let own: Vec<(i32, i32)> = children.iter().map(|&p| (p, p)).collect();
            assert_eq!(d.threads_counted(&own), 0, "threads' counters left");
            checked = true;
        }
    }
    let (off, on) = (median(&mut off), median(&mut on));
    println!(
        "{n} processes that each send one datagram and exit, 64 at a time; {} rounds.\n",
        s.churn_rounds
    );
    println!("| netatopd | seconds (median) | µs per process |\n|---|---|---|");
    println!("| stopped | {off:.3} | {:.1} |", off * 1e6 / n as f64);
    println!("| running | {on:.3} | {:.1} |", on * 1e6 / n as f64);
    println!(
        "\nadded per fork+exit: {:.2} µs (ratio {:.3}); every final total delivered exactly \
         and no map entries left: {}\n",
        (on - off) * 1e6 / n as f64,
        on / off,
        if checked { "yes" } else { "not checked" }
    );
    println!("kernel.bpf_stats_enabled=1 during the first running round:\n");
    BpfStats::print(&figures);
}

/// Section 7: start-up, from exec to the socket answering.
pub fn startup(s: &Scale) {
    println!("## 7. Start-up: exec to the socket answering\n");
    let mut d = Daemon::start(&[]);
    let mut times = Vec::new();
    for _ in 0..s.startups {
        assert!(d.stop().success());
        let t = Instant::now();
        d.restart();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    println!(
        "{} starts (nothing pinned; programs loaded, attached and pinned each time): \
         median {:.1} ms, max {max:.1} ms\n",
        s.startups,
        median(&mut times)
    );
}
