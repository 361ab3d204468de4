//! The table of the object's maps: each map's name in the object, the
//! name it is pinned under, when a start creates it, how it is sized and
//! the records of its keys and values. Loading (sizing, creating,
//! adopting, pinning), the pinned state's check, memory accounting and
//! the layout check all read it.

use std::ffi::OsStr;

use libbpf_rs::{MapCore, Object};

use crate::attach::Mode;
use crate::options::{SizeOption, SnapshotMethod, ThreadStore};
use crate::plan::Plan;
use crate::skel::{types, Layout};
use crate::wire::Count;

/// When a map is created (or pinned, or sized by its option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Always,
    Store(ThreadStore),
    Count(Count),
    Attach(Mode),
    Snapshot(SnapshotMethod),
}

impl When {
    pub(crate) fn holds(self, plan: &Plan) -> bool {
        match self {
            When::Always => true,
            When::Store(s) => plan.store == s,
            When::Count(c) => plan.count == c,
            When::Attach(m) => plan.mode == m,
            When::Snapshot(m) => plan.snapshot == m,
        }
    }
}

/// How many entries a map has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// As the object declares it.
    Declared,
    /// `times` the size `option` asks for where `used` holds; one entry
    /// where it does not (the map is created, never used).
    Option {
        option: SizeOption,
        times: u32,
        used: When,
    },
}

/// The name a map is pinned under, where `when` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pin {
    pub name: &'static str,
    pub when: When,
}

/// One map of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapSpec {
    /// Its name in the object; one that starts with a dot is a section
    /// map (libbpf prefixes it with the object's name).
    pub name: &'static str,
    /// None: never pinned (nothing in it outlives a netatopd).
    pub pin: Option<Pin>,
    /// When a start creates it.
    pub exists: When,
    pub size: Size,
    pub layout: Layout,
}

impl MapSpec {
    /// Whether `name` (as the object has it) is this map.
    pub(crate) fn is(&self, name: &OsStr) -> bool {
        let name = name.to_string_lossy();
        if self.name.starts_with('.') {
            name.ends_with(self.name)
        } else {
            name == self.name
        }
    }

    /// The name it is pinned under, whenever it is.
    pub(crate) fn pin_name(&self) -> &'static str {
        self.pin.expect("a pinned map").name
    }

    /// The entries `plan` gives it (None: as declared), and the option
    /// they follow (None: one entry, the map being unused).
    pub(crate) fn entries(&self, plan: &Plan) -> Option<(u32, Option<SizeOption>)> {
        match self.size {
            Size::Declared => None,
            Size::Option { used, .. } if !used.holds(plan) => Some((1, None)),
            Size::Option { option, times, .. } => {
                Some((option.of(&plan.sizes).saturating_mul(times), Some(option)))
            }
        }
    }
}

/// The pin name of the threads' counters, wherever they live.
const THREADS_PIN: &str = "threads";

const fn pinned(name: &'static str) -> Option<Pin> {
    Some(Pin {
        name,
        when: When::Always,
    })
}

const fn sized(option: SizeOption, times: u32, used: When) -> Size {
    Size::Option {
        option,
        times,
        used,
    }
}

