//! The daemon's periodic work (collecting exits, forgetting expired ones,
//! dropping stuck clients, giving memory back), its rate-limited warnings,
//! and the statistics `netatopctl stats` shows.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use log::{debug, warn};
use netatop_protocol::control::Stats;
use netatop_protocol::Counters;

use super::client::Client;
use super::{Core, Server};
use crate::collect::boottime_ns;

/// Snapshot times kept for the median in the statistics.
const TIMINGS: usize = 101;
/// Repeated warnings of the same kind are at most this frequent.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Figures about the daemon's own work.
pub(super) struct Statistics {
    started: Instant,
    /// When the last snapshot was taken, if its buffers are still held.
    holding_since: Option<Instant>,
    /// Snapshots taken, and how long the most recent ones took (µs).
    queries: u64,
    timings: VecDeque<u64>,
    /// Clients connected now, by socket, and by uid (both sockets).
    atop_clients: u64,
    control_clients: u64,
    by_uid: BTreeMap<u32, u64>,
    /// Connections refused, by cause; and closed for idleness.
    refused: [u64; 3],
    closed_idle: u64,
}

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
pub(super) fn root_reserve(max_clients: usize) -> usize {
    16.min(max_clients / 2)
}

impl Statistics {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            holding_since: None,
            queries: 0,
            timings: VecDeque::with_capacity(TIMINGS),
            atop_clients: 0,
            control_clients: 0,
            by_uid: BTreeMap::new(),
            refused: [0; 3],
            closed_idle: 0,
        }
    }

    /// Counts a snapshot and keeps how long the kernel took.
    pub(super) fn timed(&mut self, took: Duration) {
        self.queries += 1;
        self.holding_since = Some(Instant::now());
        if self.timings.len() == TIMINGS {
            self.timings.pop_front();
        }
        self.timings.push_back(took.as_micros() as u64);
    }

    pub(super) fn connected(&mut self, c: &Client) {
        *self.clients_of(c) += 1;
        *self.by_uid.entry(c.uid).or_default() += 1;
    }

    fn clients_of(&mut self, c: &Client) -> &mut u64 {
        if c.is_control() {
            &mut self.control_clients
        } else {
            &mut self.atop_clients
        }
    }
}

/// What has been warned about, for rate limiting.
#[derive(Default)]
pub(super) struct Warned {
    at: Option<Instant>,
    thread_map_full: u64,
    thread_storage_failed: u64,
    proc_map_full: u64,
    exit_map_full: u64,
    exit_log_dropped: u64,
    cgroup_map_full: u64,
    cgroup_gone_full: u64,
    rx_unseen: u64,
    /// When connections refused for each cause were last warned about,
    /// and how many were refused since.
    refused_at: [Option<Instant>; 3],
    refused: [u64; 3],
}

impl Server {
    /// Collects exits as soon as the programs published some; now and then
    /// the housekeeping.
    pub(super) fn tick(&mut self) {
        let core = &mut self.core;
        let k = core.collector.tracer().stats();
        if k.exits != self.exits_seen {
            self.exits_seen = k.exits;
            if let Err(e) = core.collector.drain(&mut core.exits) {
                warn!("cannot collect exited processes: {e}");
            }
        }
        if k.cgroups_removed != self.cgroups_removed_seen {
            self.cgroups_removed_seen = k.cgroups_removed;
            if let Err(e) = core.collect_removed_cgroups() {
                warn!("cannot collect removed cgroups: {e}");
            }
        }
        if Instant::now() >= self.next_housekeeping {
            self.next_housekeeping = Instant::now() + core.config.housekeeping;
            self.drop_stuck_clients();
            self.close_idle_clients();
            self.release_idle_memory();
            let core = &mut self.core;
            core.exits.expire(
                boottime_ns(),
                self.clients
                    .values()
                    .filter(|c| c.follows_exits)
                    .map(|c| &c.cursor),
            );
            core.warn_drops();
            if let Err(e) = core.collect_removed_cgroups() {
                warn!("cannot collect removed cgroups: {e}");
            }
        }
    }

    /// Between queries (atop asks every few seconds), gives the snapshot
    /// buffers back to the system: about 700 bytes per process otherwise
    /// held from one query to the next.
    fn release_idle_memory(&mut self) {
        let core = &mut self.core;
        if core
            .stats
            .holding_since
            .is_none_or(|t| t.elapsed() < core.config.housekeeping)
        {
            return;
        }
        core.stats.holding_since = None;
        core.collector.release();
        core.records = Vec::new();
        for c in self.clients.values_mut().filter(|c| c.pending() == 0) {
            c.out = Vec::new();
        }
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
    }

