//! netatop-bench, netatopd's benchmark suite (see BENCHMARKS.md): its
//! command line, its two scales, and the table of its sections.
//!
#![doc = "```text"]
#![doc = include_str!("usage.txt")]
#![doc = "```"]

mod calls;
mod candidates;
mod design;
mod large;
mod lifecycle;
mod load;
mod measure;
mod memory;
mod programs;
mod snapshot;
mod wire;

use std::fs;

use netatopd_tests::require_bpf_machine;

/// What `netatop-bench` prints on a wrong command line (and its doc says).
const USAGE: &str = include_str!("usage.txt");

/// How much each section does: a full run, or --quick.
pub struct Scale {
    /// UDP round trips per measurement.
    pub round_trips: u64,
    /// Interleaved A/B rounds.
    pub rounds: usize,
    pub snapshot_sizes: Vec<usize>,
    pub queries: usize,
    pub memory_procs: usize,
    pub map_procs: usize,
    pub churn: usize,
    pub churn_rounds: usize,
    pub startups: usize,
    /// A large host: processes with traffic, and live threads as
    /// thread-farm processes of so many threads each.
    pub large_procs: usize,
    pub large_farms: usize,
    pub large_threads_per_farm: usize,
    /// The wire section's traffic, divided by this.
    pub wire_divisor: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            round_trips: 100_000,
            rounds: 21,
            snapshot_sizes: vec![1_000, 10_000, 40_000],
            queries: 30,
            memory_procs: 10_000,
            map_procs: 1_000,
            churn: 10_000,
            churn_rounds: 3,
            startups: 7,
            large_procs: 40_000,
            large_farms: 50,
            large_threads_per_farm: 2_000,
            wire_divisor: 1,
        }
    }

    fn quick() -> Scale {
        Scale {
            round_trips: 5_000,
            rounds: 3,
            snapshot_sizes: vec![100],
            queries: 5,
            memory_procs: 100,
            map_procs: 50,
            churn: 100,
            churn_rounds: 1,
            startups: 2,
            large_procs: 500,
            large_farms: 2,
            large_threads_per_farm: 1_000,
            wire_divisor: 10,
        }
    }
}

/// A section: it measures at its scale and prints its Markdown.
type Section = fn(&Scale);

/// Every section, in the order a run takes them.
const SECTIONS: [(&str, Section); 12] = [
    ("calls", calls::calls),
    ("ways", calls::ways),
    ("threads", calls::threads),
    ("snapshot", snapshot::snapshot),
    ("memory", memory::memory),
    ("maps", memory::maps),
    ("churn", lifecycle::churn),
    ("startup", lifecycle::startup),
    ("large", large::large),
    ("wire", wire::wire),
    ("design", design::design),
    ("others", calls::others),
];

/// The sections that run only when named.
const ONLY_WHEN_NAMED: [&str; 2] = ["design", "others"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut scale = if quick { Scale::quick() } else { Scale::full() };
    // --rounds N and --round-trips N scale the per-call sections, e.g.
    // for a guest under emulation where calls are slow.
    let num = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a number"))
    };
    if let Some(n) = num("--rounds") {
        scale.rounds = n;
    }
    if let Some(n) = num("--round-trips") {
        scale.round_trips = n as u64;
    }
    let sections: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            *a != "--quick"
                && !a.starts_with("--round")
                && !(*i > 0 && args[i - 1].starts_with("--round"))
        })
        .map(|(_, a)| a.as_str())
        .collect();
    for s in &sections {
        if !SECTIONS.iter().any(|(name, _)| name == s) {
            eprintln!("netatop-bench: unknown section {s}\n");
            eprint!("{USAGE}");
            std::process::exit(2);
        }
    }
    require_bpf_machine();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "# netatop-bench{}\n\nLinux {}, {} CPUs online\n",
        if quick { " --quick" } else { "" },
        release.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (name, run) in SECTIONS {
        let named = sections.contains(&name);
        if (!sections.is_empty() || ONLY_WHEN_NAMED.contains(&name)) && !named {
            continue;
        }
        run(&scale);
    }
}

#[cfg(test)]
mod tests {
    use super::{SECTIONS, USAGE};

    /// The usage names every section there is, in the order a run takes
    /// them, and no other.
    #[test]
    fn the_usage_names_every_section_in_order() {
        let listed = netatopd_tests::listed_names(USAGE, "Sections", "Options:");
        let known: Vec<&str> = SECTIONS.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, known);
    }
}
