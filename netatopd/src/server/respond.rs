//! What a request gets. An atop request: every live process, then the
//! exited processes the client has not had, then the terminator; streamed
//! from the kernel's snapshot, or built whole where that cannot be (thread
//! records, no descriptor left). A control request: processes (with
//! threads, exits) or statistics, one frame.

use std::collections::{BTreeMap, HashMap};
use std::io;

use log::{debug, warn};
use netatop_protocol::control::{self, Process, Response, Thread};
use netatop_protocol::{Counters, NetPerTask, RECORD_SIZE};
use zerocopy::IntoBytes;

use super::client::{Client, Incoming, State};
use super::Core;

/// Bytes read from the kernel at a time into a whole response.
const WHOLE_CHUNK: usize = 32 * 1024 / RECORD_SIZE * RECORD_SIZE;
/// Room made for a whole response before it is read: above the mapping
/// threshold set in main.rs.
const WHOLE_RESERVE: usize = 256 * 1024;

impl Core {
    /// One turn: writes what is pending, then answers at most one request.
    pub(super) fn turn(&mut self, c: &mut Client) -> io::Result<State> {
        let cap = self.config.max_pending_output;
        c.flush()?;
        if c.streaming.is_some() {
            // A response is being streamed: its next chunk, once the
            // last one is out; further requests wait until it is done.
            if c.pending() == 0 {
                self.stream_chunk(c)?;
                c.flush()?;
            }
            return Ok(Self::streaming(c));
        }
        // Over its output cap, its further requests wait in its socket.
        if !c.eof && c.pending() < cap {
            if let Some(incoming) = c.read_request()? {
                c.idle_since = None;
                self.respond(c, incoming)?;
                c.flush()?;
                if c.streaming.is_some() {
                    return Ok(Self::streaming(c));
                }
                if !c.eof && c.pending() < cap {
                    // Another request may be waiting; it gets the next turn.
                    return Ok(State::Busy);
                }
            }
        }
        Ok(if c.eof && c.pending() == 0 {
            State::Closed
        } else {
            State::Idle
        })
    }

    /// A client with a response in progress gets another turn at once if
    /// its socket took everything so far, else when it becomes writable.
    fn streaming(c: &Client) -> State {
        if c.pending() == 0 {
            State::Busy
        } else {
            State::Idle
        }
    }

    /// Appends the next chunk of a streamed response to the client's
    /// output; at the end of the live records, the exited processes the
    /// client has not had yet and the terminator.
    fn stream_chunk(&mut self, c: &mut Client) -> io::Result<()> {
        let Some(snap) = c.streaming.as_mut() else {
            return Ok(());
        };
        let start = c.out.len();
        c.out.resize(start + c.chunk, 0);
        let n = match self.collector.read(snap, &mut c.out[start..]) {
            Ok(n) => n,
            Err(e) => {
                warn!("cannot read the kernel's snapshot: {e}");
                return Err(e);
            }
        };
        c.out.truncate(start + n);
        if n > 0 {
            return Ok(());
        }
        let snap = c.streaming.take().expect("checked above");
        self.streams -= 1;
        if let Err(e) = self.collector.drain(&mut self.exits) {
            warn!("cannot collect exited processes: {e}");
            return Err(e);
        }
        self.records.clear();
        self.exits.take_for(&mut c.cursor, &mut self.records);
        self.records.push(NetPerTask::TERMINATOR);
        c.out.extend_from_slice(self.records.as_bytes());
        self.stats.timed(snap.elapsed);
        Ok(())
    }

