//! The mio event loop that answers atop on the netatop-bpf socket and
//! netatopctl on the control socket.
//!
//! Every client is non-blocking and served in turns of one request each,
//! so a client that pipelines many requests delays the others by at most
//! one response. A client's pending output is capped: beyond
//! `max_pending_output` its further requests wait in its socket until it
//! reads. An atop response is streamed from the kernel's snapshot a chunk
//! at a time as the client takes the one before, so nothing per process is
//! held here.
//!
//! - `client`: one connection's framing and non-blocking I/O.
//! - `respond`: what a request gets (atop streamed or whole, control).
//! - `housekeeping`: the periodic work, warnings and statistics.

mod client;
mod housekeeping;
mod respond;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token};
use netatop_protocol::NetPerTask;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::collect::{boottime_ns, Collector};
use crate::exits::ExitLog;
use client::{Client, Input, State};
use housekeeping::{Statistics, Warned};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
const CONTROL: Token = Token(2);
const FIRST_CLIENT: usize = 3;

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
    /// Connections one uid other than root may hold at once.
    pub max_clients_per_user: usize,
    /// A connection of a uid other than root that sends no whole request
    /// for this long is closed.
    pub idle_timeout: Duration,
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

/// Everything a response is made from: the kernel's counts, the exit log,
/// the reusable buffers and the figures about the clients, apart from the
/// clients themselves, so that one client can be served while it stays in
/// the client map.
struct Core {
    collector: Collector,
    exits: ExitLog,
    /// Reused for whole responses.
    records: Vec<NetPerTask>,
    config: Config,
    /// Atop responses being streamed now (each holds a descriptor).
    streams: usize,
    stats: Statistics,
    warned: Warned,
    /// What the last answer reported for each cgroup: answers never go
    /// lower.
    cgroup_floors: HashMap<u64, netatop_protocol::Counters>,
    /// Removed cgroups' final totals, each with its sequence number and
    /// when it was removed (CLOCK_BOOTTIME ns), kept for the exit grace.
    removed_cgroups: VecDeque<(u64, u64, netatop_protocol::control::Cgroup)>,
    cgroup_seq: u64,
    cgroup_hierarchy: crate::cgroups::Hierarchy,
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
    core: Core,
    /// The programs' exit counter when exits were last collected.
    exits_seen: u64,
    /// The kernel's count of removed cgroups when last collected.
    cgroups_removed_seen: u64,
    next_housekeeping: Instant,
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
            next_housekeeping: Instant::now() + config.housekeeping,
            exits_seen: 0,
            cgroups_removed_seen: 0,
            core: Core {
                collector,
                exits,
                records: Vec::new(),
                config,
                streams: 0,
                stats: Statistics::new(),
                warned: Warned::default(),
                cgroup_floors: HashMap::new(),
                removed_cgroups: VecDeque::new(),
                cgroup_seq: 0,
                cgroup_hierarchy: Default::default(),
            },
        })
    }

    pub fn tracer(&self) -> &netatopd_bpf::Tracer {
        self.core.collector.tracer()
    }

    /// Runs until SIGTERM, SIGINT or SIGHUP.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_tick = Instant::now() + self.core.config.tick;
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
                next_tick = Instant::now() + self.core.config.tick;
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
                    let uid = peer_uid(&stream);
                    if let Err(refusal) = self.core.admit(uid, self.clients.len()) {
                        // Closing it at once: the client reads end-of-file.
                        drop(stream);
                        self.core.refused(refusal, uid);
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
                    let input = if control {
                        Input::control()
                    } else {
                        Input::atop()
                    };
                    let cursor = self.core.exits.cursor(boottime_ns());
                    let client = Client::new(stream, input, cursor, uid);
                    debug!(
                        "client {} connected (writes of {} bytes)",
                        token.0, client.chunk
                    );
                    self.core.stats.connected(&client);
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

    /// One turn of one client, which stays in the client map meanwhile.
    fn serve(&mut self, token: Token) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        match self.core.turn(client) {
            Ok(State::Idle) => {}
            Ok(State::Busy) => {
                if !self.busy.contains(&token) {
                    self.busy.push_back(token);
                }
            }
            Ok(State::Closed) => {
                debug!("client {} disconnected", token.0);
                self.remove(token);
            }
            Err(e) => {
                debug!("client {} dropped: {e}", token.0);
                self.remove(token);
            }
        }
    }

    /// Forgets a client; its stream closes (and leaves the poll) with it.
    fn remove(&mut self, token: Token) {
        if let Some(c) = self.clients.remove(&token) {
            self.core.forget(&c);
        }
    }
}

/// The uid of a connection's peer (SO_PEERCRED); one no uid is treated as
/// a stranger (never root) if the kernel cannot say.
fn peer_uid(stream: &mio::net::UnixStream) -> u32 {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(stream, PeerCredentials) {
        Ok(cred) => cred.uid(),
        Err(e) => {
            warn!("cannot tell who connected ({e}): treated as an unprivileged user");
            u32::MAX
        }
    }
}
