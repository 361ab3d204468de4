//! The mio event loop that answers atop on the netatop-bpf socket.
//!
//! Every client is non-blocking. Request bytes are gathered until a whole
//! 96-byte request is there (a client never sizes an allocation), and each
//! whole request gets one whole response, in order. Clients are served in
//! turns of one request each, so a client that pipelines many requests
//! delays the others by at most one response. A client's pending output is
//! capped: beyond `max_pending_output` its further requests wait in its
//! socket until it reads. An atop response is streamed: the kernel's
//! snapshot is read a chunk at a time as the client takes the one before,
//! so nothing per process is held here. Responses are written in chunks of
//! whole records that the kernel queues all-or-nothing, so a reader never
//! finds a partial record at the end of the queue.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use netatop_protocol::control::{self, Process, Response, Stats, Thread};
use netatop_protocol::{Counters, NetPerTask, RECORD_SIZE};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use zerocopy::IntoBytes;

use crate::collect::{boottime_ns, Collector, Walk};
use crate::exits::{Cursor, ExitLog};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONTROL: Token = Token(2);
const FIRST_CLIENT: usize = 3;
/// Snapshot times kept for the median in the statistics.
const TIMINGS: usize = 101;

/// Largest write: whole records within one unix-socket buffer (32 KiB).
const MAX_CHUNK: usize = 32 * 1024 / RECORD_SIZE * RECORD_SIZE;
/// Repeated warnings of the same kind are at most this frequent.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The signals that stop the daemon; create this first of all.
pub fn stop_signals() -> io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP])
}

pub struct Config {
    /// How often the exit counter of the programs is looked at (a memory
    /// read); exited processes are collected as soon as it moves, so bursts
    /// of exits do not overflow the kernel's pending-exit map.
    pub tick: Duration,
    /// How often expired exit records are forgotten, stuck clients
    /// dropped and map-full drops checked.
    pub housekeeping: Duration,
    /// Clients served at once; further connections are closed at once.
    pub max_clients: usize,
    /// Responses streamed from the kernel at once (each holds a
    /// descriptor); beyond it, snapshots are built whole.
    pub max_streams: usize,
    /// A client whose pending response does not move for this long is
    /// disconnected.
    pub client_timeout: Duration,
    /// Bytes of responses a client may leave unread before its further
    /// requests are left unread too (one response is always allowed).
    pub max_pending_output: usize,
    /// Where the programs are pinned and what the start found there, for
    /// the statistics.
    pub pin_dir: String,
    pub pinned: String,
}

/// Bytes per write for a client: whole records, and small enough that the
/// kernel takes each write into one buffer (`sk_sndbuf / 2 - 64` caps
/// one unix stream buffer), so a write is queued whole or not at all.
fn chunk_for(stream: &UnixStream) -> usize {
    let sndbuf = socket2::SockRef::from(stream)
        .send_buffer_size()
        .unwrap_or(0);
    let per_buf = (sndbuf / 2).saturating_sub(64);
    (per_buf.min(MAX_CHUNK) / RECORD_SIZE * RECORD_SIZE).max(RECORD_SIZE)
}

enum State {
    /// Waiting for events.
    Idle,
    /// More requests may be waiting: give it another turn.
    Busy,
    Closed,
}

/// A request being gathered.
enum Input {
    /// atop's protocol: 96 bytes.
    Atop { buf: [u8; RECORD_SIZE], len: usize },
    /// The control protocol: a 4-byte length, then at most MAX_REQUEST bytes.
    Control {
        header: [u8; 4],
        body: Vec<u8>,
        in_body: bool,
        len: usize,
    },
}

/// A whole request.
enum Incoming {
    /// An atop request; `threads` when it opts in to thread records.
    Atop {
        threads: bool,
    },
    Control(control::Request),
    /// A control request that cannot be served; the text says why.
    Refused(String),
}

