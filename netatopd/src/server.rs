//! The mio event loop that answers atop on the netatop-bpf socket.
//!
//! Every client is non-blocking. Request bytes are gathered until a whole
//! 96-byte request is there (a client never sizes an allocation), and each
//! whole request gets one whole response, in order. Clients are served in
//! turns of one request each, so a client that pipelines many requests
//! delays the others by at most one response. A client's pending output is
//! capped: beyond `max_pending_output` its further requests wait in its
//! socket until it reads. Responses are written in chunks of whole records
//! that the kernel queues all-or-nothing, so a reader never finds a partial
//! record at the end of the queue.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use netatop_protocol::{NetPerTask, RECORD_SIZE};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use zerocopy::IntoBytes;

use crate::collect::{boottime_ns, Collector};
use crate::exits::{Cursor, ExitLog};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const FIRST_CLIENT: usize = 2;

/// Largest write: whole records within one unix-socket buffer (32 KiB).
const MAX_CHUNK: usize = 32 * 1024 / RECORD_SIZE * RECORD_SIZE;
/// Repeated warnings of the same kind are at most this frequent.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The signals that stop the daemon; create this first of all.
pub fn stop_signals() -> io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT])
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
    /// A client whose pending response does not move for this long is
    /// disconnected.
    pub client_timeout: Duration,
    /// Bytes of responses a client may leave unread before its further
    /// requests are left unread too (one response is always allowed).
    pub max_pending_output: usize,
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

struct Client {
    stream: UnixStream,
    req: [u8; RECORD_SIZE],
    req_len: usize,
    out: Vec<u8>,
    sent: usize,
    chunk: usize,
    cursor: Cursor,
    /// The client shut down its sending side: close once its output is out.
    eof: bool,
    /// Since when pending output has not moved (None: nothing is stuck).
    stalled_since: Option<Instant>,
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

    /// Reads toward the next request; true when a whole one is there,
    /// false when nothing more can be read now (or the client shut down).
    fn read_request(&mut self) -> io::Result<bool> {
        loop {
            match self.stream.read(&mut self.req[self.req_len..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.req_len += n;
                    if self.req_len < RECORD_SIZE {
                        continue;
                    }
                    // The request's content means nothing: it asks for everything.
                    self.req_len = 0;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

pub struct Server {
    poll: Poll,
    listener: UnixListener,
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
        Ok(Self {
            poll,
            listener,
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
        })
    }

    pub fn tracer(&self) -> &netatopd_bpf::Tracer {
        self.collector.tracer()
    }

    /// Runs until SIGTERM or SIGINT.
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
                    LISTENER => self.accept(),
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

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
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
                    let client = Client {
                        stream,
                        req: [0; RECORD_SIZE],
                        req_len: 0,
                        out: Vec::new(),
                        sent: 0,
                        chunk,
                        cursor: self.exits.cursor(boottime_ns()),
                        eof: false,
                        stalled_since: None,
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
        let flushed = c.flush()?;
        if !c.eof && c.pending() < self.config.max_pending_output && c.read_request()? {
            self.respond(c)?;
            c.flush()?;
        } else {
            // Nothing to answer now: it waits for an event. Its further
            // requests, if over its output cap, wait in its socket.
            return Ok(if c.eof && flushed {
                State::Closed
            } else {
                State::Idle
            });
        }
        // Another request may be waiting; it gets the next turn.
        Ok(if c.pending() < self.config.max_pending_output {
            State::Busy
        } else {
            State::Idle
        })
    }

    fn respond(&mut self, c: &mut Client) -> io::Result<()> {
        self.records.clear();
        if let Err(e) = self.collector.snapshot(&mut self.records, &mut self.exits) {
            warn!("cannot read the kernel maps: {e}");
            return Err(e);
        }
        self.exits.take_for(&mut c.cursor, &mut self.records);
        self.records.push(NetPerTask::TERMINATOR);
        // What was sent goes, so the buffer holds only what is pending.
        c.out.drain(..c.sent);
        c.sent = 0;
        c.out.extend_from_slice(self.records.as_bytes());
        Ok(())
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
            self.exits
                .expire(boottime_ns(), self.clients.values().map(|c| &c.cursor));
            self.warn_drops();
        }
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
