//! A real Prometheus server (Debian's, unpacked by
//! tests/prometheus-tools.sh) scraping a target, and what it stores, read
//! back through its HTTP query API; shared by the tests of the scrape
//! endpoint (serve.rs, image.rs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netatopd_tests::{wait_until, waited};

/// A child process killed and reaped when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.0 GET of `path` on `addr` with an `Accept` header, if any:
/// the status line, the headers, and the body.
pub fn get(addr: &str, path: &str, accept: Option<&str>) -> (String, String, String) {
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
pub fn query(prom: &str, query: &str) -> Option<f64> {
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

/// A Prometheus server scraping `target` every second, its data under
/// `dir`; its address, once it answers.
pub fn prometheus(tools: &Path, dir: &Path, target: &str) -> (Running, String) {
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
pub fn wait_stored(prom: &str, q: &str, want: f64) {
    let mut last = None;
    let done = waited(Duration::from_secs(30), || {
        last = query(prom, q);
        last == Some(want)
    });
    assert!(done, "{q}: Prometheus has {last:?}, the traffic was {want}");
}

/// A fresh directory of this test's own under the system's temporary one.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netatopd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
