//! netatopd: per-process TCP/UDP accounting in eBPF, served to atop.
//!
//! The kernel half (programs, loading, pinning) is the `netatopd-bpf`
//! crate. Here: `collect` turns the kernel's snapshots and maps into
//! atop's records, `exits` keeps the final totals of exited processes for
//! every client, `server` is the event loop that answers atop and
//! netatopctl, `version` the `--version` text of both binaries.

pub mod cgroups;
pub mod collect;
pub mod exits;
pub mod server;
pub mod version;
