//! fexit programs on the inet socket operations: every TCP and UDP send
//! and receive on IPv4 and IPv6 sockets (MPTCP's included) goes through
//! inet_sendmsg/inet6_sendmsg and inet_recvmsg/inet6_recvmsg, and the
//! programs see the call's real return value and flags. Needs BPF
//! trampolines (x86_64 from Linux 5.5, arm64 from 6.0; some kernels and
//! hypervisors refuse them).
//!
//! Not sock_sendmsg: send() and sendto() call __sock_sendmsg (5.10, 6.1)
//! or inline the path (6.12), so an fexit there sees nothing of them.

use super::{Hook, INET_FUNCS};
use crate::kernel::Kernel;

pub(super) const NAME: &str = "fexit";
pub(super) const DESCRIPTION: &str =
    "fexit on inet_sendmsg, inet6_sendmsg, inet_recvmsg and inet6_recvmsg";

pub(super) const HOOKS: [Hook; 4] = [
    Hook::new("netatop_fexit_send4", "link_fexit_send4"),
    Hook::new("netatop_fexit_send6", "link_fexit_send6"),
    Hook::new("netatop_fexit_recv4", "link_fexit_recv4"),
    Hook::new("netatop_fexit_recv6", "link_fexit_recv6"),
];

pub(super) fn unavailable(kernel: &Kernel) -> Option<String> {
    INET_FUNCS.iter().find_map(|f| kernel.fexit_loads(f).err())
}

/// The optional hooks this way uses, as fexit programs.
pub(super) const SENDPAGE: Hook = Hook::new("netatop_fexit_sendpage", "link_fexit_sendpage");
pub(super) const SPLICE: Hook = Hook::new("netatop_fexit_splice", "link_fexit_splice");
