//! Loading, attaching and pinning the programs, or adopting what an
//! earlier netatopd pinned; and the [`Tracer`] that holds them.
//!
//! Every map and every link has a pin name (the table [`maps`] and the
//! hooks of [`crate::attach`]); what a start does depends on what it finds
//! pinned ([`Pinned`]), in one `match`.

use std::fs::{self, File};
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::ptr;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};

use crate::attach::{Extras, Hook, Mode, COMMON};
use crate::batch::read_batched;
use crate::kernel::Kernel;
use crate::pin::{self, Pinned};
use crate::skel::{types, NetatopSkel, NetatopSkelBuilder};
use crate::wire::{self, Count};
use crate::{libbpf, LoadError};

/// The names the maps are pinned under; `meta` last (a directory without
/// it is left over from an interrupted start). `threads` holds the
/// threads' counters, wherever they live ([`ThreadStore`]).
pub(crate) const PINS: [&str; 7] = [
    "threads",
    "procs",
    "exited",
    "stats",
    "cgroups",
    "cgroups_gone",
    pin::META,
];

/// The maps pinned only when counting the wire: sockets' owners,
/// listeners' owners, and the counters per network namespace (whose pin
/// tells a pinned state's counting).
pub(crate) const WIRE_PINS: [(&str, &str); 3] = [
    ("owners", "owners"),
    ("listeners", "listeners"),
    ("netns_wire", pin::WIRE),
];

/// Each pinned map's name in the object and the name it is pinned under,
/// for threads' counters kept in `store` and counting `count`. A name that
/// starts with a dot is a section map (libbpf prefixes it).
pub(crate) fn maps(store: ThreadStore, count: Count) -> Vec<(&'static str, &'static str)> {
    let mut m = vec![
        (store.map(), PINS[0]),
        ("procs", PINS[1]),
        ("exited", PINS[2]),
        (".bss", PINS[3]),
        ("cgroups", PINS[4]),
        ("cgroups_gone", PINS[5]),
    ];
    if count == Count::Wire {
        m.extend(WIRE_PINS);
    }
    // meta last.
    m.push(("meta", PINS[6]));
    m
}

/// Maps of one start only, never pinned: nothing in them outlives a
/// netatopd (calls in flight of the kprobe way, the map walk's sums, IPv4
/// fragments awaiting their datagram, a removed cgroup's record being
/// built, each CPU's tally of packets received). Each is sized for the way in use, and one entry where it is
/// unused; so is the threads map when task storage holds the threads'
/// counters.
const AUX_MAPS: [&str; 6] = [
    "inflight",
    "walk",
    "walk_stale",
    "frags",
    "gone_scratch",
    "rx_tally",
];

/// The maps only wire counting uses: not created when counting calls.
const WIRE_MAPS: [&str; 5] = ["owners", "listeners", "netns_wire", "frags", "rx_tally"];

/// Where the threads' counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadStore {
    /// In each thread's task-local storage (Linux 5.13+): no capacity to
    /// size, freed with the thread.
    TaskStorage,
    /// In a hash map keyed by thread id, of --max-threads entries.
    HashMap,
}

impl ThreadStore {
    pub const ALL: [ThreadStore; 2] = [ThreadStore::TaskStorage, ThreadStore::HashMap];

    /// The name users see and choose (`--thread-counters`).
    pub fn name(self) -> &'static str {
        match self {
            ThreadStore::TaskStorage => "task-storage",
            ThreadStore::HashMap => "hash-map",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The map in the object that holds them.
    fn map(self) -> &'static str {
        match self {
            ThreadStore::TaskStorage => "tstore",
            ThreadStore::HashMap => "threads",
        }
    }

    /// The best the kernel offers.
    fn best(kernel: &Kernel) -> Self {
        match kernel.task_storage_unavailable() {
            None => ThreadStore::TaskStorage,
            Some(why) => {
                log::debug!("threads' counters in a hash map: {why}");
                ThreadStore::HashMap
            }
        }
    }
}

