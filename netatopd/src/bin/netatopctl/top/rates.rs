//! The model of `netatopctl top`: each entry's rates over one interval,
//! from the previous reading, the current one and the interval's length.
//! The process view and the group view both read it and only format.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use netatop_protocol::control::Process;
use netatop_protocol::Counters;

use crate::groups::{Labels, Row};

/// What the model needs of an entry of a reading: a process, or a group
/// of cgroups.
pub trait Entry {
    /// What names the entry from one reading to the next.
    type Key: Eq + Hash;
    /// Whether an entry can start again from zero under the key it had,
    /// as a restarted unit's new cgroup does. Then an entry counts all of
    /// its counters as new when an ended entry of its key is in the same
    /// reading, or when a counter is lower than it was; otherwise what
    /// grew, field by field.
    const RESTARTS: bool;
    fn key(&self) -> Self::Key;
    fn counters(&self) -> Counters;
    /// It ended during the interval (a process exited, a cgroup was
    /// removed): its counters are its final totals, shown once, and it is
    /// not carried over to the next interval.
    fn ended(&self) -> bool;
    /// The order of entries with equal rates.
    fn tie(&self, other: &Self) -> Ordering;
}

/// A process: by its pid and start time, so that a reused pid is another
/// process, whose counters are all new.
impl Entry for Process {
    type Key = (i32, u64);
    const RESTARTS: bool = false;

    fn key(&self) -> (i32, u64) {
        (self.pid, self.btime)
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn ended(&self) -> bool {
        self.exited
    }

    fn tie(&self, other: &Self) -> Ordering {
        self.pid.cmp(&other.pid)
    }
}

/// A group (a cgroup, unit, container or pod): by its labels. A group's
/// counters never go back while its cgroups exist; a restarted unit's new
/// cgroup starts again from zero, and then its old cgroup's final totals
/// come as removed in the same reading, or its counters are lower than
/// they were.
impl Entry for Row {
    type Key = Labels;
    const RESTARTS: bool = true;

    fn key(&self) -> Labels {
        self.labels.clone()
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn ended(&self) -> bool {
        self.removed
    }

    fn tie(&self, other: &Self) -> Ordering {
        self.labels.cmp(&other.labels)
    }
}

/// One entry's traffic over one interval, per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Rate<'a, E> {
    /// The entry as read at the end of the interval.
    pub entry: &'a E,
    /// Bytes sent, TCP and UDP.
    pub send_bytes: f64,
    /// Bytes received, TCP and UDP.
    pub recv_bytes: f64,
    /// Packets sent, TCP and UDP.
    pub send_packets: f64,
    /// Packets received, TCP and UDP.
    pub recv_packets: f64,
    /// The eight counters, in wire order (as `FIELDS` names them).
    pub fields: [f64; 8],
}

impl<E> Rate<'_, E> {
    /// Bytes sent and received: what the rates are sorted by.
    fn bytes(&self) -> f64 {
        self.send_bytes + self.recv_bytes
    }
}

/// The rates of one interval after another: the previous reading, kept
/// from one interval to the next.
pub struct Rates<E: Entry> {
    /// The counters of each entry that was live at the previous reading.
    before: HashMap<E::Key, Counters>,
}

impl<E: Entry> Rates<E> {
    /// From the first reading.
    pub fn new(first: &[E]) -> Self {
        Rates {
            before: live(first),
        }
    }

    /// The rates of the entries of `now`, read `secs` seconds after the
    /// previous reading, which `now` then replaces: the entries with
    /// traffic in the interval, busiest first (bytes sent and received),
    /// equal ones by [`Entry::tie`]. An entry not read before counts all
    /// of its counters as new.
    pub fn next<'a>(&mut self, now: &'a [E], secs: f64) -> Vec<Rate<'a, E>> {
        let rates = rates(now, &self.before, secs);
        self.before = live(now);
        rates
    }
}

