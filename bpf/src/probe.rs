//! Feature probes with the do-nothing programs (`bpf/empty.bpf.c`):
//! whether such programs load at all, and whether a kprobe attaches to a
//! kernel function. Nothing they load stays.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::skel::empty;

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

/// Whether the do-nothing programs load (pass the verifier), without
/// attaching them: tells whether this kernel runs tp_btf programs on the
/// socket tracepoints at all.
pub(crate) fn empty_programs_load() -> bool {
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