/// Threads' counters in task-local storage.
const TSTORE: MapSpec = MapSpec {
    name: "tstore",
    pin: pinned(THREADS_PIN),
    exists: When::Store(ThreadStore::TaskStorage),
    size: Size::Declared,
    layout: Layout::of::<i32, types::thread_val>(),
};
/// Threads' counters by tid; created (of one entry) with task storage
/// too, where the programs' uses of it are never run.
pub(crate) const THREADS: MapSpec = MapSpec {
    name: "threads",
    pin: Some(Pin {
        name: THREADS_PIN,
        when: When::Store(ThreadStore::HashMap),
    }),
    exists: When::Always,
    size: sized(SizeOption::Threads, 1, When::Store(ThreadStore::HashMap)),
    layout: Layout::of::<u32, types::thread_val>(),
};
pub(crate) const PROCS: MapSpec = MapSpec {
    name: "procs",
    pin: pinned("procs"),
    exists: When::Always,
    size: sized(SizeOption::Procs, 1, When::Always),
    layout: Layout::of::<u32, types::proc_val>(),
};
const EXITED: MapSpec = MapSpec {
    name: "exited",
    pin: pinned("exited"),
    exists: When::Always,
    size: sized(SizeOption::Exited, 1, When::Always),
    layout: Layout::of::<types::exit_key, types::exit_val>(),
};
/// The programs' global variables: their statistics.
pub(crate) const STATS: MapSpec = MapSpec {
    name: ".bss",
    pin: pinned("stats"),
    exists: When::Always,
    size: Size::Declared,
    layout: Layout::of::<u32, types::bss>(),
};
const CGROUPS: MapSpec = MapSpec {
    name: "cgroups",
    pin: pinned("cgroups"),
    exists: When::Always,
    size: sized(SizeOption::Cgroups, 1, When::Always),
    layout: Layout::of::<u64, types::counters>(),
};
const CGROUPS_GONE: MapSpec = MapSpec {
    name: "cgroups_gone",
    pin: pinned("cgroups_gone"),
    exists: When::Always,
    size: sized(SizeOption::RemovedCgroups, 1, When::Always),
    layout: Layout::of::<u64, types::cgroup_gone>(),
};
/// Sockets' owners (socket-local storage).
const OWNERS: MapSpec = MapSpec {
    name: "owners",
    pin: pinned("owners"),
    exists: When::Count(Count::Wire),
    size: Size::Declared,
    layout: Layout::of::<i32, types::sock_owner>(),
};
/// Listening sockets' owners.
const LISTENERS: MapSpec = MapSpec {
    name: "listeners",
    pin: pinned("listeners"),
    exists: When::Count(Count::Wire),
    size: Size::Declared,
    layout: Layout::of::<u64, types::sock_owner>(),
};
/// The counters per network namespace; its pin tells a pinned state's
/// counting.
pub(crate) const NETNS_WIRE: MapSpec = MapSpec {
    name: "netns_wire",
    pin: pinned("wire"),
    exists: When::Count(Count::Wire),
    size: Size::Declared,
    layout: Layout::of::<u32, types::wire_netns>(),
};
/// The fingerprints of the build that pinned the state, and when its
/// counting started; pinned last (a directory without it is left over
/// from an interrupted start).
pub(crate) const META: MapSpec = MapSpec {
    name: "meta",
    pin: pinned("meta"),
    exists: When::Always,
    size: Size::Declared,
    layout: Layout::of::<u32, types::netatop_meta>(),
};
/// Calls in flight of the kprobe way: at most one per thread and hooked
/// function.
const INFLIGHT: MapSpec = MapSpec {
    name: "inflight",
    pin: None,
    exists: When::Always,
    size: sized(SizeOption::Threads, 1, When::Attach(Mode::Kprobe)),
    layout: Layout::of::<types::call_key, types::call_val>(),
};
/// The map walk's sums: one per process, and those of processes gone
/// since the last walk.
pub(crate) const WALK: MapSpec = MapSpec {
    name: "walk",
    pin: None,
    exists: When::Always,
    size: sized(
        SizeOption::Procs,
        2,
        When::Snapshot(SnapshotMethod::MapWalk),
    ),
    layout: Layout::of::<u32, types::walk_val>(),
};
/// The map walk's processes gone, to remove from `walk`.
const WALK_STALE: MapSpec = MapSpec {
    name: "walk_stale",
    pin: None,
    exists: When::Always,
    size: sized(
        SizeOption::Procs,
        1,
        When::Snapshot(SnapshotMethod::MapWalk),
    ),
    layout: Layout::of::<(), u32>(),
};
/// IPv4 fragments awaiting their datagram.
const FRAGS: MapSpec = MapSpec {
    name: "frags",
    pin: None,
    exists: When::Count(Count::Wire),
    size: Size::Declared,
    layout: Layout::of::<types::frag_key, types::frag_val>(),
};
/// A removed cgroup's record being built.
const GONE_SCRATCH: MapSpec = MapSpec {
    name: "gone_scratch",
    pin: None,
    exists: When::Always,
    size: Size::Declared,
    layout: Layout::of::<u32, types::cgroup_gone>(),
};
/// Each CPU's tally of packets received.
const RX_TALLY: MapSpec = MapSpec {
    name: "rx_tally",
    pin: None,
    exists: When::Count(Count::Wire),
    size: Size::Declared,
    layout: Layout::of::<u32, types::rx_tally>(),
};

