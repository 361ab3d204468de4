//! kprobes and kretprobes on the same inet socket operations as the fexit
//! way, for kernels without BPF trampolines. A call's socket and flags are
//! kept from its entry to its return in the `inflight` map.
//!
//! Two limits of kprobes: a kretprobe serves a bounded number of calls in
//! flight at once (the kernel's default, about twice the CPUs), so with
//! more threads blocked in a receive some returns are missed and those
//! calls not counted (netatopctl stats counts them: "kretprobe misses");
//! and before Linux 5.15 their links cannot be pinned, so they stop with
//! netatopd (the maps stay pinned, and what was counted is kept).

use super::{Hook, INET_FUNCS};
use crate::kernel::Kernel;

pub(super) const NAME: &str = "kprobe";
pub(super) const DESCRIPTION: &str =
    "kprobes on inet_sendmsg, inet6_sendmsg, inet_recvmsg and inet6_recvmsg";

pub(super) const HOOKS: [Hook; 8] = [
    Hook::new("netatop_kp_send4", "link_kp_send4"),
    Hook::new("netatop_kr_send4", "link_kr_send4"),
    Hook::new("netatop_kp_send6", "link_kp_send6"),
    Hook::new("netatop_kr_send6", "link_kr_send6"),
    Hook::new("netatop_kp_recv4", "link_kp_recv4"),
    Hook::new("netatop_kr_recv4", "link_kr_recv4"),
    Hook::new("netatop_kp_recv6", "link_kp_recv6"),
    Hook::new("netatop_kr_recv6", "link_kr_recv6"),
];

pub(super) fn unavailable(kernel: &Kernel) -> Option<String> {
    if let Some(f) = INET_FUNCS.iter().find(|f| kernel.has_func(f) != Some(true)) {
        return Some(format!("{f} is not in this kernel's BTF"));
    }
    kernel.kprobe_attaches("inet_sendmsg").err()
}

/// The optional hooks this way uses, as kprobe pairs.
pub(super) const SENDPAGE: [Hook; 2] = [
    Hook::new("netatop_kp_sendpage", "link_kp_sendpage"),
    Hook::new("netatop_kr_sendpage", "link_kr_sendpage"),
];
pub(super) const SPLICE: [Hook; 2] = [
    Hook::new("netatop_kp_splice", "link_kp_splice"),
    Hook::new("netatop_kr_splice", "link_kr_splice"),
];
