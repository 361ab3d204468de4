//! What a start will do, decided before anything is loaded: from the
//! options asked for and what the kernel offers ([`KernelFacts`]) to a
//! [`Plan`] (the way of attaching and its optional hooks, the snapshots,
//! where threads' counters live, what is counted, the map sizes), or the
//! error that names what the kernel lacks. Nothing here touches the
//! kernel itself: the tests give it made-up kernels.

use crate::attach::{Extras, Hook, Mode, COMMON};
use crate::choice::{choose, Refused};
use crate::error::LoadError;
use crate::kernel::Kernel;
use crate::options::{LoadOptions, MapSizes, SnapshotMethod, ThreadStore};
use crate::wire::{self, Count};

/// What the choices need to know of a kernel: whether netatopd may run
/// there at all, and why it cannot use each way (None: it can).
pub(crate) trait KernelFacts {
    /// Its release, for messages.
    fn release(&self) -> &str;
    /// Privileges and BTF ([`Kernel::check`]).
    fn check(&self) -> Result<(), LoadError>;
    fn attach_unavailable(&self, mode: Mode) -> Option<String>;
    fn snapshot_unavailable(&self, method: SnapshotMethod) -> Option<String>;
    fn task_storage_unavailable(&self) -> Option<String>;
    fn wire_unavailable(&self, mode: Mode) -> Option<String>;
    /// The optional hooks the kernel takes with way `mode`.
    fn extras(&self, mode: Mode) -> Extras;
}

impl KernelFacts for Kernel {
    fn release(&self) -> &str {
        &self.release
    }

    fn check(&self) -> Result<(), LoadError> {
        Kernel::check(self)
    }

    fn attach_unavailable(&self, mode: Mode) -> Option<String> {
        mode.unavailable(self)
    }

    fn snapshot_unavailable(&self, method: SnapshotMethod) -> Option<String> {
        method.unavailable(self)
    }

    fn task_storage_unavailable(&self) -> Option<String> {
        Kernel::task_storage_unavailable(self)
    }

    fn wire_unavailable(&self, mode: Mode) -> Option<String> {
        wire::unavailable(self, mode)
    }

    fn extras(&self, mode: Mode) -> Extras {
        Extras::probe(self, mode)
    }
}

/// What a start uses.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub sizes: MapSizes,
    pub mode: Mode,
    pub extras: Extras,
    pub snapshot: SnapshotMethod,
    pub store: ThreadStore,
    pub count: Count,
}

impl Plan {
    /// The plan for `opts` on `kernel`: each way asked for if the kernel
    /// takes it, else the best it takes; Err names the option, the kernel
    /// and the reason.
    pub(crate) fn make(opts: &LoadOptions, kernel: &impl KernelFacts) -> Result<Self, LoadError> {
        kernel.check()?;
        let mode = choose(opts.attach, &Mode::ALL, Mode::name, |m| {
            kernel.attach_unavailable(m)
        })
        .map_err(refused(
            kernel,
            |mode, kernel, why| LoadError::ModeUnavailable { mode, kernel, why },
            |kernel, why| LoadError::Unsupported { kernel, why },
        ))?;
        let snapshot = choose(
            opts.snapshot,
            &SnapshotMethod::ALL,
            SnapshotMethod::name,
            |m| kernel.snapshot_unavailable(m),
        )
        .map_err(refused(
            kernel,
            |method, kernel, why| LoadError::SnapshotUnavailable {
                method,
                kernel,
                why,
            },
            |kernel, why| LoadError::NoSnapshot { kernel, why },
        ))?;
        let store = thread_store(opts, kernel)?;
        if opts.count == Count::Wire {
            if let Some(why) = kernel.wire_unavailable(mode) {
                return Err(LoadError::NoWire { why });
            }
        }
        Ok(Self {
            sizes: opts.sizes,
            mode,
            extras: kernel.extras(mode),
            snapshot,
            store,
            count: opts.count,
        })
    }

