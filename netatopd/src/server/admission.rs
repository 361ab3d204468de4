//! Who may connect, and who is connected: --max-clients in all, the
//! per-user limit, the last slots kept for root; the count of connections
//! by socket and uid, of those refused (warned about at most once a minute
//! for each cause) and of those closed for idleness.

use std::collections::BTreeMap;
use std::time::Instant;

use log::warn;
use mio::Token;

use super::client::{Client, Clients};
use super::warnings::WARN_EVERY;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// --max-clients connections are open.
    Full,
    /// Its uid holds --max-clients-per-user connections.
    PerUser,
    /// The slots left are kept for root.
    Reserved,
}

/// Whether connections of `uid` are root's: uid 0, or netatopd's own
/// user (the owner of its sockets).
pub(super) fn privileged(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// The last slots of `max_clients` that only root may take.
fn root_reserve(max_clients: usize) -> usize {
    16.min(max_clients / 2)
}

/// Connections counted for the statistics.
#[derive(Default)]
pub(super) struct Tally {
    /// Clients connected now, by socket, and by uid (both sockets).
    pub(super) atop: u64,
    pub(super) control: u64,
    pub(super) by_uid: BTreeMap<u32, u64>,
    /// Connections refused, by cause; and closed for idleness.
    pub(super) refused: [u64; 3],
    pub(super) closed_idle: u64,
}

impl Tally {
    fn of_kind(&mut self, c: &Client) -> &mut u64 {
        if c.is_control() {
            &mut self.control
        } else {
            &mut self.atop
        }
    }
}

pub(super) struct Admission {
    /// Clients served at once.
    max_clients: usize,
    /// Connections one uid other than root may hold at once.
    max_clients_per_user: usize,
    tally: Tally,
    /// When connections refused for each cause were last warned about,
    /// and how many were refused since.
    warned_at: [Option<Instant>; 3],
    since_warned: [u64; 3],
}

impl Admission {
    pub(super) fn new(max_clients: usize, max_clients_per_user: usize) -> Self {
        Self {
            max_clients,
            max_clients_per_user,
            tally: Tally::default(),
            warned_at: [None; 3],
            since_warned: [0; 3],
        }
    }

    /// The connections counted, for the statistics.
    pub(super) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Whether a new connection of `uid` may be served, with `open`
    /// connections open: root (netatopd's own user, the sockets' owner)
    /// up to --max-clients; any other uid up to --max-clients-per-user,
    /// and all of them together never into the slots kept for root.
    pub(super) fn admit(&self, uid: u32, open: usize) -> Result<(), Refusal> {
        if open >= self.max_clients {
            return Err(Refusal::Full);
        }
        if privileged(uid) {
            return Ok(());
        }
        let by_uid = &self.tally.by_uid;
        let held = by_uid.get(&uid).copied().unwrap_or(0) as usize;
        if held >= self.max_clients_per_user {
            return Err(Refusal::PerUser);
        }
        let by_root: u64 = (by_uid.iter())
            .filter(|(&u, _)| privileged(u))
            .map(|(_, &n)| n)
            .sum();
        if open - by_root as usize >= self.max_clients - root_reserve(self.max_clients) {
            return Err(Refusal::Reserved);
        }
        Ok(())
    }

    /// Counts a refused connection and warns, at most once a minute for
    /// each cause, naming the uid.
    pub(super) fn refused(&mut self, why: Refusal, uid: u32) {
        let i = why as usize;
        self.tally.refused[i] += 1;
        self.since_warned[i] += 1;
        if self.warned_at[i].is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let n = self.since_warned[i];
        match why {
            Refusal::Full => warn!(
                "{n} connection(s) refused (the last from uid {uid}): {} clients connected \
                 (--max-clients)",
                self.max_clients
            ),
            Refusal::PerUser => warn!(
                "{n} connection(s) refused (the last from uid {uid}): uid {uid} holds {} \
                 connections (--max-clients-per-user)",
                self.max_clients_per_user
            ),
            Refusal::Reserved => warn!(
                "{n} connection(s) refused (the last from uid {uid}): the last {} of \
                 --max-clients {} are kept for root",
                root_reserve(self.max_clients),
                self.max_clients
            ),
        }
        self.since_warned[i] = 0;
        self.warned_at[i] = Some(Instant::now());
    }

    /// Counts a client that was let in.
    pub(super) fn connected(&mut self, c: &Client) {
        *self.tally.of_kind(c) += 1;
        *self.tally.by_uid.entry(c.uid()).or_default() += 1;
    }

    /// Forgets a client: it no longer counts; its stream closes (and
    /// leaves the poll) with it, and so does a snapshot it was given.
    pub(super) fn close(&mut self, clients: &mut Clients, token: Token) {
        let Some(c) = clients.remove(&token) else {
            return;
        };
        *self.tally.of_kind(&c) -= 1;
        if let Some(n) = self.tally.by_uid.get_mut(&c.uid()) {
            *n -= 1;
            if *n == 0 {
                self.tally.by_uid.remove(&c.uid());
            }
        }
    }

    /// Closes a client that was idle for too long, and counts it.
    pub(super) fn close_idle(&mut self, clients: &mut Clients, token: Token) {
        self.tally.closed_idle += 1;
        self.close(clients, token);
    }
}
