//! netatopd's BPF programs: checking the kernel, loading and attaching
//! them, reading snapshots from their task iterator and their maps with
//! batched lookups.
//!
//! The record types shared with the BPF side (`types::counters`,
//! `types::proc_val`, ...) are generated from the object's BTF, which is
//! compiled from `src/bpf/netatop.h`: there is no hand-written mirror.

use std::fs;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::ptr;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject, PrintLevel};

mod pin;
/// A snapshot being read from the kernel ([`Tracer::snapshot_iter`]): a
/// BPF iterator's descriptor, read like a file.
pub type SnapshotIter = std::fs::File;
pub use pin::{remove_pins, Pinned, DEFAULT_PIN_DIR};

mod skel {
    #![allow(clippy::all, clippy::pedantic)]
    #![allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
    include!(concat!(env!("OUT_DIR"), "/netatop.skel.rs"));
}

mod empty_skel {
    #![allow(clippy::all, clippy::pedantic)]
    #![allow(non_camel_case_types, non_snake_case, dead_code, unused_imports)]
    include!(concat!(env!("OUT_DIR"), "/empty.skel.rs"));
}

pub use skel::types;
use skel::{NetatopSkel, NetatopSkelBuilder};

/// Kernel pieces netatopd cannot work without, with the release that added them.
const TRACEPOINTS: [(&str, &str); 4] = [
    ("sock_send_length", "6.3"),
    ("sock_recv_length", "6.3"),
    ("sched_process_exit", "4.17"),
    ("sched_process_exec", "4.17"),
];
/// Kernel functions the snapshot program calls, with the release that
/// added them.
const KFUNCS: [(&str, &str); 1] = [("bpf_iter_task_new", "6.7")];
/// The oldest kernel that has all of the above.
const MIN_LINUX: &str = "6.7";
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why the programs could not be loaded; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "netatopd needs root (or the capabilities CAP_BPF and CAP_PERFMON) to load its \
         BPF programs: run it as root"
    )]
    NotPrivileged,
    #[error(
        "the kernel has no BTF ({VMLINUX_BTF} is missing): netatopd needs Linux >= {MIN_LINUX} \
         built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error(
        "the kernel (Linux {kernel}) has no tracepoint {name}, added in Linux {since}: \
         netatopd needs Linux >= {MIN_LINUX} with BTF"
    )]
    MissingTracepoint {
        name: &'static str,
        since: &'static str,
        kernel: String,
    },
    #[error(
        "the kernel (Linux {kernel}) has no BPF task iterator ({name}, added in Linux {since}): \
         netatopd needs Linux >= {MIN_LINUX} with BTF"
    )]
    MissingKfunc {
        name: &'static str,
        since: &'static str,
        kernel: String,
    },
    #[error("cannot use {dir} to pin netatopd's maps and programs: {why}")]
    PinDir { dir: PathBuf, why: String },
    #[error("{stage} the BPF programs: {source}")]
    Libbpf {
        stage: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
}

fn libbpf(stage: &'static str) -> impl FnOnce(libbpf_rs::Error) -> LoadError {
    move |source| LoadError::Libbpf { stage, source }
}

/// Sizes of the kernel maps (entries). Entries are allocated as they are
/// used; each map's bucket array (16 bytes per entry of its size) up front.
/// The defaults keep that small (about 1 MiB of kernel memory with 1,000
/// processes) and are raised with netatopd's --max-* options where more
/// must be counted at once.
#[derive(Debug, Clone, Copy)]
pub struct MapSizes {
    pub threads: u32,
    pub procs: u32,
    pub exited: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            threads: 16384,
            procs: 16384,
            // Only counted processes publish exits: the size of `procs`
            // holds even all of them exiting at once.
            exited: 16384,
        }
    }
}

/// Counters of rare events in the kernel (a copy of `types::netatop_stats`).
pub type KernelStats = types::netatop_stats;

/// Whether the effective capabilities allow loading tracing programs.
fn privileged() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Checks privileges, BTF and the tracepoints before anything is loaded,
/// so a failure names the missing piece instead of a verifier log.
pub fn check_kernel() -> Result<(), LoadError> {
    if !privileged() {
        return Err(LoadError::NotPrivileged);
    }
    check_btf(Path::new(VMLINUX_BTF))
}

