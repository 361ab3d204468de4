//! Pinned state under bpffs: the maps and links outlive netatopd, so
//! counting goes on while it is down, and the next netatopd adopts them.
//!
//! A pin directory holds the maps (their pin names in the table of
//! `crate::maps`) and one link per attached program (their hooks' pin
//! names). `meta` is pinned last: a directory without it is left over from
//! an interrupted start and is discarded.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::error::LoadError;
use crate::maps;
use crate::options::ThreadStore;
use crate::pin_dir;
use crate::plan::Plan;
use crate::skel::types;
use crate::wire::Count;

include!(concat!(env!("OUT_DIR"), "/fingerprint.rs"));

/// Where netatopd pins its maps and links unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/netatopd";
/// The conventional bpffs mount point, mounted when it is missing.
const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Pin names of links start with this.
const LINK_PREFIX: &str = "link_";

/// What a start found in the pin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// Nothing was pinned: counting starts now.
    Nothing,
    /// Maps and programs of the same build, still counting, were adopted.
    Adopted,
    /// The maps were adopted; the pinned programs (another build) were
    /// replaced by this build's.
    ProgramsReplaced,
    /// The pinned state could not be used (the reason) and was removed:
    /// counting starts now.
    Discarded(String),
}

impl std::fmt::Display for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pinned::Nothing => f.write_str("nothing"),
            Pinned::Adopted => f.write_str("adopted"),
            Pinned::ProgramsReplaced => f.write_str("programs replaced"),
            Pinned::Discarded(why) => write!(f, "discarded: {why}"),
        }
    }
}

/// The fingerprints of this build.
pub(crate) fn meta_value(created_ns: u64) -> [u8; 24] {
    let meta = types::netatop_meta {
        layout: LAYOUT,
        build: BUILD,
        created_ns,
    };
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&meta.layout.to_ne_bytes());
    out[8..16].copy_from_slice(&meta.build.to_ne_bytes());
    out[16..].copy_from_slice(&meta.created_ns.to_ne_bytes());
    out
}

pub(crate) fn read_meta(map: &dyn MapCore) -> io::Result<types::netatop_meta> {
    let v = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(io::Error::other)?
        .filter(|v| v.len() == std::mem::size_of::<types::netatop_meta>())
        .ok_or_else(|| io::Error::other("meta map has no entry of the expected size"))?;
    let word = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    Ok(types::netatop_meta {
        layout: word(0),
        build: word(1),
        created_ns: word(2),
    })
}

pub(crate) fn on_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: all-zero bytes are a valid statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Makes `dir` a directory on bpffs, mounting bpffs at /sys/fs/bpf first
/// when `dir` lies beneath it and nothing is mounted there.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), LoadError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| LoadError::PinDir {
            dir: dir.to_owned(),
            why: "it has no parent directory".into(),
        })?;
    let err = |why: String| LoadError::PinDir {
        dir: dir.to_owned(),
        why,
    };
    if dir.starts_with(BPFFS) && !on_bpffs(Path::new(BPFFS)).map_err(|e| err(e.to_string()))? {
        mount_bpffs().map_err(|e| err(format!("cannot mount bpffs on {BPFFS}: {e}")))?;
        log::info!("mounted bpffs on {BPFFS}");
    }
    if !on_bpffs(parent).map_err(|e| err(format!("{}: {e}", parent.display())))? {
        return Err(err(format!(
            "{} is not on a bpf filesystem (mount -t bpf bpf {})",
            parent.display(),
            parent.display()
        )));
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match pin_dir::foreign(dir) {
            None => Ok(()),
            Some(why) => Err(err(format!(
                "{why}: it is not netatopd's pin directory, and nothing in it was touched; give \
                 another --pin-dir"
            ))),
        },
        Err(e) => Err(err(e.to_string())),
    }
}

fn mount_bpffs() -> io::Result<()> {
    let c = |s: &str| CString::new(s).expect("no NUL");
    let (src, target, fstype, opts) = (c("bpf"), c(BPFFS), c("bpf"), c("mode=0700"));
    // SAFETY: every argument is a NUL-terminated string that outlives the call.
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the pinned state in `dir` can be adopted by this build with
/// `plan`'s maps, attaching programs whose links are pinned as `links`.
pub(crate) fn inspect(dir: &Path, plan: &Plan, links: &[&str]) -> Pinned {
    let entries: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Pinned::Nothing,
    };
    if entries.is_empty() {
        return Pinned::Nothing;
    }
    match check(dir, plan) {
        Err(why) => Pinned::Discarded(why),
        Ok(false) => Pinned::ProgramsReplaced,
        // The same build attached the same programs: they go on. Another
        // set (another attach mode, another kernel) is replaced.
        Ok(true) => {
            let mut pinned: Vec<String> = entries
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| n.starts_with(LINK_PREFIX))
                .collect();
            let mut want: Vec<String> = links.iter().map(|l| (*l).to_owned()).collect();
            pinned.sort();
            want.sort();
            if pinned == want {
                Pinned::Adopted
            } else {
                Pinned::ProgramsReplaced
            }
        }
    }
}