    fn respond(&mut self, c: &mut Client, incoming: Incoming) -> io::Result<()> {
        c.compact();
        match incoming {
            Incoming::Atop { threads: false } if self.streams < self.config.max_streams => {
                // Streamed from the kernel as the client reads: nothing per
                // process is kept here.
                match self.collector.snapshot() {
                    Ok(snap) => {
                        c.streaming = Some(snap);
                        self.streams += 1;
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
                if !threads && self.config.max_streams == 0 {
                    debug!("snapshots are walked through the maps: built whole");
                } else if !threads {
                    debug!(
                        "{} snapshots are being streamed: this one is built whole",
                        self.streams
                    );
                }
                self.whole_atop_response(c, threads)?;
            }
            Incoming::Control(req) => {
                let resp = match req {
                    control::Request::Processes { threads, exited } => {
                        Response::Processes(self.processes(c, threads, exited)?)
                    }
                    control::Request::Stats => Response::Stats(Box::new(self.stats()?)),
                    control::Request::Cgroups { removed } => {
                        let mut all = self.cgroups()?;
                        if removed {
                            self.removed_cgroups_for(c, &mut all);
                        }
                        Response::Cgroups(all)
                    }
                };
                c.out.extend_from_slice(&control::encode(&resp));
            }
            Incoming::Refused(why) => {
                debug!("control request refused: {why}");
                c.out
                    .extend_from_slice(&control::encode(&Response::Error(why)));
                // Its stream cannot be trusted to be in step any more.
                c.eof = true;
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
            self.exits.take_for(&mut c.cursor, &mut self.records);
            self.thread_records(live)?;
        } else {
            // Straight from the kernel into the client's output: the
            // records are held once.
            let start = std::time::Instant::now();
            let mut snap = self.collector.snapshot()?;
            // Mapped from the start (see main.rs), so the whole response is
            // given back to the system when it is out, never left in the heap.
            c.out.reserve(WHOLE_RESERVE);
            loop {
                let at = c.out.len();
                c.out.resize(at + WHOLE_CHUNK, 0);
                let n = self.collector.read(&mut snap, &mut c.out[at..])?;
                c.out.truncate(at + n);
                if n == 0 {
                    break;
                }
            }
            self.collector.drain(&mut self.exits)?;
            self.stats.timed(start.elapsed());
            self.records.clear();
            self.exits.take_for(&mut c.cursor, &mut self.records);
        }
        self.records.push(NetPerTask::TERMINATOR);
        c.out.extend_from_slice(self.records.as_bytes());
        self.release_records();
        Ok(())
    }

    /// Gives a large record buffer back at once rather than at the next
    /// housekeeping: large allocations are mapped (see main.rs), so this
    /// returns the memory to the system.
    fn release_records(&mut self) {
        if self.records.capacity() * RECORD_SIZE > super::client::RELEASE_ABOVE {
            self.records = Vec::new();
            super::client::give_back();
        }
    }

    /// The live threads of the first `live` records (the live processes
    /// of this snapshot): (index of the process's record, tid, counters).
    fn live_threads(&self, live: usize) -> Vec<(usize, u32, Counters, Option<[u8; 16]>)> {
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
        let start = std::time::Instant::now();
        self.records.clear();
        if let Err(e) = self
            .collector
            .snapshot_into(&mut self.records, &mut self.exits)
        {
            warn!("cannot read the kernel's snapshot: {e}");
            return Err(e);
        }
        self.stats.timed(start.elapsed());
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
            c.follows_exits = true;
            self.exits.take_for(&mut c.cursor, &mut self.records);
        }
        let mut procs: Vec<Process> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| Process::from_record(r, i >= live))
            .collect();
        if threads {
            self.collector.read_threads()?;
            for (i, tid, counters, name) in self.live_threads(live) {
                let tgid = procs[i].pid;
                procs[i].threads.push(Thread {
                    tid: tid as i32,
                    tgid,
                    name: name.map_or_else(|| thread_name(tgid as u32, tid), |n| comm_string(&n)),
                    counters,
                });
            }
            for p in &mut procs {
                p.threads.sort_unstable_by_key(|t| t.tid);
            }
        }
        self.release_records();
        Ok(once_each(procs))
    }
}

impl Core {
    /// Takes removed cgroups' final totals from the kernel into the log,
    /// and forgets those past the exit grace.
    pub(super) fn collect_removed_cgroups(&mut self) -> io::Result<()> {
        let mut ids = Vec::new();
        let mut gone = Vec::new();
        self.collector
            .tracer()
            .drain_cgroups_gone(&mut ids, &mut gone)?;
        for (id, g) in ids.into_iter().zip(gone) {
            self.cgroup_seq += 1;
            let path: Vec<u8> = netatopd_bpf::comm_like(&g.path);
            self.removed_cgroups.push_back((
                self.cgroup_seq,
                g.removed_ns,
                control::Cgroup {
                    id,
                    path: String::from_utf8_lossy(&path).into_owned(),
                    counters: {
                        let mut c = crate::collect::counters(&g.c);
                        if let Some(floor) = self.cgroup_floors.remove(&id) {
                            c.raise_to(&floor);
                        }
                        c
                    },
                    removed: true,
                },
            ));
        }
        let (now, grace) = (crate::collect::boottime_ns(), self.exits.grace_ns());
        while self
            .removed_cgroups
            .front()
            .is_some_and(|(_, at, _)| at.saturating_add(grace) < now)
        {
            self.removed_cgroups.pop_front();
        }
        Ok(())
    }

