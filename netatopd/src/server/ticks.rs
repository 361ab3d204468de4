//! The periodic work: on every tick, collecting exited processes and
//! removed cgroups as soon as the programs published some; now and then
//! the housekeeping (dropping stuck clients, closing idle ones, giving
//! memory back, forgetting expired exits, warning about what was not
//! counted).

use std::time::{Duration, Instant};

use log::debug;

use super::admission::{privileged, Admission};
use super::client::{give_back, Client, Clients};
use super::respond::Responder;
use super::warnings::Warned;

pub(super) struct Ticks {
    /// How often the programs' counters are looked at.
    period: Duration,
    /// How often the housekeeping is done.
    housekeeping: Duration,
    /// A connection of a uid other than root that sends no whole request
    /// for this long is closed.
    idle_timeout: Duration,
    /// A client that leaves output untaken for this long is disconnected.
    client_timeout: Duration,
    next_housekeeping: Instant,
    /// The programs' exit counter when exits were last collected.
    exits_seen: u64,
    /// The kernel's count of removed cgroups when last collected.
    cgroups_removed_seen: u64,
    warned: Warned,
}

impl Ticks {
    pub(super) fn new(
        period: Duration,
        housekeeping: Duration,
        idle_timeout: Duration,
        client_timeout: Duration,
    ) -> Self {
        Self {
            period,
            housekeeping,
            idle_timeout,
            client_timeout,
            next_housekeeping: Instant::now() + housekeeping,
            exits_seen: 0,
            cgroups_removed_seen: 0,
            warned: Warned::default(),
        }
    }

    /// How often [`Ticks::tick`] is due.
    pub(super) fn period(&self) -> Duration {
        self.period
    }

    /// Collects exits as soon as the programs published some; now and then
    /// the housekeeping.
    pub(super) fn tick(
        &mut self,
        r: &mut Responder,
        clients: &mut Clients,
        admission: &mut Admission,
    ) {
        let k = r.tracer().stats();
        if k.exits != self.exits_seen {
            self.exits_seen = k.exits;
            r.collect_exits();
        }
        if k.cgroups_removed != self.cgroups_removed_seen {
            self.cgroups_removed_seen = k.cgroups_removed;
            r.collect_removed_cgroups();
        }
        // What the clients of users other than root leave unread, which
        // holds back their requests beyond --max-unprivileged-output.
        r.set_unprivileged_pending(
            clients
                .values()
                .filter(|c| !privileged(c.uid()))
                .map(Client::pending)
                .sum(),
        );
        if Instant::now() >= self.next_housekeeping {
            self.next_housekeeping = Instant::now() + self.housekeeping;
            self.drop_stuck_clients(clients, admission);
            self.close_idle_clients(clients, admission);
            self.release_idle_memory(r, clients);
            r.expire_exits(clients.values().filter_map(Client::exits_owed));
            self.warned.warn_drops(r.tracer(), r.exits_dropped());
            r.collect_removed_cgroups();
        }
    }

    /// Between queries (atop asks every few seconds), gives the snapshot
    /// buffers back to the system: about 700 bytes per process otherwise
    /// held from one query to the next.
    fn release_idle_memory(&self, r: &mut Responder, clients: &mut Clients) {
        if !r.release_if_idle(self.housekeeping) {
            return;
        }
        for c in clients.values_mut() {
            c.release_output();
        }
        give_back();
    }

    /// Closes the connections of users other than root that have sent no
    /// whole request nor taken any response for `idle_timeout`: they would
    /// hold slots forever. Root's are kept (atop's logger asks rarely).
    fn close_idle_clients(&self, clients: &mut Clients, admission: &mut Admission) {
        let limit = self.idle_timeout;
        let idle: Vec<_> = clients
            .iter_mut()
            .filter(|(_, c)| !privileged(c.uid()))
            .filter_map(|(token, c)| c.idle_for(limit).then_some((*token, c.uid())))
            .collect();
        for (token, uid) in idle {
            debug!("client {} of uid {uid} closed: idle for {limit:?}", token.0);
            admission.close_idle(clients, token);
        }
    }

    /// Disconnects clients that leave output untaken for `client_timeout`,
    /// taking none of it or a trickle: they hold memory and would never
    /// catch up.
    fn drop_stuck_clients(&self, clients: &mut Clients, admission: &mut Admission) {
        let limit = self.client_timeout;
        let stuck: Vec<_> = clients
            .iter_mut()
            .filter_map(|(token, c)| c.late_for(limit).then_some(*token))
            .collect();
        for token in stuck {
            if let Some(c) = clients.get(&token) {
                debug!(
                    "client {} of uid {} disconnected: its responses ({} bytes pending) were not \
                     taken within {limit:?}",
                    token.0,
                    c.uid(),
                    c.pending()
                );
            }
            admission.close(clients, token);
        }
    }
}
