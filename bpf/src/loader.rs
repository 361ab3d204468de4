//! Loading, attaching and pinning the programs, or adopting what an
//! earlier netatopd pinned: a start, step by step, from its plan to a
//! [`Tracer`].
//!
//! Every map and every link has a pin name (the table of `crate::maps`
//! and the hooks of [`crate::attach`]); what a start does depends on what
//! it finds pinned ([`Pinned`]).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};

use crate::attach::{Hook, Mode};
use crate::clock::boottime_ns;
use crate::error::{libbpf, LoadError};
use crate::iters;
use crate::kernel::Kernel;
use crate::maps;
use crate::memlock;
use crate::memory::storage_bytes;
use crate::pin::{self, Pinned};
use crate::plan::Plan;
use crate::skel::{find_prog, leaked_object, NetatopSkel, NetatopSkelBuilder, OpenNetatopSkel};
use crate::wire::{self, Count};

use crate::attached::Attached;
use crate::options::{LoadOptions, MapSizes, ThreadStore};
use crate::tracer::Tracer;

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
        let plan = Plan::make(opts, kernel)?;
        let cgroup = match plan.count {
            Count::Calls => None,
            Count::Wire => Some(wire::cgroup2_root().map_err(|e| LoadError::NoWire {
                why: format!("cannot open the root of the cgroup v2 hierarchy: {e}"),
            })?),
        };
        pin::prepare_dir(pin_dir)?;
        let hooks = plan.hooks();
        let links: Vec<&str> = hooks.iter().map(|h| h.pin).collect();
        let pinned = pin::inspect(pin_dir, &plan, &links);
        // A start that fails from here on leaves nothing of its own
        // pinned, and no directory it made.
        let mut undo = pin::UndoFreshStart::new(
            pin_dir,
            matches!(pinned, Pinned::Nothing | Pinned::Discarded(_)),
        );

        let mut open = open_sized(&plan)?;
        // The pinned programs go on counting when they are adopted.
        choose_programs(&mut open, &plan, &hooks, pinned != Pinned::Adopted);
        use_pinned(&mut open, &pinned, &plan, pin_dir)?;
        let mut skel = load(open, kernel)?;
        // In .bss, which an adopted state's programs share: set at every
        // start.
        if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
            bss.max_user_procs = plan.sizes.procs_per_user.into();
        }
        let iters = iters::attach(&skel, &plan)?;
        let (cgroup, root) = cgroup.unzip();
        let mut tracer = Self {
            skel,
            links: Vec::new(),
            iters,
            storage_bytes: match plan.store {
                ThreadStore::TaskStorage => storage_bytes(kernel),
                ThreadStore::HashMap => 0,
            },
            pin_dir: pin_dir.to_owned(),
            created_ns: 0,
            attached: Attached::of(&plan, root),
            plan,
            cgroup,
        };
        maps::check_layouts(tracer.skel.object(), &tracer.plan);
        tracer.start_hooks(&pinned, &hooks)?;
        undo.done();
        Ok((tracer, pinned))
    }

    /// Starts counting with the programs of `hooks`: adopts their pinned
    /// links when the pinned ones go on, else attaches them and pins their
    /// links (and the maps, when they are new).
    fn start_hooks(&mut self, pinned: &Pinned, hooks: &[Hook]) -> Result<(), LoadError> {
        match pinned {
            Pinned::Adopted => {
                self.created_ns = self.read_created()?;
                for hook in hooks {
                    let link = Link::open(self.pin_dir.join(hook.pin))
                        .map_err(libbpf("adopting the links of"))?;
                    self.links.push(link);
                }
            }
            Pinned::ProgramsReplaced => {
                self.created_ns = self.read_created()?;
                // The old programs stop here; the new ones start a few
                // microseconds later.
                pin::remove_links(&self.pin_dir).map_err(|e| {
                    pin_err(
                        &self.pin_dir,
                        format!("cannot remove the pinned links: {e}"),
                    )
                })?;
                self.attached.unpinned = self
                    .attach_and_pin(hooks, false)
                    .map_err(|e| e.into_load(&self.pin_dir))?;
            }
            Pinned::Nothing | Pinned::Discarded(_) => {
                self.created_ns = boottime_ns();
                self.attached.unpinned = self
                    .attach_and_pin(hooks, true)
                    .map_err(|e| e.into_load(&self.pin_dir))?;
            }
        }
        Ok(())
    }

    fn read_created(&self) -> Result<u64, LoadError> {
        pin::read_meta(&self.skel.maps.meta)
            .map(|m| m.created_ns)
            .map_err(|e| {
                pin_err(
                    &self.pin_dir,
                    format!("cannot read the pinned meta map: {e}"),
                )
            })
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
            .map_err(|e| PinError::Pin(maps::META.pin_name(), e))?;
        if new_maps {
            for (spec, pin) in maps::pinned_by(&self.plan) {
                let mut map = self
                    .skel
                    .object_mut()
                    .maps_mut()
                    .find(|map| spec.is(map.name()))
                    .expect("every map of the table is in the object");
                map.pin(self.pin_dir.join(pin))
                    .map_err(|e| PinError::Pin(pin, e))?;
            }
        }
        Ok(unpinned)
    }
}

