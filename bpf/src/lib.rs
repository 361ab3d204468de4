//! netatopd's BPF programs and their loader: the kernel half of netatopd.
//!
//! The programs (`bpf/netatop.bpf.c` and its headers) count every thread's TCP and UDP
//! calls in the kernel and keep the totals of exited threads and
//! processes; this crate checks the kernel, loads, attaches and pins them
//! (or adopts what an earlier netatopd pinned), and reads what they
//! counted: snapshots from their task iterator, maps with batched lookups,
//! their statistics. Turning that into atop's records is netatopd's part.
//!
//! What a start asks for and what the kernel offers:
//! - [`kernel`]: what the running kernel offers, and the start-up check.
//! - `requirements`: what netatopd requires of a kernel, and since when.
//! - `probe`: feature probes that load do-nothing programs.
//! - [`features`]: the kernel's features as `--version` prints them.
//! - `options`: the choices a start may make ([`LoadOptions`]).
//! - `choice`: choosing one of several ways, the forced one or the best.
//! - `plan`: from the options and the kernel to what a start will do.
//!
//! The programs and their maps:
//! - [`attach`]: the ways of attaching the counting programs.
//! - [`wire`]: what is counted; the wire's programs.
//! - `maps`: the table of the maps: names, pins, sizes, layouts.
//! - `iters`: the iterator programs (snapshots, threads, cgroups).
//! - `skel`: the generated skeletons and record types.
//!
//! A start and what it gives:
//! - `loader`: loading, attaching, pinning or adopting: a [`Tracer`].
//! - `pin`: the pinned state under bpffs.
//! - `tracer`: the [`Tracer`] and what it tells of itself.
//! - `attached`: how the programs are attached ([`Attached`]).
//! - `read`: reading what the programs counted.
//! - `stats`: the programs' counts of rare events, declared once.
//! - `batch`: batched map reads.
//! - `memory`: the kernel memory of the maps and task storage.
//! - `memlock`: the locked-memory charge of kernels before 5.11.
//! - `error`: why a start fails ([`LoadError`]).
//! - `clock`: the clocks of the programs' timestamps.

pub mod attach;
mod attached;
mod batch;
mod choice;
mod clock;
mod error;
pub mod features;
mod iters;
pub mod kernel;
mod loader;
mod maps;
mod memlock;
mod memory;
mod options;
mod pin;
mod pin_dir;
mod plan;
mod probe;
mod read;
mod requirements;
mod skel;
mod stats;
mod tracer;
pub mod wire;

use libbpf_rs::PrintLevel;

pub use attach::{Extra, Extras, Mode, Way};
pub use attached::Attached;
pub use clock::{boottime_ns, clock_ns, unix_secs_of_boottime};
pub use error::LoadError;
pub use features::Features;
pub use kernel::Kernel;
pub use options::{LoadOptions, MapSizes, SnapshotMethod, ThreadStore};
pub use pin::{remove_pins, Pinned, DEFAULT_PIN_DIR};
pub use read::{KernelStats, Snapshot};
pub use skel::{comm_bytes, comm_like, types};
pub use stats::{kernel_stat, KernelStat, KERNEL_STATS};
pub use tracer::Tracer;
pub use wire::Count;

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
