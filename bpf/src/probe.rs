//! Programs that do nothing, on the tracepoints netatopd uses: the
//! benchmarks' floor for the cost of any tp_btf program, and `--version`'s
//! check that such programs load at all.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;

use crate::kernel::Kernel;
use crate::skel::empty;
use crate::{libbpf, LoadError};

/// Where the kernel lists its kprobe event source (perf PMU).
const KPROBE_PMU: &str = "/sys/bus/event_source/devices/kprobe/type";

/// libbpf's messages off while it lives (probes whose failure is an
/// answer), back to where they went when dropped.
struct QuietLibbpf(Option<(libbpf_rs::PrintLevel, libbpf_rs::PrintCallback)>);

impl QuietLibbpf {
    fn new() -> Self {
        Self(libbpf_rs::set_print(None))
    }
}

impl Drop for QuietLibbpf {
    fn drop(&mut self) {
        libbpf_rs::set_print(self.0.take());
    }
}

/// The do-nothing programs, attached; detached when dropped, never pinned.
pub struct EmptyProbe {
    _skel: empty::EmptySkel<'static>,
}

impl EmptyProbe {
    /// Whether the do-nothing programs load (pass the verifier), without
    /// attaching them: tells whether this kernel runs tp_btf programs on
    /// the socket tracepoints at all.
    pub fn loads() -> bool {
        let mut object = MaybeUninit::uninit();
        let Ok(mut open) = empty::EmptySkelBuilder::default().open(&mut object) else {
            return false;
        };
        open.progs.empty_kprobe.set_autoload(false);
        let loaded = open.load().is_ok();
        loaded
    }

    /// Whether a kprobe attaches to kernel function `func` (attached and
    /// detached at once); Err says why not.
    pub(crate) fn kprobe_attaches(func: &str) -> Result<(), String> {
        if !std::path::Path::new(KPROBE_PMU).exists() {
            return Err(format!(
                "this kernel has no kprobe event source ({KPROBE_PMU}: built without \
                 CONFIG_KPROBES)"
            ));
        }
        // A failure here is an answer, not something to log.
        let _quiet = QuietLibbpf::new();
        let mut object = MaybeUninit::uninit();
        let mut open = empty::EmptySkelBuilder::default()
            .open(&mut object)
            .map_err(|e| format!("cannot open the probe programs: {e}"))?;
        open.progs.empty_send.set_autoload(false);
        open.progs.empty_recv.set_autoload(false);
        let skel = open
            .load()
            .map_err(|e| format!("a kprobe program does not load here ({e})"))?;
        let attached = skel
            .progs
            .empty_kprobe
            .attach_kprobe(false, func)
            .map(drop)
            .map_err(|e| format!("a kprobe on {func} does not attach here ({e:#})"));
        attached
    }

    pub fn attach() -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        // Leaked: the skeleton borrows its object for as long as it lives.
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = empty::EmptySkelBuilder::default()
            .open(object)
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
    skel: crate::skel::tcpinfo::TcpinfoSkel<'static>,
}

impl TcpInfoProbe {
    pub fn attach() -> Result<Self, LoadError> {
        Kernel::probe().check()?;
        // Leaked: the skeleton borrows its object for as long as it lives.
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = crate::skel::tcpinfo::TcpinfoSkelBuilder::default()
            .open(object)
            .map_err(libbpf("opening"))?;
        let mut skel = open.load().map_err(libbpf("loading"))?;
        skel.attach().map_err(libbpf("attaching"))?;
        Ok(Self { skel })
    }

    /// What it counted for process `tgid`.
    pub fn counted(&self, tgid: u32) -> crate::types::counters {
        use libbpf_rs::MapCore;
        self.skel
            .maps
            .totals
            .lookup(&tgid.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
            .ok()
            .flatten()
            .map(|v| crate::skel::from_bytes(&v))
            .unwrap_or_default()
    }
}
