//! The benchmark's programs, attached while they live and never pinned:
//! the do-nothing programs on the tracepoints netatopd uses (the floor
//! for the cost of any tp_btf program), the other way of counting the
//! wire, TCP's own counters (`bpf/tcpinfo.bpf.c`), and a candidate design
//! of wire counting (`bpf/sockfold.bpf.c`).

use std::os::fd::AsRawFd;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};

use crate::error::{libbpf, LoadError};
use crate::kernel::Kernel;
use crate::probe;
use crate::skel::{empty, from_bytes, leaked_object, sockfold, tcpinfo, types};

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
        Self::attach_as(true)
    }

    /// Only the one on sock_recv_length: the floor of a design whose sends
    /// need no call program.
    pub fn attach_recv_only() -> Result<Self, LoadError> {
        Self::attach_as(false)
    }

    fn attach_as(send: bool) -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        let mut open = empty::EmptySkelBuilder::default()
            .open(leaked_object())
            .map_err(libbpf("opening"))?;
        open.progs.empty_kprobe.set_autoload(false);
        open.progs.empty_send.set_autoload(send);
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

/// The benchmarks' candidate design of wire counting
/// (`bpf/sockfold.bpf.c`): per-socket counters at the socket's cgroup
/// hooks, folded into the calling thread at each call. Attached while it
/// lives (the cgroup programs on the cgroup v2 root), never pinned.
pub struct SockFoldProbe {
    _links: Vec<Link>,
    _skel: sockfold::SockfoldSkel<'static>,
}

impl SockFoldProbe {
    /// The candidate's programs, attached.
    pub fn attach() -> Result<Self, LoadError> {
        Self::attach_with(false, true, false, false)
    }

    /// The second candidate: the calls only record each socket's owner
    /// (its counters stay on the socket).
    pub fn attach_owner_only() -> Result<Self, LoadError> {
        Self::attach_with(false, false, false, false)
    }

    /// Only cgroup_skb programs that do nothing, on the same hooks: their
    /// floor.
    pub fn attach_empty_hooks() -> Result<Self, LoadError> {
        Self::attach_with(true, true, false, false)
    }

    /// The third candidate: the second with one atomic add per packet;
    /// with `device`, the fourth: its packets sent counted where they
    /// leave the lowest device (a tp_btf program) instead of at the
    /// cgroup egress hook.
    pub fn attach_packed(device: bool) -> Result<Self, LoadError> {
        Self::attach_with(false, false, true, device)
    }

    fn attach_with(empty: bool, fold: bool, packed: bool, device: bool) -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        let mut open = sockfold::SockfoldSkelBuilder::default()
            .open(leaked_object())
            .map_err(libbpf("opening"))?;
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.fold = fold;
            ro.packed = packed;
        }
        let p = &mut open.progs;
        p.sockfold_send.set_autoload(!empty);
        p.sockfold_recv.set_autoload(!empty);
        p.sockfold_egress.set_autoload(!empty && !device);
        p.sockfold_xmit.set_autoload(device);
        p.sockfold_ingress.set_autoload(!empty);
        p.sockfold_nop_egress.set_autoload(empty);
        p.sockfold_nop_ingress.set_autoload(empty);
        let mut skel = open.load().map_err(libbpf("loading"))?;
        // The tracepoints; the cgroup programs need their cgroup.
        skel.attach().map_err(libbpf("attaching"))?;
        let (root, _) = crate::wire::cgroup2_root().map_err(|e| LoadError::NoWire {
            why: format!("cannot open the root of the cgroup v2 hierarchy: {e}"),
        })?;
        let progs = &skel.progs;
        let hooks = if empty {
            vec![&progs.sockfold_nop_egress, &progs.sockfold_nop_ingress]
        } else if device {
            vec![&progs.sockfold_ingress]
        } else {
            vec![&progs.sockfold_egress, &progs.sockfold_ingress]
        };
        let links = hooks
            .into_iter()
            .map(|p| p.attach_cgroup(root.as_raw_fd()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(libbpf("attaching"))?;
        Ok(Self {
            _links: links,
            _skel: skel,
        })
    }
}
