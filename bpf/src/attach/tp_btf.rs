//! The socket tracepoints as BTF raw tracepoints (`tp_btf`): the kernel
//! calls the programs with its own arguments, no copy into a trace buffer,
//! and tracefs need not be mounted. Linux 6.3 added the tracepoints.

use super::Hook;
use crate::kernel::Kernel;

pub(super) const NAME: &str = "tp_btf";
pub(super) const DESCRIPTION: &str =
    "BTF raw tracepoints: sock_send_length, sock_recv_length, sched_process_exit, sched_process_exec";

pub(super) const HOOKS: [Hook; 2] = [
    Hook {
        prog: "netatop_send",
        pin: "link_send",
    },
    Hook {
        prog: "netatop_recv",
        pin: "link_recv",
    },
];

pub(super) fn unavailable(kernel: &Kernel) -> Option<String> {
    ["sock_send_length", "sock_recv_length"]
        .into_iter()
        .find(|tp| kernel.has_tracepoint(tp) != Some(true))
        .map(|tp| format!("{tp} not in this kernel's BTF (Linux 6.3+)"))
}
