//! The rate-limited warnings about what was not counted: updates the
//! programs lost to full maps, exited-process records dropped before every
//! client had them, packets the kernel did not run the programs for.

use std::time::{Duration, Instant};

use log::warn;
use netatopd_bpf::Tracer;

/// Repeated warnings of the same kind are at most this frequent.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

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
}

impl Warned {
    /// Warns, at most once a minute, about updates lost to full maps, and
    /// about packets the kernel did not run the programs for; `exits_dropped`
    /// is the exit log's count of records it dropped.
    pub(super) fn warn_drops(&mut self, tracer: &Tracer, exits_dropped: u64) {
        if self.at.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let s = tracer.stats();
        let sizes = tracer.map_sizes();
        let lost = [
            (
                s.thread_map_full.saturating_sub(self.thread_map_full),
                format!(
                    "socket calls not counted: the thread map is full ({} entries; raise --max-threads)",
                    sizes.threads
                ),
            ),
            (
                s.thread_storage_failed
                    .saturating_sub(self.thread_storage_failed),
                "socket calls not counted: the kernel did not give the thread its task-local \
                 storage (another task-storage user busy on that CPU, or no memory)"
                    .to_owned(),
            ),
            (
                s.proc_map_full.saturating_sub(self.proc_map_full),
                format!(
                    "socket calls not counted: the process map is full ({} entries; raise --max-processes)",
                    sizes.procs
                ),
            ),
            (
                s.exit_map_full.saturating_sub(self.exit_map_full),
                format!(
                    "final totals of exited processes lost: the exit map is full ({} entries; raise --max-pending-exits)",
                    sizes.exited
                ),
            ),
            (
                s.cgroup_map_full.saturating_sub(self.cgroup_map_full),
                format!(
                    "exited processes' totals lost to their cgroup's: the cgroup map is full ({} entries; raise --max-cgroups)",
                    sizes.cgroups
                ),
            ),
            (
                s.cgroup_gone_full.saturating_sub(self.cgroup_gone_full),
                format!(
                    "removed cgroups' final totals lost: the removed-cgroup map is full ({} entries; raise --max-removed-cgroups)",
                    sizes.removed_cgroups
                ),
            ),
            (
                exits_dropped.saturating_sub(self.exit_log_dropped),
                "exited-process records dropped before every client had them (raise --max-exited)"
                    .to_owned(),
            ),
            (
                s.rx_unseen.saturating_sub(self.rx_unseen),
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
            self.at = Some(Instant::now());
            self.thread_map_full = s.thread_map_full;
            self.thread_storage_failed = s.thread_storage_failed;
            self.proc_map_full = s.proc_map_full;
            self.exit_map_full = s.exit_map_full;
            self.exit_log_dropped = exits_dropped;
            self.cgroup_map_full = s.cgroup_map_full;
            self.cgroup_gone_full = s.cgroup_gone_full;
            self.rx_unseen = s.rx_unseen;
        }
    }
}
