//! The table of maps against the object and the plans: every map there,
//! created, sized and pinned where its way is used.

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
        "user_procs",
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
    let wire = [
        "owners",
        "listeners",
        "netns_wire",
        "frags",
        "rx_tally",
        "claiming",
    ];
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
        procs_per_user: 60,
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
        assert_eq!(n(&USER_PROCS), Some(sizes.procs));
        assert_eq!(n(&EXITED), Some(30));
        assert_eq!(n(&CGROUPS), Some(40));
        assert_eq!(n(&CGROUPS_GONE), Some(50));
        for declared in [TSTORE, STATS, META, OWNERS, LISTENERS, NETNS_WIRE, CLAIMING] {
            assert_eq!(n(&declared), None, "{}", declared.name);
        }
        assert_eq!(
            PROCS.entries(&plan),
            Some((sizes.procs, Some(SizeOption::Procs)))
        );
    }
}
