//! Final totals of removed cgroups, kept for the exit grace so that every
//! client asking for them gets each once.
//!
//! Like the exit log, a client is given a removed cgroup in its next
//! request for them if it was connected when the cgroup was removed, or in
//! its first if it connects within the grace after; each client's place
//! is a [`Cursor`]. Unlike exits, a removed cgroup is forgotten once its
//! grace is over whether or not every client has had it.

use std::collections::VecDeque;

use netatop_protocol::control::Cgroup;

use crate::exits::Cursor;

struct Removed {
    seq: u64,
    /// CLOCK_BOOTTIME of the removal, ns.
    removed_ns: u64,
    cgroup: Cgroup,
}

pub(super) struct RemovedCgroups {
    /// Ordered by sequence number.
    log: VecDeque<Removed>,
    /// The sequence number of the last one logged.
    last_seq: u64,
    grace_ns: u64,
}

impl RemovedCgroups {
    /// A log that keeps each removed cgroup for `grace_ns` after its removal.
    pub(super) fn new(grace_ns: u64) -> Self {
        Self {
            log: VecDeque::new(),
            last_seq: 0,
            grace_ns,
        }
    }

    /// Adds the final totals of a cgroup removed at `removed_ns`.
    pub(super) fn push(&mut self, removed_ns: u64, cgroup: Cgroup) {
        self.last_seq += 1;
        self.log.push_back(Removed {
            seq: self.last_seq,
            removed_ns,
            cgroup,
        });
    }

    /// Forgets the cgroups removed longer than the grace before `now_ns`.
    pub(super) fn expire(&mut self, now_ns: u64) {
        while self
            .log
            .front()
            .is_some_and(|r| r.removed_ns.saturating_add(self.grace_ns) < now_ns)
        {
            self.log.pop_front();
        }
    }

    /// Appends the removed cgroups this client has not had and is due:
    /// removed after its previous request, or on its first, within the
    /// grace before it connected; marks everything logged as seen by it.
    pub(super) fn take_for(&self, c: &mut Cursor, out: &mut Vec<Cgroup>) {
        for r in &self.log {
            if c.due(r.seq, r.removed_ns, self.grace_ns) {
                out.push(r.cgroup.clone());
            }
        }
        c.seen = self.last_seq;
    }

    /// Removed cgroups kept now.
    pub(super) fn len(&self) -> usize {
        self.log.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn gone(id: u64) -> Cgroup {
        Cgroup {
            id,
            path: String::new(),
            counters: Default::default(),
            removed: true,
        }
    }

    fn ids(log: &RemovedCgroups, c: &mut Cursor) -> Vec<u64> {
        let mut out = Vec::new();
        log.take_for(c, &mut out);
        out.iter().map(|g| g.id).collect()
    }

    #[test]
    fn each_client_gets_each_removed_cgroup_once() {
        let mut log = RemovedCgroups::new(10 * S);
        let mut a = Cursor::new(100 * S);
        log.push(101 * S, gone(1));
        let mut b = Cursor::new(105 * S); // within grace
        let mut late = Cursor::new(112 * S); // after grace
        assert_eq!(ids(&log, &mut a), vec![1]);
        assert_eq!(ids(&log, &mut a), Vec::<u64>::new());
        log.push(106 * S, gone(2));
        assert_eq!(ids(&log, &mut b), vec![1, 2]);
        assert_eq!(ids(&log, &mut late), vec![2]);
        assert_eq!(ids(&log, &mut a), vec![2]);
    }

    #[test]
    fn expiry_waits_for_the_grace_only() {
        let mut log = RemovedCgroups::new(10 * S);
        let mut a = Cursor::new(0);
        log.push(S, gone(1));
        log.expire(11 * S);
        assert_eq!(log.len(), 1, "within grace");
        log.expire(12 * S);
        assert_eq!(log.len(), 0, "gone though client a has not had it");
        assert_eq!(ids(&log, &mut a), Vec::<u64>::new());
        // Sequence numbers continue after expiry.
        log.push(13 * S, gone(2));
        assert_eq!(ids(&log, &mut a), vec![2]);
    }
}
