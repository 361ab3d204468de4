//! What the running kernel offers netatopd, as `--version` prints it for
//! bug reports: each way of attaching and why it cannot be used, how
//! snapshots are taken, the optional hooks. Probing loads nothing that
//! stays, and only with the privileges to do so.

use std::fs;
use std::path::Path;

use crate::attach::{Extras, Mode};
use crate::kernel::Kernel;
use crate::options::{SnapshotMethod, ThreadStore};
use crate::requirements::{MIN_LINUX, TRACEPOINTS, VMLINUX_BTF};

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
    /// Each way of taking snapshots, and why it cannot be used (`None`
    /// inside: usable). Probed only with privileges and BTF.
    pub snapshots: Option<Vec<(SnapshotMethod, Option<String>)>>,
    /// Each place threads' counters can live, and why not (`None`: not
    /// probed, without privileges).
    pub thread_stores: Option<Vec<(ThreadStore, Option<String>)>>,
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
            snapshots: probed.then(|| {
                SnapshotMethod::ALL
                    .into_iter()
                    .map(|m| (m, m.unavailable(&k)))
                    .collect()
            }),
            thread_stores: k.privileged.then(|| {
                vec![
                    (ThreadStore::TaskStorage, k.task_storage_unavailable()),
                    (ThreadStore::HashMap, None),
                ]
            }),
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
        ways(f, "attach", self.modes.as_deref(), Mode::name)?;
        if self.modes.is_none() {
            let why = if self.privileged {
                "no BTF"
            } else {
                "needs root or CAP_BPF and CAP_PERFMON"
            };
            writeln!(f, "  attach: not checked ({why})")?;
        }
        if let Some(extras) = &self.extras {
            writeln!(f, "  {extras}")?;
        }
        ways(
            f,
            "snapshot",
            self.snapshots.as_deref(),
            SnapshotMethod::name,
        )?;
        ways(
            f,
            "thread-counters",
            self.thread_stores.as_deref(),
            ThreadStore::name,
        )?;
        if self.thread_stores.is_none() {
            writeln!(
                f,
                "  snapshot, thread-counters: not checked (needs root or CAP_BPF and CAP_PERFMON)"
            )?;
        }
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

/// One line per way `kind` (as its option is named), in the order
/// netatopd prefers them: "yes (used)" for the first usable one, "yes" for
/// the others, "no: why" for those the kernel cannot take.
fn ways<T: Copy + PartialEq>(
    f: &mut std::fmt::Formatter<'_>,
    kind: &str,
    ways: Option<&[(T, Option<String>)]>,
    name: fn(T) -> &'static str,
) -> std::fmt::Result {
    let Some(ways) = ways else { return Ok(()) };
    let best = ways.iter().find(|(_, why)| why.is_none()).map(|(w, _)| *w);
    for (w, why) in ways {
        let state = match why {
            None if best == Some(*w) => "yes (used)".to_owned(),
            None => "yes".to_owned(),
            Some(why) => format!("no: {why}"),
        };
        writeln!(f, "  {kind} {}: {state}", name(*w))?;
    }
    Ok(())
}