/// Checks that the kernel BTF at `path` exists and describes every
/// tracepoint the programs attach to and every kernel function they call.
fn check_btf(path: &Path) -> Result<(), LoadError> {
    if !path.exists() {
        return Err(LoadError::NoBtf);
    }
    let btf = libbpf_rs::Btf::from_path(path).map_err(|_| LoadError::NoBtf)?;
    for (name, since) in TRACEPOINTS {
        let typedef = format!("btf_trace_{name}");
        if btf
            .type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(&typedef)
            .is_none()
        {
            return Err(LoadError::MissingTracepoint {
                name,
                since,
                kernel: kernel_release(),
            });
        }
    }
    for (name, since) in KFUNCS {
        if btf
            .type_by_name::<libbpf_rs::btf::types::Func<'_>>(name)
            .is_none()
        {
            return Err(LoadError::MissingKfunc {
                name,
                since,
                kernel: kernel_release(),
            });
        }
    }
    Ok(())
}

/// Whether an fexit program on kernel function `func` loads: the kernel
/// must have BPF trampolines (x86_64 from Linux 5.5, arm64 from 6.0, and
/// not every build or hypervisor allows them) and `func` in its BTF.
/// Probed by loading a two-instruction program, as bcc's libbpf-tools
/// do; Err says why not.
pub fn fexit_loads(btf: &libbpf_rs::Btf, func: &str) -> Result<(), String> {
    use libbpf_rs::libbpf_sys as sys;
    let id = btf
        .type_by_name::<libbpf_rs::btf::types::Func<'_>>(func)
        .ok_or_else(|| format!("{func} is not in this kernel's BTF"))?
        .type_id();
    let insn = |code: u8, imm: i32| sys::bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: sys::bpf_insn::new_bitfield_1(0, 0),
        off: 0,
        imm,
    };
    // r0 = 0; exit
    let insns = [insn(0xb7, 0), insn(0x95, 0)];
    let mut opts = sys::bpf_prog_load_opts {
        sz: size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: sys::BPF_TRACE_FEXIT,
        attach_btf_id: id.into(),
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
        let e = std::io::Error::from_raw_os_error(-fd);
        return Err(format!(
            "an fexit program on {func} does not load here ({e})"
        ));
    }
    // SAFETY: a descriptor this call owns.
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// Hooks that count what the socket tracepoints do not see; each is used
/// where the kernel loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extras {
    /// TCP received with splice() (fexit on tcp_splice_read); Err: why not.
    pub splice_read: Result<(), String>,
}

impl Extras {
    pub fn probe() -> Self {
        let splice_read = libbpf_rs::Btf::from_path(VMLINUX_BTF)
            .map_err(|e| format!("no kernel BTF ({e})"))
            .and_then(|btf| fexit_loads(&btf, "tcp_splice_read"));
        Self { splice_read }
    }
}

impl std::fmt::Display for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.splice_read {
            Ok(()) => f.write_str("spliced TCP receives: fexit on tcp_splice_read"),
            Err(why) => write!(f, "spliced TCP receives: not counted: {why}"),
        }
    }
}

/// What the running kernel offers netatopd, for `--version` and bug
/// reports. Probing loads nothing that stays: only libbpf's own tiny test
/// program, and only with the privileges to do so.
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
        let privileged = privileged();
        let btf = libbpf_rs::Btf::from_path(VMLINUX_BTF).ok();
        let tracepoints = TRACEPOINTS
            .iter()
            .map(|&(name, _)| {
                let typedef = format!("btf_trace_{name}");
                let found = btf.as_ref().map(|b| {
                    b.type_by_name::<libbpf_rs::btf::types::Typedef<'_>>(&typedef)
                        .is_some()
                });
                (name, found)
            })
            .collect();
        let task_iterator = btf.as_ref().map(|b| {
            KFUNCS.iter().all(|(name, _)| {
                b.type_by_name::<libbpf_rs::btf::types::Func<'_>>(name)
                    .is_some()
            })
        });
        let tracing_programs = (privileged && btf.is_some()).then(EmptyProbe::loads);
        let extras = (privileged && btf.is_some()).then(Extras::probe);
        let jit = fs::read_to_string("/proc/sys/net/core/bpf_jit_enable")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Self {
            kernel: kernel_release(),
            btf: btf.is_some(),
            tracepoints,
            task_iterator,
            tracing_programs,
            extras,
            privileged,
            jit,
            bpffs: pin::on_bpffs(Path::new("/sys/fs/bpf")).unwrap_or(false),
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
        writeln!(f, "kernel: Linux {}", self.kernel)?;
        writeln!(f, "  BTF ({VMLINUX_BTF}): {}", yes(self.btf))?;
        let tps: Vec<String> = self
            .tracepoints
            .iter()
            .map(|(name, found)| {
                let state = match found {
                    Some(b) => yes(*b),
                    None => "unknown",
                };
                format!("{name} {state}")
            })
            .collect();
        writeln!(f, "  tracepoints: {}", tps.join(", "))?;
        let iter = match self.task_iterator {
            Some(b) => yes(b),
            None => "unknown",
        };
        writeln!(
            f,
            "  BPF task iterator (bpf_iter_task_new, Linux 6.7): {iter}"
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
            "netatopd cannot count on this kernel (it needs Linux >= 6.7 with BTF)"
        } else if !self.privileged {
            "netatopd can count on this kernel, run as root"
        } else {
            "netatopd can count on this kernel"
        };
        write!(f, "  verdict: {verdict}")
    }
}

