//! What a request gets, and what it is made from. An atop request: every
//! live process, then the exited processes the client has not had, then
//! the terminator; streamed from the kernel's snapshot, or built whole
//! where that cannot be (thread records, no descriptor left). A control
//! request: processes (with threads, exits), cgroups or statistics, one
//! frame. The responder owns the collector, the exit log, the cgroups'
//! totals and the statistics, and keeps them up to date when the periodic
//! work asks.

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use log::{debug, warn};
use netatop_protocol::control::{self, Cgroup, Process, Response};
use netatop_protocol::{NetPerTask, RECORD_SIZE};
use netatopd_bpf::Tracer;
use zerocopy::IntoBytes;

use super::admission::{privileged, Tally};
use super::cgroup_totals::CgroupTotals;
use super::client::{give_back, Client, Incoming, RELEASE_ABOVE};
use super::processes::{process_list, LiveThread};
use super::statistics::Statistics;
use crate::collect::{boottime_ns, Collector};
use crate::exits::{Cursor, ExitLog};

/// What a client needs after its turn.
pub(super) enum State {
    /// Waiting for events.
    Idle,
    /// More requests may be waiting: give it another turn.
    Busy,
    /// Its requests wait until the clients of users other than root take
    /// some of their output: give it a turn on the next tick.
    Held,
    Closed,
}

/// Everything a response is made from, apart from the clients, so that
/// one client can be served while it stays in the client map.
pub(super) struct Responder {
    collector: Collector,
    exits: ExitLog,
    cgroups: CgroupTotals,
    /// Reused for whole responses.
    records: Vec<NetPerTask>,
    stats: Statistics,
    /// When the last snapshot was taken, if its buffers are still held.
    holding_since: Option<Instant>,
    /// Responses streamed from the kernel at once (each holds a
    /// descriptor); beyond it, snapshots are built whole.
    max_streams: usize,
    /// Bytes of responses a client may leave unread before its further
    /// requests are left unread too.
    max_pending_output: usize,
    /// The same for all clients of users other than root together, and
    /// what they leave unread (counted on every tick, and added to as
    /// their responses are made).
    max_unprivileged_output: usize,
    unprivileged_pending: usize,
}

impl Responder {
    pub(super) fn new(
        collector: Collector,
        exits: ExitLog,
        stats: Statistics,
        max_streams: usize,
        max_pending_output: usize,
        max_unprivileged_output: usize,
    ) -> Self {
        Self {
            collector,
            cgroups: CgroupTotals::new(exits.grace_ns()),
            exits,
            records: Vec::new(),
            stats,
            holding_since: None,
            max_streams,
            max_pending_output,
            max_unprivileged_output,
            unprivileged_pending: 0,
        }
    }

    /// What the clients of users other than root leave unread, counted.
    pub(super) fn set_unprivileged_pending(&mut self, bytes: usize) {
        self.unprivileged_pending = bytes;
    }

    pub(super) fn tracer(&self) -> &Tracer {
        self.collector.tracer()
    }

    /// One turn: writes what is pending, then answers at most one request;
    /// `conns` are the connections, for a statistics request.
    pub(super) fn turn(&mut self, c: &mut Client, conns: &Tally) -> io::Result<State> {
        let cap = self.max_pending_output;
        c.flush()?;
        if c.is_streaming() {
            // A response is being streamed: its next chunk, once the
            // last one is out; further requests wait until it is done.
            if c.pending() == 0 {
                self.stream_chunk(c)?;
                c.flush()?;
            }
            return Ok(streaming(c));
        }
        // Over its output cap, its further requests wait in its socket;
        // a user other than root's also while all of theirs together are
        // over theirs, until a tick finds them under it.
        if c.takes_requests(cap) {
            let unprivileged = !privileged(c.uid());
            if unprivileged && self.unprivileged_pending >= self.max_unprivileged_output {
                c.hold();
                return Ok(State::Held);
            }
            let before = c.pending();
            if let Some(incoming) = c.read_request()? {
                self.respond(c, incoming, conns)?;
                c.flush()?;
                if unprivileged {
                    self.unprivileged_pending += c.pending().saturating_sub(before);
                }
                if c.is_streaming() {
                    return Ok(streaming(c));
                }
                if c.takes_requests(cap) {
                    // Another request may be waiting; it gets the next turn.
                    return Ok(State::Busy);
                }
            }
        }
        Ok(if c.finished() {
            State::Closed
        } else {
            State::Idle
        })
    }