/// Ok(same build) when the maps are compatible, else why not.
fn check(dir: &Path, plan: &Plan) -> Result<bool, String> {
    let open = |name: &str| {
        MapHandle::from_pinned_path(dir.join(name))
            .map_err(|e| format!("pinned map {name} cannot be opened ({e}): an interrupted start"))
    };
    let meta = read_meta(&open(maps::META.pin_name())?)
        .map_err(|e| format!("{e}: another record layout"))?;
    if meta.layout != LAYOUT {
        return Err(format!(
            "it was made by a netatopd with another record layout ({:016x}, this one {LAYOUT:016x})",
            meta.layout
        ));
    }
    for name in maps::common_pins() {
        if !dir.join(name).exists() {
            return Err(format!(
                "map {name} is not pinned: it was made by another netatopd version"
            ));
        }
    }
    match (plan.count, dir.join(maps::NETNS_WIRE.pin_name()).exists()) {
        (Count::Calls, true) => {
            return Err(
                "its counters count what the wire carries; this start counts socket \
                        calls"
                    .into(),
            )
        }
        (Count::Wire, false) => {
            return Err(
                "its counters count socket calls; this start counts what the wire \
                        carries"
                    .into(),
            )
        }
        _ => {}
    }
    let threads = open(maps::THREADS.pin_name())?;
    match (plan.store, threads.map_type()) {
        (ThreadStore::TaskStorage, libbpf_rs::MapType::TaskStorage) => {}
        (ThreadStore::HashMap, libbpf_rs::MapType::Hash) => {}
        (ThreadStore::TaskStorage, _) => {
            return Err(
                "its threads' counters are in a hash map; this start keeps them in \
                        task-local storage"
                    .into(),
            )
        }
        (ThreadStore::HashMap, _) => {
            return Err(
                "its threads' counters are in task-local storage; this start keeps \
                        them in a hash map"
                    .into(),
            )
        }
    }
    // Each map sized by an option (the threads' hash map first), then the
    // statistics.
    for (spec, name) in maps::pinned_by(plan) {
        if let Some((entries, Some(option))) = spec.entries(plan) {
            let map = open(name)?;
            if map.max_entries() != entries {
                return Err(format!(
                    "map {name} has {} entries and {} asks for {entries}",
                    map.max_entries(),
                    option.flag()
                ));
            }
        }
    }
    let stats = open(maps::STATS.pin_name())?;
    if stats.value_size() as usize != maps::STATS.layout.value {
        return Err("its statistics have another layout".into());
    }
    Ok(meta.build == BUILD)
}

/// Removes the pinned links in `dir` (whatever build pinned them): their
/// programs stop when no process holds them any more.
pub(crate) fn remove_links(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(LINK_PREFIX.as_bytes()))
        {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Removes what a fresh start pinned under a directory, and the directory,
/// when dropped before [`UndoFreshStart::done`]: a start that fails half
/// way leaves nothing behind. An adopting start owns nothing to remove.
pub(crate) struct UndoFreshStart<'a> {
    dir: &'a Path,
    armed: bool,
}

impl<'a> UndoFreshStart<'a> {
    pub(crate) fn new(dir: &'a Path, fresh: bool) -> Self {
        Self { dir, armed: fresh }
    }

    pub(crate) fn done(&mut self) {
        self.armed = false;
    }
}

impl Drop for UndoFreshStart<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_pins(self.dir) {
                log::warn!("cannot remove what the failed start pinned: {e}");
            }
        }
    }
}

/// Removes every pinned object in `dir` and `dir` itself. Programs whose
/// links are no longer pinned stop when no process holds them any more.
/// Returns how many objects were unpinned. A directory that is not
/// netatopd's (`pin_dir::foreign`) is refused, and nothing in it removed.
pub fn remove_pins(dir: &Path) -> io::Result<usize> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        _ => {}
    }
    if let Some(why) = pin_dir::foreign(dir) {
        return Err(io::Error::other(format!(
            "{why}: it is not netatopd's pin directory; nothing in it was removed"
        )));
    }
    let rd = fs::read_dir(dir)?;
    let mut n = 0;
    for entry in rd {
        let path = entry?.path();
        fs::remove_file(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        n += 1;
    }
    fs::remove_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    Ok(n)
}