/// Routes libbpf's own messages into the `log` facade.
pub fn route_libbpf_logs() {
    fn print(level: PrintLevel, msg: String) {
        let msg = msg.trim_end();
        match level {
            PrintLevel::Warn => log::warn!(target: "libbpf", "{msg}"),
            PrintLevel::Info => log::debug!(target: "libbpf", "{msg}"),
            PrintLevel::Debug => log::trace!(target: "libbpf", "{msg}"),
        }
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, print)));
}

/// Plain integer records: every bit pattern is a valid value.
///
/// # Safety
/// Implementors must be `repr(C)` structs (or integers) made only of
/// integer fields and arrays of them.
unsafe trait Pod: Copy + Default {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::thread_val {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::proc_val {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::exit_key {}
// SAFETY: generated from netatop.h; integer fields only.
unsafe impl Pod for types::exit_val {}
// SAFETY: an integer.
unsafe impl Pod for u32 {}

/// Reads a whole hash map with BPF_MAP_LOOKUP_BATCH (or its delete
/// variant), appending to `keys`/`vals`.
///
/// The kernel returns short batches in the middle of a map whenever the
/// next bucket does not fit; only ENOENT means the end.
fn read_batched<K: Pod, V: Pod>(
    fd: BorrowedFd<'_>,
    delete: bool,
    keys: &mut Vec<K>,
    vals: &mut Vec<V>,
) -> std::io::Result<()> {
    let mut chunk: u32 = 1024;
    // The batch token of hash maps is a u32 bucket index; u64 leaves room.
    let mut token_in: u64 = 0;
    let mut token_out: u64 = 0;
    let mut first = true;
    let batch_op = if delete {
        libbpf_rs::libbpf_sys::bpf_map_lookup_and_delete_batch
    } else {
        libbpf_rs::libbpf_sys::bpf_map_lookup_batch
    };
    let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
        sz: size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    loop {
        keys.reserve(chunk as usize);
        vals.reserve(chunk as usize);
        let mut count = chunk;
        let in_ptr = if first {
            ptr::null_mut()
        } else {
            ptr::addr_of_mut!(token_in).cast()
        };
        let out_ptr = ptr::addr_of_mut!(token_out).cast();
        let key_ptr = keys.spare_capacity_mut().as_mut_ptr().cast();
        let val_ptr = vals.spare_capacity_mut().as_mut_ptr().cast();
        // SAFETY: `keys` and `vals` have room for `count` more elements, whose
        // sizes equal the map's key and value sizes (checked at load); the
        // tokens are 8 bytes, more than the 4 the kernel writes for hash maps.
        let ret = unsafe {
            batch_op(
                fd.as_raw_fd(),
                in_ptr,
                out_ptr,
                key_ptr,
                val_ptr,
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err == 0 || err == libc::ENOENT {
            let n = count.min(chunk) as usize;
            // SAFETY: the kernel initialised `count` (<= chunk) elements of
            // plain-integer types in the spare capacity.
            unsafe {
                keys.set_len(keys.len() + n);
                vals.set_len(vals.len() + n);
            }
        }
        match err {
            0 => {}
            libc::ENOENT => return Ok(()),
            // One bucket holds more entries than `count`: retry, larger.
            libc::ENOSPC => {
                chunk = chunk.saturating_mul(2);
                continue;
            }
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
        token_in = token_out;
        first = false;
    }
}

/// Loaded and attached programs, pinned with their maps under a bpffs
/// directory. Dropping it closes them: the programs stop counting unless
/// they are still pinned (see [`Tracer::unpin`]).
pub struct Tracer {
    skel: NetatopSkel<'static>,
    links: Vec<Link>,
    /// The snapshot iterator (iter/task); never pinned, made at each start.
    snapshot: Option<Link>,
    pin_dir: PathBuf,
    created_ns: u64,
    extras: Extras,
}

impl Tracer {
    /// Loads the programs with the given map sizes, attaches them and pins
    /// them under `pin_dir`; or adopts what an earlier netatopd pinned
    /// there, when it is compatible. Says which it did.
    pub fn load(sizes: MapSizes, pin_dir: &Path) -> Result<(Self, Pinned), LoadError> {
        check_kernel()?;
        pin::prepare_dir(pin_dir)?;
        let pin_err = |why: String| LoadError::PinDir {
            dir: pin_dir.to_owned(),
            why,
        };
        // The skeleton borrows its object for as long as it lives; the
        // daemon keeps one for its whole life, so the object is leaked
        // (a few hundred bytes) rather than made self-referential.
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = NetatopSkelBuilder::default()
            .open(object)
            .map_err(libbpf("opening"))?;
        let m = &mut open.maps;
        m.threads
            .set_max_entries(sizes.threads)
            .map_err(libbpf("sizing"))?;
        m.procs
            .set_max_entries(sizes.procs)
            .map_err(libbpf("sizing"))?;
        m.exited
            .set_max_entries(sizes.exited)
            .map_err(libbpf("sizing"))?;
        let pinned = pin::inspect(pin_dir, sizes, m.bss.value_size());
        if let Pinned::Discarded(_) = pinned {
            pin::remove_pins(pin_dir)
                .and_then(|_| fs::DirBuilder::new().mode(0o700).create(pin_dir))
                .map_err(|e| pin_err(format!("cannot remove unusable pinned state: {e}")))?;
        }
        // Attached below in every case, adopted or not.
        open.progs.netatop_snapshot.set_autoattach(false);
        let extras = Extras::probe();
        if extras.splice_read.is_err() {
            open.progs.netatop_splice_read.set_autoload(false);
        }
        let adopt = matches!(pinned, Pinned::Adopted | Pinned::ProgramsReplaced);
        if adopt {
            let maps = [
                &mut m.threads,
                &mut m.procs,
                &mut m.exited,
                &mut m.bss,
                &mut m.meta,
            ];
            for (name, map) in pin::MAPS.into_iter().zip(maps) {
                map.reuse_pinned_map(pin_dir.join(name))
                    .map_err(libbpf("adopting the pinned maps of"))?;
            }
        }
        if pinned == Pinned::Adopted {
            // The pinned programs go on counting; these are not needed.
            let p = &mut open.progs;
            for prog in [
                &mut p.netatop_send,
                &mut p.netatop_recv,
                &mut p.netatop_exit,
                &mut p.netatop_exec,
                &mut p.netatop_splice_read,
            ] {
                prog.set_autoload(false);
            }
        }
        let skel = open.load().map_err(libbpf("loading"))?;
        let snapshot = skel
            .progs
            .netatop_snapshot
            .attach()
            .map_err(libbpf("attaching the snapshot iterator of"))?;
        let mut tracer = Self {
            skel,
            links: Vec::new(),
            snapshot: Some(snapshot),
            pin_dir: pin_dir.to_owned(),
            created_ns: 0,
            extras,
        };
        tracer.check_layouts();
        if adopt {
            tracer.created_ns = pin::read_meta(&tracer.skel.maps.meta)
                .map_err(|e| pin_err(format!("cannot read the pinned meta map: {e}")))?
                .created_ns;
        }
        if pinned == Pinned::Adopted {
            for name in pin::LINKS {
                let path = pin_dir.join(name);
                if !path.exists() && pin::OPTIONAL_LINKS.contains(&name) {
                    continue;
                }
                let link = Link::open(path).map_err(libbpf("adopting the links of"))?;
                tracer.links.push(link);
            }
            return Ok((tracer, pinned));
        }
        if pinned == Pinned::ProgramsReplaced {
            // The old programs stop here; the new ones start a few
            // microseconds later.
            pin::remove_links(pin_dir)
                .map_err(|e| pin_err(format!("cannot remove the pinned links: {e}")))?;
        } else {
            tracer.created_ns = boottime_ns();
        }
        tracer.attach_and_pin(!adopt).map_err(|e| match e {
            PinError::Libbpf(e) => libbpf("attaching")(e),
            PinError::Pin(what, e) => pin_err(format!("cannot pin {what}: {e}")),
        })?;
        Ok((tracer, pinned))
    }

    /// Attaches the programs and pins the links, and the maps when they
    /// are new, `meta` last.
    fn attach_and_pin(&mut self, new_maps: bool) -> Result<(), PinError> {
        self.skel.attach().map_err(PinError::Libbpf)?;
        let l = &mut self.skel.links;
        let links = [
            l.netatop_send.take(),
            l.netatop_recv.take(),
            l.netatop_exit.take(),
            l.netatop_exec.take(),
            l.netatop_splice_read.take(),
        ];
        for (name, link) in pin::LINKS.into_iter().zip(links) {
            // Optional programs the kernel cannot load are not attached.
            let Some(mut link) = link else {
                assert!(
                    pin::OPTIONAL_LINKS.contains(&name),
                    "the skeleton attaches every required program"
                );
                continue;
            };
            link.pin(self.pin_dir.join(name))
                .map_err(|e| PinError::Pin(name, e))?;
            self.links.push(link);
        }
        let m = &mut self.skel.maps;
        m.meta
            .update(
                &0u32.to_ne_bytes(),
                &pin::meta_value(self.created_ns),
                MapFlags::ANY,
            )
            .map_err(|e| PinError::Pin(pin::META, e))?;
        if new_maps {
            let maps = [
                &mut m.threads,
                &mut m.procs,
                &mut m.exited,
                &mut m.bss,
                &mut m.meta,
            ];
            for (name, map) in pin::MAPS.into_iter().zip(maps) {
                map.pin(self.pin_dir.join(name))
                    .map_err(|e| PinError::Pin(name, e))?;
            }
        }
        Ok(())
    }

    /// Removes the pins: the programs stop when this Tracer is dropped.
    pub fn unpin(&self) -> std::io::Result<usize> {
        pin::remove_pins(&self.pin_dir)
    }

    /// The optional hooks in use, and why the others are not.
    pub fn extras(&self) -> &Extras {
        &self.extras
    }

    /// Where the maps and links are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// When counting started (CLOCK_BOOTTIME ns), by this netatopd or by
    /// the one whose pinned state it adopted.
    pub fn counting_since_ns(&self) -> u64 {
        self.created_ns
    }

    /// The generated types must match the maps byte for byte.
    fn check_layouts(&self) {
        let m = &self.skel.maps;
        let check = |name: &str, map: &libbpf_rs::MapMut<'_>, k: usize, v: usize| {
            assert_eq!(
                (map.key_size() as usize, map.value_size() as usize),
                (k, v),
                "layout of map {name} differs from its generated type"
            );
        };
        check(
            "threads",
            &m.threads,
            size_of::<u32>(),
            size_of::<types::thread_val>(),
        );
        check(
            "procs",
            &m.procs,
            size_of::<u32>(),
            size_of::<types::proc_val>(),
        );
        check(
            "exited",
            &m.exited,
            size_of::<types::exit_key>(),
            size_of::<types::exit_val>(),
        );
        check(
            "meta",
            &m.meta,
            size_of::<u32>(),
            size_of::<types::netatop_meta>(),
        );
    }

    /// A snapshot from the kernel, read as it is produced: one 96-byte
    /// record per counted process, its live threads summed in the kernel
    /// and its totals never lower than the last snapshot's, laid out like
    /// [`netatop_protocol::NetPerTask`] with the start time (ns since boot)
    /// in place of `btime`.
    pub fn snapshot_iter(&self) -> std::io::Result<SnapshotIter> {
        let link = self.snapshot.as_ref().expect("attached at load");
        // SAFETY: bpf_iter_create only reads the link's descriptor, which
        // `link` keeps open for the call.
        let fd = unsafe { libbpf_rs::libbpf_sys::bpf_iter_create(link.as_fd().as_raw_fd()) };
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(-fd));
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(std::fs::File::from(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }))
    }

    /// All process entries (appended).
    pub fn read_procs(
        &self,
        keys: &mut Vec<u32>,
        vals: &mut Vec<types::proc_val>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.procs.as_fd(), false, keys, vals)
    }

