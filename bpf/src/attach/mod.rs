//! Ways of attaching the counting programs, one module each, behind one
//! interface: the programs a way uses (each with the name its link is
//! pinned under) and why a kernel cannot use it, found by loading or
//! attaching a probe program, not from the kernel's version. The loader
//! enables exactly those programs, the ones every way shares (process
//! exit, exec and rename) and the optional hooks the kernel takes.
//!
//! The BPF half of each way is its header (`bpf/tp_btf.bpf.h`,
//! `bpf/fexit.bpf.h`, `bpf/kprobe.bpf.h`); every way ends in the same
//! `count()` (`bpf/account.bpf.h`), so what is counted does not depend on
//! how.

mod fexit;
mod kprobe;
mod tp_btf;

use crate::choice::first_usable;
use crate::kernel::Kernel;

/// One program: its name in the object and the pin name of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hook {
    pub prog: &'static str,
    pub pin: &'static str,
}

impl Hook {
    pub(crate) const fn new(prog: &'static str, pin: &'static str) -> Self {
        Self { prog, pin }
    }

    /// kprobe links cannot be pinned before Linux 5.15.
    pub(crate) fn is_kprobe(&self) -> bool {
        self.prog.starts_with("netatop_kp_") || self.prog.starts_with("netatop_kr_")
    }
}

/// The inet socket operations every TCP and UDP send and receive reaches,
/// hooked by the fexit and kprobe ways.
pub(crate) const INET_FUNCS: [&str; 4] = [
    "inet_sendmsg",
    "inet6_sendmsg",
    "inet_recvmsg",
    "inet6_recvmsg",
];

/// Programs every way of attaching uses: a process's exit, exec and
/// rename, and a cgroup's removal.
pub(crate) const COMMON: [Hook; 4] = [
    Hook::new("netatop_exit", "link_exit"),
    Hook::new("netatop_exec", "link_exec"),
    Hook::new("netatop_rename", "link_rename"),
    Hook::new("netatop_cgroup_rmdir", "link_cgroup_rmdir"),
];

/// Every program any start may attach, whatever the kernel and options:
/// what a pin directory of netatopd's may hold links of.
pub(crate) fn every_hook() -> Vec<Hook> {
    let mut hooks: Vec<Hook> = Mode::ALL.iter().flat_map(|m| m.hooks()).copied().collect();
    hooks.extend(COMMON);
    hooks.extend([fexit::SENDPAGE, fexit::SPLICE]);
    hooks.extend(kprobe::SENDPAGE.into_iter().chain(kprobe::SPLICE));
    hooks
}

/// How the send and receive calls are hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BTF raw tracepoints sock_send_length/sock_recv_length (Linux 6.3+).
    Tracepoint,
    /// fexit on the inet socket operations (BPF trampolines).
    Fexit,
    /// kprobes and kretprobes on the same functions.
    Kprobe,
}

impl Mode {
    /// Every way, best first.
    pub const ALL: [Mode; 3] = [Mode::Tracepoint, Mode::Fexit, Mode::Kprobe];

    /// The short name users see and choose (`--attach`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tracepoint => tp_btf::NAME,
            Mode::Fexit => fexit::NAME,
            Mode::Kprobe => kprobe::NAME,
        }
    }

    /// The way named `name`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// What it hooks, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Tracepoint => tp_btf::DESCRIPTION,
            Mode::Fexit => fexit::DESCRIPTION,
            Mode::Kprobe => kprobe::DESCRIPTION,
        }
    }

    /// The programs that count the calls.
    pub(crate) fn hooks(self) -> &'static [Hook] {
        match self {
            Mode::Tracepoint => &tp_btf::HOOKS,
            Mode::Fexit => &fexit::HOOKS,
            Mode::Kprobe => &kprobe::HOOKS,
        }
    }

    /// Why this kernel cannot use this way (None: it can).
    pub fn unavailable(self, kernel: &Kernel) -> Option<String> {
        match self {
            Mode::Tracepoint => tp_btf::unavailable(kernel),
            Mode::Fexit => fexit::unavailable(kernel),
            Mode::Kprobe => kprobe::unavailable(kernel),
        }
    }

    /// The best way this kernel can use, or why none: each way's reason.
    pub fn best(kernel: &Kernel) -> Result<Mode, String> {
        first_usable(&Mode::ALL, Mode::name, |m| m.unavailable(kernel))
    }
}

/// How an optional hook is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    Fexit,
    Kprobe,
}

/// What an optional hook does on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    /// Hooked, this way.
    Hooked(Way),
    /// Nothing to hook: the kernel does it through the hooked calls.
    NotNeeded(&'static str),
    /// Not counted; the reason.
    Missing(String),
}

/// Hooks that count what the send and receive hooks do not see, each used
/// where the kernel takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extras {
    /// TCP received with splice() (tcp_splice_read).
    pub splice_read: Extra,
    /// sendfile() and splice() into a socket before Linux 6.5
    /// (inet_sendpage).
    pub sendpage: Extra,
}

impl Extras {
    /// The optional hooks for way `mode`: with kprobes as kprobes, else
    /// fexit where the kernel loads it, else kprobes where it attaches.
    pub(crate) fn probe(kernel: &Kernel, mode: Mode) -> Self {
        let hook = |func: &str| -> Result<Way, String> {
            let fexit = match mode {
                Mode::Kprobe => None,
                _ => match kernel.fexit_loads(func) {
                    Ok(()) => return Ok(Way::Fexit),
                    Err(e) if mode == Mode::Fexit => return Err(e),
                    Err(e) => Some(e),
                },
            };
            kernel
                .kprobe_attaches(func)
                .map(|()| Way::Kprobe)
                .map_err(|kp| match fexit {
                    Some(fx) => format!("{fx}; {kp}"),
                    None => kp,
                })
        };
        let splice_read = match hook("tcp_splice_read") {
            Ok(w) => Extra::Hooked(w),
            Err(e) => Extra::Missing(e),
        };
        let sendpage = if kernel.has_func("inet_sendpage") != Some(true) {
            Extra::NotNeeded("through sendmsg (Linux 6.5+)")
        } else {
            match hook("inet_sendpage") {
                Ok(w) => Extra::Hooked(w),
                Err(e) => Extra::Missing(e),
            }
        };
        Self {
            splice_read,
            sendpage,
        }
    }

    /// The optional hooks in use.
    pub(crate) fn hooks(&self) -> Vec<Hook> {
        let mut hooks = Vec::new();
        for (extra, fexit, kprobes) in [
            (&self.splice_read, fexit::SPLICE, kprobe::SPLICE),
            (&self.sendpage, fexit::SENDPAGE, kprobe::SENDPAGE),
        ] {
            match extra {
                Extra::Hooked(Way::Fexit) => hooks.push(fexit),
                Extra::Hooked(Way::Kprobe) => hooks.extend(kprobes),
                Extra::NotNeeded(_) | Extra::Missing(_) => {}
            }
        }
        hooks
    }
}

impl std::fmt::Display for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |extra: &Extra, func: &str| match extra {
            Extra::Hooked(Way::Fexit) => format!("fexit on {func}"),
            Extra::Hooked(Way::Kprobe) => format!("kprobe on {func}"),
            Extra::NotNeeded(how) => (*how).to_owned(),
            Extra::Missing(why) => format!("not counted: {why}"),
        };
        write!(
            f,
            "spliced TCP receives: {}; sendfile and splice into sockets: {}",
            show(&self.splice_read, "tcp_splice_read"),
            show(&self.sendpage, "inet_sendpage")
        )
    }
}
