//! What `netatopctl stats` shows: the figures about the daemon's own work
//! kept here (uptime, snapshots and how long they took), put together with
//! the kernel's counts, the logs and the connections into the control
//! protocol's Stats response.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use netatop_protocol::control::Stats;
use netatop_protocol::Counters;
use netatopd_bpf::KERNEL_STATS;

use super::admission::{Refusal, Tally};
use crate::collect::{boottime_ns, counters, Collector};
use crate::exits::ExitLog;

/// Snapshot times kept for the median in the statistics.
const TIMINGS: usize = 101;

/// Figures about the daemon's own work.
pub(super) struct Statistics {
    started: Instant,
    /// Snapshots taken, and how long the most recent ones took (µs).
    queries: u64,
    timings: VecDeque<u64>,
    /// Where the programs are pinned and what the start found there.
    pin_dir: String,
    pinned: String,
}

impl Statistics {
    pub(super) fn new(pin_dir: String, pinned: String) -> Self {
        Self {
            started: Instant::now(),
            queries: 0,
            timings: VecDeque::with_capacity(TIMINGS),
            pin_dir,
            pinned,
        }
    }

    /// Counts a snapshot and keeps how long the kernel took.
    pub(super) fn timed(&mut self, took: Duration) {
        self.queries += 1;
        if self.timings.len() == TIMINGS {
            self.timings.pop_front();
        }
        self.timings.push_back(took.as_micros() as u64);
    }

    /// What `netatopctl stats` shows, of these figures, the kernel's counts
    /// (through `collector`), the exit log, the number of removed cgroups
    /// kept and the connections.
    pub(super) fn report(
        &self,
        collector: &mut Collector,
        exits: &ExitLog,
        removed_cgroups_kept: usize,
        conns: &Tally,
    ) -> io::Result<Stats> {
        // How a test makes netatopd panic (debug builds only).
        #[cfg(debug_assertions)]
        if std::env::var_os("NETATOPD_TEST_PANIC_ON_STATS").is_some() {
            panic!("NETATOPD_TEST_PANIC_ON_STATS is set: a panic, as a test asked");
        }
        let census = collector.census()?;
        let tracer = collector.tracer();
        let k = tracer.stats();
        let sizes = tracer.map_sizes();
        let mut sorted: Vec<u64> = self.timings.iter().copied().collect();
        sorted.sort_unstable();
        Ok(Stats {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            counting_secs: boottime_ns().saturating_sub(tracer.counting_since_ns()) as f64 / 1e9,
            counting_since_unix: netatopd_bpf::unix_secs_of_boottime(tracer.counting_since_ns()),
            kernel: netatopd_bpf::kernel::kernel_release(),
            attach_mode: tracer.attached().to_string(),
            pin_dir: self.pin_dir.clone(),
            pinned: self.pinned.clone(),
            processes: census.processes as u64,
            threads: census.threads as u64,
            max_threads: sizes.threads.into(),
            max_processes: sizes.procs.into(),
            max_pending_exits: sizes.exited.into(),
            events: collector.events(),
            exited_kept: exits.len() as u64,
            exited_dropped: exits.dropped(),
            exited_undelivered: exits.undelivered(),
            atop_clients: conns.atop,
            control_clients: conns.control,
            queries: self.queries,
            last_query_us: self.timings.back().copied().unwrap_or(0),
            median_query_us: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
            map_memory_bytes: tracer.map_memory()?,
            clients_by_uid: conns.by_uid.iter().map(|(&u, &n)| (u, n)).collect(),
            refused_max_clients: conns.refused[Refusal::Full as usize],
            refused_per_user: conns.refused[Refusal::PerUser as usize],
            refused_reserved: conns.refused[Refusal::Reserved as usize],
            closed_idle: conns.closed_idle,
            thread_storage_bytes: tracer.thread_storage_memory(census.threads),
            count: tracer.attached().count.name().to_owned(),
            unattributed: unattributed(&tracer.read_wire()?),
            cgroups: tracer.cgroup_count()? as u64,
            max_cgroups: sizes.cgroups.into(),
            max_removed_cgroups: sizes.removed_cgroups.into(),
            max_processes_per_user: sizes.procs_per_user.into(),
            removed_cgroups_kept: removed_cgroups_kept as u64,
            kernel_counts: KERNEL_STATS
                .iter()
                .map(|stat| (stat.name.to_owned(), stat.value(&k)))
                .collect(),
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
            let mut c = counters(&w.unattributed_out);
            c.add(&counters(&w.received).since(&counters(&w.attributed_in)));
            (*netns, c)
        })
        .collect();
    out.sort_by_key(|(netns, _)| *netns);
    out
}
