//! Ways of attaching the counting programs, one module each, behind one
//! interface: the programs a way uses (each with the name its link is
//! pinned under), and why a kernel cannot use it. The loader enables
//! exactly those programs, plus the ones every way shares (process exit
//! and exec) and the optional hooks the kernel loads.
//!
//! The BPF half of each way is in `bpf/netatop.bpf.c`; every way feeds
//! the same accounting (`account()` there), so what is counted does not
//! depend on how it is attached.

mod tp_btf;

use crate::kernel::Kernel;

/// One program: its name in the object and the pin name of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hook {
    pub prog: &'static str,
    pub pin: &'static str,
}

/// Programs every way of attaching uses: a process's exit and exec.
pub(crate) const COMMON: [Hook; 2] = [
    Hook {
        prog: "netatop_exit",
        pin: "link_exit",
    },
    Hook {
        prog: "netatop_exec",
        pin: "link_exec",
    },
];

/// The snapshot iterator: loaded always, attached at each start, never
/// pinned.
pub(crate) const SNAPSHOT: &str = "netatop_snapshot";

/// How the send and receive calls are hooked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BTF raw tracepoints sock_send_length/sock_recv_length (Linux 6.3+).
    TpBtf,
}

impl Mode {
    /// Every way, best first.
    pub const ALL: [Mode; 1] = [Mode::TpBtf];

    /// The short name users see and choose.
    pub fn name(self) -> &'static str {
        match self {
            Mode::TpBtf => tp_btf::NAME,
        }
    }

    /// What it hooks, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::TpBtf => tp_btf::DESCRIPTION,
        }
    }

    /// The programs that count the calls.
    pub(crate) fn hooks(self) -> &'static [Hook] {
        match self {
            Mode::TpBtf => &tp_btf::HOOKS,
        }
    }

    /// Why this kernel cannot use this way (None: it can).
    pub(crate) fn unavailable(self, kernel: &Kernel) -> Option<String> {
        match self {
            Mode::TpBtf => tp_btf::unavailable(kernel),
        }
    }
}

/// The optional hook that counts TCP received with splice().
pub(crate) const SPLICE_READ: Hook = Hook {
    prog: "netatop_splice_read",
    pin: "link_splice_read",
};

/// Hooks that count what the send and receive hooks do not see, each used
/// where the kernel loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extras {
    /// TCP received with splice() (fexit on tcp_splice_read); Err: why not.
    pub splice_read: Result<(), String>,
}

impl Extras {
    pub(crate) fn probe(kernel: &Kernel) -> Self {
        Self {
            splice_read: kernel.fexit_loads("tcp_splice_read"),
        }
    }

    /// The optional hooks in use.
    pub(crate) fn hooks(&self) -> Vec<Hook> {
        self.splice_read.iter().map(|()| SPLICE_READ).collect()
    }
}

impl std::fmt::Display for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.splice_read {
            Ok(()) => f.write_str("spliced TCP receives: fexit on tcp_splice_read"),
            Err(why) => write!(f, "spliced TCP receives: not counted: {why}"),
        }
    }
}
