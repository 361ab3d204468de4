//! The Prometheus side of the export: the README's recipe, promtool's
//! check, and a real node_exporter serving what the recipe wrote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netatopd_tests::wait_until;

/// The README's node_exporter recipe: its cron line and the timer's
/// ExecStart command.
pub fn readme_recipe() -> (String, String) {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let cron = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("* * * * * root netatopctl export"))
        .expect("the README's cron line");
    let exec = readme
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("ExecStart=/usr/bin/netatopctl export"))
        .expect("the README's timer command");
    (cron.to_owned(), format!("/usr/bin/netatopctl export{exec}"))
}

/// Asserts that `promtool check metrics` accepts `text`.
pub fn promtool_accepts(tools: &Path, text: &str) {
    let mut check = std::process::Command::new(tools.join("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where tests/prometheus-tools.sh put promtool and node_exporter.
pub fn tools_dir() -> PathBuf {
    let dir = std::env::var_os("NETATOPD_TEST_PROMETHEUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/prometheus"),
        PathBuf::from,
    );
    let bin = dir.join("root/usr/bin");
    assert!(
        bin.join("promtool").exists(),
        "no promtool in {}: run `bash tests/prometheus-tools.sh {}` (make test does)",
        bin.display(),
        dir.display()
    );
    bin
}

/// node_exporter with only its textfile collector, on a loopback port,
/// serving the `.prom` files of `dir`; what it serves.
pub fn node_exporter_serves(tools: &Path, dir: &Path) -> String {
    // A free port: bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut ne = std::process::Command::new(tools.join("prometheus-node-exporter"))
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node_exporter");
    let mut body = String::new();
    wait_until(Duration::from_secs(10), "node_exporter answering", || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        body.clear();
        s.read_to_string(&mut body).is_ok() && body.contains("netatop_")
    });
    let _ = ne.kill();
    let _ = ne.wait();
    body
}