    /// Appends the next chunk of a streamed response to the client's
    /// output; at the end of the live records, the exited processes the
    /// client has not had yet and the terminator.
    fn stream_chunk(&mut self, c: &mut Client) -> io::Result<()> {
        if c.read_stream(&self.collector)
            .inspect_err(|e| warn!("cannot read the kernel's snapshot: {e}"))?
        {
            return Ok(());
        }
        let Some(snap) = c.end_stream() else {
            return Ok(());
        };
        self.end_atop_response(c, || snap.elapsed)
            .inspect_err(|e| warn!("cannot collect exited processes: {e}"))
    }

    fn respond(&mut self, c: &mut Client, incoming: Incoming, conns: &Tally) -> io::Result<()> {
        c.compact();
        let streams = self.collector.open_snapshots();
        match incoming {
            Incoming::Atop { threads: false } if streams < self.max_streams => {
                // Streamed from the kernel as the client reads: nothing per
                // process is kept here.
                match self.collector.snapshot() {
                    Ok(snap) => {
                        c.start_stream(snap);
                        return self.stream_chunk(c);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                        debug!("no descriptor left to stream a snapshot: built whole");
                    }
                    Err(e) => {
                        warn!("cannot start a snapshot: {e}");
                        return Err(e);
                    }
                }
                self.whole_atop_response(c, false)?;
            }
            Incoming::Atop { threads } => {
                if !threads && self.max_streams == 0 {
                    debug!("snapshots are walked through the maps: built whole");
                } else if !threads {
                    debug!("{streams} snapshots are being streamed: this one is built whole");
                }
                self.whole_atop_response(c, threads)?;
            }
            Incoming::Control(req) => {
                let resp = match req {
                    control::Request::Processes { threads, exited } => {
                        Response::Processes(self.processes(c, threads, exited)?)
                    }
                    control::Request::Stats => Response::Stats(Box::new(self.stats.report(
                        &mut self.collector,
                        &self.exits,
                        self.cgroups.removed().len(),
                        conns,
                    )?)),
                    control::Request::Cgroups { removed } => {
                        let mut all = self.cgroups()?;
                        if removed {
                            c.take_removed_cgroups(self.cgroups.removed(), &mut all);
                        }
                        Response::Cgroups(all)
                    }
                };
                c.queue(&control::encode(&resp));
            }
            Incoming::Refused(why) => {
                debug!("control request refused: {why}");
                c.queue(&control::encode(&Response::Error(why)));
                // Its stream cannot be trusted to be in step any more.
                c.hang_up();
            }
        }
        Ok(())
    }

    /// An atop response built whole: live processes, the exits the client
    /// has not had, with `threads` the thread records, the terminator.
    fn whole_atop_response(&mut self, c: &mut Client, threads: bool) -> io::Result<()> {
        if threads {
            self.snapshot_whole()?;
            let live = self.records.len();
            c.take_exits(&self.exits, &mut self.records);
            self.thread_records(live)?;
            self.terminate(c);
        } else {
            // Straight from the kernel into the client's output: the
            // records are held once.
            let start = Instant::now();
            let mut snap = self.collector.snapshot()?;
            c.read_whole(&self.collector, &mut snap)?;
            self.end_atop_response(c, || start.elapsed())?;
        }
        self.release_records();
        Ok(())
    }

    /// The end of an atop response whose live records are in the client's
    /// output: collects the exited processes, times the snapshot (`took`,
    /// asked once they are in), appends the exits the client has not had
    /// and the terminator.
    fn end_atop_response(
        &mut self,
        c: &mut Client,
        took: impl FnOnce() -> Duration,
    ) -> io::Result<()> {
        self.collector.drain(&mut self.exits)?;
        self.timed(took());
        self.records.clear();
        c.take_exits(&self.exits, &mut self.records);
        self.terminate(c);
        Ok(())
    }

    /// Appends the terminator to the records, and the records to the
    /// client's output.
    fn terminate(&mut self, c: &mut Client) {
        self.records.push(NetPerTask::TERMINATOR);
        c.queue(self.records.as_bytes());
    }

    /// Counts a snapshot for the statistics; its buffers are held from now.
    fn timed(&mut self, took: Duration) {
        self.holding_since = Some(Instant::now());
        self.stats.timed(took);
    }