/// The one-pass snapshot program (task iterator, Linux 6.7+).
const TASK_ITERATOR: &str = "netatop_snapshot";
/// The map-walk snapshot programs, in pass order, and the map each walks
/// (None: the tasks). Pass 2 reads the threads' counters where they live.
fn walk(store: ThreadStore) -> [(&'static str, Option<&'static str>); 3] {
    [
        ("netatop_walk_procs", Some("procs")),
        match store {
            ThreadStore::HashMap => ("netatop_walk_threads", Some("threads")),
            ThreadStore::TaskStorage => ("netatop_walk_tasks", None),
        },
        ("netatop_walk_emit", Some("walk")),
    ]
}
/// Every live thread with counters, from task storage.
const THREAD_ITERATOR: &str = "netatop_threads";
/// Each counted process's cgroup v2 (iter/task).
const CGROUP_ITERATOR: &str = "netatop_cgroup_of";

/// How snapshots are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// One pass over the tasks with the open-coded task iterator (6.7+),
    /// streamed to the client as it is read.
    TaskIterator,
    /// Three passes over the maps (map element iterators, 5.9+), through
    /// the `walk` map: one at a time, so each is read whole.
    MapWalk,
}

impl SnapshotMethod {
    pub const ALL: [SnapshotMethod; 2] = [SnapshotMethod::TaskIterator, SnapshotMethod::MapWalk];

    /// The name users see and choose (`--snapshot`).
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMethod::TaskIterator => "task-iterator",
            SnapshotMethod::MapWalk => "map-walk",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Why this kernel cannot take snapshots this way (None: it can): it
    /// lacks the task iterator, or refuses the iterator programs (some
    /// hosts' security policies refuse map iterators with EPERM).
    pub fn unavailable(self, kernel: &Kernel) -> Option<String> {
        match self {
            SnapshotMethod::TaskIterator if kernel.has_task_iterator() != Some(true) => {
                Some(format!(
                    "the kernel has no open-coded task iterator ({}, Linux {} and later have it)",
                    crate::kernel::TASK_ITERATOR.0,
                    crate::kernel::TASK_ITERATOR.1
                ))
            }
            SnapshotMethod::TaskIterator => kernel.iterator_loads("task").err(),
            SnapshotMethod::MapWalk => kernel.iterator_loads("bpf_map_elem").err(),
        }
    }

    /// The first way this kernel takes; Err says why each cannot.
    pub fn best(kernel: &Kernel) -> Result<Self, String> {
        let mut why = Vec::new();
        for m in Self::ALL {
            match m.unavailable(kernel) {
                None => return Ok(m),
                Some(w) => why.push(format!("{}: {w}", m.name())),
            }
        }
        Err(why.join("; "))
    }
}

/// What a start asks for; None: the best the kernel offers.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub sizes: MapSizes,
    pub attach: Option<Mode>,
    pub snapshot: Option<SnapshotMethod>,
    pub threads: Option<ThreadStore>,
    pub count: Count,
}

fn is_map(name: &std::ffi::OsStr, key: &str) -> bool {
    let name = name.to_string_lossy();
    if key.starts_with('.') {
        name.ends_with(key)
    } else {
        name == key
    }
}

/// Sizes of the kernel maps (entries). Entries are allocated as they are
/// used; each map's bucket array (16 bytes per entry of its size) up front.
/// The defaults hold the processes of large hosts (about 1 MiB per map
/// idle, whatever the number of CPUs); --max-* options change them. The
/// threads map is used only where task storage is not available to
/// tracing programs (before Linux 5.13).
#[derive(Debug, Clone, Copy)]
pub struct MapSizes {
    pub threads: u32,
    pub procs: u32,
    pub exited: u32,
    /// Cgroups with exited processes' totals, and removed cgroups' final
    /// totals awaiting collection.
    pub cgroups: u32,
    pub removed_cgroups: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            threads: 65536,
            procs: 65536,
            // Only counted processes publish exits: the size of `procs`
            // holds even all of them exiting at once.
            exited: 65536,
            cgroups: 16384,
            // Collected within a second of their removal.
            removed_cgroups: 4096,
        }
    }
}

