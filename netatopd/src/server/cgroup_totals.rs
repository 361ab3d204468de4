//! Traffic per cgroup, as totals that never go back: the kernel's totals
//! of exited processes and the live processes' counts summed by cgroup,
//! each raised to what the last answer reported, with the cgroups' paths;
//! and the removed cgroups' final totals collected into their log.

use std::collections::{BTreeMap, HashMap};
use std::io;

use netatop_protocol::control::Cgroup;
use netatop_protocol::{Counters, NetPerTask};
use netatopd_bpf::Tracer;

use super::removed::RemovedCgroups;
use crate::cgroups::Hierarchy;
use crate::collect::{boottime_ns, counters};

pub(super) struct CgroupTotals {
    /// What the last answer reported for each cgroup: answers never go
    /// lower.
    floors: HashMap<u64, Counters>,
    /// Removed cgroups' final totals, kept for the exit grace.
    removed: RemovedCgroups,
    hierarchy: Hierarchy,
}

impl CgroupTotals {
    /// Removed cgroups are kept for `grace_ns` (the exit grace).
    pub(super) fn new(grace_ns: u64) -> Self {
        Self {
            floors: HashMap::new(),
            removed: RemovedCgroups::new(grace_ns),
            hierarchy: Hierarchy::default(),
        }
    }

    /// The removed cgroups' final totals.
    pub(super) fn removed(&self) -> &RemovedCgroups {
        &self.removed
    }

    /// Takes removed cgroups' final totals from the kernel into the log,
    /// and forgets those past the exit grace.
    pub(super) fn collect_removed(&mut self, tracer: &Tracer) -> io::Result<()> {
        let mut ids = Vec::new();
        let mut gone = Vec::new();
        tracer.drain_cgroups_gone(&mut ids, &mut gone)?;
        for (id, g) in ids.into_iter().zip(gone) {
            let path: Vec<u8> = netatopd_bpf::comm_like(&g.path);
            let mut c = counters(&g.c);
            if let Some(floor) = self.floors.remove(&id) {
                c.raise_to(&floor);
            }
            self.removed.push(
                g.removed_ns,
                Cgroup {
                    id,
                    path: String::from_utf8_lossy(&path).into_owned(),
                    counters: c,
                    removed: true,
                },
            );
        }
        self.removed.expire(boottime_ns());
        Ok(())
    }

    /// The kernel's per-cgroup totals of exited processes, read again
    /// while a cgroup removal (which moves a child's total into its
    /// parent's) happened during the read, so that no total is read both
    /// in the child and in its parent, or in neither.
    pub(super) fn exited(tracer: &Tracer) -> io::Result<BTreeMap<u64, Counters>> {
        let mut tries = 0;
        loop {
            let before = tracer.stats().cgroups_removed;
            let (mut ids, mut accs) = (Vec::new(), Vec::new());
            tracer.read_cgroups(&mut ids, &mut accs)?;
            tries += 1;
            if tracer.stats().cgroups_removed == before || tries == 10 {
                return Ok(ids.into_iter().zip(accs.iter().map(counters)).collect());
            }
        }
    }

    /// Every cgroup with counted traffic: the final totals of its exited
    /// processes (`sums`, from [`CgroupTotals::exited`], read first) and
    /// its `live` processes' (read after, so that a process exiting in
    /// between is missed once, never counted twice), raised to what the
    /// last answer reported. A cgroup that still exists keeps its last
    /// total when no process of it is seen (its last live process exited
    /// in between, or moved away).
    pub(super) fn answer(
        &mut self,
        mut sums: BTreeMap<u64, Counters>,
        tracer: &Tracer,
        live: &[NetPerTask],
    ) -> io::Result<Vec<Cgroup>> {
        let of: HashMap<u32, u64> = tracer
            .cgroup_of()?
            .into_iter()
            .map(|r| (r.tgid, r.cgroup_id))
            .collect();
        for r in live {
            if let Some(id) = of.get(&(r.id as u32)) {
                sums.entry(*id).or_default().add(&r.counters);
            }
        }
        self.collect_removed(tracer)?;
        let paths = self.hierarchy.paths();
        self.floors
            .retain(|id, _| sums.contains_key(id) || paths.contains_key(id));
        for (id, floor) in &self.floors {
            sums.entry(*id).or_insert(*floor);
        }
        Ok(sums
            .into_iter()
            .map(|(id, mut c)| {
                let floor = self.floors.entry(id).or_default();
                c.raise_to(floor);
                *floor = c;
                Cgroup {
                    id,
                    path: paths.get(&id).cloned().unwrap_or_default(),
                    counters: c,
                    removed: false,
                }
            })
            .collect())
    }
}