/// Every map of the object but its read-only configuration, the pinned
/// ones in the order they are pinned (`meta` last).
const TABLE: [MapSpec; 17] = [
    TSTORE,
    THREADS,
    PROCS,
    EXITED,
    STATS,
    CGROUPS,
    CGROUPS_GONE,
    OWNERS,
    LISTENERS,
    NETNS_WIRE,
    META,
    INFLIGHT,
    WALK,
    WALK_STALE,
    FRAGS,
    GONE_SCRATCH,
    RX_TALLY,
];

/// The table's entry of the object's map `name`.
pub(crate) fn spec_of(name: &OsStr) -> Option<&'static MapSpec> {
    TABLE.iter().find(|m| m.is(name))
}

/// The maps `plan` creates.
fn created(plan: &Plan) -> impl Iterator<Item = &'static MapSpec> + '_ {
    TABLE.iter().filter(|m| m.exists.holds(plan))
}

/// The maps `plan` pins, with their pin names, `meta` last.
pub(crate) fn pinned_by(
    plan: &Plan,
) -> impl Iterator<Item = (&'static MapSpec, &'static str)> + '_ {
    created(plan).filter_map(|m| match m.pin {
        Some(pin) if pin.when.holds(plan) => Some((m, pin.name)),
        _ => None,
    })
}

/// Every name a map of the table may be pinned under.
pub(crate) fn every_pin() -> impl Iterator<Item = &'static str> {
    TABLE.iter().filter_map(|m| m.pin.map(|p| p.name))
}

/// The pin names every pinned state has, whatever it counts, `meta`
/// last.
pub(crate) fn common_pins() -> Vec<&'static str> {
    let mut pins: Vec<&str> = TABLE
        .iter()
        .filter(|m| !matches!(m.exists, When::Count(_)))
        .filter_map(|m| m.pin.map(|p| p.name))
        .collect();
    pins.dedup();
    pins
}