impl MapSizes {
    /// The size of map `map` for way `mode`, snapshots `snapshot` and
    /// threads' counters in `store`: calls in flight (kprobes) are at most
    /// one per thread and hooked function; a map walk holds a sum per
    /// process and those of processes gone since the last walk.
    fn of(
        &self,
        map: &str,
        mode: Mode,
        snapshot: SnapshotMethod,
        store: ThreadStore,
    ) -> Option<u32> {
        let walk = snapshot == SnapshotMethod::MapWalk;
        match map {
            "threads" if store == ThreadStore::HashMap => Some(self.threads),
            "threads" => Some(1),
            "procs" => Some(self.procs),
            "exited" => Some(self.exited),
            "cgroups" => Some(self.cgroups),
            "cgroups_gone" => Some(self.removed_cgroups),
            "inflight" if mode == Mode::Kprobe => Some(self.threads),
            "walk" if walk => Some(self.procs.saturating_mul(2)),
            "walk_stale" if walk => Some(self.procs),
            "inflight" | "walk" | "walk_stale" => Some(1),
            _ => None,
        }
    }
}

/// Counters of rare events in the kernel (a copy of `types::netatop_stats`).
pub type KernelStats = types::netatop_stats;

/// A snapshot being read from the kernel ([`Tracer::snapshot`]): one
/// `struct snapshot_rec` per counted process, read like a file from a BPF
/// iterator as the kernel walks the tasks.
pub struct Snapshot(File);

impl std::io::Read for Snapshot {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// How the programs are attached on this kernel.
#[derive(Debug, Clone)]
pub struct Attached {
    pub mode: Mode,
    pub extras: Extras,
    pub snapshot: SnapshotMethod,
    pub threads: ThreadStore,
    pub count: Count,
    /// Wire counting: the cgroup v2 root the socket program is attached to.
    pub cgroup: Option<String>,
    /// Links that this kernel cannot pin (kprobes before Linux 5.15): they
    /// stop with netatopd.
    pub unpinned: Vec<&'static str>,
}

impl Attached {
    /// Every program to attach, with its link's pin name.
    fn hooks(&self) -> Vec<Hook> {
        let mut hooks = self.mode.hooks().to_vec();
        hooks.extend(COMMON);
        hooks.extend(self.extras.hooks());
        if self.count == Count::Wire {
            hooks.extend(wire::HOOKS);
            hooks.push(wire::SOCKET_INGRESS);
        }
        hooks
    }
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}); {}; snapshots: {}; thread counters: {}",
            self.mode.name(),
            self.mode.describe(),
            self.extras,
            self.snapshot.name(),
            match self.threads {
                ThreadStore::TaskStorage => "task-local storage",
                ThreadStore::HashMap => "hash map",
            }
        )?;
        write!(
            f,
            "; counting: {} ({})",
            self.count.name(),
            self.count.describe()
        )?;
        if let Some(root) = &self.cgroup {
            write!(f, ", sockets' packets from the cgroup v2 root {root}")?;
        }
        if !self.unpinned.is_empty() {
            write!(
                f,
                "; kprobe links not pinned (Linux 5.15+ pins them): counting stops with netatopd"
            )?;
        }
        Ok(())
    }
}

/// The snapshot programs' links (made at each start, never pinned).
enum Snapshots {
    Iterator(Link),
    Walk([Link; 3]),
}

/// How the live threads' counters are read.
enum ThreadReader {
    /// The threads map, in batches.
    Map,
    /// The thread iterator over task storage.
    Iterator(Link),
}

