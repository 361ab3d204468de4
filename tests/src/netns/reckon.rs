//! What a scenario across a wire adds up to: the processes' counters and
//! what netatopd counted unattributed in the wire's two namespaces,
//! against what the wire carried, in each direction.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use netatop_protocol::Counters;

use crate::{json, json_counters, record_for, Daemon};

use super::{start_across, End, IfCounters, Wire};

/// A namespace's inode number, as netatopd keys it.
pub fn netns_inode(e: &End) -> u32 {
    std::fs::metadata(e.path())
        .expect("the namespace is mounted")
        .ino() as u32
}

/// What `netatopctl stats` reports unattributed in namespace `netns`.
pub fn unattributed(d: &Daemon, netns: u32) -> Counters {
    let s = json(d.ctl().args(["stats", "--json"]));
    assert_eq!(s["count"], "wire", "{s}");
    s["unattributed"]
        .as_array()
        .expect("unattributed is a list")
        .iter()
        .find(|e| e[0].as_u64() == Some(u64::from(netns)))
        .map(|e| json_counters(&e[1]))
        .unwrap_or_default()
}

/// What one direction carried: packets and IP bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

/// The generator's counters, what is unattributed in the wire's two
/// namespaces, and what the wire carried, once they add up.
pub struct Reckoning {
    pub process: Counters,
    pub unattributed: Counters,
    pub carried: Flow,
    /// The wire of the second attempt, made afresh, where the first did
    /// not add up.
    pub again: Option<Wire>,
}

impl Reckoning {
    /// The wire the counted attempt ran on: `first`, or the fresh one.
    pub fn wire<'a>(&'a self, first: &'a Wire) -> &'a Wire {
        self.again.as_ref().unwrap_or(first)
    }
}

/// Runs `scenario` across `w` under a daemon counting the wire, and waits
/// until every packet that crossed the wire, in each direction, is the
/// generator's (both ends are its own) or unattributed in one of the two
/// namespaces, IP bytes likewise; fails with the last reading if that
/// does not happen within 5 seconds (the last packets of a close may
/// still be on their way when the generator reports).
pub fn reckon(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
    extra: &[&str],
) -> Reckoning {
    reckon_with(d, w, scenario, count, size, extra, |_| {})
}

/// [`reckon`], running `before_attempt` on the wire of each attempt (to
/// set up or reset what a test measures per attempt).
pub fn reckon_with(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
    extra: &[&str],
    mut before_attempt: impl FnMut(&Wire),
) -> Reckoning {
    let what = format!("{scenario} x{count} of {size} B {extra:?}");
    let mut first = None;
    let mut again = None;
    // A second attempt, after a first that did not add up: the kernel can
    // skip the tracing programs for packets (the test machines' kernel
    // does, in its init process's context; see the notes of netatopd(8)
    // on counting the wire). It runs on a fresh wire, so that nothing the
    // first left in its namespaces' counters carries over. Both attempts
    // failing fails.
    for attempt in 1..=2 {
        let wire = again.as_ref().unwrap_or(w);
        before_attempt(wire);
        let before = Before::take(d, wire);
        let (g, r) = start_across(wire, scenario, count, size, extra);
        let outcome = before.try_settle(d, wire, &[r.pid], &what);
        g.finish();
        match outcome {
            Ok(mut r) => {
                if let Some(e) = first {
                    eprintln!("{what}: the first attempt did not add up: {e}");
                }
                r.again = again;
                return r;
            }
            Err(e) if attempt == 1 => {
                first = Some(e);
                again = Some(w.fresh("again"));
            }
            Err(e) => panic!(
                "{what}: twice it did not add up:\n{}\n{e}",
                first.unwrap_or_default()
            ),
        }
    }
    unreachable!("the second attempt returns or panics")
}

/// The counters before a scenario.
pub struct Before {
    wire: IfCounters,
    ua: Counters,
    ub: Counters,
}

impl Before {
    pub fn take(d: &Daemon, w: &Wire) -> Before {
        Before {
            wire: w.a.counters(),
            ua: unattributed(d, netns_inode(&w.a)),
            ub: unattributed(d, netns_inode(&w.b)),
        }
    }

    /// Waits until the processes `pids` and what is unattributed add up to
    /// what the wire carried since, in each direction (see [`reckon`]).
    pub fn settle(&self, d: &Daemon, w: &Wire, pids: &[i32], what: &str) -> Reckoning {
        self.try_settle(d, w, pids, what)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Before::settle`], with the last reading as the error when it did
    /// not add up.
    pub fn try_settle(
        &self,
        d: &Daemon,
        w: &Wire,
        pids: &[i32],
        what: &str,
    ) -> Result<Reckoning, String> {
        let none = Flow {
            packets: 0,
            bytes: 0,
        };
        self.try_settle_received_extra(d, w, pids, none, what)
    }

    /// [`Before::try_settle`], where what is counted as received is to
    /// exceed what the wire carried by `extra` (packets counted twice).
    pub fn try_settle_received_extra(
        &self,
        d: &Daemon,
        w: &Wire,
        pids: &[i32],
        extra: Flow,
        what: &str,
    ) -> Result<Reckoning, String> {
        let (ns_a, ns_b) = (netns_inode(&w.a), netns_inode(&w.b));
        let mut last = None;
        let settled = (0..500).any(|_| {
            let recs = d.query();
            let mut rec = Counters::default();
            for &pid in pids {
                rec.add(&record_for(&recs, pid).counters);
            }
            let mut un = unattributed(d, ns_a).since(&self.ua);
            un.add(&unattributed(d, ns_b).since(&self.ub));
            let wire = w.a.counters().since(&self.wire);
            // A's sends and B's sends (= A's receives).
            let carried = Flow {
                packets: wire.tx_packets + wire.rx_packets,
                bytes: wire.tx_ip_bytes() + wire.rx_ip_bytes(),
            };
            let mut all = rec;
            all.add(&un);
            let sent = Flow {
                packets: all.send_packets(),
                bytes: all.send_bytes(),
            };
            let received = Flow {
                packets: all.recv_packets(),
                bytes: all.recv_bytes(),
            };
            let done = sent == carried
                && received.packets == carried.packets + extra.packets
                && received.bytes == carried.bytes + extra.bytes;
            last = Some((rec, un, carried, sent, received));
            if !done {
                std::thread::sleep(Duration::from_millis(10));
            }
            done
        });
        let (rec, un, carried, sent, received) = last.expect("at least one reading");
        eprintln!("{what}: wire {carried:?}; processes {rec:?}; unattributed {un:?}");
        if !settled {
            return Err(format!(
                "{what}: the wire carried {carried:?}; counted as sent {sent:?}, as received \
                 {received:?} (processes {rec:?}, unattributed {un:?})"
            ));
        }
        Ok(Reckoning {
            process: rec,
            unattributed: un,
            carried,
            again: None,
        })
    }
}
