//! netatopd: per-process TCP/UDP accounting in eBPF, served to atop.
//!
//! `collect` reads the kernel's snapshots (one record per process, from a
//! BPF task iterator) and its maps into atop's records, `exits` keeps final
//! totals of exited processes for every client, `server` is the event loop.

pub mod collect;
pub mod conns;
pub mod exits;
pub mod server;
pub mod version;