/// Panics when a map that `plan` creates differs in layout from its
/// records.
pub(crate) fn check_layouts(object: &Object, plan: &Plan) {
    for map in object.maps() {
        if let Some(spec) = spec_of(map.name()).filter(|m| m.exists.holds(plan)) {
            spec.layout
                .check(spec.name, map.key_size(), map.value_size());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    use super::*;
    use crate::attach::{Extra, Extras};
    use crate::options::MapSizes;
    use crate::skel::NetatopSkelBuilder;

    /// Every combination of ways, with `sizes`.
    fn plans(sizes: MapSizes) -> Vec<Plan> {
        let mut plans = Vec::new();
        for mode in Mode::ALL {
            for snapshot in SnapshotMethod::ALL {
                for store in ThreadStore::ALL {
                    for count in Count::ALL {
                        let extras = Extras {
                            splice_read: Extra::NotNeeded("not probed"),
                            sendpage: Extra::NotNeeded("not probed"),
                        };
                        plans.push(Plan {
                            sizes,
                            mode,
                            extras,
                            snapshot,
                            store,
                            count,
                        });
                    }
                }
            }
        }
        plans
    }

    #[test]
    fn the_table_is_the_objects_maps_with_their_records_layout() {
        let mut object = MaybeUninit::uninit();
        let open = NetatopSkelBuilder::default()
            .open(&mut object)
            .expect("opening the object");
        let mut left: Vec<&MapSpec> = TABLE.iter().collect();
        for map in open.open_object().maps() {
            match spec_of(map.name()) {
                Some(spec) => {
                    spec.layout
                        .check(spec.name, map.key_size(), map.value_size());
                    left.retain(|m| m != &spec);
                }
                // Its configuration, set before loading, is all it holds.
                None => assert!(map.name().to_string_lossy().ends_with(".rodata")),
            }
        }
        assert!(left.is_empty(), "not in the object: {left:?}");
    }

    #[test]
    fn each_plan_pins_the_common_maps_its_threads_and_wire_maps_meta_last() {
        let common = [
            "threads",
            "procs",
            "exited",
            "stats",
            "cgroups",
            "cgroups_gone",
            "meta",
        ];
        assert_eq!(common_pins(), common);
        for plan in plans(MapSizes::default()) {
            let pins: Vec<&str> = pinned_by(&plan).map(|(_, pin)| pin).collect();
            assert_eq!(pins.last(), Some(&META.pin_name()), "{plan:?}");
            let mut extra: Vec<&str> = pins.clone();
            extra.retain(|p| !common.contains(p));
            extra.sort();
            let wire: &[&str] = match plan.count {
                Count::Calls => &[],
                Count::Wire => &["listeners", "owners", "wire"],
            };
            assert_eq!((pins.len(), &extra[..]), (common.len() + wire.len(), wire));
            let (holder, _) = pinned_by(&plan).find(|(_, p)| *p == "threads").unwrap();
            let want = match plan.store {
                ThreadStore::TaskStorage => TSTORE,
                ThreadStore::HashMap => THREADS,
            };
            assert_eq!(holder, &want);
        }
    }

    #[test]
    fn maps_are_created_where_their_way_is_used() {
        let wire = ["owners", "listeners", "netns_wire", "frags", "rx_tally"];
        for plan in plans(MapSizes::default()) {
            for m in TABLE {
                let made = created(&plan).any(|c| c == &m);
                let want = match m.name {
                    "tstore" => plan.store == ThreadStore::TaskStorage,
                    name => !wire.contains(&name) || plan.count == Count::Wire,
                };
                assert_eq!(made, want, "{}", m.name);
            }
        }
    }

    #[test]
    fn sizes_follow_their_options_and_unused_maps_have_one_entry() {
        let sizes = MapSizes {
            threads: 1000,
            procs: u32::MAX / 2 + 1,
            exited: 30,
            cgroups: 40,
            removed_cgroups: 50,
        };
        for plan in plans(sizes) {
            let n = |m: &MapSpec| m.entries(&plan).map(|(n, _)| n);
            let hash = plan.store == ThreadStore::HashMap;
            let walk = plan.snapshot == SnapshotMethod::MapWalk;
            let kprobe = plan.mode == Mode::Kprobe;
            assert_eq!(n(&THREADS), Some(if hash { 1000 } else { 1 }));
            assert_eq!(n(&INFLIGHT), Some(if kprobe { 1000 } else { 1 }));
            assert_eq!(n(&WALK), Some(if walk { u32::MAX } else { 1 }));
            assert_eq!(n(&WALK_STALE), Some(if walk { sizes.procs } else { 1 }));
            assert_eq!(n(&PROCS), Some(sizes.procs));
            assert_eq!(n(&EXITED), Some(30));
            assert_eq!(n(&CGROUPS), Some(40));
            assert_eq!(n(&CGROUPS_GONE), Some(50));
            for declared in [TSTORE, STATS, META, OWNERS, LISTENERS, NETNS_WIRE] {
                assert_eq!(n(&declared), None, "{}", declared.name);
            }
            assert_eq!(
                PROCS.entries(&plan),
                Some((sizes.procs, Some(SizeOption::Procs)))
            );
        }
    }
}
