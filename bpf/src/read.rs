//! Reading what the programs counted: snapshots from their iterators, the
//! maps in batches (processes, threads, exited processes, cgroups, the
//! wire's namespaces), each counted process's cgroup, and the programs'
//! statistics.

use std::fs::File;
use std::io::Read;
use std::mem::size_of;
use std::os::fd::AsFd;
use std::ptr;

use libbpf_rs::{Link, MapCore};

use crate::batch::read_batched;
use crate::iters::{iter_file, Snapshots, ThreadReader};
use crate::skel::{comm_bytes, from_bytes, types, Pod};
use crate::tracer::Tracer;
use crate::wire::Count;

/// Counters of rare events in the kernel (a copy of `types::netatop_stats`).
pub type KernelStats = types::netatop_stats;

/// A snapshot being read from the kernel ([`Tracer::snapshot`]): one
/// `struct snapshot_rec` per counted process, read like a file from a BPF
/// iterator as the kernel walks the tasks.
pub struct Snapshot(File);

impl std::io::Read for Snapshot {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// Hands `each` every record iterator `link` (named `what` in errors)
/// yields.
fn read_records<T: Pod>(link: &Link, what: &str, each: impl FnMut(T)) -> std::io::Result<()> {
    let rec = size_of::<T>();
    let mut bytes = Vec::new();
    iter_file(link)?.read_to_end(&mut bytes)?;
    if bytes.len() % rec != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the {what} iterator ended within a record ({} bytes)",
                bytes.len()
            ),
        ));
    }
    bytes.chunks_exact(rec).map(from_bytes).for_each(each);
    Ok(())
}

impl Tracer {
    /// Starts a snapshot: one `struct snapshot_rec` per counted process,
    /// its live threads summed in the kernel and its totals never lower
    /// than the last snapshot's. With the map walk, the first two passes
    /// run here, and only one such snapshot may be read at a time (see
    /// [`Tracer::snapshots_stream`]).
    pub fn snapshot(&self) -> std::io::Result<Snapshot> {
        match &self.iters.snapshots {
            Snapshots::Iterator(link) => Ok(Snapshot(iter_file(link)?)),
            Snapshots::Walk([procs, threads, emit]) => {
                let mut sink = [0u8; 64];
                for pass in [procs, threads] {
                    let mut f = iter_file(pass)?;
                    while f.read(&mut sink)? > 0 {}
                }
                Ok(Snapshot(iter_file(emit)?))
            }
        }
    }

    /// Whether several snapshots may be read at once, interleaved (the
    /// task iterator), or each must be read whole before the next starts
    /// (the map walk shares the `walk` map).
    pub fn snapshots_stream(&self) -> bool {
        matches!(self.iters.snapshots, Snapshots::Iterator(_))
    }

    /// All process entries (appended).
    pub fn read_procs(
        &self,
        keys: &mut Vec<u32>,
        vals: &mut Vec<types::proc_val>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.procs.as_fd(), false, keys, vals)
    }

    /// Every live thread with counters (appended): its tid, and its
    /// counters with its process; from task storage also its name (the
    /// threads map has none: `names` is left alone).
    pub fn read_threads(
        &self,
        keys: &mut Vec<u32>,
        vals: &mut Vec<types::thread_val>,
        names: &mut Vec<[u8; 16]>,
    ) -> std::io::Result<()> {
        match &self.iters.threads {
            ThreadReader::Map => read_batched(self.skel.maps.threads.as_fd(), false, keys, vals),
            ThreadReader::Iterator(link) => read_records(link, "thread", |r: types::thread_rec| {
                keys.push(r.tid);
                names.push(comm_bytes(&r.comm));
                vals.push(types::thread_val {
                    c: r.c,
                    tgid: r.tgid,
                    linked: 1,
                });
            }),
        }
    }

    /// Takes the final totals of exited processes out of the kernel
    /// (appended); each is returned exactly once.
    pub fn drain_exited(
        &self,
        keys: &mut Vec<types::exit_key>,
        vals: &mut Vec<types::exit_val>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.exited.as_fd(), true, keys, vals)
    }

    /// Wire counting: the counters of each network namespace (its inode
    /// number), in no particular order; empty when counting calls.
    pub fn read_wire(&self) -> std::io::Result<Vec<(u32, types::wire_netns)>> {
        let mut keys = Vec::new();
        let mut vals = Vec::new();
        if self.plan.count == Count::Wire {
            read_batched(
                self.skel.maps.netns_wire.as_fd(),
                false,
                &mut keys,
                &mut vals,
            )?;
        }
        Ok(keys.into_iter().zip(vals).collect())
    }

    /// Each exited process's cgroup total so far (appended): the cgroup's
    /// id and the final totals of its processes that have exited.
    pub fn read_cgroups(
        &self,
        keys: &mut Vec<u64>,
        vals: &mut Vec<types::counters>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.cgroups.as_fd(), false, keys, vals)
    }

    /// Cgroups in the accumulator map now.
    pub fn cgroup_count(&self) -> std::io::Result<usize> {
        Ok(self.skel.maps.cgroups.keys().count())
    }

    /// Takes removed cgroups' final totals out of the kernel (appended);
    /// each is returned exactly once.
    pub fn drain_cgroups_gone(
        &self,
        keys: &mut Vec<u64>,
        vals: &mut Vec<types::cgroup_gone>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.cgroups_gone.as_fd(), true, keys, vals)
    }

    /// Each counted live process and its cgroup v2 id.
    pub fn cgroup_of(&self) -> std::io::Result<Vec<types::cgroup_rec>> {
        let mut recs = Vec::new();
        read_records(&self.iters.cgroup_of, "cgroup", |r| recs.push(r))?;
        Ok(recs)
    }

    /// Rare-event counters kept by the programs.
    pub fn stats(&self) -> KernelStats {
        match self.skel.maps.bss_data.as_deref() {
            // SAFETY: the .bss map is mmapped for the skeleton's lifetime; a
            // volatile copy reads the counters the programs update in place.
            Some(bss) => unsafe { ptr::read_volatile(ptr::addr_of!(bss.stats)) },
            None => KernelStats::default(),
        }
    }
}