    /// The removed cgroups this client has not had and is due: removed
    /// after its previous request, or on its first, within the exit grace
    /// before it connected.
    fn removed_cgroups_for(&mut self, c: &mut Client, out: &mut Vec<control::Cgroup>) {
        let grace = self.exits.grace_ns();
        for (seq, at, cg) in &self.removed_cgroups {
            if *seq > c.cgroups_seen && c.cursor.connected_ns <= at.saturating_add(grace) {
                out.push(cg.clone());
            }
        }
        c.cgroups_seen = self.cgroup_seq;
    }

    /// Every cgroup with counted traffic: the final totals of its exited
    /// processes (read first) and its live processes' (read after, so that
    /// a process exiting in between is missed once, never counted twice),
    /// raised to what the last answer reported. A cgroup that still
    /// exists keeps its last total when no process of it is seen (its
    /// last live process exited in between, or moved away).
    fn cgroups(&mut self) -> io::Result<Vec<control::Cgroup>> {
        let mut sums = self.cgroup_accumulators()?;
        self.snapshot_whole()?;
        let of: HashMap<u32, u64> = self
            .collector
            .tracer()
            .cgroup_of()?
            .into_iter()
            .map(|r| (r.tgid, r.cgroup_id))
            .collect();
        for r in &self.records {
            if let Some(id) = of.get(&(r.id as u32)) {
                sums.entry(*id).or_default().add(&r.counters);
            }
        }
        self.release_records();
        self.collect_removed_cgroups()?;
        let paths = self.cgroup_hierarchy.paths();
        self.cgroup_floors
            .retain(|id, _| sums.contains_key(id) || paths.contains_key(id));
        for (id, floor) in &self.cgroup_floors {
            sums.entry(*id).or_insert(*floor);
        }
        Ok(sums
            .into_iter()
            .map(|(id, mut c)| {
                let floor = self.cgroup_floors.entry(id).or_default();
                c.raise_to(floor);
                *floor = c;
                control::Cgroup {
                    id,
                    path: paths.get(&id).cloned().unwrap_or_default(),
                    counters: c,
                    removed: false,
                }
            })
            .collect())
    }

    /// The kernel's per-cgroup totals of exited processes, read again
    /// while a cgroup removal (which moves a child's total into its
    /// parent's) happened during the read, so that no total is read both
    /// in the child and in its parent, or in neither.
    fn cgroup_accumulators(&self) -> io::Result<BTreeMap<u64, Counters>> {
        let tracer = self.collector.tracer();
        let mut tries = 0;
        loop {
            let before = tracer.stats().cgroups_removed;
            let (mut ids, mut accs) = (Vec::new(), Vec::new());
            tracer.read_cgroups(&mut ids, &mut accs)?;
            tries += 1;
            if tracer.stats().cgroups_removed == before || tries == 10 {
                return Ok(ids
                    .into_iter()
                    .zip(accs.iter().map(crate::collect::counters))
                    .collect());
            }
        }
    }
}

/// One entry per process (pid and start time): a process listed live and
/// then with its final totals keeps the final entry, raised to at least
/// the live one (a snapshot never reports less).
fn once_each(procs: Vec<Process>) -> Vec<Process> {
    let mut index: HashMap<(i32, u64), usize> = HashMap::new();
    let mut out: Vec<Process> = Vec::with_capacity(procs.len());
    for p in procs {
        match index.get(&(p.pid, p.btime)) {
            Some(&i) => {
                let live = std::mem::replace(&mut out[i], p);
                out[i].counters.raise_to(&live.counters);
            }
            None => {
                index.insert((p.pid, p.btime), out.len());
                out.push(p);
            }
        }
    }
    out
}

/// A kernel name: the bytes before the first NUL.
fn comm_string(comm: &[u8; 16]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

/// A thread's own name from /proc (threads' counters in a hash map, which
/// has no names); empty if it is gone.
fn thread_name(tgid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, btime: u64, udpsndbytes: u64, exited: bool) -> Process {
        Process {
            pid,
            btime,
            command: String::new(),
            counters: Counters {
                udpsndbytes,
                ..Default::default()
            },
            exited,
            threads: Vec::new(),
        }
    }

    #[test]
    fn a_process_listed_live_and_exited_is_sent_once_as_exited() {
        let got = once_each(vec![
            p(1, 10, 500, false),
            p(2, 10, 7, false),
            // pid 1 exited during the snapshot; pid 2 reused by another start.
            p(1, 10, 400, true),
            p(2, 11, 3, true),
        ]);
        let view: Vec<(i32, u64, u64, bool)> = got
            .iter()
            .map(|p| (p.pid, p.btime, p.counters.udpsndbytes, p.exited))
            .collect();
        assert_eq!(
            view,
            vec![(1, 10, 500, true), (2, 10, 7, false), (2, 11, 3, true)]
        );
    }
}