    /// Every program to attach, with its link's pin name.
    pub(crate) fn hooks(&self) -> Vec<Hook> {
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

/// The pin names of the links of every program any start may attach.
pub(crate) fn every_link_pin() -> Vec<&'static str> {
    let mut hooks = crate::attach::every_hook();
    hooks.extend(wire::HOOKS);
    hooks.push(wire::SOCKET_INGRESS);
    hooks.iter().map(|h| h.pin).collect()
}

/// Where threads' counters live for `opts` on `kernel`.
fn thread_store(opts: &LoadOptions, kernel: &impl KernelFacts) -> Result<ThreadStore, LoadError> {
    match opts.count {
        // Packets count to their socket's owner thread from any context,
        // which reaches a thread's counters by tid only in the hash map.
        Count::Wire if opts.threads == Some(ThreadStore::TaskStorage) => Err(LoadError::NoWire {
            why: "wire counting keeps threads' counters in a hash map, where packets \
                  outside a thread's own calls reach them; use --thread-counters \
                  hash-map or auto"
                .into(),
        }),
        Count::Wire => Ok(ThreadStore::HashMap),
        Count::Calls => choose(
            opts.threads,
            &ThreadStore::ALL,
            ThreadStore::name,
            |s| match s {
                ThreadStore::TaskStorage => kernel.task_storage_unavailable(),
                ThreadStore::HashMap => None,
            },
        )
        .map_err(refused(
            kernel,
            |_, _, why| LoadError::NoTaskStorage { why },
            |_, why| LoadError::NoTaskStorage { why },
        )),
    }
}

/// The error of a refused choice on `kernel`: `forced` (of the way's
/// name, the kernel's release and why) where the way asked for cannot be
/// used, `none` (of the release and each way's reason) where no way can.
fn refused<'k>(
    kernel: &'k impl KernelFacts,
    forced: fn(&'static str, String, String) -> LoadError,
    none: fn(String, String) -> LoadError,
) -> impl Fn(Refused) -> LoadError + 'k {
    move |r| match r {
        Refused::Forced(way, why) => forced(way, kernel.release().to_owned(), why),
        Refused::NoneUsable(why) => none(kernel.release().to_owned(), why),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::attach::Extra;

    /// A made-up kernel: what it lacks, and the reason it gives.
    struct Fake {
        privileged: bool,
        no_mode: Vec<Mode>,
        no_snapshot: Vec<SnapshotMethod>,
        no_task_storage: bool,
        no_wire: bool,
        /// How often task storage was probed.
        storage_probes: Cell<usize>,
    }

    impl Fake {
        /// A kernel that offers everything.
        fn new() -> Self {
            Self {
                privileged: true,
                no_mode: Vec::new(),
                no_snapshot: Vec::new(),
                no_task_storage: false,
                no_wire: false,
                storage_probes: Cell::new(0),
            }
        }
    }

    impl KernelFacts for Fake {
        fn release(&self) -> &str {
            "9.9-test"
        }

        fn check(&self) -> Result<(), LoadError> {
            match self.privileged {
                true => Ok(()),
                false => Err(LoadError::NotPrivileged),
            }
        }

        fn attach_unavailable(&self, mode: Mode) -> Option<String> {
            self.no_mode
                .contains(&mode)
                .then(|| format!("no {}", mode.name()))
        }

        fn snapshot_unavailable(&self, method: SnapshotMethod) -> Option<String> {
            self.no_snapshot
                .contains(&method)
                .then(|| format!("no {}", method.name()))
        }

        fn task_storage_unavailable(&self) -> Option<String> {
            self.storage_probes.set(self.storage_probes.get() + 1);
            self.no_task_storage.then(|| "no task storage".into())
        }

        fn wire_unavailable(&self, mode: Mode) -> Option<String> {
            self.no_wire
                .then(|| format!("no wire with {}", mode.name()))
        }

        fn extras(&self, _: Mode) -> Extras {
            Extras {
                splice_read: Extra::Missing("made up".into()),
                sendpage: Extra::NotNeeded("made up"),
            }
        }
    }

    fn plan(opts: LoadOptions, kernel: &Fake) -> Result<Plan, String> {
        Plan::make(&opts, kernel).map_err(|e| e.to_string())
    }

    fn wire() -> LoadOptions {
        LoadOptions {
            count: Count::Wire,
            ..LoadOptions::default()
        }
    }

    #[test]
    fn auto_takes_the_best_of_everything() {
        let p = plan(LoadOptions::default(), &Fake::new()).unwrap();
        assert_eq!(
            (p.mode, p.snapshot, p.store, p.count),
            (
                Mode::Tracepoint,
                SnapshotMethod::TaskIterator,
                ThreadStore::TaskStorage,
                Count::Calls
            )
        );
        assert_eq!(p.sizes.procs, MapSizes::default().procs);
    }

    #[test]
    fn auto_takes_the_next_way_where_the_best_is_missing() {
        let k = Fake {
            no_mode: vec![Mode::Tracepoint, Mode::Fexit],
            no_snapshot: vec![SnapshotMethod::TaskIterator],
            no_task_storage: true,
            ..Fake::new()
        };
        let p = plan(LoadOptions::default(), &k).unwrap();
        assert_eq!(
            (p.mode, p.snapshot, p.store),
            (Mode::Kprobe, SnapshotMethod::MapWalk, ThreadStore::HashMap)
        );
    }

    #[test]
    fn a_kernel_without_privileges_is_refused_before_anything_is_chosen() {
        let k = Fake {
            privileged: false,
            no_mode: Mode::ALL.to_vec(),
            ..Fake::new()
        };
        let err = Plan::make(&LoadOptions::default(), &k).unwrap_err();
        assert!(matches!(err, LoadError::NotPrivileged), "{err}");
    }

    #[test]
    fn a_forced_way_is_used_even_where_a_better_one_is_offered() {
        let opts = LoadOptions {
            attach: Some(Mode::Kprobe),
            snapshot: Some(SnapshotMethod::MapWalk),
            threads: Some(ThreadStore::HashMap),
            ..LoadOptions::default()
        };
        let p = plan(opts, &Fake::new()).unwrap();
        assert_eq!(
            (p.mode, p.snapshot, p.store),
            (Mode::Kprobe, SnapshotMethod::MapWalk, ThreadStore::HashMap)
        );
    }

    #[test]
    fn a_refusal_names_the_option_the_kernel_and_each_reason() {
        let lacking = |mode: &[Mode], snapshot: &[SnapshotMethod], storage: bool| Fake {
            no_mode: mode.to_vec(),
            no_snapshot: snapshot.to_vec(),
            no_task_storage: storage,
            ..Fake::new()
        };
        let auto = LoadOptions::default();
        let cases = [
            (
                LoadOptions {
                    attach: Some(Mode::Fexit),
                    ..auto
                },
                lacking(&[Mode::Fexit], &[], false),
                "--attach fexit: this kernel (Linux 9.9-test) cannot: no fexit",
            ),
            (
                auto,
                lacking(&Mode::ALL, &[], false),
                "no way of attaching the programs works on this kernel (Linux 9.9-test): \
                 tracepoint: no tracepoint; fexit: no fexit; kprobe: no kprobe; \
                 netatopd needs Linux >= 5.10 with BTF",
            ),
            (
                LoadOptions {
                    snapshot: Some(SnapshotMethod::TaskIterator),
                    ..auto
                },
                lacking(&[], &[SnapshotMethod::TaskIterator], false),
                "--snapshot task-iterator: this kernel (Linux 9.9-test) cannot: no task-iterator",
            ),
            (
                auto,
                lacking(&[], &SnapshotMethod::ALL, false),
                "no way of taking snapshots works on this kernel (Linux 9.9-test): \
                 task-iterator: no task-iterator; map-walk: no map-walk",
            ),
            (
                LoadOptions {
                    threads: Some(ThreadStore::TaskStorage),
                    ..auto
                },
                lacking(&[], &[], true),
                "--thread-counters task-storage: no task storage; use hash-map",
            ),
        ];
        for (opts, kernel, want) in cases {
            assert_eq!(plan(opts, &kernel).unwrap_err(), want);
        }
    }

    #[test]
    fn a_forced_hash_map_does_not_probe_task_storage() {
        let k = Fake::new();
        let opts = LoadOptions {
            threads: Some(ThreadStore::HashMap),
            ..LoadOptions::default()
        };
        assert_eq!(plan(opts, &k).unwrap().store, ThreadStore::HashMap);
        assert_eq!(k.storage_probes.get(), 0);
    }

    #[test]
    fn wire_counting_keeps_threads_in_the_hash_map() {
        let k = Fake::new();
        let p = plan(wire(), &k).unwrap();
        assert_eq!((p.store, p.count), (ThreadStore::HashMap, Count::Wire));
        assert_eq!(k.storage_probes.get(), 0);
        let forced = LoadOptions {
            threads: Some(ThreadStore::TaskStorage),
            ..wire()
        };
        let err = plan(forced, &k).unwrap_err();
        assert!(
            err.starts_with("--count wire: wire counting keeps"),
            "{err}"
        );
    }

    #[test]
    fn wire_counting_the_kernel_cannot_names_the_reason() {
        let k = Fake {
            no_wire: true,
            ..Fake::new()
        };
        assert_eq!(
            plan(wire(), &k).unwrap_err(),
            "--count wire: no wire with tracepoint; use --count calls"
        );
    }

    #[test]
    fn the_hooks_follow_the_plan() {
        let calls = plan(LoadOptions::default(), &Fake::new()).unwrap();
        let pins: Vec<&str> = calls.hooks().iter().map(|h| h.pin).collect();
        assert_eq!(
            pins,
            [
                "link_send",
                "link_recv",
                "link_exit",
                "link_exec",
                "link_rename",
                "link_cgroup_rmdir"
            ]
        );
        let wire = plan(wire(), &Fake::new()).unwrap();
        assert_eq!(wire.hooks().last(), Some(&wire::SOCKET_INGRESS));
        assert_eq!(wire.hooks().len(), pins.len() + 4);
    }
}