/// The counters of the entries that have not ended.
fn live<E: Entry>(reading: &[E]) -> HashMap<E::Key, Counters> {
    reading
        .iter()
        .filter(|e| !e.ended())
        .map(|e| (e.key(), e.counters()))
        .collect()
}

fn rates<'a, E: Entry>(
    now: &'a [E],
    before: &HashMap<E::Key, Counters>,
    secs: f64,
) -> Vec<Rate<'a, E>> {
    let per_sec = |v: u64| v as f64 / secs;
    // The keys of the entries that ended, where a key can restart.
    let ended: HashSet<E::Key> = if E::RESTARTS {
        now.iter().filter(|e| e.ended()).map(E::key).collect()
    } else {
        HashSet::new()
    };
    let mut out: Vec<Rate<'a, E>> = now
        .iter()
        .filter_map(|e| {
            let key = e.key();
            let counters = e.counters();
            let last = before.get(&key).copied().unwrap_or_default();
            let restarted = E::RESTARTS
                && !e.ended()
                && (ended.contains(&key)
                    || counters
                        .fields()
                        .iter()
                        .zip(last.fields())
                        .any(|(n, b)| *n < b));
            let d = if restarted {
                counters
            } else {
                counters.since(&last)
            };
            (d != Counters::default()).then(|| Rate {
                entry: e,
                send_bytes: per_sec(d.send_bytes()),
                recv_bytes: per_sec(d.recv_bytes()),
                send_packets: per_sec(d.send_packets()),
                recv_packets: per_sec(d.recv_packets()),
                fields: d.fields().map(per_sec),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.bytes()
            .total_cmp(&a.bytes())
            .then_with(|| a.entry.tie(b.entry))
    });
    out
}

/// Bytes sent and received per second, summed over `rates`.
pub fn totals<E>(rates: &[Rate<'_, E>]) -> (f64, f64) {
    (
        rates.iter().map(|r| r.send_bytes).sum(),
        rates.iter().map(|r| r.recv_bytes).sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, btime: u64, fields: [u64; 8], exited: bool) -> Process {
        Process {
            pid,
            btime,
            command: format!("p{pid}"),
            counters: Counters::from_fields(fields),
            exited,
            threads: Vec::new(),
        }
    }

    /// UDP bytes sent and their packets (one per 100 bytes).
    fn udp(bytes: u64) -> [u64; 8] {
        [0, 0, 0, 0, bytes / 100, bytes, 0, 0]
    }

    fn summary<E>(rates: &[Rate<'_, E>], name: impl Fn(&E) -> String) -> Vec<(String, f64, bool)>
    where
        E: Entry,
    {
        rates
            .iter()
            .map(|r| (name(r.entry), r.send_bytes, r.entry.ended()))
            .collect()
    }

    #[test]
    fn known_readings_and_interval_give_exact_rates() {
        let mut model = Rates::new(&[p(7, 10, [1, 100, 2, 200, 3, 300, 4, 400], false)]);
        let now = [p(7, 10, [5, 500, 10, 1200, 7, 700, 12, 1600], false)];
        let r = model.next(&now, 4.0);
        assert_eq!(r.len(), 1);
        // Deltas 4, 400, 8, 1000, 4, 400, 8, 1200 over 4 seconds.
        assert_eq!(
            r[0].fields,
            [1.0, 100.0, 2.0, 250.0, 1.0, 100.0, 2.0, 300.0]
        );
        assert_eq!(r[0].send_bytes, (400.0 + 400.0) / 4.0);
        assert_eq!(r[0].recv_bytes, (1000.0 + 1200.0) / 4.0);
        assert_eq!(r[0].send_packets, (4.0 + 4.0) / 4.0);
        assert_eq!(r[0].recv_packets, (8.0 + 8.0) / 4.0);
        assert_eq!(totals(&r), (200.0, 550.0));
        // Each rate is its interval's delta over the interval, rounded
        // once: 1 byte in a third of a second.
        let later = [p(7, 10, [5, 501, 10, 1200, 7, 700, 12, 1600], false)];
        let r = model.next(&later, 1.0 / 3.0);
        assert_eq!(r[0].send_bytes, 1.0 / (1.0 / 3.0));
        assert_eq!(r[0].fields[1], r[0].send_bytes);
        // Nothing new: no rates.
        assert!(model.next(&later, 1.0).is_empty());
        assert_eq!(totals::<Process>(&[]), (0.0, 0.0));
    }

    #[test]
    fn a_process_that_exits_is_shown_once_with_its_final_deltas() {
        let mut model = Rates::new(&[
            p(1, 10, udp(1000), false),
            p(2, 10, udp(500), false),
            p(3, 10, udp(0), false),
        ]);
        let now = [
            p(1, 10, udp(3000), false),
            // Exited during the interval: its final totals.
            p(2, 10, udp(900), true),
            // pid 3 reused by a new process: its counts are all new.
            p(3, 11, udp(400), false),
            // No traffic in the interval: no rate.
            p(4, 10, udp(0), false),
        ];
        let r = model.next(&now, 2.0);
        let pid = |p: &Process| p.pid.to_string();
        // Busiest first; equal rates by pid.
        assert_eq!(
            summary(&r, pid),
            [
                ("1".into(), 1000.0, false),
                ("2".into(), 200.0, true),
                ("3".into(), 200.0, false)
            ]
        );
        assert_eq!(r[0].send_packets, 10.0);
        // The exited process is not carried over: listed again, all of
        // its totals count again. pid 1 reads lower than before: a
        // process does not restart, so none of it is new.
        let again = [p(2, 10, udp(900), true), p(1, 10, udp(2000), false)];
        let r = model.next(&again, 1.0);
        assert_eq!(summary(&r, pid), [("2".into(), 900.0, true)]);
    }

    fn unit(name: &str, udpsndbytes: u64, removed: bool) -> Row {
        Row {
            labels: vec![("unit", name.to_owned())],
            counters: Counters::from_fields(udp(udpsndbytes)),
            removed,
        }
    }

    #[test]
    fn a_group_whose_cgroup_was_removed_is_shown_once_with_its_final_deltas() {
        let mut model = Rates::new(&[
            unit("a.service", 1000, false),
            unit("b.service", 500, false),
        ]);
        let now = [
            unit("a.service", 1600, false),
            // Removed in the interval: its final deltas, once.
            unit("b.service", 700, true),
            // New: all of it.
            unit("c.service", 200, false),
        ];
        let r = model.next(&now, 2.0);
        let name = |g: &Row| g.labels[0].1.clone();
        assert_eq!(
            summary(&r, name),
            [
                ("a.service".into(), 300.0, false),
                ("b.service".into(), 100.0, true),
                ("c.service".into(), 100.0, false)
            ]
        );
        assert_eq!(r[1].send_packets, 1.0);
        // b.service is not carried over.
        let later = [unit("a.service", 1700, false)];
        let r = model.next(&later, 1.0);
        assert_eq!(summary(&r, name), [("a.service".into(), 100.0, false)]);
    }

    #[test]
    fn a_restarted_group_counts_its_new_cgroup_from_zero() {
        let mut model = Rates::new(&[
            unit("a.service", 1600, false),
            unit("b.service", 1000, false),
        ]);
        // a.service restarted: its old cgroup's last 100 bytes (removed),
        // and the new cgroup's 300, lower than the old total. b.service
        // restarted too, its old cgroup's final totals in the same
        // reading: the new cgroup's 2000 are all new although higher.
        let now = [
            unit("a.service", 1700, true),
            unit("a.service", 300, false),
            unit("b.service", 1000, true),
            unit("b.service", 2000, false),
        ];
        let r = model.next(&now, 1.0);
        let name = |g: &Row| g.labels[0].1.clone();
        assert_eq!(
            summary(&r, name),
            [
                ("b.service".into(), 2000.0, false),
                ("a.service".into(), 300.0, false),
                ("a.service".into(), 100.0, true)
            ]
        );
    }
}