    /// All thread entries (appended).
    pub fn read_threads(
        &self,
        keys: &mut Vec<u32>,
        vals: &mut Vec<types::thread_val>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.threads.as_fd(), false, keys, vals)
    }

    /// Takes the final totals of exited processes out of the kernel
    /// (appended); each is returned exactly once.
    pub fn drain_exited(
        &self,
        keys: &mut Vec<types::exit_key>,
        vals: &mut Vec<types::exit_val>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.exited.as_fd(), true, keys, vals)
    }

    /// Rare-event counters kept by the programs.
    pub fn stats(&self) -> KernelStats {
        match self.skel.maps.bss_data.as_deref() {
            // SAFETY: the .bss map is mmapped for the skeleton's lifetime; a
            // volatile copy reads the counters the programs update in place.
            Some(bss) => unsafe { ptr::read_volatile(ptr::addr_of!(bss.stats)) },
            None => KernelStats::default(),
        }
    }

    /// Kernel memory charged to the maps: the `memlock` of each map's
    /// /proc/self/fdinfo entry.
    pub fn map_memory(&self) -> std::io::Result<u64> {
        let m = &self.skel.maps;
        let fds = [
            m.threads.as_fd(),
            m.procs.as_fd(),
            m.exited.as_fd(),
            m.bss.as_fd(),
            m.meta.as_fd(),
        ];
        let mut total = 0;
        for fd in fds {
            let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
            total += info
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Map sizes as loaded.
    pub fn map_sizes(&self) -> MapSizes {
        let m = &self.skel.maps;
        MapSizes {
            threads: m.threads.max_entries(),
            procs: m.procs.max_entries(),
            exited: m.exited.max_entries(),
        }
    }
}

/// Programs that do nothing, attached to the tracepoints netatopd uses: the
/// benchmarks' floor for the cost of any tp_btf program. Detached when
/// dropped; never pinned.
pub struct EmptyProbe {
    _skel: empty_skel::EmptySkel<'static>,
}

impl EmptyProbe {
    /// Whether the do-nothing programs load (pass the verifier), without
    /// attaching them: tells whether this kernel runs tp_btf programs on
    /// the socket tracepoints at all.
    pub fn loads() -> bool {
        let mut object = MaybeUninit::uninit();
        let Ok(open) = empty_skel::EmptySkelBuilder::default().open(&mut object) else {
            return false;
        };
        let loaded = open.load().is_ok();
        loaded
    }

    pub fn attach() -> Result<Self, LoadError> {
        check_kernel()?;
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = empty_skel::EmptySkelBuilder::default()
            .open(object)
            .map_err(libbpf("opening"))?;
        let mut skel = open.load().map_err(libbpf("loading"))?;
        skel.attach().map_err(libbpf("attaching"))?;
        Ok(Self { _skel: skel })
    }
}

enum PinError {
    Libbpf(libbpf_rs::Error),
    Pin(&'static str, libbpf_rs::Error),
}

/// A clock in nanoseconds.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clocks netatopd uses
    // (BOOTTIME, REALTIME) always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_BOOTTIME in nanoseconds: the clock of the programs' timestamps.
pub fn boottime_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// A kernel `comm` array as bytes.
pub fn comm_bytes(comm: &[i8; 16]) -> [u8; 16] {
    comm.map(|c| c as u8)
}

impl From<types::counters> for netatop_protocol::Counters {
    fn from(c: types::counters) -> Self {
        Self {
            tcpsndpacks: c.tcpsndpacks,
            tcpsndbytes: c.tcpsndbytes,
            tcprcvpacks: c.tcprcvpacks,
            tcprcvbytes: c.tcprcvbytes,
            udpsndpacks: c.udpsndpacks,
            udpsndbytes: c.udpsndbytes,
            udprcvpacks: c.udprcvpacks,
            udprcvbytes: c.udprcvbytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_btf_is_named_as_such() {
        let err = check_btf(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(matches!(err, LoadError::NoBtf));
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn a_kernel_without_the_tracepoints_is_named_as_such() {
        // The programs' own object carries BTF, but no tracepoint typedefs:
        // it stands in for a kernel older than 6.3.
        let obj = include_bytes!(concat!(env!("OUT_DIR"), "/netatop.bpf.o"));
        let path = std::env::temp_dir().join(format!("netatop-btf-{}.o", std::process::id()));
        fs::write(&path, obj).unwrap();
        let err = check_btf(&path).unwrap_err();
        fs::remove_file(&path).unwrap();
        match &err {
            LoadError::MissingTracepoint { name, since, .. } => {
                assert_eq!((*name, *since), ("sock_send_length", "6.3"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("Linux >= 6.7 with BTF") && msg.contains("sock_send_length"),
            "{msg}"
        );
    }

    #[test]
    fn this_kernel_passes_the_btf_check() {
        check_btf(Path::new(VMLINUX_BTF))
            .expect("this machine's kernel must have BTF and the tracepoints");
    }
}
