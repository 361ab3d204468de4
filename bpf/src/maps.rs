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
/// Each user's processes in `procs` (users other than root), for the
/// per-user limit; it follows `procs`, so it is pinned with it.
const USER_PROCS: MapSpec = MapSpec {
    name: "user_procs",
    pin: pinned("user_procs"),
    exists: When::Always,
    size: sized(SizeOption::Procs, 1, When::Always),
    layout: Layout::of::<u32, u64>(),
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
/// The sockets whose owner is taking what they carried without one: one
/// taker at a time.
const CLAIMING: MapSpec = MapSpec {
    name: "claiming",
    pin: None,
    exists: When::Count(Count::Wire),
    size: Size::Declared,
    layout: Layout::of::<u64, u32>(),
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
const TABLE: [MapSpec; 19] = [
    TSTORE,
    THREADS,
    PROCS,
    USER_PROCS,
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
    CLAIMING,
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
mod tests;