    /// Closes the connections of users other than root that have sent no
    /// whole request nor taken any response for `idle_timeout`: they would
    /// hold slots forever. Root's are kept (atop's logger asks rarely).
    fn close_idle_clients(&mut self) {
        let limit = self.core.config.idle_timeout;
        let idle: Vec<_> = self
            .clients
            .iter_mut()
            .filter(|(_, c)| !privileged(c.uid))
            .filter_map(|(token, c)| c.idle_for(limit).then_some((*token, c.uid)))
            .collect();
        for (token, uid) in idle {
            debug!("client {} of uid {uid} closed: idle for {limit:?}", token.0);
            self.core.stats.closed_idle += 1;
            self.remove(token);
        }
    }

    /// Disconnects clients that have not taken any of their response for
    /// `client_timeout`: they hold memory and would never catch up.
    fn drop_stuck_clients(&mut self) {
        let limit = self.core.config.client_timeout;
        let stuck: Vec<_> = self
            .clients
            .iter()
            .filter(|(_, c)| c.stalled_since.is_some_and(|t| t.elapsed() >= limit))
            .map(|(token, _)| *token)
            .collect();
        for token in stuck {
            if let Some(c) = self.clients.get(&token) {
                debug!(
                    "client {} disconnected: its response ({} bytes pending) did not move for {limit:?}",
                    token.0,
                    c.pending()
                );
            }
            self.remove(token);
        }
    }
}

impl Core {
    /// A client is gone: it no longer streams nor counts.
    pub(super) fn forget(&mut self, c: &Client) {
        if c.streaming.is_some() {
            self.streams -= 1;
        }
        *self.stats.clients_of(c) -= 1;
        if let Some(n) = self.stats.by_uid.get_mut(&c.uid) {
            *n -= 1;
            if *n == 0 {
                self.stats.by_uid.remove(&c.uid);
            }
        }
    }

    /// Whether a new connection of `uid` may be served, with `open`
    /// connections open: root (netatopd's own user, the sockets' owner)
    /// up to --max-clients; any other uid up to --max-clients-per-user,
    /// and all of them together never into the slots kept for root.
    pub(super) fn admit(&self, uid: u32, open: usize) -> Result<(), Refusal> {
        let cfg = &self.config;
        if open >= cfg.max_clients {
            return Err(Refusal::Full);
        }
        if privileged(uid) {
            return Ok(());
        }
        let held = self.stats.by_uid.get(&uid).copied().unwrap_or(0) as usize;
        if held >= cfg.max_clients_per_user {
            return Err(Refusal::PerUser);
        }
        let by_root: u64 = (self.stats.by_uid.iter())
            .filter(|(&u, _)| privileged(u))
            .map(|(_, &n)| n)
            .sum();
        if open - by_root as usize >= cfg.max_clients - root_reserve(cfg.max_clients) {
            return Err(Refusal::Reserved);
        }
        Ok(())
    }

    /// Counts a refused connection and warns, at most once a minute for
    /// each cause, naming the uid.
    pub(super) fn refused(&mut self, why: Refusal, uid: u32) {
        let i = why as usize;
        self.stats.refused[i] += 1;
        let cfg = &self.config;
        let w = &mut self.warned;
        w.refused[i] += 1;
        if w.refused_at[i].is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let n = w.refused[i];
        match why {
            Refusal::Full => warn!(
                "{n} connection(s) refused (the last from uid {uid}): {} clients connected \
                 (--max-clients)",
                cfg.max_clients
            ),
            Refusal::PerUser => warn!(
                "{n} connection(s) refused (the last from uid {uid}): uid {uid} holds {} \
                 connections (--max-clients-per-user)",
                cfg.max_clients_per_user
            ),
            Refusal::Reserved => warn!(
                "{n} connection(s) refused (the last from uid {uid}): the last {} of \
                 --max-clients {} are kept for root",
                root_reserve(cfg.max_clients),
                cfg.max_clients
            ),
        }
        w.refused[i] = 0;
        w.refused_at[i] = Some(Instant::now());
    }