/// Opens the object with its maps sized for `plan`, those it does not
/// use not created, and its configuration set.
fn open_sized(plan: &Plan) -> Result<OpenNetatopSkel<'static>, LoadError> {
    let mut open = NetatopSkelBuilder::default()
        .open(leaked_object())
        .map_err(libbpf("opening"))?;
    for mut map in open.open_object_mut().maps_mut() {
        let Some(spec) = maps::spec_of(map.name()) else {
            continue;
        };
        if let Some((n, _)) = spec.entries(plan) {
            map.set_max_entries(n).map_err(libbpf("sizing"))?;
        }
        if !spec.exists.holds(plan) {
            // Not created; the programs' uses of it are never run.
            map.set_autocreate(false).map_err(libbpf("configuring"))?;
        }
    }
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.kprobes = plan.mode == Mode::Kprobe;
        ro.task_storage = plan.store == ThreadStore::TaskStorage;
        ro.wire_mode = plan.count == Count::Wire;
    }
    Ok(open)
}

/// Loads only the chosen way's programs, the shared ones and the
/// iterators (the hooks only when `load_hooks`); all are attached by hand
/// (the map iterators need their map).
fn choose_programs(
    open: &mut OpenNetatopSkel<'static>,
    plan: &Plan,
    hooks: &[Hook],
    load_hooks: bool,
) {
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy();
        let wanted =
            iters::used(&name, plan) || (load_hooks && hooks.iter().any(|h| h.prog == name));
        prog.set_autoload(wanted);
        prog.set_autoattach(false);
    }
}

/// Makes the maps those pinned where they are to be adopted; removes the
/// pinned state where it is discarded.
fn use_pinned(
    open: &mut OpenNetatopSkel<'static>,
    pinned: &Pinned,
    plan: &Plan,
    pin_dir: &Path,
) -> Result<(), LoadError> {
    match pinned {
        Pinned::Adopted | Pinned::ProgramsReplaced => {
            for mut map in open.open_object_mut().maps_mut() {
                if let Some((_, pin)) = maps::pinned_by(plan).find(|(m, _)| m.is(map.name())) {
                    map.reuse_pinned_map(pin_dir.join(pin))
                        .map_err(libbpf("adopting the pinned maps of"))?;
                }
            }
        }
        Pinned::Discarded(_) => {
            pin::remove_pins(pin_dir)
                .and_then(|_| fs::DirBuilder::new().mode(0o700).create(pin_dir))
                .map_err(|e| {
                    pin_err(pin_dir, format!("cannot remove unusable pinned state: {e}"))
                })?;
        }
        Pinned::Nothing => {}
    }
    Ok(())
}

/// Loads the object into the kernel. Before Linux 5.11 the maps count
/// against the locked-memory limit: what they need is known only before
/// they are created, and said when the limit refuses them.
fn load(
    open: OpenNetatopSkel<'static>,
    kernel: &Kernel,
) -> Result<NetatopSkel<'static>, LoadError> {
    let charged = memlock::kernel_charges().then(|| memlock::maps_need(open.open_object()));
    if let Some(need) = charged {
        log::debug!("the maps count {need} bytes against the locked-memory limit");
    }
    open.load().map_err(|e| match (charged, memlock::limit()) {
        (Some(need), Some(limit)) if e.kind() == libbpf_rs::ErrorKind::PermissionDenied => {
            LoadError::LockedMemory {
                kernel: kernel.release.clone(),
                limit: memlock::human(limit),
                need: memlock::human(need),
            }
        }
        _ => libbpf("loading")(e),
    })
}

/// Pin directory `dir` cannot be used: why.
fn pin_err(dir: &Path, why: String) -> LoadError {
    LoadError::PinDir {
        dir: dir.to_owned(),
        why,
    }
}

enum PinError {
    Libbpf(libbpf_rs::Error),
    Pin(&'static str, libbpf_rs::Error),
}

impl PinError {
    fn into_load(self, dir: &Path) -> LoadError {
        match self {
            PinError::Libbpf(e) => libbpf("attaching")(e),
            PinError::Pin(what, e) => pin_err(dir, format!("cannot pin {what}: {e}")),
        }
    }
}
