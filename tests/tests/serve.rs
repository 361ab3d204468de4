//! `netatopctl serve`: the scrape endpoint, read by a real Prometheus
//! server (Debian's, unpacked by tests/prometheus-tools.sh). A generator
//! in a cgroup named like a Kubernetes pod makes known traffic; the value
//! Prometheus stores, read back through its query API, equals it; a
//! restart of netatopd in between (counting on, pinned) reads as no
//! reset: the counter goes on and its `_created` stays.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netatop_protocol::Counters;
use netatopd_tests::{wait_until, Daemon};

#[allow(dead_code)]
#[path = "cgroups/prometheus.rs"]
mod prometheus;
#[allow(dead_code)]
#[path = "cgroups/totals.rs"]
mod totals;
#[allow(dead_code)]
#[path = "cgroups/tree.rs"]
mod tree;

use prometheus::{promtool_accepts, tools_dir};
use totals::generator_in;
use tree::Cgroups;

const POD: &str = "4e5f6a7b-3333-4c8d-9e0f-1a2b3c4d5e6f";
const CONTAINER: &str = "7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d";

/// A child process killed and reaped when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 GET of `path` on `addr` with an `Accept` header, if any:
/// the status line, the headers, and the body.
fn get(addr: &str, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connecting");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("reading the answer");
    let (head, body) = all.split_once("\r\n\r\n").expect("headers and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// `s` percent-encoded for a URL's query.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of PromQL `query` now, if it has exactly one sample.
fn query(prom: &str, query: &str) -> Option<f64> {
    let (status, _, body) = get(
        prom,
        &format!("/api/v1/query?query={}", encode(query)),
        None,
    );
    if !status.contains(" 200 ") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

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

/// A Prometheus server scraping `target` every second, its data under
/// `dir`; its address, once it answers.
fn prometheus(tools: &Path, dir: &Path, target: &str) -> (Running, String) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
             - job_name: netatopd\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    // A free port: bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(tools.join("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus");
    let running = Running(child);
    wait_until(Duration::from_secs(30), "prometheus ready", || {
        TcpStream::connect(&addr).is_ok() && get(&addr, "/-/ready", None).0.contains(" 200 ")
    });
    (running, addr)
}

/// Waits until Prometheus stores `want` as the value of `q`.
fn wait_stored(prom: &str, q: &str, want: f64) {
    let mut last = None;
    let done = wait_until_or(Duration::from_secs(30), || {
        last = query(prom, q);
        last == Some(want)
    });
    assert!(done, "{q}: Prometheus has {last:?}, the traffic was {want}");
}

/// Like `wait_until`, without panicking: whether `ok` held in time.
fn wait_until_or(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
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

    let dir = tempdir();
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

/// A fresh directory of this test's own under the system's temporary one.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netatopd-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