/// A new reader of iterator `link`.
fn iter_file(link: &Link) -> std::io::Result<File> {
    // SAFETY: bpf_iter_create only reads the link's descriptor, which
    // `link` keeps open for the call.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_iter_create(link.as_fd().as_raw_fd()) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Loaded and attached programs, pinned with their maps under a bpffs
/// directory. Dropping it closes them: the programs stop counting unless
/// they are still pinned (see [`Tracer::unpin`]).
pub struct Tracer {
    skel: NetatopSkel<'static>,
    links: Vec<Link>,
    snapshots: Snapshots,
    threads: ThreadReader,
    /// The iterator of each counted process's cgroup.
    cgroup_of: Link,
    /// Kernel memory one thread's task storage takes (0: hash map).
    storage_bytes: u64,
    pin_dir: PathBuf,
    created_ns: u64,
    attached: Attached,
    /// Wire counting: the cgroup v2 root, until its program is attached.
    cgroup: Option<OwnedFd>,
}

impl Tracer {
    /// Loads the programs with the given map sizes, attaches them and pins
    /// them under `pin_dir`; or adopts what an earlier netatopd pinned
    /// there, when it is compatible. Says which it did.
    pub fn load(sizes: MapSizes, pin_dir: &Path) -> Result<(Self, Pinned), LoadError> {
        let opts = LoadOptions {
            sizes,
            ..LoadOptions::default()
        };
        Self::load_on(&Kernel::probe(), &opts, pin_dir)
    }

    /// [`Tracer::load`] on a kernel already probed, with options.
    pub fn load_on(
        kernel: &Kernel,
        opts: &LoadOptions,
        pin_dir: &Path,
    ) -> Result<(Self, Pinned), LoadError> {
        kernel.check()?;
        let sizes = opts.sizes;
        let release = || kernel.release.clone();
        let mode = match opts.attach {
            Some(m) => match m.unavailable(kernel) {
                None => m,
                Some(why) => {
                    return Err(LoadError::ModeUnavailable {
                        mode: m.name(),
                        kernel: release(),
                        why,
                    })
                }
            },
            None => Mode::best(kernel).map_err(|why| LoadError::Unsupported {
                kernel: release(),
                why,
            })?,
        };
        let snapshot = match opts.snapshot {
            Some(m) => match m.unavailable(kernel) {
                None => m,
                Some(why) => {
                    return Err(LoadError::SnapshotUnavailable {
                        method: m.name(),
                        kernel: release(),
                        why,
                    })
                }
            },
            None => SnapshotMethod::best(kernel).map_err(|why| LoadError::NoSnapshot {
                kernel: release(),
                why,
            })?,
        };
        let store = match (opts.threads, opts.count) {
            // Packets count to their socket's owner thread from any
            // context, which reaches a thread's counters by tid only in
            // the hash map.
            (Some(ThreadStore::TaskStorage), Count::Wire) => {
                return Err(LoadError::NoWire {
                    why: "wire counting keeps threads' counters in a hash map, where packets \
                          outside a thread's own calls reach them; use --thread-counters \
                          hash-map or auto"
                        .into(),
                })
            }
            (_, Count::Wire) => ThreadStore::HashMap,
            (Some(ThreadStore::TaskStorage), Count::Calls) => {
                match kernel.task_storage_unavailable() {
                    None => ThreadStore::TaskStorage,
                    Some(why) => return Err(LoadError::NoTaskStorage { why }),
                }
            }
            (Some(s), Count::Calls) => s,
            (None, Count::Calls) => ThreadStore::best(kernel),
        };
        let count = opts.count;
        if count == Count::Wire {
            if let Some(why) = wire::unavailable(kernel, mode) {
                return Err(LoadError::NoWire { why });
            }
        }
        let cgroup = match count {
            Count::Calls => None,
            Count::Wire => Some(wire::cgroup2_root().map_err(|e| LoadError::NoWire {
                why: format!("cannot open the root of the cgroup v2 hierarchy: {e}"),
            })?),
        };
        let mut attached = Attached {
            mode,
            extras: Extras::probe(kernel, mode),
            snapshot,
            threads: store,
            count,
            cgroup: cgroup.as_ref().map(|(_, root)| root.clone()),
            unpinned: Vec::new(),
        };
        pin::prepare_dir(pin_dir)?;
        let pin_err = |why: String| LoadError::PinDir {
            dir: pin_dir.to_owned(),
            why,
        };
        let hooks = attached.hooks();
        let links: Vec<&str> = hooks.iter().map(|h| h.pin).collect();
        let pinned = pin::inspect(pin_dir, sizes, store, count, &links);
        // A start that fails from here on leaves nothing of its own
        // pinned, and no directory it made.
        let mut undo = pin::UndoFreshStart::new(
            pin_dir,
            matches!(pinned, Pinned::Nothing | Pinned::Discarded(_)),
        );

        // The skeleton borrows its object for as long as it lives; the
        // daemon keeps one for its whole life, so the object is leaked
        // (a few hundred bytes) rather than made self-referential.
        let object: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = NetatopSkelBuilder::default()
            .open(object)
            .map_err(libbpf("opening"))?;
        for mut map in open.open_object_mut().maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if let Some(n) = sizes.of(&name, mode, snapshot, store) {
                map.set_max_entries(n).map_err(libbpf("sizing"))?;
            }
            if name == ThreadStore::TaskStorage.map() && store != ThreadStore::TaskStorage {
                // Not created; the programs' uses of it are never run.
                map.set_autocreate(false).map_err(libbpf("configuring"))?;
            }
            if count == Count::Calls && WIRE_MAPS.contains(&name.as_str()) {
                // Likewise: only the wire's programs use them.
                map.set_autocreate(false).map_err(libbpf("configuring"))?;
            }
        }
        if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
            ro.kprobes = mode == Mode::Kprobe;
            ro.task_storage = store == ThreadStore::TaskStorage;
            ro.wire_mode = count == Count::Wire;
        }
        // Only the chosen way's programs, the shared ones and the snapshot
        // programs are loaded; the pinned ones, when they go on counting.
        let load_hooks = pinned != Pinned::Adopted;
        for mut prog in open.open_object_mut().progs_mut() {
            let name = prog.name().to_string_lossy();
            let snapshot_prog = match snapshot {
                SnapshotMethod::TaskIterator => name == TASK_ITERATOR,
                SnapshotMethod::MapWalk => walk(store).iter().any(|(p, _)| name == *p),
            };
            let thread_prog = (store == ThreadStore::TaskStorage && name == THREAD_ITERATOR)
                || name == CGROUP_ITERATOR;
            let wanted = snapshot_prog
                || thread_prog
                || (load_hooks && hooks.iter().any(|h| h.prog == name));
            prog.set_autoload(wanted);
            // Attached by hand below (the map iterators need their map).
            prog.set_autoattach(false);
        }
        match &pinned {
            Pinned::Adopted | Pinned::ProgramsReplaced => {
                for mut map in open.open_object_mut().maps_mut() {
                    if let Some((_, pin)) = maps(store, count)
                        .iter()
                        .find(|(m, _)| is_map(map.name(), m))
                    {
                        map.reuse_pinned_map(pin_dir.join(pin))
                            .map_err(libbpf("adopting the pinned maps of"))?;
                    }
                }
            }
            Pinned::Discarded(_) => {
                pin::remove_pins(pin_dir)
                    .and_then(|_| fs::DirBuilder::new().mode(0o700).create(pin_dir))
                    .map_err(|e| pin_err(format!("cannot remove unusable pinned state: {e}")))?;
            }
            Pinned::Nothing => {}
        }
        // Before Linux 5.11 the maps count against the locked-memory
        // limit: what they need is known only before they are created.
        let charged =
            crate::memlock::kernel_charges().then(|| crate::memlock::maps_need(open.open_object()));
        if let Some(need) = charged {
            log::debug!("the maps count {need} bytes against the locked-memory limit");
        }
        let skel = open
            .load()
            .map_err(|e| match (charged, crate::memlock::limit()) {
                (Some(need), Some(limit)) if e.kind() == libbpf_rs::ErrorKind::PermissionDenied => {
                    LoadError::LockedMemory {
                        kernel: release(),
                        limit: crate::memlock::human(limit),
                        need: crate::memlock::human(need),
                    }
                }
                _ => libbpf("loading")(e),
            })?;
        let snapshots = attach_snapshots(&skel, snapshot, store)?;
        let threads = match store {
            ThreadStore::HashMap => ThreadReader::Map,
            ThreadStore::TaskStorage => ThreadReader::Iterator(
                find_prog(&skel, THREAD_ITERATOR)
                    .attach()
                    .map_err(libbpf("attaching the thread iterator of"))?,
            ),
        };
        let cgroup_of = find_prog(&skel, CGROUP_ITERATOR)
            .attach()
            .map_err(libbpf("attaching the cgroup iterator of"))?;
        let mut tracer = Self {
            skel,
            links: Vec::new(),
            cgroup_of,
            cgroup: cgroup.map(|(fd, _)| fd),
            snapshots,
            threads,
            storage_bytes: match store {
                ThreadStore::TaskStorage => storage_bytes(kernel),
                ThreadStore::HashMap => 0,
            },
            pin_dir: pin_dir.to_owned(),
            created_ns: 0,
            attached: attached.clone(),
        };
        tracer.check_layouts();
        match &pinned {
            Pinned::Adopted => {
                tracer.created_ns = tracer.read_created(&pin_err)?;
                for hook in &hooks {
                    let link = Link::open(pin_dir.join(hook.pin))
                        .map_err(libbpf("adopting the links of"))?;
                    tracer.links.push(link);
                }
            }
            Pinned::ProgramsReplaced => {
                tracer.created_ns = tracer.read_created(&pin_err)?;
                // The old programs stop here; the new ones start a few
                // microseconds later.
                pin::remove_links(pin_dir)
                    .map_err(|e| pin_err(format!("cannot remove the pinned links: {e}")))?;
                attached.unpinned = tracer
                    .attach_and_pin(&hooks, false)
                    .map_err(|e| e.into_load(&pin_err))?;
            }
            Pinned::Nothing | Pinned::Discarded(_) => {
                tracer.created_ns = crate::boottime_ns();
                attached.unpinned = tracer
                    .attach_and_pin(&hooks, true)
                    .map_err(|e| e.into_load(&pin_err))?;
            }
        }
        tracer.attached = attached;
        undo.done();
        Ok((tracer, pinned))
    }

    fn read_created(&self, pin_err: &dyn Fn(String) -> LoadError) -> Result<u64, LoadError> {
        pin::read_meta(&self.skel.maps.meta)
            .map(|m| m.created_ns)
            .map_err(|e| pin_err(format!("cannot read the pinned meta map: {e}")))
    }

    /// Attaches the programs and pins their links, and the maps when they
    /// are new, `meta` last. Returns the links this kernel could not pin
    /// (kprobes before Linux 5.15): they count while netatopd runs.
    fn attach_and_pin(
        &mut self,
        hooks: &[Hook],
        new_maps: bool,
    ) -> Result<Vec<&'static str>, PinError> {
        let mut unpinned = Vec::new();
        for hook in hooks {
            let prog = find_prog(&self.skel, hook.prog);
            let mut link = if *hook == wire::SOCKET_INGRESS {
                let fd = self
                    .cgroup
                    .as_ref()
                    .expect("the cgroup root is open when counting the wire");
                prog.attach_cgroup(fd.as_raw_fd())
            } else {
                prog.attach()
            }
            .map_err(PinError::Libbpf)?;
            match link.pin(self.pin_dir.join(hook.pin)) {
                Ok(()) => {}
                Err(e) if hook.is_kprobe() => {
                    log::debug!("link {} not pinned: {e}", hook.pin);
                    unpinned.push(hook.pin);
                }
                Err(e) => return Err(PinError::Pin(hook.pin, e)),
            }
            self.links.push(link);
        }
        self.skel
            .maps
            .meta
            .update(
                &0u32.to_ne_bytes(),
                &pin::meta_value(self.created_ns),
                MapFlags::ANY,
            )
            .map_err(|e| PinError::Pin(pin::META, e))?;
        if new_maps {
            for (m, pin) in maps(self.attached.threads, self.attached.count) {
                let mut map = self
                    .skel
                    .object_mut()
                    .maps_mut()
                    .find(|map| is_map(map.name(), m))
                    .expect("every map of the table is in the object");
                map.pin(self.pin_dir.join(pin))
                    .map_err(|e| PinError::Pin(pin, e))?;
            }
        }
        Ok(unpinned)
    }

    /// Removes the pins: the programs stop when this Tracer is dropped.
    pub fn unpin(&self) -> std::io::Result<usize> {
        pin::remove_pins(&self.pin_dir)
    }

    /// Where the maps and links are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// How the programs are attached, and which optional hooks are used.
    pub fn attached(&self) -> &Attached {
        &self.attached
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
        if self.attached.threads == ThreadStore::TaskStorage {
            check(
                "tstore",
                &m.tstore,
                size_of::<i32>(),
                size_of::<types::thread_val>(),
            );
        }
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
            "netns_wire",
            &m.netns_wire,
            size_of::<u32>(),
            size_of::<types::wire_netns>(),
        );
        check(
            "owners",
            &m.owners,
            size_of::<i32>(),
            size_of::<types::sock_owner>(),
        );
        check(
            "meta",
            &m.meta,
            size_of::<u32>(),
            size_of::<types::netatop_meta>(),
        );
    }

    /// Starts a snapshot: one `struct snapshot_rec` per counted process,
    /// its live threads summed in the kernel and its totals never lower
    /// than the last snapshot's. With the map walk, the first two passes
    /// run here, and only one such snapshot may be read at a time (see
    /// [`Tracer::snapshots_stream`]).
    pub fn snapshot(&self) -> std::io::Result<Snapshot> {
        match &self.snapshots {
            Snapshots::Iterator(link) => Ok(Snapshot(iter_file(link)?)),
            Snapshots::Walk([procs, threads, emit]) => {
                use std::io::Read;
                let mut sink = [0u8; 64];
                for pass in [procs, threads] {
                    let mut f = iter_file(pass)?;
                    while f.read(&mut sink)? > 0 {}
                }
                Ok(Snapshot(iter_file(emit)?))
            }
        }
    }

    /// Whether several snapshots may be read at once, interleaved (the
    /// task iterator), or each must be read whole before the next starts
    /// (the map walk shares the `walk` map).
    pub fn snapshots_stream(&self) -> bool {
        matches!(self.snapshots, Snapshots::Iterator(_))
    }

    /// All process entries (appended).
    pub fn read_procs(
        &self,
        keys: &mut Vec<u32>,
        vals: &mut Vec<types::proc_val>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.procs.as_fd(), false, keys, vals)
    }

    /// Every live thread with counters (appended): its tid, and its
    /// counters with its process; from task storage also its name (the
    /// threads map has none: `names` is left alone).
    pub fn read_threads(
        &self,
        keys: &mut Vec<u32>,
        vals: &mut Vec<types::thread_val>,
        names: &mut Vec<[u8; 16]>,
    ) -> std::io::Result<()> {
        match &self.threads {
            ThreadReader::Map => read_batched(self.skel.maps.threads.as_fd(), false, keys, vals),
            ThreadReader::Iterator(link) => {
                use std::io::Read;
                const REC: usize = size_of::<types::thread_rec>();
                let mut bytes = Vec::new();
                iter_file(link)?.read_to_end(&mut bytes)?;
                if bytes.len() % REC != 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the thread iterator ended within a record ({} bytes)",
                            bytes.len()
                        ),
                    ));
                }
                for rec in bytes.chunks_exact(REC) {
                    let r: types::thread_rec = crate::skel::from_bytes(rec);
                    keys.push(r.tid);
                    names.push(crate::comm_bytes(&r.comm));
                    vals.push(types::thread_val {
                        c: r.c,
                        tgid: r.tgid,
                        linked: 1,
                    });
                }
                Ok(())
            }
        }
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

    /// Wire counting: the counters of each network namespace (its inode
    /// number), in no particular order; empty when counting calls.
    pub fn read_wire(&self) -> std::io::Result<Vec<(u32, types::wire_netns)>> {
        let mut keys = Vec::new();
        let mut vals = Vec::new();
        if self.attached.count == Count::Wire {
            read_batched(
                self.skel.maps.netns_wire.as_fd(),
                false,
                &mut keys,
                &mut vals,
            )?;
        }
        Ok(keys.into_iter().zip(vals).collect())
    }

    /// Each exited process's cgroup total so far (appended): the cgroup's
    /// id and the final totals of its processes that have exited.
    pub fn read_cgroups(
        &self,
        keys: &mut Vec<u64>,
        vals: &mut Vec<types::counters>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.cgroups.as_fd(), false, keys, vals)
    }

    /// Cgroups in the accumulator map now.
    pub fn cgroup_count(&self) -> std::io::Result<usize> {
        Ok(self.skel.maps.cgroups.keys().count())
    }

    /// Takes removed cgroups' final totals out of the kernel (appended);
    /// each is returned exactly once.
    pub fn drain_cgroups_gone(
        &self,
        keys: &mut Vec<u64>,
        vals: &mut Vec<types::cgroup_gone>,
    ) -> std::io::Result<()> {
        read_batched(self.skel.maps.cgroups_gone.as_fd(), true, keys, vals)
    }

    /// Each counted live process and its cgroup v2 id.
    pub fn cgroup_of(&self) -> std::io::Result<Vec<types::cgroup_rec>> {
        use std::io::Read;
        const REC: usize = size_of::<types::cgroup_rec>();
        let mut bytes = Vec::new();
        iter_file(&self.cgroup_of)?.read_to_end(&mut bytes)?;
        if bytes.len() % REC != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the cgroup iterator ended within a record ({} bytes)",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes
            .chunks_exact(REC)
            .map(crate::skel::from_bytes)
            .collect())
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
        let mut total = 0;
        let pinned = maps(self.attached.threads, self.attached.count);
        let ours = |m: &libbpf_rs::Map<'_>| {
            m.autocreate()
                && (pinned.iter().any(|(name, _)| is_map(m.name(), name))
                    || AUX_MAPS.iter().any(|name| is_map(m.name(), name))
                    || is_map(m.name(), "threads"))
        };
        for map in self.skel.object().maps().filter(ours) {
            let fd = map.as_fd().as_raw_fd();
            let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
            total += info
                .lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Kernel memory of `threads` threads' task storage, which the kernel
    /// does not report: each thread's storage element (the kernel's
    /// `struct bpf_local_storage_elem` and the counters) and its storage
    /// (`struct bpf_local_storage`), each rounded up to the kernel's
    /// allocation size. 0 with a hash map, whose memory is in
    /// [`Tracer::map_memory`].
    pub fn thread_storage_memory(&self, threads: usize) -> u64 {
        self.storage_bytes * threads as u64
    }

    /// Map sizes as loaded (`threads` 0: threads' counters in task
    /// storage, which has no size).
    pub fn map_sizes(&self) -> MapSizes {
        let m = &self.skel.maps;
        MapSizes {
            threads: match self.attached.threads {
                ThreadStore::HashMap => m.threads.max_entries(),
                ThreadStore::TaskStorage => 0,
            },
            procs: m.procs.max_entries(),
            exited: m.exited.max_entries(),
            cgroups: m.cgroups.max_entries(),
            removed_cgroups: m.cgroups_gone.max_entries(),
        }
    }
}

