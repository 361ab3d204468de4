//! Final totals of exited processes, kept until every client has had them.
//!
//! A record is delivered exactly once to each client: in the next response
//! of every client connected when the process exited, and in the first
//! response of a client that connects within the grace period after it.
//! A record that expires before any client had it is counted (and logged
//! at debug level): while no client is connected, exits are lost there.

use std::cell::Cell;
use std::collections::VecDeque;

use netatop_protocol::NetPerTask;

/// What one client has been given so far (of this log, or of another
/// kept the same way, such as the removed cgroups').
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    /// CLOCK_BOOTTIME of the connection, ns.
    pub connected_ns: u64,
    /// Highest sequence number already considered for this client.
    pub seen: u64,
}

impl Cursor {
    /// The cursor of a client connected at `connected_ns`, given nothing yet.
    pub fn new(connected_ns: u64) -> Self {
        Self {
            connected_ns,
            seen: 0,
        }
    }

    /// Whether the entry numbered `seq`, logged at `at_ns`, is due to this
    /// client: it has not been considered for it, and the client connected
    /// at most `grace_ns` after it was logged.
    pub fn due(&self, seq: u64, at_ns: u64, grace_ns: u64) -> bool {
        seq > self.seen && self.connected_ns <= at_ns.saturating_add(grace_ns)
    }
}

#[derive(Debug)]
struct Exited {
    exit_ns: u64,
    rec: NetPerTask,
    /// A client has had it.
    delivered: Cell<bool>,
}

#[derive(Debug)]
pub struct ExitLog {
    /// Ordered by sequence number; recs[i] has sequence `first_seq + i`.
    recs: VecDeque<Exited>,
    first_seq: u64,
    grace_ns: u64,
    cap: usize,
    dropped: u64,
    undelivered: u64,
}

impl ExitLog {
    pub fn new(grace_ns: u64, cap: usize) -> Self {
        Self {
            recs: VecDeque::new(),
            first_seq: 1,
            grace_ns,
            cap: cap.max(1),
            dropped: 0,
            undelivered: 0,
        }
    }

    fn next_seq(&self) -> u64 {
        self.first_seq + self.recs.len() as u64
    }

    /// A new client's cursor.
    pub fn cursor(&self, now_ns: u64) -> Cursor {
        Cursor::new(now_ns)
    }

    /// Adds the final record of a process that exited at `exit_ns`.
    /// When the log is full the oldest record is dropped and counted.
    pub fn push(&mut self, exit_ns: u64, rec: NetPerTask) {
        if self.recs.len() >= self.cap {
            self.recs.pop_front();
            self.first_seq += 1;
            self.dropped += 1;
        }
        self.recs.push_back(Exited {
            exit_ns,
            rec,
            delivered: Cell::new(false),
        });
    }

    /// How long after an exit a newly connected client still gets it.
    pub fn grace_ns(&self) -> u64 {
        self.grace_ns
    }

    /// Records dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records that expired before any client had them.
    pub fn undelivered(&self) -> u64 {
        self.undelivered
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    fn wanted(&self, c: &Cursor, seq: u64, e: &Exited) -> bool {
        c.due(seq, e.exit_ns, self.grace_ns)
    }

    /// Appends the records this client has not had yet and is due, and
    /// marks everything logged so far as seen by it.
    pub fn take_for(&self, c: &mut Cursor, out: &mut Vec<NetPerTask>) {
        // Straight to the first record this client has not seen.
        let skip = (c.seen.saturating_sub(self.first_seq - 1) as usize).min(self.recs.len());
        for (i, e) in self.recs.range(skip..).enumerate() {
            let seq = self.first_seq + (skip + i) as u64;
            if self.wanted(c, seq, e) {
                out.push(e.rec);
                e.delivered.set(true);
            }
        }
        c.seen = self.next_seq() - 1;
    }

    /// Forgets records past their grace period that no connected client
    /// still has to get.
    pub fn expire<'a>(&mut self, now_ns: u64, clients: impl Iterator<Item = &'a Cursor> + Clone) {
        while let Some(e) = self.recs.front() {
            let seq = self.first_seq;
            if now_ns <= e.exit_ns.saturating_add(self.grace_ns)
                || clients.clone().any(|c| self.wanted(c, seq, e))
            {
                break;
            }
            if !e.delivered.get() {
                self.undelivered += 1;
                log::debug!(
                    "the final totals of pid {} ({}) expired before any client had them",
                    e.rec.id,
                    e.rec.command_str()
                );
            }
            self.recs.pop_front();
            self.first_seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rec(id: i32) -> NetPerTask {
        NetPerTask {
            id,
            ..Default::default()
        }
    }

    fn ids(log: &ExitLog, c: &mut Cursor) -> Vec<i32> {
        let mut out = Vec::new();
        log.take_for(c, &mut out);
        out.iter().map(|r| r.id).collect()
    }

    #[test]
    fn each_client_gets_each_record_once() {
        let mut log = ExitLog::new(10 * S, 100);
        let mut a = log.cursor(100 * S);
        log.push(101 * S, rec(1));
        let mut b = log.cursor(105 * S); // within grace
        let mut late = log.cursor(112 * S); // after grace
        assert_eq!(ids(&log, &mut a), vec![1]);
        assert_eq!(ids(&log, &mut a), Vec::<i32>::new());
        log.push(106 * S, rec(2));
        assert_eq!(ids(&log, &mut b), vec![1, 2]);
        assert_eq!(ids(&log, &mut b), Vec::<i32>::new());
        assert_eq!(ids(&log, &mut late), vec![2]);
        assert_eq!(ids(&log, &mut a), vec![2]);
    }

    #[test]
    fn expiry_waits_for_grace_and_for_connected_clients() {
        let mut log = ExitLog::new(10 * S, 100);
        let mut a = log.cursor(0);
        log.push(S, rec(1));
        log.expire(5 * S, [a].iter());
        assert_eq!(log.len(), 1, "within grace");
        log.expire(20 * S, [a].iter());
        assert_eq!(log.len(), 1, "client a has not had it");
        assert_eq!(ids(&log, &mut a), vec![1]);
        log.expire(20 * S, [a].iter());
        assert!(log.is_empty());
        // Sequence numbers continue after expiry.
        log.push(21 * S, rec(2));
        assert_eq!(ids(&log, &mut a), vec![2]);
    }

    #[test]
    fn a_full_log_drops_the_oldest_and_counts_it() {
        let mut log = ExitLog::new(10 * S, 2);
        let mut a = log.cursor(0);
        for i in 1..=3 {
            log.push(S, rec(i));
        }
        assert_eq!(log.dropped(), 1);
        assert_eq!(ids(&log, &mut a), vec![2, 3]);
    }

    #[test]
    fn a_record_no_client_had_is_counted_when_it_expires() {
        let mut log = ExitLog::new(10 * S, 100);
        log.push(S, rec(1));
        let mut a = log.cursor(2 * S);
        log.push(3 * S, rec(2));
        assert_eq!(ids(&log, &mut a), vec![1, 2]);
        log.push(4 * S, rec(3));
        // Client a is gone before it had record 3.
        log.expire(30 * S, std::iter::empty());
        assert!(log.is_empty());
        assert_eq!(log.undelivered(), 1);
    }
}