/// Reads into `buf[*len..]`; true when it is full, false when nothing more
/// can be read now (or the peer shut down: `eof`).
fn fill(
    stream: &mut UnixStream,
    buf: &mut [u8],
    len: &mut usize,
    eof: &mut bool,
) -> io::Result<bool> {
    while *len < buf.len() {
        match stream.read(&mut buf[*len..]) {
            Ok(0) => {
                *eof = true;
                return Ok(false);
            }
            Ok(n) => *len += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

struct Client {
    stream: UnixStream,
    input: Input,
    /// Exited processes count on this client to get them: every atop
    /// client, and a control client once it has asked for them.
    follows_exits: bool,
    out: Vec<u8>,
    sent: usize,
    chunk: usize,
    cursor: Cursor,
    /// The client shut down its sending side: close once its output is out.
    eof: bool,
    /// Since when pending output has not moved (None: nothing is stuck).
    stalled_since: Option<Instant>,
    /// An atop response being streamed from the kernel, a chunk at a time
    /// as the client takes it; its exits and terminator follow.
    live: Option<Walk>,
}

impl Client {
    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Writes pending output; true when all of it is out.
    fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.out.len() {
            let end = (self.sent + self.chunk).min(self.out.len());
            match self.stream.write(&self.out[self.sent..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if n != end - self.sent {
                        debug!("short write of {n} bytes to a client");
                    }
                    self.sent += n;
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        self.stalled_since = None;
        Ok(true)
    }

    /// Reads toward the next request; None while it is not whole (or the
    /// client shut down).
    fn read_request(&mut self) -> io::Result<Option<Incoming>> {
        let Client {
            stream, input, eof, ..
        } = self;
        match input {
            Input::Atop { buf, len } => {
                if !fill(stream, buf, len, eof)? {
                    return Ok(None);
                }
                // The request asks for everything; only the exact opt-in
                // request asks for thread records too.
                *len = 0;
                let threads = NetPerTask::is_threads_request(buf);
                Ok(Some(Incoming::Atop { threads }))
            }
            Input::Control {
                header,
                body,
                in_body,
                len,
            } => {
                if !*in_body {
                    if !fill(stream, header, len, eof)? {
                        return Ok(None);
                    }
                    *len = 0;
                    match control::frame_len(*header, control::MAX_REQUEST) {
                        Ok(n) => {
                            body.clear();
                            body.resize(n, 0);
                            *in_body = true;
                        }
                        Err(e) => return Ok(Some(Incoming::Refused(e.to_string()))),
                    }
                }
                if !fill(stream, body, len, eof)? {
                    return Ok(None);
                }
                *len = 0;
                *in_body = false;
                Ok(Some(match control::decode(body) {
                    Ok(req) => Incoming::Control(req),
                    Err(e) => Incoming::Refused(e.to_string()),
                }))
            }
        }
    }
}

pub struct Server {
    poll: Poll,
    listener: UnixListener,
    control: UnixListener,
    signals: Signals,
    clients: HashMap<Token, Client>,
    /// Clients that may have more requests waiting, served in turns.
    busy: VecDeque<Token>,
    next_token: usize,
    collector: Collector,
    exits: ExitLog,
    records: Vec<NetPerTask>,
    config: Config,
    warned: Warned,
    /// The programs' exit counter when exits were last collected.
    exits_seen: u64,
    next_housekeeping: Instant,
    started: Instant,
    /// When the last snapshot was taken, if its buffers are still held.
    holding_since: Option<Instant>,
    /// Snapshots taken, and how long the most recent ones took (µs).
    queries: u64,
    timings: VecDeque<u64>,
}

/// What has been warned about, for rate limiting.
#[derive(Default)]
struct Warned {
    at: Option<Instant>,
    thread_map_full: u64,
    proc_map_full: u64,
    exit_map_full: u64,
    exit_log_dropped: u64,
    /// When a refused connection was last warned about.
    refused_at: Option<Instant>,
    refused: u64,
}

impl Server {
    /// `signals` must have been created before the socket was bound, so that
    /// a stop requested as soon as the socket answers is not lost.
    pub fn new(
        mut signals: Signals,
        listener: std::os::unix::net::UnixListener,
        control: std::os::unix::net::UnixListener,
        collector: Collector,
        exits: ExitLog,
        config: Config,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        control.set_nonblocking(true)?;
        let mut control = UnixListener::from_std(control);
        poll.registry()
            .register(&mut control, CONTROL, Interest::READABLE)?;
        Ok(Self {
            poll,
            listener,
            control,
            signals,
            clients: HashMap::new(),
            busy: VecDeque::new(),
            next_token: FIRST_CLIENT,
            collector,
            exits,
            records: Vec::new(),
            next_housekeeping: Instant::now() + config.housekeeping,
            config,
            warned: Warned::default(),
            exits_seen: 0,
            started: Instant::now(),
            holding_since: None,
            queries: 0,
            timings: VecDeque::with_capacity(TIMINGS),
        })
    }

    pub fn tracer(&self) -> &netatopd_bpf::Tracer {
        self.collector.tracer()
    }

    /// Runs until SIGTERM, SIGINT or SIGHUP.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_tick = Instant::now() + self.config.tick;
        loop {
            let timeout = if self.busy.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(false),
                    CONTROL => self.accept(true),
                    SIGNALS => {
                        if let Some(sig) = self.signals.pending().next() {
                            info!("signal {sig} received, stopping");
                            return Ok(());
                        }
                    }
                    token => self.serve(token),
                }
            }
            // One more turn for each client that was busy before this round.
            for _ in 0..self.busy.len() {
                if let Some(token) = self.busy.pop_front() {
                    self.serve(token);
                }
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + self.config.tick;
            }
        }
    }

    fn accept(&mut self, control: bool) {
        loop {
            let listener = if control {
                &self.control
            } else {
                &self.listener
            };
            match listener.accept() {
                Ok((mut stream, _)) => {
                    if self.clients.len() >= self.config.max_clients {
                        // Closing it at once: the client reads end-of-file.
                        drop(stream);
                        self.warn_refused();
                        continue;
                    }
                    let token = Token(self.next_token);
                    self.next_token += 1;
                    // Edge-triggered, registered once: readable and writable
                    // events both give the client a turn.
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("cannot watch a new client, closing it: {e}");
                        continue;
                    }
                    let chunk = chunk_for(&stream);
                    debug!("client {} connected (writes of {chunk} bytes)", token.0);
                    let input = if control {
                        Input::Control {
                            header: [0; 4],
                            body: Vec::new(),
                            in_body: false,
                            len: 0,
                        }
                    } else {
                        Input::Atop {
                            buf: [0; RECORD_SIZE],
                            len: 0,
                        }
                    };
                    let client = Client {
                        stream,
                        input,
                        follows_exits: !control,
                        out: Vec::new(),
                        sent: 0,
                        chunk,
                        cursor: self.exits.cursor(boottime_ns()),
                        eof: false,
                        stalled_since: None,
                        live: None,
                    };
                    self.clients.insert(token, client);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of descriptors or memory: the pending connection stays
                // queued; keep serving the clients we have.
                Err(e) => {
                    warn!("cannot accept a client: {e}");
                    return;
                }
            }
        }
    }

    fn serve(&mut self, token: Token) {
        let Some(mut client) = self.clients.remove(&token) else {
            return;
        };
        match self.serve_client(&mut client) {
            Ok(State::Idle) => {
                self.clients.insert(token, client);
            }
            Ok(State::Busy) => {
                self.clients.insert(token, client);
                if !self.busy.contains(&token) {
                    self.busy.push_back(token);
                }
            }
            Ok(State::Closed) => debug!("client {} disconnected", token.0),
            Err(e) => debug!("client {} dropped: {e}", token.0),
        }
        // A dropped client is deregistered when its stream closes.
    }

    /// One turn: writes what is pending, then answers at most one request.
    fn serve_client(&mut self, c: &mut Client) -> io::Result<State> {
        let cap = self.config.max_pending_output;
        c.flush()?;
        if c.live.is_some() {
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
                self.respond(c, incoming)?;
                c.flush()?;
                if c.live.is_some() {
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
        let Some(walk) = c.live.as_mut() else {
            return Ok(());
        };
        let start = c.out.len();
        c.out.resize(start + c.chunk, 0);
        let n = match self.collector.read_walk(walk, &mut c.out[start..]) {
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
        let walk = c.live.take().expect("checked above");
        if let Err(e) = self.collector.drain(&mut self.exits) {
            warn!("cannot collect exited processes: {e}");
            return Err(e);
        }
        self.records.clear();
        self.exits.take_for(&mut c.cursor, &mut self.records);
        self.records.push(NetPerTask::TERMINATOR);
        c.out.extend_from_slice(self.records.as_bytes());
        self.timed(walk.elapsed);
        Ok(())
    }

    /// Counts a snapshot and keeps how long the kernel took.
    fn timed(&mut self, took: Duration) {
        self.queries += 1;
        self.holding_since = Some(Instant::now());
        if self.timings.len() == TIMINGS {
            self.timings.pop_front();
        }
        self.timings.push_back(took.as_micros() as u64);
    }

    fn respond(&mut self, c: &mut Client, incoming: Incoming) -> io::Result<()> {
        // What was sent goes, so the buffer holds only what is pending.
        c.out.drain(..c.sent);
        c.sent = 0;
        match incoming {
            Incoming::Atop { threads } => {
                let streams = self.clients.values().filter(|c| c.live.is_some()).count();
                if !threads && streams < self.config.max_streams {
                    // Streamed from the kernel as the client reads: nothing
                    // per process is kept here.
                    match self.collector.walk() {
                        Ok(walk) => {
                            c.live = Some(walk);
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
                }
                if !threads && streams >= self.config.max_streams {
                    debug!("{streams} snapshots are being streamed: this one is built whole");
                }
                self.snapshot()?;
                let live = self.records.len();
                self.exits.take_for(&mut c.cursor, &mut self.records);
                if threads {
                    self.thread_records(live)?;
                }
                self.records.push(NetPerTask::TERMINATOR);
                c.out.extend_from_slice(self.records.as_bytes());
            }
            Incoming::Control(req) => {
                let resp = match req {
                    control::Request::Processes { threads, exited } => {
                        Response::Processes(self.processes(c, threads, exited)?)
                    }
                    control::Request::Stats => Response::Stats(Box::new(self.stats()?)),
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

    /// The live threads of the first `live` records (the live processes
    /// of this snapshot): (index of the process's record, tid, counters).
    fn live_threads(&self, live: usize) -> Vec<(usize, u32, Counters)> {
        let index: HashMap<i32, usize> = self.records[..live]
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i))
            .collect();
        self.collector
            .threads()
            .filter_map(|(tid, tgid, c)| index.get(&(tgid as i32)).map(|&i| (i, tid, c)))
            .collect()
    }

    /// Appends a thread record for every live thread of the first `live`
    /// records.
    fn thread_records(&mut self, live: usize) -> io::Result<()> {
        self.collector.read_threads()?;
        for (i, tid, counters) in self.live_threads(live) {
            let record = NetPerTask::thread(tid, &self.records[i], counters);
            self.records.push(record);
        }
        Ok(())
    }

    /// Live processes into `records`, whole, timed for the statistics.
    fn snapshot(&mut self) -> io::Result<()> {
        let start = Instant::now();
        self.records.clear();
        if let Err(e) = self.collector.snapshot(&mut self.records, &mut self.exits) {
            warn!("cannot read the kernel's snapshot: {e}");
            return Err(e);
        }
        self.timed(start.elapsed());
        Ok(())
    }

    fn processes(
        &mut self,
        c: &mut Client,
        threads: bool,
        exited: bool,
    ) -> io::Result<Vec<Process>> {
        self.snapshot()?;
        let live = self.records.len();
        if exited {
            c.follows_exits = true;
            self.exits.take_for(&mut c.cursor, &mut self.records);
        }
        let mut procs: Vec<Process> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| Process {
                pid: r.id,
                btime: r.btime,
                command: r.command_str(),
                counters: r.counters,
                exited: i >= live,
                threads: Vec::new(),
            })
            .collect();
        if threads {
            self.collector.read_threads()?;
            for (i, tid, counters) in self.live_threads(live) {
                let tgid = procs[i].pid;
                procs[i].threads.push(Thread {
                    tid: tid as i32,
                    tgid,
                    name: thread_name(tgid as u32, tid),
                    counters,
                });
            }
            for p in &mut procs {
                p.threads.sort_unstable_by_key(|t| t.tid);
            }
        }
        Ok(procs)
    }

    fn stats(&mut self) -> io::Result<Stats> {
        let (processes, threads) = self.collector.census()?;
        let tracer = self.collector.tracer();
        let k = tracer.stats();
        let sizes = tracer.map_sizes();
        let mut sorted: Vec<u64> = self.timings.iter().copied().collect();
        sorted.sort_unstable();
        // The asking client is out of the map while it is served.
        let control_clients = 1 + self
            .clients
            .values()
            .filter(|c| matches!(c.input, Input::Control { .. }))
            .count() as u64;
        let now = boottime_ns();
        Ok(Stats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            counting_secs: now.saturating_sub(tracer.counting_since_ns()) as f64 / 1e9,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            attach_mode: format!(
                "tp_btf (BTF raw tracepoints: sock_send_length, sock_recv_length, \
                 sched_process_exit, sched_process_exec); {}",
                tracer.extras()
            ),
            pin_dir: self.config.pin_dir.clone(),
            pinned: self.config.pinned.clone(),
            processes: processes as u64,
            threads: threads as u64,
            max_threads: sizes.threads.into(),
            max_processes: sizes.procs.into(),
            max_pending_exits: sizes.exited.into(),
            events: self.collector.events(),
            thread_map_full: k.thread_map_full,
            proc_map_full: k.proc_map_full,
            exit_map_full: k.exit_map_full,
            exits: k.exits,
            exited_kept: self.exits.len() as u64,
            exited_dropped: self.exits.dropped(),
            atop_clients: self.clients.len() as u64 + 1 - control_clients,
            control_clients,
            queries: self.queries,
            last_query_us: self.timings.back().copied().unwrap_or(0),
            median_query_us: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
            map_memory_bytes: tracer.map_memory()?,
        })
    }

    fn tick(&mut self) {
        let published = self.collector.tracer().stats().exits;
        if published != self.exits_seen {
            self.exits_seen = published;
            if let Err(e) = self.collector.drain(&mut self.exits) {
                warn!("cannot collect exited processes: {e}");
            }
        }
        if Instant::now() >= self.next_housekeeping {
            self.next_housekeeping = Instant::now() + self.config.housekeeping;
            self.drop_stuck_clients();
            self.release_idle_memory();
            self.exits.expire(
                boottime_ns(),
                self.clients
                    .values()
                    .filter(|c| c.follows_exits)
                    .map(|c| &c.cursor),
            );
            self.warn_drops();
        }
    }

    /// Between queries (atop asks every few seconds), gives the snapshot
    /// buffers back to the system: about 700 bytes per process otherwise
    /// held from one query to the next.
    fn release_idle_memory(&mut self) {
        if self
            .holding_since
            .is_none_or(|t| t.elapsed() < self.config.housekeeping)
        {
            return;
        }
        self.holding_since = None;
        self.collector.release();
        self.records = Vec::new();
        for c in self.clients.values_mut().filter(|c| c.pending() == 0) {
            c.out = Vec::new();
        }
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
    }

    /// Disconnects clients that have not taken any of their response for
    /// `client_timeout`: they hold memory and would never catch up.
    fn drop_stuck_clients(&mut self) {
        let limit = self.config.client_timeout;
        self.clients.retain(|token, c| {
            let stuck = c.stalled_since.is_some_and(|t| t.elapsed() >= limit);
            if stuck {
                debug!(
                    "client {} disconnected: its response ({} bytes pending) did not move for {limit:?}",
                    token.0,
                    c.out.len() - c.sent
                );
            }
            !stuck
        });
    }

    /// Warns, at most once a minute, about connections refused for the limit.
    fn warn_refused(&mut self) {
        let w = &mut self.warned;
        w.refused += 1;
        if w.refused_at.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            warn!(
                "{} connection(s) refused: {} clients connected (--max-clients)",
                w.refused, self.config.max_clients
            );
            w.refused = 0;
            w.refused_at = Some(Instant::now());
        }
    }

    /// Warns, at most once a minute, about updates lost to full maps.
    fn warn_drops(&mut self) {
        if self.warned.at.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let s = self.collector.tracer().stats();
        let sizes = self.collector.tracer().map_sizes();
        let w = &mut self.warned;
        let mut said = false;
        let mut say = |what: String| {
            warn!("{what}");
            said = true;
        };
        if s.thread_map_full > w.thread_map_full {
            say(format!(
                "{} socket calls not counted: the thread map is full ({} entries; raise --max-threads)",
                s.thread_map_full - w.thread_map_full,
                sizes.threads
            ));
        }
        if s.proc_map_full > w.proc_map_full {
            say(format!(
                "{} socket calls not counted: the process map is full ({} entries; raise --max-processes)",
                s.proc_map_full - w.proc_map_full,
                sizes.procs
            ));
        }
        if s.exit_map_full > w.exit_map_full {
            say(format!(
                "final totals of {} exited processes lost: the exit map is full ({} entries; raise --max-pending-exits)",
                s.exit_map_full - w.exit_map_full,
                sizes.exited
            ));
        }
        let dropped = self.exits.dropped();
        if dropped > w.exit_log_dropped {
            say(format!(
                "{} exited-process records dropped before every client had them (raise --max-exited)",
                dropped - w.exit_log_dropped
            ));
        }
        if said {
            w.at = Some(Instant::now());
            w.thread_map_full = s.thread_map_full;
            w.proc_map_full = s.proc_map_full;
            w.exit_map_full = s.exit_map_full;
            w.exit_log_dropped = dropped;
        }
    }
}

/// A thread's own name from /proc; empty if it is gone.
fn thread_name(tgid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}
