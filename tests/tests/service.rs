//! The systemd unit: it verifies, netatopd runs with exactly its capability
//! bounding set, and Type=notify readiness means the socket answers.

use std::fs;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use netatopd_tests::{
    bin, query_on, record_for, require_bpf_machine, run_lingering, scratch_dir, signal, unit_path,
};

/// The value of `key=` in the unit (the first one).
fn unit_value(key: &str) -> String {
    let text = fs::read_to_string(unit_path()).expect("reading the unit");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
        .to_owned()
}

#[test]
fn the_unit_verifies() {
    let dir = scratch_dir();
    // verify checks that ExecStart exists: point it at the built binary
    // (quoted: the checkout's path may have a space).
    let unit = fs::read_to_string(unit_path()).unwrap().replace(
        "/usr/sbin/netatopd",
        &format!("\"{}\"", bin("netatopd").display()),
    );
    let copy = dir.join("netatopd.service");
    fs::write(&copy, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian package systemd; make test installs it)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(unit_value("Type"), "notify");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn runs_with_the_units_capabilities_and_is_ready_when_it_answers() {
    require_bpf_machine();
    let dir = scratch_dir();
    let sock = dir.join("netatop.sock");
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // CAP_BPF CAP_PERFMON ... -> setpriv's "-all,+bpf,+perfmon,...".
    let caps: Vec<String> = unit_value("CapabilityBoundingSet")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .arg("--inh-caps=-all")
        .arg(bin("netatopd"))
        .args(netatopd_tests::private_args(&dir, &sock))
        .args(["--socket-group", "nogroup", "--socket-mode", "0660"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let pid = child.id();

    // READY=1 arrives only once the socket answers.
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("READY=1 from netatopd");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    let (g, r) = run_lingering("udp4", &["--count", "9"]);
    let recs = query_on(&mut UnixStream::connect(&sock).expect("answering when ready"));
    assert_eq!(record_for(&recs, r.pid).counters, r.counters);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_owned();
    // CAP_CHOWN (0), CAP_PERFMON (38), CAP_BPF (39), nothing else.
    assert_eq!(eff, "000000c000000001", "{status}");

    signal(pid, libc::SIGTERM);
    let n = notify.recv(&mut buf).expect("STOPPING=1 from netatopd");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    g.finish();
    fs::remove_dir_all(dir).unwrap();
}
