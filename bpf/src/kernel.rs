//! What the running kernel offers, found once in its BTF (and by loading
//! probe programs where only loading can tell): used by the start-up check,
//! which refuses a kernel that lacks something with a message naming it,
//! and by `--version`.

use std::fs;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::ptr;

use libbpf_rs::btf::types::{Func, Typedef};
use libbpf_rs::Btf;

use crate::error::LoadError;
use crate::probe;
use crate::requirements::{TASK_ITERATOR, TASK_STORAGE, TRACEPOINTS, VMLINUX_BTF};

/// The running kernel: its release, its BTF (when it has one) and whether
/// this process may load tracing programs.
pub struct Kernel {
    pub release: String,
    btf: Option<Btf<'static>>,
    pub privileged: bool,
}

impl Kernel {
    /// Reads the running kernel's BTF (once) and this process's privileges.
    pub fn probe() -> Self {
        Self::with_btf(Path::new(VMLINUX_BTF))
    }

    /// The running kernel described by the BTF at `path` (tests give
    /// other kernels' BTF).
    pub(crate) fn with_btf(path: &Path) -> Self {
        Self {
            release: kernel_release(),
            btf: Btf::from_path(path).ok(),
            privileged: privileged(),
        }
    }

    pub fn has_btf(&self) -> bool {
        self.btf.is_some()
    }

