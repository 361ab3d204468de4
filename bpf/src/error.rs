//! Why a start fails: [`LoadError`], each of whose messages says what to
//! do, and the wrapping of libbpf's errors into it.

use std::path::PathBuf;

use crate::requirements::{MIN_LINUX, VMLINUX_BTF};

/// Why the programs could not be loaded; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "netatopd needs root (or the capabilities CAP_BPF and CAP_PERFMON) to load its \
         BPF programs: run it as root"
    )]
    NotPrivileged,
    #[error(
        "the kernel has no BTF ({} is missing): netatopd needs Linux >= {} \
         built with CONFIG_DEBUG_INFO_BTF=y",
        VMLINUX_BTF,
        MIN_LINUX
    )]
    NoBtf,
    #[error(
        "the kernel (Linux {kernel}) has no BTF for the tracepoint {name} (Linux {since} and \
         later have it): netatopd needs Linux >= {} with BTF",
        MIN_LINUX
    )]
    MissingTracepoint {
        name: &'static str,
        since: &'static str,
        kernel: String,
    },
    #[error(
        "no way of attaching the programs works on this kernel (Linux {kernel}): {why}; \
         netatopd needs Linux >= {} with BTF",
        MIN_LINUX
    )]
    Unsupported { kernel: String, why: String },
    #[error("--attach {mode}: this kernel (Linux {kernel}) cannot: {why}")]
    ModeUnavailable {
        mode: &'static str,
        kernel: String,
        why: String,
    },
    #[error("--snapshot {method}: this kernel (Linux {kernel}) cannot: {why}")]
    SnapshotUnavailable {
        method: &'static str,
        kernel: String,
        why: String,
    },
    #[error("no way of taking snapshots works on this kernel (Linux {kernel}): {why}")]
    NoSnapshot { kernel: String, why: String },
    #[error("--thread-counters task-storage: {why}; use hash-map")]
    NoTaskStorage { why: String },
    #[error("--count wire: {why}; use --count calls")]
    NoWire { why: String },
    #[error(
        "cannot create the BPF maps: this kernel (Linux {kernel}, before 5.11) charges them to \
         the locked-memory limit (RLIMIT_MEMLOCK), which is {limit}, and at the sizes chosen \
         they need {need}, besides what other BPF maps and programs of this user hold: raise the \
         limit (LimitMEMLOCK=infinity in the unit, ulimit -l unlimited) or lower \
         --max-processes, --max-pending-exits, --max-threads, --max-cgroups and \
         --max-removed-cgroups"
    )]
    LockedMemory {
        kernel: String,
        limit: String,
        need: String,
    },
    #[error("cannot use {dir} to pin netatopd's maps and programs: {why}")]
    PinDir { dir: PathBuf, why: String },
    #[error("{stage} the BPF programs")]
    Libbpf {
        stage: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
}

/// Wraps a libbpf error of `stage` ("loading", "attaching", ...).
pub(crate) fn libbpf(stage: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Libbpf { stage, source }
}
