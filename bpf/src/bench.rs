//! The benchmark's programs, attached while they live and never pinned:
//! the do-nothing programs on the tracepoints netatopd uses (the floor
//! for the cost of any tp_btf program) and the other way of counting the
//! wire, TCP's own counters (`bpf/tcpinfo.bpf.c`).

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};

use crate::error::{libbpf, LoadError};
use crate::kernel::Kernel;
use crate::probe;
use crate::skel::{empty, from_bytes, leaked_object, tcpinfo, types};

/// The do-nothing programs, attached; detached when dropped, never pinned.
pub struct EmptyProbe {
    _skel: empty::EmptySkel<'static>,
}

impl EmptyProbe {
    /// Whether the do-nothing programs load (pass the verifier), without
    /// attaching them: tells whether this kernel runs tp_btf programs on
    /// the socket tracepoints at all.
    pub fn loads() -> bool {
        probe::empty_programs_load()
    }

    pub fn attach() -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        let mut open = empty::EmptySkelBuilder::default()
            .open(leaked_object())
            .map_err(libbpf("opening"))?;
        open.progs.empty_kprobe.set_autoload(false);
        let mut skel = open.load().map_err(libbpf("loading"))?;
        skel.attach().map_err(libbpf("attaching"))?;
        Ok(Self { _skel: skel })
    }
}

/// The benchmarks' other way of counting the wire (`bpf/tcpinfo.bpf.c`):
/// TCP's own per-socket counters read at each call and at close, UDP one
/// packet per call. Attached while it lives, never pinned.
pub struct TcpInfoProbe {
    skel: tcpinfo::TcpinfoSkel<'static>,
}

impl TcpInfoProbe {
    pub fn attach() -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        let open = tcpinfo::TcpinfoSkelBuilder::default()
            .open(leaked_object())
            .map_err(libbpf("opening"))?;
        let mut skel = open.load().map_err(libbpf("loading"))?;
        skel.attach().map_err(libbpf("attaching"))?;
        Ok(Self { skel })
    }

    /// What it counted for process `tgid`.
    pub fn counted(&self, tgid: u32) -> types::counters {
        self.skel
            .maps
            .totals
            .lookup(&tgid.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten()
            .map(|v| from_bytes(&v))
            .unwrap_or_default()
    }
}
