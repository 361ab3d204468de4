//! The benchmark's own programs (`bpf/`, built by tests/build.rs),
//! attached while they live and never pinned: the floors (programs that do
//! nothing, `bpf/floor.bpf.c`), the other way of counting the wire, TCP's
//! own counters (`bpf/tcpinfo.bpf.c`), and the candidate designs of wire
//! counting (`bpf/sockfold.bpf.c`). None of them is part of netatopd.

use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};
use netatop_protocol::Counters;

#[allow(clippy::all, clippy::pedantic)]
#[allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
mod floor {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
#[allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
mod tcpinfo {
    include!(concat!(env!("OUT_DIR"), "/tcpinfo.skel.rs"));
}

#[allow(clippy::all, clippy::pedantic)]
#[allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
mod sockfold {
    include!(concat!(env!("OUT_DIR"), "/sockfold.skel.rs"));
}

/// A skeleton's object, leaked: the skeleton borrows it for as long as it
/// lives (a few hundred bytes a load, in a benchmark run).
fn leaked_object() -> &'static mut MaybeUninit<OpenObject> {
    Box::leak(Box::new(MaybeUninit::uninit()))
}

/// A failed step of loading `what`, as the benchmark reports it.
fn failed(what: &'static str) -> impl Fn(libbpf_rs::Error) -> String {
    move |e| format!("{what}: {e:#}")
}

/// The kernel's check before anything loads, as netatopd makes it.
fn kernel_checked() -> Result<(), String> {
    netatopd_bpf::Kernel::probe()
        .check()
        .map_err(|e| e.to_string())
}

/// Programs of `progs` attached to the cgroup v2 root.
fn on_cgroup_root<'a>(
    progs: impl IntoIterator<Item = &'a libbpf_rs::ProgramMut<'a>>,
) -> Result<Vec<Link>, String> {
    let (root, _) = netatopd_bpf::wire::cgroup2_root()
        .map_err(|e| format!("cannot open the root of the cgroup v2 hierarchy: {e}"))?;
    progs
        .into_iter()
        .map(|p| p.attach_cgroup(root.as_raw_fd()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed("attaching to the cgroup v2 root"))
}

/// Which socket calls' tracepoints a floor puts programs on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FloorCalls {
    Neither,
    ReceiveOnly,
    Both,
}

/// Programs that do nothing, on the calls' tracepoints and the cgroup_skb
/// hooks, as chosen; detached when dropped.
pub struct Floor {
    _links: Vec<Link>,
    _skel: floor::FloorSkel<'static>,
}

impl Floor {
    /// On the calls' tracepoints `calls` names, and with `hooks` on both
    /// cgroup_skb hooks (egress and ingress).
    pub fn attach(calls: FloorCalls, hooks: bool) -> Result<Self, String> {
        kernel_checked()?;
        let mut open = floor::FloorSkelBuilder::default()
            .open(leaked_object())
            .map_err(failed("opening"))?;
        let p = &mut open.progs;
        p.floor_send.set_autoload(calls == FloorCalls::Both);
        p.floor_recv.set_autoload(calls != FloorCalls::Neither);
        p.floor_egress.set_autoload(hooks);
        p.floor_ingress.set_autoload(hooks);
        let mut skel = open.load().map_err(failed("loading"))?;
        skel.attach().map_err(failed("attaching"))?;
        let links = if hooks {
            on_cgroup_root([&skel.progs.floor_egress, &skel.progs.floor_ingress])?
        } else {
            Vec::new()
        };
        Ok(Self {
            _links: links,
            _skel: skel,
        })
    }
}

/// The benchmark's other way of counting the wire (`bpf/tcpinfo.bpf.c`):
/// TCP's own per-socket counters read at each call and at close, UDP one
/// packet per call. Attached while it lives, never pinned.
pub struct TcpInfo {
    skel: tcpinfo::TcpinfoSkel<'static>,
}

