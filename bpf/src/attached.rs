//! How the programs are attached on this kernel ([`Attached`]): what a
//! start's plan chose and what only attaching could tell, as netatopd
//! reports it.

use crate::attach::{Extras, Mode};
use crate::options::{SnapshotMethod, ThreadStore};
use crate::plan::Plan;
use crate::wire::Count;

/// How the programs are attached on this kernel.
#[derive(Debug, Clone)]
pub struct Attached {
    pub mode: Mode,
    pub extras: Extras,
    pub snapshot: SnapshotMethod,
    pub threads: ThreadStore,
    pub count: Count,
    /// Wire counting: the cgroup v2 root the socket program is attached to.
    pub cgroup: Option<String>,
    /// Links that this kernel cannot pin (kprobes before Linux 5.15): they
    /// stop with netatopd.
    pub unpinned: Vec<&'static str>,
}

impl Attached {
    /// What `plan` chose, with the cgroup v2 root of wire counting; no
    /// link unpinned yet.
    pub(crate) fn of(plan: &Plan, cgroup: Option<String>) -> Self {
        Self {
            mode: plan.mode,
            extras: plan.extras.clone(),
            snapshot: plan.snapshot,
            threads: plan.store,
            count: plan.count,
            cgroup,
            unpinned: Vec::new(),
        }
    }
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}); {}; snapshots: {}; thread counters: {}",
            self.mode.name(),
            self.mode.describe(),
            self.extras,
            self.snapshot.name(),
            match self.threads {
                ThreadStore::TaskStorage => "task-local storage",
                ThreadStore::HashMap => "hash map",
            }
        )?;
        write!(
            f,
            "; counting: {} ({})",
            self.count.name(),
            self.count.describe()
        )?;
        if let Some(root) = &self.cgroup {
            write!(f, ", sockets' packets from the cgroup v2 root {root}")?;
        }
        if !self.unpinned.is_empty() {
            write!(
                f,
                "; kprobe links not pinned (Linux 5.15+ pins them): counting stops with netatopd"
            )?;
        }
        Ok(())
    }
}
