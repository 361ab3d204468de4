//! What the sections put a daemon under: live processes with traffic,
//! room for them under pid_max, and atop's queries, timed.

use std::fs;
use std::time::{Duration, Instant};

use netatop_protocol::{query, ReadMode};
use netatopd_tests::{Daemon, Gen};

use crate::measure::median;

/// `n` live processes that each sent one datagram, counted by `d`.
pub fn spawn_processes(n: usize) -> Gen {
    let mut g = Gen::spawn("fork", &["--count", &n.to_string(), "--size", "64"]);
    let r = g.report();
    assert_eq!(r.children.len(), n);
    g
}

/// `queries` atop-style queries on one connection: (median, max) ms and
/// the records per response.
pub fn time_queries(d: &Daemon, queries: usize) -> (f64, f64, usize) {
    let mut conn = d.connect();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut times = Vec::new();
    let mut recs = 0;
    for _ in 0..queries {
        let t = Instant::now();
        recs = query(&mut conn, ReadMode::AsAtop).expect("query").len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    (median(&mut times), max, recs)
}

/// Raises pid_max for the run when `n` processes would not fit; restores
/// it when dropped.
pub struct PidMax(Option<String>);

impl PidMax {
    /// Room for `n` more processes (and some to spare).
    pub fn room_for(n: usize) -> PidMax {
        const PATH: &str = "/proc/sys/kernel/pid_max";
        let old = fs::read_to_string(PATH).unwrap();
        if old.trim().parse::<usize>().unwrap() > n + 20_000 {
            return PidMax(None);
        }
        fs::write(PATH, "4194304").expect("raising pid_max");
        PidMax(Some(old))
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = fs::write("/proc/sys/kernel/pid_max", old.trim());
        }
    }
}
