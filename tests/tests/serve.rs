//! `netatopctl serve`: the scrape endpoint, read by a real Prometheus
//! server (Debian's, unpacked by tests/prometheus-tools.sh). A generator
//! in a cgroup named like a Kubernetes pod makes known traffic; the value
//! Prometheus stores, read back through its query API, equals it; a
//! restart of netatopd in between (counting on, pinned) reads as no
//! reset: the counter goes on and its `_created` stays.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use netatop_protocol::Counters;
use netatopd_tests::Daemon;

#[allow(dead_code)]
#[path = "cgroups/prometheus.rs"]
mod prometheus;
#[allow(dead_code)]
#[path = "cgroups/totals.rs"]
mod totals;
#[allow(dead_code)]
#[path = "cgroups/tree.rs"]
mod tree;

#[path = "scrape/prom.rs"]
mod prom;

use prom::{get, prometheus, query, tempdir, wait_stored, Running};
use prometheus::{promtool_accepts, tools_dir};
use totals::generator_in;
use tree::Cgroups;

const POD: &str = "4e5f6a7b-3333-4c8d-9e0f-1a2b3c4d5e6f";
const CONTAINER: &str = "7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d";

/// `netatopctl serve` for daemon `d`, grouped by pod; its address, once
/// it says it listens.
fn serve(d: &Daemon) -> (Running, String) {
    let mut child = d
        .ctl()
        .args(["serve", "--listen", "127.0.0.1:0", "--by", "pod"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("netatopctl serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("its first line");
    let addr = line
        .trim()
        .strip_prefix("netatopctl serve: listening on http://")
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Running(child), addr)
}

#[test]
fn prometheus_stores_exact_per_pod_counters_and_a_restart_is_no_reset() {
    let tools = tools_dir();
    let mut d = Daemon::start(&["--keep-counting"]);
    let mut cg = Cgroups::new("serve");
    let pod = cg.make(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/\
         cri-containerd-{CONTAINER}.scope",
        POD.replace('-', "_")
    ));
    let (first, truth1) = generator_in(&pod, 37);
    let (_serve, addr) = serve(&d);

    // What a scraper gets, by what it accepts.
    let om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, headers, body) = get(&addr, "/metrics", Some(om));
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{headers}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("\nnetatopd_up 1\n"), "{body}");
    let series = format!("pod_uid=\"{POD}\",qos=\"besteffort\"");
    assert!(
        body.contains(&format!(
            "netatop_udp_send_bytes_total{{{series}}} {}\n",
            truth1.udpsndbytes
        )),
        "{body}"
    );
    assert!(body.contains(&format!("netatop_udp_send_bytes_created{{{series}}} ")));
    let (_, headers, text) = get(&addr, "/metrics", None);
    assert!(
        headers.contains("Content-Type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert!(
        !text.contains("# EOF") && text.contains("# TYPE netatop_udp_send_bytes_created gauge")
    );
    promtool_accepts(&tools, &text);
    assert!(get(&addr, "/other", None).0.contains(" 404 "));

    let dir = tempdir("serve");
    let (_prom, prom) = prometheus(&tools, &dir, &addr);
    let sel = format!("{{pod_uid=\"{POD}\"}}");
    let sent = |c: &Counters| c.udpsndbytes as f64;
    wait_stored(
        &prom,
        &format!("netatop_udp_send_bytes_total{sel}"),
        sent(&truth1),
    );
    wait_stored(&prom, &format!("netatop_udp_send_packets_total{sel}"), 37.0);
    let created =
        query(&prom, &format!("netatop_udp_send_bytes_created{sel}")).expect("the stored _created");
    assert!(created > 1.0e9, "{created}");

    // netatopd stops, the programs counting on; Prometheus sees it down,
    // traffic goes on meanwhile, and the next netatopd adopts the counts.
    d.stop();
    wait_stored(&prom, "netatopd_up", 0.0);
    first.finish();
    let (second, truth2) = generator_in(&pod, 23);
    d.restart();
    let mut total = truth1;
    total.add(&truth2);
    wait_stored(
        &prom,
        &format!("netatop_udp_send_bytes_total{sel}"),
        sent(&total),
    );
    wait_stored(&prom, &format!("netatop_udp_send_packets_total{sel}"), 60.0);
    wait_stored(&prom, "netatopd_up", 1.0);
    assert_eq!(
        query(&prom, &format!("netatop_udp_send_bytes_created{sel}")),
        Some(created),
        "_created moved across the restart"
    );
    assert_eq!(
        query(
            &prom,
            &format!("resets(netatop_udp_send_bytes_total{sel}[10m])")
        ),
        Some(0.0),
        "Prometheus saw a reset"
    );
    second.finish();
    drop(cg);
    let _ = std::fs::remove_dir_all(&dir);
}
