//! netatopd's programs loaded in this process (so that rounds can switch
//! them quickly), the ways the run forces or a section asks; and the
//! kernel's own figures per program run (kernel.bpf_stats_enabled).

use std::fs;
use std::path::PathBuf;

use netatopd_bpf::{Kernel, LoadOptions, MapSizes, Mode, ThreadStore, Tracer};
use netatopd_tests::Daemon;

use crate::candidates::{Floor, FloorCalls};
use crate::measure::ping_pong;
use crate::Scale;

/// Options that load netatopd's programs the way NETATOPD_TEST_ATTACH,
/// NETATOPD_TEST_SNAPSHOT, NETATOPD_TEST_THREADS and NETATOPD_TEST_COUNT
/// force (as every netatopd the suite starts), else the kernel's best,
/// with maps of `sizes`.
pub fn forced(sizes: MapSizes) -> LoadOptions {
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    LoadOptions {
        sizes,
        attach: var("NETATOPD_TEST_ATTACH").and_then(|v| Mode::from_name(&v)),
        snapshot: var("NETATOPD_TEST_SNAPSHOT")
            .and_then(|v| netatopd_bpf::SnapshotMethod::from_name(&v)),
        threads: var("NETATOPD_TEST_THREADS").and_then(|v| ThreadStore::from_name(&v)),
        count: var("NETATOPD_TEST_COUNT")
            .and_then(|v| netatopd_bpf::Count::from_name(&v))
            .unwrap_or_default(),
    }
}

/// Programs that do nothing, on the tracepoints netatopd's attach to;
/// detached when dropped.
pub fn empty_programs() -> Floor {
    Floor::attach(FloorCalls::Both, false).expect("empty programs")
}

/// netatopd's programs and maps, loaded as the daemon loads them;
/// unloaded, and their pins removed, when dropped.
pub struct NetatopdPrograms(Option<Tracer>, PathBuf);

impl NetatopdPrograms {
    /// As every netatopd of the run (see [`forced`]), with default maps.
    pub fn load() -> Self {
        Self::load_opts(forced(MapSizes::default()))
    }

    /// As the daemon loads them, with threads' counters in `store` (None:
    /// where the kernel and NETATOPD_TEST_THREADS put them).
    pub fn load_with(store: Option<ThreadStore>) -> Self {
        let Some(store) = store else {
            return Self::load();
        };
        Self::load_opts(LoadOptions {
            threads: Some(store),
            ..Default::default()
        })
    }

    /// Attached the way `mode` says.
    pub fn load_way(mode: Mode) -> Self {
        let opts = LoadOptions {
            attach: Some(mode),
            ..Default::default()
        };
        Self::load_in(&opts, &format!("-{}", mode.name()))
    }

    /// As the daemon loads them with options `opts`.
    pub fn load_opts(opts: LoadOptions) -> Self {
        Self::load_in(&opts, "")
    }

    /// With options `opts`, pinned in /sys/fs/bpf/netatop-bench-PID`tag`.
    fn load_in(opts: &LoadOptions, tag: &str) -> Self {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/netatop-bench-{}{tag}",
            std::process::id()
        ));
        let (tracer, _) =
            Tracer::load_on(&Kernel::probe(), opts, &dir).expect("loading netatopd's programs");
        NetatopdPrograms(Some(tracer), dir)
    }

    /// The loaded programs and maps.
    pub fn tracer(&self) -> &Tracer {
        self.0.as_ref().expect("loaded until dropped")
    }
}

impl Drop for NetatopdPrograms {
    fn drop(&mut self) {
        let _ = netatopd_bpf::remove_pins(&self.1);
        drop(self.0.take());
    }
}

/// kernel.bpf_stats_enabled=1 for as long as it lives (then switched back
/// to what it was): the kernel's own run_time_ns / run_cnt per program.
pub struct BpfStats(String);

impl BpfStats {
    const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    pub fn enable() -> BpfStats {
        let before = fs::read_to_string(Self::PATH).unwrap_or_else(|_| "0".into());
        fs::write(Self::PATH, "1").expect("enabling bpf_stats");
        BpfStats(before)
    }

    /// netatopd's programs that ran: name, runs, ns per run.
    pub fn read(&self) -> Vec<(String, u64, f64)> {
        self.read_named(&["netatop_"])
    }

    /// The programs whose names start with one of `prefixes` that ran:
    /// name, runs, ns per run.
    pub fn read_named(&self, prefixes: &[&str]) -> Vec<(String, u64, f64)> {
        libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| {
                p.name
                    .to_str()
                    .is_some_and(|n| prefixes.iter().any(|x| n.starts_with(x)))
            })
            .filter(|p| p.run_cnt > 0)
            .map(|p| {
                let name = p.name.to_string_lossy().into_owned();
                (name, p.run_cnt, p.run_time_ns as f64 / p.run_cnt as f64)
            })
            .collect()
    }

    /// Prints `figures` (of [`BpfStats::read`]) as a table.
    pub fn print(figures: &[(String, u64, f64)]) {
        println!("| program | runs | ns per run |\n|---|---|---|");
        for (name, runs, ns) in figures {
            println!("| {name} | {runs} | {ns:.1} |");
        }
        println!();
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(Self::PATH, self.0.trim());
    }
}

/// The kernel's own figure per program run, netatopd started with
/// options `opts`, during one round.
pub fn kernel_figure(s: &Scale, opts: &[&str]) {
    let stats = BpfStats::enable();
    let d = Daemon::start(opts);
    ping_pong(s.round_trips, 0);
    let figures = stats.read();
    drop(d);
    drop(stats);
    println!(
        "kernel.bpf_stats_enabled=1 during one running round (switched back afterwards), netatopd{}{}:\n",
        if opts.is_empty() { "" } else { " " },
        opts.join(" ")
    );
    BpfStats::print(&figures);
}
