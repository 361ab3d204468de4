//! What netatopd requires of a kernel, and the releases that brought what
//! it uses when the kernel offers it: constants the start-up check, its
//! error messages and `--version` cite.

/// Where the running kernel describes itself in BTF.
pub(crate) const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";
/// The oldest kernel netatopd runs on, as measured (Debian 11's 5.10).
pub(crate) const MIN_LINUX: &str = "5.10";

/// Tracepoints every way of attaching uses, with the release that gave
/// them BTF (tp_btf programs need it).
pub(crate) const TRACEPOINTS: [(&str, &str); 3] = [
    ("sched_process_exit", "5.5"),
    ("sched_process_exec", "5.5"),
    ("task_rename", "5.5"),
];
/// The kernel function of one-pass snapshots, with the release that added
/// it; before, snapshots walk the maps.
pub(crate) const TASK_ITERATOR: (&str, &str) = ("bpf_iter_task_new", "6.7");

/// Where threads' counters live best: task-local storage, which tracing
/// programs may use from this release on; before, a hash map.
pub(crate) const TASK_STORAGE: (&str, &str) = ("task-local storage", "5.13");
