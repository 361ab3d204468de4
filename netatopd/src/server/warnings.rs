//! The rate-limited warnings about what was not counted: updates the
//! programs lost to full maps, exited-process records dropped before every
//! client had them, packets the kernel did not run the programs for.

use std::time::{Duration, Instant};

use log::warn;
use netatopd_bpf::{Tracer, KERNEL_STATS};

/// Repeated warnings of the same kind are at most this frequent.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(60);

/// What has been warned about, for rate limiting.
#[derive(Default)]
pub(super) struct Warned {
    at: Option<Instant>,
    /// Each kernel count (in the order of `KERNEL_STATS`) when last warned.
    kernel: [u64; KERNEL_STATS.len()],
    exit_log_dropped: u64,
}

impl Warned {
    /// Warns, at most once a minute, about what was lost since the last
    /// warning: the kernel's counts of losses (updates lost to full maps,
    /// packets the kernel did not run the programs for), and `exits_dropped`,
    /// the exit log's count of records it dropped.
    pub(super) fn warn_drops(&mut self, tracer: &Tracer, exits_dropped: u64) {
        if self.at.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let s = tracer.stats();
        let sizes = tracer.map_sizes();
        let now: [u64; KERNEL_STATS.len()] = std::array::from_fn(|i| KERNEL_STATS[i].value(&s));
        let mut lost: Vec<String> = KERNEL_STATS
            .iter()
            .zip(now.iter().zip(&self.kernel))
            .filter_map(|(stat, (&now, &then))| {
                let n = now.saturating_sub(then);
                (n > 0).then(|| stat.warning(n, &sizes)).flatten()
            })
            .collect();
        let dropped = exits_dropped.saturating_sub(self.exit_log_dropped);
        if dropped > 0 {
            lost.push(format!(
                "{dropped} exited-process records dropped before every client had them \
                 (raise --max-exited)"
            ));
        }
        for what in &lost {
            warn!("{what}");
        }
        if !lost.is_empty() {
            self.at = Some(Instant::now());
            self.kernel = now;
            self.exit_log_dropped = exits_dropped;
        }
    }
}
