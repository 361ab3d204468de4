//! The feature probe with a do-nothing program (`bpf/probe.bpf.c`):
//! whether a kprobe attaches to a kernel function. Nothing it loads
//! stays.

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::skel::probe;

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
    let open = probe::ProbeSkelBuilder::default()
        .open(&mut object)
        .map_err(|e| format!("cannot open the probe program: {e}"))?;
    let skel = open
        .load()
        .map_err(|e| format!("a kprobe program does not load here ({e})"))?;
    let attached = skel
        .progs
        .probe_kprobe
        .attach_kprobe(false, func)
        .map(drop)
        .map_err(|e| format!("a kprobe on {func} does not attach here ({e:#})"));
    attached
}
