//! What netatopctl reports per group (cgroup, unit, container, pod), read
//! back for the tests; and generators of known traffic moved into a
//! cgroup before it.

use std::path::Path;

use netatop_protocol::Counters;
use netatopd_tests::{json, json_counters, Daemon, Gen};

use super::tree::Cgroups;

/// One group as `dump --by` reports it: its label, counters, removed.
pub type Group = (String, Counters, bool);

/// The groups `netatopctl dump --by <by> --json` reports (with `exited`,
/// also the removed ones), by their label `label`.
pub fn read(d: &Daemon, by: &str, label: &str, exited: bool) -> Vec<Group> {
    let mut cmd = d.ctl();
    cmd.args(["dump", "--by", by, "--json"]);
    if exited {
        cmd.arg("--exited");
    }
    json(&mut cmd)
        .as_array()
        .expect("a list")
        .iter()
        .map(|g| {
            (
                g[label].as_str().unwrap_or_default().to_owned(),
                json_counters(g),
                g["removed"].as_bool().expect("removed"),
            )
        })
        .collect()
}

/// The live groups `netatopctl dump --by <by> --json` reports, by their
/// label `label`.
pub fn groups(d: &Daemon, by: &str, label: &str) -> Vec<Group> {
    read(d, by, label, false)
}

/// The live group whose label ends with `key`.
pub fn find<'a>(gs: &'a [Group], key: &str) -> Option<&'a Counters> {
    gs.iter()
        .find(|(k, _, removed)| !removed && k.ends_with(key))
        .map(|(_, c, _)| c)
}

/// A UDP generator moved into cgroup `dir` before it sends `n` datagrams
/// of 100 bytes; lingers once done. Returns it and what it must count.
pub fn generator_in(dir: &Path, n: usize) -> (Gen, Counters) {
    let n = n.to_string();
    let mut g = Gen::spawn(
        "udp4",
        &["--wait-go", "--linger", "--count", &n, "--size", "100"],
    );
    Cgroups::enter(dir, g.pid());
    g.go();
    let r = g.report();
    (g, r.counters)
}

/// `a` and `b` added.
pub fn sum(a: &Counters, b: &Counters) -> Counters {
    let mut s = *a;
    s.add(b);
    s
}

/// Whether no counter of `now` is below its value in `before`.
pub fn never_lower(before: &Counters, now: &Counters) -> bool {
    now.fields()
        .iter()
        .zip(before.fields())
        .all(|(a, b)| *a >= b)
}
