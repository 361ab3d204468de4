//! The daemon's periodic work (collecting exits, forgetting expired ones,
//! dropping stuck clients, giving memory back), its rate-limited warnings,
//! and the statistics `netatopctl stats` shows.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use log::{debug, warn};
use netatop_protocol::control::Stats;

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
    /// Clients connected now, by socket.
    atop_clients: u64,
    control_clients: u64,
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
    proc_map_full: u64,
    exit_map_full: u64,
    exit_log_dropped: u64,
    /// When a refused connection was last warned about.
    refused_at: Option<Instant>,
    refused: u64,
}

impl Server {
    /// Collects exits as soon as the programs published some; now and then
    /// the housekeeping.
    pub(super) fn tick(&mut self) {
        let core = &mut self.core;
        let published = core.collector.tracer().stats().exits;
        if published != self.exits_seen {
            self.exits_seen = published;
            if let Err(e) = core.collector.drain(&mut core.exits) {
                warn!("cannot collect exited processes: {e}");
            }
        }
        if Instant::now() >= self.next_housekeeping {
            self.next_housekeeping = Instant::now() + core.config.housekeeping;
            self.drop_stuck_clients();
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
    }

    /// Warns, at most once a minute, about connections refused for the limit.
    pub(super) fn warn_refused(&mut self) {
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
                dropped.saturating_sub(w.exit_log_dropped),
                "exited-process records dropped before every client had them (raise --max-exited)"
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
            w.proc_map_full = s.proc_map_full;
            w.exit_map_full = s.exit_map_full;
            w.exit_log_dropped = dropped;
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
        })
    }
}
