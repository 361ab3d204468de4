//! The programs' counts of rare events (`struct netatop_stats` in
//! netatop.h), declared once: each count's name, its label and what it
//! counts for people, and the warning netatopd logs when it grows. The daemon's statistics
//! response, its warnings and netatopctl's `stats` all iterate this table.

use crate::options::{MapSizes, SizeOption};
use crate::skel::types::netatop_stats;

/// One count of `struct netatop_stats`.
pub struct KernelStat {
    /// Its field in `struct netatop_stats`: the key of netatopctl's JSON.
    pub name: &'static str,
    /// What it is, for people: the label of netatopctl's line.
    pub label: &'static str,
    /// What its number counts, for people: the words after the number on
    /// netatopctl's line.
    pub help: &'static str,
    /// Shown only when counting the wire (the others' programs never
    /// touch it).
    pub wire_only: bool,
    /// What a rise of it means, when it means something was lost.
    pub loss: Option<Loss>,
    value: fn(&netatop_stats) -> u64,
}

/// What was lost, and the option that gives the map more room.
pub struct Loss {
    what: &'static str,
    raise: Option<SizeOption>,
}

impl KernelStat {
    /// Its value in `stats`.
    pub fn value(&self, stats: &netatop_stats) -> u64 {
        (self.value)(stats)
    }

    /// The warning for `n` more of it, with the map sizes in use: "5
    /// socket calls not counted: the thread map is full (8 entries; raise
    /// --max-threads)". None: it is no loss.
    pub fn warning(&self, n: u64, sizes: &MapSizes) -> Option<String> {
        let loss = self.loss.as_ref()?;
        Some(match loss.raise {
            Some(option) => format!(
                "{n} {} ({} entries; raise {})",
                loss.what,
                option.of(sizes),
                option.flag()
            ),
            None => format!("{n} {}", loss.what),
        })
    }
}

const fn lost(what: &'static str, raise: Option<SizeOption>) -> Option<Loss> {
    Some(Loss { what, raise })
}

/// Every count, in the order of `struct netatop_stats`.
pub const KERNEL_STATS: [KernelStat; 14] = [
    KernelStat {
        name: "thread_map_full",
        label: "thread map full",
        help: "socket calls not counted",
        wire_only: false,
        loss: lost(
            "socket calls not counted: the thread map is full",
            Some(SizeOption::Threads),
        ),
        value: |s| s.thread_map_full,
    },
    KernelStat {
        name: "proc_map_full",
        label: "process map full",
        help: "socket calls not counted",
        wire_only: false,
        loss: lost(
            "socket calls not counted: the process map is full",
            Some(SizeOption::Procs),
        ),
        value: |s| s.proc_map_full,
    },
    KernelStat {
        name: "user_procs_capped",
        label: "per-user limit",
        help: "socket calls not counted (their user's processes at the limit)",
        wire_only: false,
        loss: lost(
            "socket calls not counted: their process's user (not root) has as many processes \
             counted as one user may",
            Some(SizeOption::ProcsPerUser),
        ),
        value: |s| s.user_procs_capped,
    },
    KernelStat {
        name: "thread_storage_failed",
        label: "task-storage misses",
        help: "socket calls not counted",
        wire_only: false,
        loss: lost(
            "socket calls not counted: the kernel did not give the thread its task-local \
             storage (another task-storage user busy on that CPU, or no memory)",
            None,
        ),
        value: |s| s.thread_storage_failed,
    },
    KernelStat {
        name: "exit_map_full",
        label: "pending-exit map full",
        help: "exited processes' final totals lost",
        wire_only: false,
        loss: lost(
            "final totals of exited processes lost: the exit map is full",
            Some(SizeOption::Exited),
        ),
        value: |s| s.exit_map_full,
    },
    KernelStat {
        name: "exits",
        label: "processes exited",
        help: "final totals published",
        wire_only: false,
        loss: None,
        value: |s| s.exits,
    },
    KernelStat {
        name: "exited_events",
        label: "calls of exited threads",
        help: "socket calls counted after their thread exited",
        wire_only: false,
        loss: None,
        value: |s| s.exited_events,
    },
    KernelStat {
        name: "owner_failed",
        label: "sockets without owner",
        help: "sockets whose owner was not recorded (their packets unattributed)",
        wire_only: true,
        loss: None,
        value: |s| s.owner_failed,
    },
    KernelStat {
        name: "wire_map_full",
        label: "namespace map full",
        help: "packets not counted per network namespace",
        wire_only: true,
        loss: None,
        value: |s| s.wire_map_full,
    },
    KernelStat {
        name: "rx_unseen",
        label: "unseen received",
        help: "packets reached sockets without the receive program seeing them (counted at the socket)",
        wire_only: true,
        loss: lost(
            "packets reached their sockets unseen by the receive program: the kernel \
             skipped the tracing programs for them (it does in some contexts); they are \
             counted as received at the socket, but packets it skipped on their way out, \
             or that reached no socket, are not counted",
            None,
        ),
        value: |s| s.rx_unseen,
    },
    KernelStat {
        name: "cgroup_map_full",
        label: "cgroup map full",
        help: "exited processes' totals lost to their cgroup's",
        wire_only: false,
        loss: lost(
            "exited processes' totals lost to their cgroup's: the cgroup map is full",
            Some(SizeOption::Cgroups),
        ),
        value: |s| s.cgroup_map_full,
    },
    KernelStat {
        name: "cgroup_gone_full",
        label: "removed-cgroup map full",
        help: "removed cgroups' final totals lost",
        wire_only: false,
        loss: lost(
            "removed cgroups' final totals lost: the removed-cgroup map is full",
            Some(SizeOption::RemovedCgroups),
        ),
        value: |s| s.cgroup_gone_full,
    },
    KernelStat {
        name: "cgroups_removed",
        label: "cgroups removed",
        help: "their totals moved to their parent's",
        wire_only: false,
        loss: None,
        value: |s| s.cgroups_removed,
    },
    KernelStat {
        name: "kretprobe_missed",
        label: "kretprobe misses",
        help: "socket calls not counted",
        wire_only: false,
        loss: None,
        value: |s| s.kretprobe_missed,
    },
];

