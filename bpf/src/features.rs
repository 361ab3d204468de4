//! What the running kernel offers netatopd, as `--version` prints it for
//! bug reports: each way of attaching and why it cannot be used, how
//! snapshots are taken, the optional hooks. Probing loads nothing that
//! stays, and only with the privileges to do so.

use std::fs;
use std::path::Path;

use crate::attach::{Extras, Mode};
use crate::kernel::{Kernel, MIN_LINUX, TASK_ITERATOR, TASK_STORAGE, TRACEPOINTS, VMLINUX_BTF};

#[derive(Debug, Clone)]
pub struct Features {
    pub kernel: String,
    pub btf: bool,
    /// Each tracepoint every way uses, and whether the kernel's BTF
    /// describes it (`None` without BTF).
    pub tracepoints: Vec<(&'static str, Option<bool>)>,
    /// Each way of attaching, and why it cannot be used (`None` inside:
    /// usable). Probed only with privileges and BTF (`None`: not probed).
    pub modes: Option<Vec<(Mode, Option<String>)>>,
    /// The optional hooks with the best way (`None`: not probed).
    pub extras: Option<Extras>,
    /// Whether snapshots take one pass with the task iterator (`None`
    /// without BTF).
    pub task_iterator: Option<bool>,
    /// Why threads' counters cannot be in task-local storage (`Some(None)`:
    /// they can; `None`: not probed, without privileges).
    pub task_storage: Option<Option<String>>,
    /// Why the wire cannot be counted with the best way of attaching
    /// (`Some(None)`: it can; `None`: not probed).
    pub wire: Option<Option<String>>,
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
        let probed = k.privileged && k.has_btf();
        let modes: Option<Vec<(Mode, Option<String>)>> = probed.then(|| {
            Mode::ALL
                .into_iter()
                .map(|m| (m, m.unavailable(&k)))
                .collect()
        });
        let best = modes
            .as_ref()
            .and_then(|ms| ms.iter().find(|(_, why)| why.is_none()).map(|(m, _)| *m));
        let jit = fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Self {
            btf: k.has_btf(),
            tracepoints,
            extras: best.map(|m| Extras::probe(&k, m)),
            modes,
            task_iterator: k.has_task_iterator(),
            task_storage: k.privileged.then(|| k.task_storage_unavailable()),
            wire: best.map(|m| crate::wire::unavailable(&k, m)),
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
            && self
                .modes
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|(_, why)| why.is_none()))
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
        match &self.modes {
            Some(modes) => {
                let best = modes.iter().find(|(_, why)| why.is_none());
                for (m, why) in modes {
                    let state = match why {
                        None if best.is_some_and(|(b, _)| b == m) => "yes (used)".to_owned(),
                        None => "yes".to_owned(),
                        Some(why) => format!("no: {why}"),
                    };
                    writeln!(f, "  attach {}: {state}", m.name())?;
                }
            }
            None if !self.privileged => writeln!(
                f,
                "  attach: not checked (needs root or CAP_BPF and CAP_PERFMON)"
            )?,
            None => writeln!(f, "  attach: not checked (no BTF)")?,
        }
        if let Some(extras) = &self.extras {
            writeln!(f, "  {extras}")?;
        }
        let snapshots = match self.task_iterator {
            Some(true) => "one pass with the task iterator",
            Some(false) => "three passes over the maps (no task iterator before Linux 6.7)",
            None => "unknown",
        };
        writeln!(
            f,
            "  snapshots ({}, Linux {}): {snapshots}",
            TASK_ITERATOR.0, TASK_ITERATOR.1
        )?;
        let storage = match &self.task_storage {
            Some(None) => "task-local storage".to_owned(),
            Some(Some(why)) => format!("a hash map ({why})"),
            None => "not checked (needs root or CAP_BPF and CAP_PERFMON)".to_owned(),
        };
        writeln!(
            f,
            "  thread counters ({}, Linux {}): {storage}",
            TASK_STORAGE.0, TASK_STORAGE.1
        )?;
        let wire = match &self.wire {
            Some(None) => "calls (the default) or wire (--count wire)".to_owned(),
            Some(Some(why)) => format!("calls only (wire: {why})"),
            None => "not checked".to_owned(),
        };
        writeln!(f, "  counting: {wire}")?;
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
