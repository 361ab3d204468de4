//! netatopd's BPF programs and their loader: the kernel half of netatopd.
//!
//! The programs (`bpf/netatop.bpf.c`) count every thread's TCP and UDP
//! calls in the kernel and keep the totals of exited threads and
//! processes; this crate checks the kernel, loads, attaches and pins them
//! (or adopts what an earlier netatopd pinned), and reads what they
//! counted: snapshots from their task iterator, maps with batched lookups,
//! their statistics. Turning that into atop's records is netatopd's part.
//!
//! - [`kernel`]: what the running kernel offers, and the start-up check.
//! - [`attach`]: the ways of attaching the counting programs.
//! - [`loader`]: loading, pinning, adopting; the [`Tracer`].
//! - `pin`: the pinned state under bpffs.
//! - `batch`: batched map reads.
//! - `skel`: the generated skeletons and record types.
//! - [`features`]: the kernel's features as `--version` prints them.
//! - `probe`: do-nothing programs (the benchmarks' floor).

pub mod attach;
mod batch;
mod clock;
pub mod features;
pub mod kernel;
pub mod loader;
mod memlock;
mod pin;
mod probe;
mod skel;
pub mod wire;

use std::path::PathBuf;

use libbpf_rs::PrintLevel;

pub use attach::{Extra, Extras, Mode, Way};
pub use clock::{boottime_ns, clock_ns};
pub use features::Features;
pub use kernel::Kernel;
pub use loader::{
    Attached, KernelStats, LoadOptions, MapSizes, Snapshot, SnapshotMethod, ThreadStore, Tracer,
};
pub use pin::{remove_pins, Pinned, DEFAULT_PIN_DIR};
pub use probe::{EmptyProbe, TcpInfoProbe};
pub use skel::types;
pub use wire::Count;

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
        kernel::VMLINUX_BTF,
        kernel::MIN_LINUX
    )]
    NoBtf,
    #[error(
        "the kernel (Linux {kernel}) has no BTF for the tracepoint {name} (Linux {since} and \
         later have it): netatopd needs Linux >= {} with BTF",
        kernel::MIN_LINUX
    )]
    MissingTracepoint {
        name: &'static str,
        since: &'static str,
        kernel: String,
    },
    #[error(
        "no way of attaching the programs works on this kernel (Linux {kernel}): {why}; \
         netatopd needs Linux >= {} with BTF",
        kernel::MIN_LINUX
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

pub(crate) fn libbpf(stage: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Libbpf { stage, source }
}

/// Routes libbpf's own messages into the `log` facade.
pub fn route_libbpf_logs() {
    fn print(level: PrintLevel, msg: String) {
        let msg = msg.trim_end();
        match level {
            PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
            PrintLevel::Info => log::debug!(target: "libbpf", "{msg}"),
            PrintLevel::Debug => log::trace!(target: "libbpf", "{msg}"),
        }
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, print)));
}

/// A NUL-terminated kernel string in an `i8` array, as bytes without the
/// NUL and what follows.
pub fn comm_like(s: &[i8]) -> Vec<u8> {
    s.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect()
}

/// A kernel `comm` array as bytes.
pub fn comm_bytes(comm: &[i8; 16]) -> [u8; 16] {
    comm.map(|c| c as u8)
}
