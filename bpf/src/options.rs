//! What a start may choose: where threads' counters live
//! ([`ThreadStore`]), how snapshots are taken ([`SnapshotMethod`]), how
//! large the maps are ([`MapSizes`]), and all of it together with the way
//! of attaching and what is counted ([`LoadOptions`]).

use crate::attach::Mode;
use crate::choice::first_usable;
use crate::kernel::Kernel;
use crate::requirements::TASK_ITERATOR;
use crate::wire::Count;

/// Where the threads' counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStore {
    /// In each thread's task-local storage (Linux 5.13+): no capacity to
    /// size, freed with the thread.
    TaskStorage,
    /// In a hash map keyed by thread id, of --max-threads entries.
    HashMap,
}

impl ThreadStore {
    pub const ALL: [ThreadStore; 2] = [ThreadStore::TaskStorage, ThreadStore::HashMap];

    /// The name users see and choose (`--thread-counters`).
    pub fn name(self) -> &'static str {
        match self {
            ThreadStore::TaskStorage => "task-storage",
            ThreadStore::HashMap => "hash-map",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How snapshots are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// One pass over the tasks with the open-coded task iterator (6.7+),
    /// streamed to the client as it is read.
    TaskIterator,
    /// Three passes over the maps (map element iterators, 5.9+), through
    /// the `walk` map: one at a time, so each is read whole.
    MapWalk,
}

impl SnapshotMethod {
    pub const ALL: [SnapshotMethod; 2] = [SnapshotMethod::TaskIterator, SnapshotMethod::MapWalk];

    /// The name users see and choose (`--snapshot`).
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMethod::TaskIterator => "task-iterator",
            SnapshotMethod::MapWalk => "map-walk",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Why this kernel cannot take snapshots this way (None: it can): it
    /// lacks the task iterator, or refuses the iterator programs (some
    /// hosts' security policies refuse map iterators with EPERM).
    pub fn unavailable(self, kernel: &Kernel) -> Option<String> {
        match self {
            SnapshotMethod::TaskIterator if kernel.has_task_iterator() != Some(true) => {
                Some(format!(
                    "the kernel has no open-coded task iterator ({}, Linux {} and later have it)",
                    TASK_ITERATOR.0, TASK_ITERATOR.1
                ))
            }
            SnapshotMethod::TaskIterator => kernel.iterator_loads("task").err(),
            SnapshotMethod::MapWalk => kernel.iterator_loads("bpf_map_elem").err(),
        }
    }

    /// The first way this kernel takes; Err says why each cannot.
    pub fn best(kernel: &Kernel) -> Result<Self, String> {
        first_usable(&Self::ALL, Self::name, |m| m.unavailable(kernel))
    }
}

/// What a start asks for; None: the best the kernel offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub sizes: MapSizes,
    pub attach: Option<Mode>,
    pub snapshot: Option<SnapshotMethod>,
    pub threads: Option<ThreadStore>,
    pub count: Count,
}

/// Sizes of the kernel maps (entries). Entries are allocated as they are
/// used; each map's bucket array (16 bytes per entry of its size) up front.
/// The defaults hold the processes of large hosts (about 1 MiB per map
/// idle, whatever the number of CPUs); --max-* options change them. The
/// threads map is used only where task storage is not available to
/// tracing programs (before Linux 5.13).
#[derive(Debug, Clone, Copy)]
pub struct MapSizes {
    pub threads: u32,
    pub procs: u32,
    pub exited: u32,
    /// Cgroups with exited processes' totals, and removed cgroups' final
    /// totals awaiting collection.
    pub cgroups: u32,
    pub removed_cgroups: u32,
    /// Not a map's size: the most entries of `procs` the processes of one
    /// user other than root may hold (0: no limit), so that no one user
    /// fills it and leaves everyone else uncounted.
    pub procs_per_user: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            threads: 65536,
            procs: 65536,
            // Only counted processes publish exits: the size of `procs`
            // holds even all of them exiting at once.
            exited: 65536,
            cgroups: 16384,
            // Collected within a second of their removal.
            removed_cgroups: 4096,
            // A quarter of `procs`, as main.rs derives it from the options.
            procs_per_user: 65536 / 4,
        }
    }
}

/// One of the sizes of [`MapSizes`], as its option names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SizeOption {
    Threads,
    Procs,
    Exited,
    Cgroups,
    RemovedCgroups,
    ProcsPerUser,
}

impl SizeOption {
    /// The option that sets it.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            SizeOption::Threads => "--max-threads",
            SizeOption::Procs => "--max-processes",
            SizeOption::Exited => "--max-pending-exits",
            SizeOption::Cgroups => "--max-cgroups",
            SizeOption::RemovedCgroups => "--max-removed-cgroups",
            SizeOption::ProcsPerUser => "--max-processes-per-user",
        }
    }

    /// Its value in `sizes`.
    pub(crate) fn of(self, sizes: &MapSizes) -> u32 {
        match self {
            SizeOption::Threads => sizes.threads,
            SizeOption::Procs => sizes.procs,
            SizeOption::Exited => sizes.exited,
            SizeOption::Cgroups => sizes.cgroups,
            SizeOption::RemovedCgroups => sizes.removed_cgroups,
            SizeOption::ProcsPerUser => sizes.procs_per_user,
        }
    }
}
