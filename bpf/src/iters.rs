//! The iterator programs: the snapshot programs of each method (one pass
//! of the task iterator, or three passes of the map walk), the thread
//! iterator over task storage and the cgroup iterator. Which of them a
//! plan loads, attaching them (at each start, never pinned), and opening
//! a reader of one.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapCore};

use crate::error::{libbpf, LoadError};
use crate::maps;
use crate::options::{SnapshotMethod, ThreadStore};
use crate::plan::Plan;
use crate::skel::{find_prog, NetatopSkel};

/// The one-pass snapshot program (task iterator, Linux 6.7+).
const TASK_ITERATOR: &str = "netatop_snapshot";
/// The map-walk snapshot programs, in pass order, and the map each walks
/// (None: the tasks). Pass 2 reads the threads' counters where they live.
fn walk(store: ThreadStore) -> [(&'static str, Option<&'static str>); 3] {
    [
        ("netatop_walk_procs", Some(maps::PROCS.name)),
        match store {
            ThreadStore::HashMap => ("netatop_walk_threads", Some(maps::THREADS.name)),
            ThreadStore::TaskStorage => ("netatop_walk_tasks", None),
        },
        ("netatop_walk_emit", Some(maps::WALK.name)),
    ]
}
/// Every live thread with counters, from task storage.
const THREAD_ITERATOR: &str = "netatop_threads";
/// Each counted process's cgroup v2 (iter/task).
const CGROUP_ITERATOR: &str = "netatop_cgroup_of";

/// The snapshot programs' links.
pub(crate) enum Snapshots {
    Iterator(Link),
    Walk([Link; 3]),
}

/// How the live threads' counters are read.
pub(crate) enum ThreadReader {
    /// The threads map, in batches.
    Map,
    /// The thread iterator over task storage.
    Iterator(Link),
}

/// The iterators of a start, attached.
pub(crate) struct Iterators {
    pub snapshots: Snapshots,
    pub threads: ThreadReader,
    /// The iterator of each counted process's cgroup.
    pub cgroup_of: Link,
}

/// Whether program `name` is one of the iterators `plan` uses.
pub(crate) fn used(name: &str, plan: &Plan) -> bool {
    let snapshot = match plan.snapshot {
        SnapshotMethod::TaskIterator => name == TASK_ITERATOR,
        SnapshotMethod::MapWalk => walk(plan.store).iter().any(|(p, _)| name == *p),
    };
    snapshot
        || (plan.store == ThreadStore::TaskStorage && name == THREAD_ITERATOR)
        || name == CGROUP_ITERATOR
}

/// Attaches the iterators `plan` uses.
pub(crate) fn attach(skel: &NetatopSkel<'static>, plan: &Plan) -> Result<Iterators, LoadError> {
    let snapshots = attach_snapshots(skel, plan.snapshot, plan.store)?;
    let threads = match plan.store {
        ThreadStore::HashMap => ThreadReader::Map,
        ThreadStore::TaskStorage => ThreadReader::Iterator(
            find_prog(skel, THREAD_ITERATOR)
                .attach()
                .map_err(libbpf("attaching the thread iterator of"))?,
        ),
    };
    let cgroup_of = find_prog(skel, CGROUP_ITERATOR)
        .attach()
        .map_err(libbpf("attaching the cgroup iterator of"))?;
    Ok(Iterators {
        snapshots,
        threads,
        cgroup_of,
    })
}

/// Attaches the snapshot programs of `method`.
fn attach_snapshots(
    skel: &NetatopSkel<'static>,
    method: SnapshotMethod,
    store: ThreadStore,
) -> Result<Snapshots, LoadError> {
    let stage = "attaching the snapshot iterator of";
    Ok(match method {
        SnapshotMethod::TaskIterator => Snapshots::Iterator(
            find_prog(skel, TASK_ITERATOR)
                .attach()
                .map_err(libbpf(stage))?,
        ),
        SnapshotMethod::MapWalk => {
            let link = |(prog, map): (&str, Option<&str>)| {
                let prog = find_prog(skel, prog);
                match map {
                    None => prog.attach(),
                    Some(map) => {
                        let map = skel
                            .object()
                            .maps()
                            .find(|m| m.name() == map)
                            .expect("the walked maps are in the object");
                        prog.attach_iter(map.as_fd())
                    }
                }
                .map_err(libbpf(stage))
            };
            let [a, b, c] = walk(store);
            Snapshots::Walk([link(a)?, link(b)?, link(c)?])
        }
    })
}

/// A new reader of iterator `link`.
pub(crate) fn iter_file(link: &Link) -> std::io::Result<File> {
    // SAFETY: bpf_iter_create only reads the link's descriptor, which
    // `link` keeps open for the call.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_iter_create(link.as_fd().as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}
