//! The [`Tracer`]: the loaded and attached programs and their maps, as a
//! start left them, and what it tells of itself. Loading it is in
//! `loader`, reading it in `read`, its kernel memory in `memory`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libbpf_rs::{Link, MapCore};

use crate::attached::Attached;
use crate::iters::Iterators;
use crate::options::{MapSizes, ThreadStore};
use crate::pin;
use crate::plan::Plan;
use crate::skel::NetatopSkel;

/// Loaded and attached programs, pinned with their maps under a bpffs
/// directory. Dropping it closes them: the programs stop counting unless
/// they are still pinned (see [`Tracer::unpin`]).
pub struct Tracer {
    pub(crate) skel: NetatopSkel<'static>,
    pub(crate) links: Vec<Link>,
    pub(crate) iters: Iterators,
    /// Kernel memory one thread's task storage takes (0: hash map).
    pub(crate) storage_bytes: u64,
    pub(crate) pin_dir: PathBuf,
    pub(crate) created_ns: u64,
    pub(crate) plan: Plan,
    pub(crate) attached: Attached,
    /// Wire counting: the cgroup v2 root, until its program is attached.
    pub(crate) cgroup: Option<OwnedFd>,
}

impl Tracer {
    /// Removes the pins: the programs stop when this Tracer is dropped.
    pub fn unpin(&self) -> std::io::Result<usize> {
        pin::remove_pins(&self.pin_dir)
    }

    /// Where the maps and links are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// How the programs are attached, and which optional hooks are used.
    pub fn attached(&self) -> &Attached {
        &self.attached
    }

    /// When counting started (CLOCK_BOOTTIME ns), by this netatopd or by
    /// the one whose pinned state it adopted.
    pub fn counting_since_ns(&self) -> u64 {
        self.created_ns
    }

    /// Map sizes as loaded (`threads` 0: threads' counters in task
    /// storage, which has no size).
    pub fn map_sizes(&self) -> MapSizes {
        let m = &self.skel.maps;
        MapSizes {
            threads: match self.plan.store {
                ThreadStore::HashMap => m.threads.max_entries(),
                ThreadStore::TaskStorage => 0,
            },
            procs: m.procs.max_entries(),
            exited: m.exited.max_entries(),
            cgroups: m.cgroups.max_entries(),
            removed_cgroups: m.cgroups_gone.max_entries(),
            // Set at this start (load_on), adopted state included.
            procs_per_user: self.plan.sizes.procs_per_user,
        }
    }
}