/// Kernel memory one thread's task storage takes (see
/// [`Tracer::thread_storage_memory`]); sizes the kernel's BTF lacks are
/// taken as on Linux 6.1 (88 and 192 bytes).
fn storage_bytes(kernel: &Kernel) -> u64 {
    let elem = kernel.struct_size("bpf_local_storage_elem").unwrap_or(88);
    let storage = kernel.struct_size("bpf_local_storage").unwrap_or(192);
    let value = size_of::<types::thread_val>();
    (kmalloc_size(elem + value) + kmalloc_size(storage)) as u64
}

/// The size the kernel's allocator gives a request of `n` bytes (its
/// general caches: 8, 16, 32, 64, 96, 128, 192 bytes, then powers of two).
fn kmalloc_size(n: usize) -> usize {
    match n {
        0..=8 => 8,
        9..=16 => 16,
        17..=32 => 32,
        33..=64 => 64,
        65..=96 => 96,
        97..=128 => 128,
        129..=192 => 192,
        _ => n.next_power_of_two(),
    }
}

/// Attaches the snapshot programs of `method`.
fn attach_snapshots(
    skel: &NetatopSkel<'static>,
    method: SnapshotMethod,
    store: ThreadStore,
) -> Result<Snapshots, LoadError> {
    let stage = "attaching the snapshot iterator of";
    Ok(match method {
        SnapshotMethod::TaskIterator => Snapshots::Iterator(
            find_prog(skel, TASK_ITERATOR)
                .attach()
                .map_err(libbpf(stage))?,
        ),
        SnapshotMethod::MapWalk => {
            let link = |(prog, map): (&str, Option<&str>)| {
                let prog = find_prog(skel, prog);
                match map {
                    None => prog.attach(),
                    Some(map) => {
                        let map = skel
                            .object()
                            .maps()
                            .find(|m| m.name() == map)
                            .expect("the walked maps are in the object");
                        prog.attach_iter(map.as_fd())
                    }
                }
                .map_err(libbpf(stage))
            };
            let [a, b, c] = walk(store);
            Snapshots::Walk([link(a)?, link(b)?, link(c)?])
        }
    })
}

/// A program of the loaded object, by name.
fn find_prog<'a>(skel: &'a NetatopSkel<'static>, name: &str) -> libbpf_rs::ProgramMut<'a> {
    skel.object()
        .progs_mut()
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("program {name} is not in the object"))
}

enum PinError {
    Libbpf(libbpf_rs::Error),
    Pin(&'static str, libbpf_rs::Error),
}

impl PinError {
    fn into_load(self, pin_err: &dyn Fn(String) -> LoadError) -> LoadError {
        match self {
            PinError::Libbpf(e) => libbpf("attaching")(e),
            PinError::Pin(what, e) => pin_err(format!("cannot pin {what}: {e}")),
        }
    }
}