/// The count called `name`, if there is one.
pub fn kernel_stat(name: &str) -> Option<&'static KernelStat> {
    KERNEL_STATS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::btf::types::Struct;
    use libbpf_rs::Btf;

    /// The table names every field of the object's `struct netatop_stats`,
    /// in order, and reads each from its own field.
    #[test]
    fn the_table_is_struct_netatop_stats() {
        let btf =
            Btf::from_path(concat!(env!("OUT_DIR"), "/netatop.bpf.o")).expect("the object's BTF");
        let s = btf
            .type_by_name::<Struct<'_>>("netatop_stats")
            .expect("struct netatop_stats in the object's BTF");
        let fields: Vec<String> = s
            .iter()
            .map(|m| m.name.unwrap().to_string_lossy().into_owned())
            .collect();
        let names: Vec<&str> = KERNEL_STATS.iter().map(|k| k.name).collect();
        assert_eq!(fields, names);
        assert_eq!(std::mem::size_of::<netatop_stats>(), 8 * KERNEL_STATS.len());
        // Field i holds i + 1: each entry must read its own.
        let mut bytes = Vec::new();
        for i in 1..=KERNEL_STATS.len() as u64 {
            bytes.extend_from_slice(&i.to_ne_bytes());
        }
        let stats: netatop_stats = crate::skel::from_bytes(&bytes);
        for (i, k) in KERNEL_STATS.iter().enumerate() {
            assert_eq!(k.value(&stats), i as u64 + 1, "{}", k.name);
        }
    }

    #[test]
    fn a_loss_names_the_option_and_the_size() {
        let sizes = MapSizes {
            threads: 8,
            ..MapSizes::default()
        };
        assert_eq!(
            kernel_stat("thread_map_full")
                .unwrap()
                .warning(5, &sizes)
                .unwrap(),
            "5 socket calls not counted: the thread map is full (8 entries; raise --max-threads)"
        );
        assert!(kernel_stat("exits").unwrap().warning(5, &sizes).is_none());
        assert!(kernel_stat("rx_unseen")
            .unwrap()
            .warning(1, &sizes)
            .unwrap()
            .starts_with("1 packets reached their sockets unseen"));
    }
}