impl TcpInfo {
    pub fn attach() -> Result<Self, String> {
        kernel_checked()?;
        let open = tcpinfo::TcpinfoSkelBuilder::default()
            .open(leaked_object())
            .map_err(failed("opening"))?;
        let mut skel = open.load().map_err(failed("loading"))?;
        skel.attach().map_err(failed("attaching"))?;
        Ok(Self { skel })
    }

    /// What it counted for process `tgid` (a record of netatop.h's
    /// `struct counters`, the protocol's order of the eight).
    pub fn counted(&self, tgid: u32) -> Counters {
        let mut c = [0u64; 8];
        if let Ok(Some(v)) = self
            .skel
            .maps
            .totals
            .lookup(&tgid.to_ne_bytes(), MapFlags::ANY)
        {
            assert_eq!(v.len(), 64, "a record of eight counters");
            for (f, b) in c.iter_mut().zip(v.chunks_exact(8)) {
                *f = u64::from_ne_bytes(b.try_into().expect("eight bytes"));
            }
        }
        Counters::from_fields(c)
    }
}

/// The benchmark's candidate designs of wire counting
/// (`bpf/sockfold.bpf.c`): per-socket counters at the socket's cgroup
/// hooks, folded into the calling thread at each call or summed per owner
/// (see `Shape`). Attached while it lives (the cgroup programs on the
/// cgroup v2 root), never pinned.
pub struct SockFold {
    _links: Vec<Link>,
    _skel: sockfold::SockfoldSkel<'static>,
}

/// Which of the candidates' programs, and how they count.
#[derive(Clone, Copy, Default)]
struct Shape {
    /// Calls fold the socket's counters into the thread (else they only
    /// record the owner).
    fold: bool,
    /// One atomic add per packet.
    packed: bool,
    /// Packets sent counted at the device instead of the egress hook.
    device: bool,
    /// Owners recorded by the packets sent in their call: no send call
    /// program.
    owner_at_egress: bool,
}

impl SockFold {
    /// The candidate's programs, attached.
    pub fn attach() -> Result<Self, String> {
        Self::attach_with(Shape {
            fold: true,
            ..Shape::default()
        })
    }

    /// The second candidate: the calls only record each socket's owner
    /// (its counters stay on the socket).
    pub fn attach_owner_only() -> Result<Self, String> {
        Self::attach_with(Shape::default())
    }

    /// The third candidate: the second with one atomic add per packet;
    /// with `device`, the fourth: its packets sent counted where they
    /// leave the lowest device (a tp_btf program) instead of at the
    /// cgroup egress hook.
    pub fn attach_packed(device: bool) -> Result<Self, String> {
        Self::attach_with(Shape {
            packed: true,
            device,
            ..Shape::default()
        })
    }

    /// The fifth candidate: the third with no program on send calls, the
    /// packets sent in their owner's call recording the owner.
    pub fn attach_owner_at_egress() -> Result<Self, String> {
        Self::attach_with(Shape {
            packed: true,
            owner_at_egress: true,
            ..Shape::default()
        })
    }

    fn attach_with(shape: Shape) -> Result<Self, String> {
        let Shape {
            fold,
            packed,
            device,
            owner_at_egress,
        } = shape;
        kernel_checked()?;
        let mut open = sockfold::SockfoldSkelBuilder::default()
            .open(leaked_object())
            .map_err(failed("opening"))?;
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.fold = fold;
            ro.packed = packed;
            ro.owner_at_egress = owner_at_egress;
        }
        let p = &mut open.progs;
        p.sockfold_send.set_autoload(!owner_at_egress);
        p.sockfold_egress.set_autoload(!device);
        p.sockfold_xmit.set_autoload(device);
        let mut skel = open.load().map_err(failed("loading"))?;
        // The tracepoints; the cgroup programs need their cgroup.
        skel.attach().map_err(failed("attaching"))?;
        let progs = &skel.progs;
        let links = if device {
            on_cgroup_root([&progs.sockfold_ingress])?
        } else {
            on_cgroup_root([&progs.sockfold_egress, &progs.sockfold_ingress])?
        };
        Ok(Self {
            _links: links,
            _skel: skel,
        })
    }
}
