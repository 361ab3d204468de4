//! The socket tracepoints as BTF raw tracepoints (`tp_btf`): the kernel
//! calls the programs with its own arguments, no copy into a trace buffer,
//! and tracefs need not be mounted. Linux 6.3 added the tracepoints.

use super::Hook;
use crate::kernel::Kernel;

pub(super) const NAME: &str = "tracepoint";
pub(super) const DESCRIPTION: &str = "BTF raw tracepoints sock_send_length and sock_recv_length";

pub(super) const HOOKS: [Hook; 2] = [
    Hook::new("netatop_send", "link_send"),
    Hook::new("netatop_recv", "link_recv"),
];

pub(super) fn unavailable(kernel: &Kernel) -> Option<String> {
    for tp in ["sock_send_length", "sock_recv_length"] {
        if kernel.has_tracepoint(tp) != Some(true) {
            return Some(format!("{tp} not in this kernel's BTF (Linux 6.3+)"));
        }
    }
    kernel.tp_btf_loads("sock_send_length").err()
}
