//! Scenarios run across a wire: the generator's client in end A's
//! namespace, its server in end B's, both ends its own.

use crate::{record_for, Daemon, Gen, Report};

use super::{IfCounters, Wire};

/// Starts `scenario` with its client in `w.a` and its server in `w.b`
/// and waits for its report (its traffic done, its sockets closed); the
/// generator stays until finished.
pub fn start_across(
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
    extra: &[&str],
) -> (Gen, Report) {
    let mut g = spawn_across(w, scenario, count, size, extra);
    let r = g.report();
    assert_eq!(
        r.pid,
        g.pid(),
        "the generator runs in place of ip netns exec"
    );
    (g, r)
}

/// Starts `scenario` across `w` (see [`start_across`]) without waiting.
pub fn spawn_across(w: &Wire, scenario: &str, count: usize, size: usize, extra: &[&str]) -> Gen {
    let prefix = w.a.exec_prefix();
    let prefix: Vec<&std::ffi::OsStr> = prefix.iter().map(|s| s.as_os_str()).collect();
    let peer_netns = w.b.path();
    let (count, size, peer_addr) = (count.to_string(), size.to_string(), w.b.addr.to_string());
    let mut args = vec![
        "--linger",
        "--count",
        &count,
        "--size",
        &size,
        "--peer-netns",
        peer_netns.to_str().expect("UTF-8 path"),
        "--peer-addr",
        &peer_addr,
    ];
    args.extend_from_slice(extra);
    Gen::spawn_in(&prefix, scenario, &args)
}

/// Runs `scenario` across `w`; returns its report, what netatopd counted
/// for it, and what the wire carried meanwhile (seen from `w.a`).
pub fn across(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
) -> (Report, netatop_protocol::NetPerTask, IfCounters) {
    let before = w.a.counters();
    let (g, r) = start_across(w, scenario, count, size, &[]);
    let rec = record_for(&d.query(), r.pid);
    let carried = w.a.counters().since(&before);
    g.finish();
    (r, rec, carried)
}