    /// Gives a large record buffer back at once rather than at the next
    /// housekeeping: large allocations are mapped (see main.rs), so this
    /// returns the memory to the system.
    fn release_records(&mut self) {
        if self.records.capacity() * RECORD_SIZE > RELEASE_ABOVE {
            self.records = Vec::new();
            give_back();
        }
    }

    /// The live threads of the first `live` records (the live processes
    /// of this snapshot).
    fn live_threads(&self, live: usize) -> Vec<LiveThread> {
        let index: HashMap<i32, usize> = self.records[..live]
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i))
            .collect();
        self.collector
            .threads()
            .filter_map(|(tid, tgid, c, name)| {
                index.get(&(tgid as i32)).map(|&i| (i, tid, c, name))
            })
            .collect()
    }

    /// Appends a thread record for every live thread of the first `live`
    /// records.
    fn thread_records(&mut self, live: usize) -> io::Result<()> {
        self.collector.read_threads()?;
        for (i, tid, counters, _) in self.live_threads(live) {
            let record = NetPerTask::thread(tid, &self.records[i], counters);
            self.records.push(record);
        }
        Ok(())
    }

    /// Live processes into `records`, whole, timed for the statistics.
    fn snapshot_whole(&mut self) -> io::Result<()> {
        let start = Instant::now();
        self.records.clear();
        if let Err(e) = self
            .collector
            .snapshot_into(&mut self.records, &mut self.exits)
        {
            warn!("cannot read the kernel's snapshot: {e}");
            return Err(e);
        }
        self.timed(start.elapsed());
        Ok(())
    }

    /// Every live process, and with `exited` the exits this client has not
    /// had: each process once (one that exited while the kernel walked the
    /// tasks is listed only with its final totals).
    fn processes(
        &mut self,
        c: &mut Client,
        threads: bool,
        exited: bool,
    ) -> io::Result<Vec<Process>> {
        self.snapshot_whole()?;
        let live = self.records.len();
        if exited {
            c.follow_exits();
            c.take_exits(&self.exits, &mut self.records);
        }
        let live_threads = if threads {
            self.collector.read_threads()?;
            Some(self.live_threads(live))
        } else {
            None
        };
        let procs = process_list(&self.records, live, live_threads);
        self.release_records();
        Ok(procs)
    }

    /// Every cgroup with counted traffic: see [`CgroupTotals::answer`].
    fn cgroups(&mut self) -> io::Result<Vec<Cgroup>> {
        let exited = CgroupTotals::exited(self.collector.tracer())?;
        self.snapshot_whole()?;
        let all = self
            .cgroups
            .answer(exited, self.collector.tracer(), &self.records);
        self.release_records();
        all
    }

    /// Collects the exited processes the programs published into the log.
    pub(super) fn collect_exits(&mut self) {
        if let Err(e) = self.collector.drain(&mut self.exits) {
            warn!("cannot collect exited processes: {e}");
        }
    }

    /// Collects removed cgroups' final totals, and forgets those past the
    /// exit grace.
    pub(super) fn collect_removed_cgroups(&mut self) {
        if let Err(e) = self.cgroups.collect_removed(self.collector.tracer()) {
            warn!("cannot collect removed cgroups: {e}");
        }
    }

    /// Forgets exited processes past their grace that none of `clients`
    /// (the places in the log of those following it) still has to get.
    pub(super) fn expire_exits<'a>(&mut self, clients: impl Iterator<Item = &'a Cursor> + Clone) {
        self.exits.expire(boottime_ns(), clients);
    }

    /// Exited-process records dropped before every client had them.
    pub(super) fn exits_dropped(&self) -> u64 {
        self.exits.dropped()
    }

    /// Gives the snapshot buffers back if the last snapshot was taken at
    /// least `after` ago; true if it did.
    pub(super) fn release_if_idle(&mut self, after: Duration) -> bool {
        if self.holding_since.is_none_or(|t| t.elapsed() < after) {
            return false;
        }
        self.holding_since = None;
        self.collector.release();
        self.records = Vec::new();
        true
    }
}

/// A client with a response in progress gets another turn at once if its
/// socket took everything so far, else when it becomes writable.
fn streaming(c: &Client) -> State {
    if c.pending() == 0 {
        State::Busy
    } else {
        State::Idle
    }
}
