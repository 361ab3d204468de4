//! End to end with real atop 2.11.1: `atop -K -P PRN 2 3` against netatopd
//! on the default socket. Generators make their traffic after atop's first
//! sample; what atop prints for them, summed over the samples, must equal
//! their ground truth.
//!
//! `make test` installs atop privately (tests/atop-setup.sh) and passes its
//! path in NETATOPD_TEST_ATOP; without it this test fails, it never skips.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use netatop_protocol::{Counters, DEFAULT_SOCKET};
use netatopd_tests::{atop_binary, parse_prn, Daemon, Gen};

#[test]
fn real_atop_shows_exact_counters_from_netatopd() {
    let atop = atop_binary();
    let _d = Daemon::builder().socket(DEFAULT_SOCKET).start();

    let scenarios: [(&str, &[&str]); 3] = [
        ("udp4", &["--count", "1000", "--size", "100"]),
        ("tcp6", &["--count", "300", "--size", "1400"]),
        (
            "threads",
            &["--threads", "3", "--count", "200", "--size", "512"],
        ),
    ];
    let mut gens: Vec<Gen> = scenarios
        .iter()
        .map(|(s, a)| {
            let mut args = vec!["--wait-go", "--linger"];
            args.extend_from_slice(a);
            Gen::spawn(s, &args)
        })
        .collect();

    let mut child = Command::new(&atop)
        .args(["-K", "-P", "PRN", "2", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting atop");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut seen: HashMap<i32, Counters> = HashMap::new();
    let mut samples = 0;
    let mut reports = Vec::new();
    for line in out.lines() {
        let line = line.expect("reading atop's output");
        if line == "SEP" {
            samples += 1;
            if samples == 1 {
                // atop has taken its first sample: now make the traffic.
                for g in &mut gens {
                    g.go();
                }
                for g in &mut gens {
                    reports.push(g.report());
                }
            }
        } else if let Some((pid, c)) = parse_prn(&line) {
            seen.entry(pid).or_default().add(&c);
        }
    }
    let status = child.wait().expect("waiting for atop");
    assert!(status.success(), "atop failed: {status}");
    assert_eq!(samples, 3, "atop printed {samples} samples");
    for (r, (s, _)) in reports.iter().zip(scenarios) {
        let got = seen.get(&r.pid).copied().unwrap_or_default();
        assert_eq!(
            got, r.counters,
            "{s}: atop's sums differ from the truth {r:?}"
        );
        assert!(got.tcpsndbytes + got.udpsndbytes > 0);
    }
    for g in gens {
        g.finish();
    }
}
