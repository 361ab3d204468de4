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
//! This module owns the loop: accepting, giving clients their turns,
//! ticking. Its children do the jobs:
//! - `admission`: who may connect (the limits, the slots kept for root),
//!   and the count of who is connected.
//! - `client`: one connection's framing, buffers and non-blocking I/O.
//! - `respond`: what a request gets (atop streamed or whole, control), and
//!   what responses are made from; `processes` and `cgroup_totals` build
//!   the control protocol's lists, `removed` keeps removed cgroups for the
//!   clients, as `crate::exits` keeps exited processes.
//! - `ticks`: the periodic work; `warnings`: what was not counted.
//! - `statistics`: what `netatopctl stats` shows.

mod admission;
mod cgroup_totals;
mod client;
mod processes;
mod removed;
mod respond;
mod statistics;
mod ticks;
mod warnings;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::collect::{boottime_ns, Collector};
use crate::exits::ExitLog;
use admission::Admission;
use client::{Client, Clients};
use respond::{Responder, State};
use statistics::Statistics;
use ticks::Ticks;

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
    /// A client that leaves output untaken for this long (taking none or
    /// a trickle) is disconnected.
    pub client_timeout: Duration,
    /// Bytes of responses a client may leave unread before its further
    /// requests are left unread too (one response is always allowed).
    pub max_pending_output: usize,
    /// The same for all clients of users other than root together.
    pub max_unprivileged_output: usize,
    /// Where the programs are pinned and what the start found there, for
    /// the statistics.
    pub pin_dir: String,
    pub pinned: String,
}

pub struct Server {
    poll: Poll,
    listener: UnixListener,
    control: UnixListener,
    signals: Signals,
    clients: Clients,
    /// Clients that may have more requests waiting, served in turns.
    busy: VecDeque<Token>,
    /// Clients whose requests wait for users other than root to take
    /// their output, served on the next tick.
    held: Vec<Token>,
    next_token: usize,
    responder: Responder,
    admission: Admission,
    ticks: Ticks,
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
        let Config {
            tick,
            housekeeping,
            max_clients,
            max_clients_per_user,
            idle_timeout,
            max_streams,
            client_timeout,
            max_pending_output,
            max_unprivileged_output,
            pin_dir,
            pinned,
        } = config;
        Ok(Self {
            poll,
            listener,
            control,
            signals,
            clients: Clients::new(),
            busy: VecDeque::new(),
            held: Vec::new(),
            next_token: FIRST_CLIENT,
            responder: Responder::new(
                collector,
                exits,
                Statistics::new(pin_dir, pinned),
                max_streams,
                max_pending_output,
                max_unprivileged_output,
            ),
            admission: Admission::new(max_clients, max_clients_per_user),
            ticks: Ticks::new(tick, housekeeping, idle_timeout, client_timeout),
        })
    }

    pub fn tracer(&self) -> &netatopd_bpf::Tracer {
        self.responder.tracer()
    }

    /// Runs until SIGTERM, SIGINT or SIGHUP.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_tick = Instant::now() + self.ticks.period();
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
                self.ticks
                    .tick(&mut self.responder, &mut self.clients, &mut self.admission);
                next_tick = Instant::now() + self.ticks.period();
                for token in std::mem::take(&mut self.held) {
                    self.serve(token);
                }
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
                    if let Err(refusal) = self.admission.admit(uid, self.clients.len()) {
                        // Closing it at once: the client reads end-of-file.
                        drop(stream);
                        self.admission.refused(refusal, uid);
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
                    let client = Client::new(stream, control, uid, boottime_ns());
                    debug!(
                        "client {} connected (writes of {} bytes)",
                        token.0,
                        client.chunk()
                    );
                    self.admission.connected(&client);
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
        match self.responder.turn(client, self.admission.tally()) {
            Ok(State::Idle) => {}
            Ok(State::Busy) => {
                if !self.busy.contains(&token) {
                    self.busy.push_back(token);
                }
            }
            Ok(State::Held) => {
                if !self.held.contains(&token) {
                    self.held.push(token);
                }
            }
            Ok(State::Closed) => {
                debug!("client {} disconnected", token.0);
                self.admission.close(&mut self.clients, token);
            }
            Err(e) => {
                debug!("client {} dropped: {e}", token.0);
                self.admission.close(&mut self.clients, token);
            }
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