    /// Whether the kernel has tracepoint `name` (None: no BTF to tell).
    pub fn has_tracepoint(&self, name: &str) -> Option<bool> {
        let typedef = format!("btf_trace_{name}");
        self.btf
            .as_ref()
            .map(|b| b.type_by_name::<Typedef<'_>>(&typedef).is_some())
    }

    /// The size of kernel struct `name`, from its BTF (None: not there).
    pub fn struct_size(&self, name: &str) -> Option<usize> {
        use libbpf_rs::btf::types::Struct;
        use libbpf_rs::btf::HasSize;
        self.btf
            .as_ref()?
            .type_by_name::<Struct<'_>>(name)
            .map(|s| s.size())
    }

    /// Whether the kernel has function `name` in its BTF (None: no BTF).
    pub fn has_func(&self, name: &str) -> Option<bool> {
        self.btf
            .as_ref()
            .map(|b| b.type_by_name::<Func<'_>>(name).is_some())
    }

    /// Everything netatopd needs before anything is loaded, so a failure
    /// names the missing piece instead of a verifier log.
    pub fn check(&self) -> Result<(), LoadError> {
        if !self.privileged {
            return Err(LoadError::NotPrivileged);
        }
        self.check_btf()
    }

    /// The BTF part of [`Kernel::check`].
    pub(crate) fn check_btf(&self) -> Result<(), LoadError> {
        if self.btf.is_none() {
            return Err(LoadError::NoBtf);
        }
        for (name, since) in TRACEPOINTS {
            if self.has_tracepoint(name) != Some(true) {
                return Err(LoadError::MissingTracepoint {
                    name,
                    since,
                    kernel: self.release.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether snapshots can be taken in one pass with the open-coded task
    /// iterator (None: no BTF to tell).
    pub fn has_task_iterator(&self) -> Option<bool> {
        self.has_func(TASK_ITERATOR.0)
    }

    /// Why threads' counters cannot live in task-local storage here (None:
    /// they can): the kernel must create BPF_MAP_TYPE_TASK_STORAGE maps
    /// and give tracing programs bpf_task_storage_get() and
    /// bpf_get_current_task_btf(). Probed with libbpf's feature probes
    /// (a kprobe program is loaded, never attached: tracing programs of
    /// every kind share these helpers).
    pub fn task_storage_unavailable(&self) -> Option<String> {
        use libbpf_rs::libbpf_sys as sys;
        // SAFETY: libbpf's probes take no pointers but their null options.
        let map =
            unsafe { sys::libbpf_probe_bpf_map_type(sys::BPF_MAP_TYPE_TASK_STORAGE, ptr::null()) };
        if map != 1 {
            return Some(probe_failure("BPF_MAP_TYPE_TASK_STORAGE maps", map));
        }
        for (helper, name) in [
            (sys::BPF_FUNC_task_storage_get, "bpf_task_storage_get()"),
            (
                sys::BPF_FUNC_get_current_task_btf,
                "bpf_get_current_task_btf()",
            ),
        ] {
            // SAFETY: as above.
            let ok = unsafe {
                sys::libbpf_probe_bpf_helper(sys::BPF_PROG_TYPE_KPROBE, helper, ptr::null())
            };
            if ok != 1 {
                return Some(probe_failure(&format!("{name} in tracing programs"), ok));
            }
        }
        None
    }

    /// Whether a tp_btf program on tracepoint `tp` loads; Err says why not.
    pub fn tp_btf_loads(&self, tp: &str) -> Result<(), String> {
        let btf = self.btf.as_ref().ok_or("the kernel has no BTF")?;
        let id = btf
            .type_by_name::<Typedef<'_>>(&format!("btf_trace_{tp}"))
            .ok_or_else(|| format!("{tp} is not in this kernel's BTF"))?
            .type_id();
        load_tracing_probe(libbpf_rs::libbpf_sys::BPF_TRACE_RAW_TP, id.into())
            .map(drop)
            .map_err(|e| format!("a tp_btf program on {tp} does not load here ({e})"))
    }

    /// Whether a kprobe attaches to kernel function `func`; Err says why not.
    pub fn kprobe_attaches(&self, func: &str) -> Result<(), String> {
        if self.has_func(func) != Some(true) {
            return Err(format!("{func} is not in this kernel's BTF"));
        }
        probe::kprobe_attaches(func)
    }

    /// Whether a BPF iterator program over `target` (`task`,
    /// `bpf_map_elem`) loads: some hosts' security policies refuse some
    /// kinds with EPERM. Err says why not.
    pub fn iterator_loads(&self, target: &str) -> Result<(), String> {
        let btf = self.btf.as_ref().ok_or("the kernel has no BTF")?;
        let func = format!("bpf_iter_{target}");
        // Not the first type of that name: Linux 6.7 also has a struct
        // bpf_iter_task (the open-coded iterator's state).
        let id = btf
            .type_by_name::<Func<'_>>(&func)
            .or_else(|| {
                btf.type_by_kind::<Func<'_>>()
                    .find(|f| f.name().is_some_and(|n| *n == *func))
            })
            .ok_or_else(|| format!("{func} is not in this kernel's BTF"))?
            .type_id();
        load_tracing_probe(libbpf_rs::libbpf_sys::BPF_TRACE_ITER, id.into())
            .map(drop)
            .map_err(|e| format!("a BPF iterator program over {target} does not load here ({e})"))
    }

    /// Whether an fexit program on kernel function `func` loads and
    /// attaches: the kernel must have BPF trampolines on kernel functions
    /// (x86_64 from Linux 5.5; arm64 from 6.4, with ftrace's direct calls:
    /// Debian's arm64 6.1 loads such a program and refuses to attach it;
    /// and not every build or hypervisor allows them) and `func` in its
    /// BTF. Probed with a two-instruction program that does nothing,
    /// attached and detached at once; Err says why not.
    pub fn fexit_loads(&self, func: &str) -> Result<(), String> {
        let btf = self.btf.as_ref().ok_or("the kernel has no BTF")?;
        let id = btf
            .type_by_name::<Func<'_>>(func)
            .ok_or_else(|| format!("{func} is not in this kernel's BTF"))?
            .type_id();
        let prog = load_tracing_probe(libbpf_rs::libbpf_sys::BPF_TRACE_FEXIT, id.into())
            .map_err(|e| format!("an fexit program on {func} does not load here ({e})"))?;
        // SAFETY: a NULL name attaches a tracing program at the function it
        // was loaded for; `prog` is a valid program descriptor.
        let link = unsafe {
            libbpf_rs::libbpf_sys::bpf_raw_tracepoint_open(ptr::null(), prog.as_raw_fd())
        };
        if link < 0 {
            let e = std::io::Error::from_raw_os_error(-link);
            return Err(format!(
                "an fexit program on {func} loads but does not attach here ({e}): the kernel \
                 has no BPF trampolines for kernel functions"
            ));
        }
        // SAFETY: a new descriptor that this function owns; closing it
        // detaches the program.
        drop(unsafe { OwnedFd::from_raw_fd(link) });
        Ok(())
    }
}

/// "no WHAT (Linux 5.13 and later have it)", or the probe's error.
fn probe_failure(what: &str, ret: i32) -> String {
    if ret < 0 {
        format!(
            "probing for {what} failed ({})",
            std::io::Error::from_raw_os_error(-ret)
        )
    } else {
        format!(
            "the kernel has no {what} (Linux {} and later have them)",
            TASK_STORAGE.1
        )
    }
}

/// Loads a two-instruction tracing program (`r0 = 0; exit`) of attach type
/// `attach` on kernel BTF type `btf_id`: its descriptor.
fn load_tracing_probe(
    attach: libbpf_rs::libbpf_sys::bpf_attach_type,
    btf_id: u32,
) -> Result<OwnedFd, std::io::Error> {
    use libbpf_rs::libbpf_sys as sys;
    let insn = |code: u8| sys::bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: sys::bpf_insn::new_bitfield_1(0, 0),
        off: 0,
        imm: 0,
    };
    let insns = [insn(0xb7), insn(0x95)];
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: attach,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    // SAFETY: the strings are NUL-terminated, `insns` holds the two
    // instructions passed and `opts` is a valid options struct of its size.
    let fd = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_TRACING,
            c"netatop_probe".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a new descriptor that this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Whether the effective capabilities include `cap`.
fn has_cap(cap: u32) -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1u64 << cap) != 0)
}

/// Whether the effective capabilities allow loading tracing programs.
fn privileged() -> bool {
    has_cap(CAP_SYS_ADMIN) || (has_cap(CAP_BPF) && has_cap(CAP_PERFMON))
}

/// Whether the effective capabilities allow loading and attaching a
/// cgroup socket program (networking programs need CAP_NET_ADMIN).
pub(crate) fn net_admin() -> bool {
    has_cap(CAP_SYS_ADMIN) || has_cap(CAP_NET_ADMIN)
}

/// The running kernel's release ("6.1.0-27-amd64").
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_btf_is_named_as_such() {
        let k = Kernel::with_btf(Path::new("/nonexistent/vmlinux"));
        let err = k.check_btf().unwrap_err();
        assert!(matches!(err, LoadError::NoBtf));
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn a_kernel_without_the_tracepoints_is_named_as_such() {
        // The programs' own object carries BTF, but no tracepoint typedefs:
        // it stands in for a kernel without tp_btf tracepoints.
        let obj = include_bytes!(concat!(env!("OUT_DIR"), "/netatop.bpf.o"));
        let path = std::env::temp_dir().join(format!("netatop-btf-{}.o", std::process::id()));
        fs::write(&path, obj).unwrap();
        let err = Kernel::with_btf(&path).check_btf().unwrap_err();
        fs::remove_file(&path).unwrap();
        match &err {
            LoadError::MissingTracepoint { name, since, .. } => {
                assert_eq!((*name, *since), ("sched_process_exit", "5.5"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("Linux >= 5.10 with BTF") && msg.contains("sched_process_exit"),
            "{msg}"
        );
    }

    #[test]
    fn this_kernel_passes_the_btf_check() {
        Kernel::probe()
            .check_btf()
            .expect("this machine's kernel must have BTF and the tracepoints");
    }
}
