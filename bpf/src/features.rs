//! What the running kernel offers netatopd, as `--version` prints it for
//! bug reports. Probing loads nothing that stays, and only with the
//! privileges to do so.

use std::fs;
use std::path::Path;

use crate::attach::Extras;
use crate::kernel::{Kernel, KFUNCS, MIN_LINUX, TRACEPOINTS, VMLINUX_BTF};
use crate::probe::EmptyProbe;

#[derive(Debug, Clone)]
pub struct Features {
    pub kernel: String,
    pub btf: bool,
    /// Each tracepoint netatopd attaches to, and whether the kernel's BTF
    /// describes it (`None` without BTF).
    pub tracepoints: Vec<(&'static str, Option<bool>)>,
    /// Whether the kernel has the open-coded task iterator the snapshot
    /// program uses (`None` without BTF).
    pub task_iterator: Option<bool>,
    /// Whether tp_btf programs on the socket tracepoints pass the verifier
    /// (`None`: not checked, for want of privileges or BTF).
    pub tracing_programs: Option<bool>,
    /// The optional hooks (`None`: not checked, for want of privileges or BTF).
    pub extras: Option<Extras>,
    pub privileged: bool,
    /// `net.core.bpf_jit_enable`: 0 off, 1 on, 2 on with debug output.
    pub jit: Option<u8>,
    pub bpffs: bool,
}

impl Features {
    pub fn probe() -> Self {
        let k = Kernel::probe();
        let tracepoints = TRACEPOINTS
            .iter()
            .map(|&(name, _)| (name, k.has_tracepoint(name)))
            .collect();
        let task_iterator = k.has_btf().then(|| {
            KFUNCS
                .iter()
                .all(|(name, _)| k.has_func(name) == Some(true))
        });
        let checkable = k.privileged && k.has_btf();
        let jit = fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Self {
            btf: k.has_btf(),
            tracepoints,
            task_iterator,
            tracing_programs: checkable.then(EmptyProbe::loads),
            extras: checkable.then(|| Extras::probe(&k)),
            privileged: k.privileged,
            jit,
            bpffs: crate::pin::on_bpffs(Path::new("/sys/fs/bpf")).unwrap_or(false),
            kernel: k.release,
        }
    }

    /// Whether netatopd can count here (as far as can be told without
    /// privileges when there are none).
    pub fn usable(&self) -> bool {
        self.btf
            && self.tracepoints.iter().all(|(_, f)| *f == Some(true))
            && self.task_iterator == Some(true)
            && self.tracing_programs != Some(false)
    }
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let maybe = |b: Option<bool>| b.map_or("unknown", yes);
        writeln!(f, "kernel: Linux {}", self.kernel)?;
        writeln!(f, "  BTF ({VMLINUX_BTF}): {}", yes(self.btf))?;
        let tps: Vec<String> = self
            .tracepoints
            .iter()
            .map(|(name, found)| format!("{name} {}", maybe(*found)))
            .collect();
        writeln!(f, "  tracepoints: {}", tps.join(", "))?;
        writeln!(
            f,
            "  BPF task iterator (bpf_iter_task_new, Linux 6.7): {}",
            maybe(self.task_iterator)
        )?;
        let progs = match self.tracing_programs {
            Some(b) => yes(b),
            None if !self.privileged => "not checked (needs root or CAP_BPF and CAP_PERFMON)",
            None => "not checked (no BTF)",
        };
        writeln!(
            f,
            "  tp_btf programs on sock_send_length/sock_recv_length load: {progs}"
        )?;
        match &self.extras {
            Some(extras) => writeln!(f, "  {extras}")?,
            None => writeln!(f, "  spliced TCP receives: not checked")?,
        }
        let jit = match self.jit {
            Some(0) => "off (programs are interpreted: slower)",
            Some(_) => "on",
            None => "unknown",
        };
        writeln!(f, "  BPF JIT: {jit}")?;
        writeln!(f, "  bpffs on /sys/fs/bpf: {}", yes(self.bpffs))?;
        let verdict = if !self.usable() {
            format!("netatopd cannot count on this kernel (it needs Linux >= {MIN_LINUX} with BTF)")
        } else if !self.privileged {
            "netatopd can count on this kernel, run as root".to_owned()
        } else {
            "netatopd can count on this kernel".to_owned()
        };
        write!(f, "  verdict: {verdict}")
    }
}