    /// Warns, at most once a minute, about updates lost to full maps, and
    /// about packets the kernel did not run the programs for.
    fn warn_drops(&mut self) {
        if self.warned.at.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let s = self.collector.tracer().stats();
        let sizes = self.collector.tracer().map_sizes();
        let dropped = self.exits.dropped();
        let w = &mut self.warned;
        let lost = [
            (
                s.thread_map_full.saturating_sub(w.thread_map_full),
                format!(
                    "socket calls not counted: the thread map is full ({} entries; raise --max-threads)",
                    sizes.threads
                ),
            ),
            (
                s.thread_storage_failed.saturating_sub(w.thread_storage_failed),
                "socket calls not counted: the kernel did not give the thread its task-local \
                 storage (another task-storage user busy on that CPU, or no memory)"
                    .to_owned(),
            ),
            (
                s.proc_map_full.saturating_sub(w.proc_map_full),
                format!(
                    "socket calls not counted: the process map is full ({} entries; raise --max-processes)",
                    sizes.procs
                ),
            ),
            (
                s.exit_map_full.saturating_sub(w.exit_map_full),
                format!(
                    "final totals of exited processes lost: the exit map is full ({} entries; raise --max-pending-exits)",
                    sizes.exited
                ),
            ),
            (
                s.cgroup_map_full.saturating_sub(w.cgroup_map_full),
                format!(
                    "exited processes' totals lost to their cgroup's: the cgroup map is full ({} entries; raise --max-cgroups)",
                    sizes.cgroups
                ),
            ),
            (
                s.cgroup_gone_full.saturating_sub(w.cgroup_gone_full),
                format!(
                    "removed cgroups' final totals lost: the removed-cgroup map is full ({} entries; raise --max-removed-cgroups)",
                    sizes.removed_cgroups
                ),
            ),
            (
                dropped.saturating_sub(w.exit_log_dropped),
                "exited-process records dropped before every client had them (raise --max-exited)"
                    .to_owned(),
            ),            (
                s.rx_unseen.saturating_sub(w.rx_unseen),
                "packets reached their sockets unseen by the receive program: the kernel \
                 skipped the tracing programs for them (it does in some contexts); they are \
                 counted as received at the socket, but packets it skipped on their way out, \
                 or that reached no socket, are not counted"
                    .to_owned(),
            ),
        ];
        let mut said = false;
        for (n, what) in lost.into_iter().filter(|(n, _)| *n > 0) {
            warn!("{n} {what}");
            said = true;
        }
        if said {
            w.at = Some(Instant::now());
            w.thread_map_full = s.thread_map_full;
            w.thread_storage_failed = s.thread_storage_failed;
            w.proc_map_full = s.proc_map_full;
            w.exit_map_full = s.exit_map_full;
            w.exit_log_dropped = dropped;
            w.cgroup_map_full = s.cgroup_map_full;
            w.cgroup_gone_full = s.cgroup_gone_full;
            w.rx_unseen = s.rx_unseen;
        }
    }

    /// What `netatopctl stats` shows.
    pub(super) fn stats(&mut self) -> std::io::Result<Stats> {
        let census = self.collector.census()?;
        let tracer = self.collector.tracer();
        let k = tracer.stats();
        let sizes = tracer.map_sizes();
        let st = &self.stats;
        let mut sorted: Vec<u64> = st.timings.iter().copied().collect();
        sorted.sort_unstable();
        Ok(Stats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: st.started.elapsed().as_secs_f64(),
            counting_secs: boottime_ns().saturating_sub(tracer.counting_since_ns()) as f64 / 1e9,
            kernel: netatopd_bpf::kernel::kernel_release(),
            attach_mode: tracer.attached().to_string(),
            pin_dir: self.config.pin_dir.clone(),
            pinned: self.config.pinned.clone(),
            processes: census.processes as u64,
            threads: census.threads as u64,
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
            atop_clients: st.atop_clients,
            control_clients: st.control_clients,
            queries: st.queries,
            last_query_us: st.timings.back().copied().unwrap_or(0),
            median_query_us: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
            map_memory_bytes: tracer.map_memory()?,
            kretprobe_missed: k.kretprobe_missed,
            clients_by_uid: st.by_uid.iter().map(|(&u, &n)| (u, n)).collect(),
            refused_max_clients: st.refused[Refusal::Full as usize],
            refused_per_user: st.refused[Refusal::PerUser as usize],
            refused_reserved: st.refused[Refusal::Reserved as usize],
            closed_idle: st.closed_idle,
            thread_storage_failed: k.thread_storage_failed,
            thread_storage_bytes: tracer.thread_storage_memory(census.threads),
            count: tracer.attached().count.name().to_owned(),
            unattributed: unattributed(&tracer.read_wire()?),
            owner_failed: k.owner_failed,
            wire_map_full: k.wire_map_full,
            rx_unseen: k.rx_unseen,
            cgroups: tracer.cgroup_count()? as u64,
            max_cgroups: sizes.cgroups.into(),
            max_removed_cgroups: sizes.removed_cgroups.into(),
            cgroup_map_full: k.cgroup_map_full,
            cgroup_gone_full: k.cgroup_gone_full,
            cgroups_removed: k.cgroups_removed,
            removed_cgroups_kept: self.removed_cgroups.len() as u64,
        })
    }
}

/// Per network namespace, what its interfaces carried that no process is
/// counted for: sent by no process's socket, and received but not
/// delivered to one (the sockets' claims subtracted from what arrived).
fn unattributed(wire: &[(u32, netatopd_bpf::types::wire_netns)]) -> Vec<(u32, Counters)> {
    let mut out: Vec<(u32, Counters)> = wire
        .iter()
        .map(|(netns, w)| {
            let mut c = crate::collect::counters(&w.unattributed_out);
            c.add(
                &crate::collect::counters(&w.received)
                    .since(&crate::collect::counters(&w.attributed_in)),
            );
            (*netns, c)
        })
        .collect();
    out.sort_by_key(|(netns, _)| *netns);
    out
}
