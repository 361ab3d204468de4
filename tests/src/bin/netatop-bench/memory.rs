//! Sections 4 and 5: the daemon's own memory, and the kernel memory of
//! its maps and of its threads' task storage.

use std::fs;
use std::time::{Duration, Instant};

use netatopd_tests::Daemon;

use crate::load::{spawn_processes, time_queries};
use crate::Scale;

/// Fields `keys` (such as `VmRSS:`) of a process's /proc/PID/status, kB
/// (0 where missing).
fn status_kb<const N: usize>(pid: u32, keys: [&str; N]) -> [u64; N] {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    keys.map(|k| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    })
}

/// (VmRSS, RssAnon) of a process, kB.
fn rss(pid: u32) -> (u64, u64) {
    let [rss, anon] = status_kb(pid, ["VmRSS:", "RssAnon:"]);
    (rss, anon)
}

/// netatopd's statistics (`netatopctl stats --json`).
pub fn stats(d: &Daemon) -> serde_json::Value {
    let out = d.ctl().args(["stats", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "netatopctl stats: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Kernel memory of the daemon, bytes (netatopctl stats): its maps, and
/// its threads' task storage (estimated from the kernel's types).
pub fn kernel_memory(d: &Daemon) -> (u64, u64) {
    let v = stats(d);
    (
        v["map_memory_bytes"].as_u64().unwrap(),
        v["thread_storage_bytes"].as_u64().unwrap(),
    )
}

/// Section 4: the daemon's memory, idle, right after snapshots, and once
/// it has given their buffers back.
pub fn memory(s: &Scale) {
    println!("## 4. Daemon memory (default options)\n");
    let d = Daemon::start(&[]);
    let idle = rss(d.pid());
    let g = spawn_processes(s.memory_procs);
    let (med, max, recs) = time_queries(&d, s.queries);
    let after = rss(d.pid());
    // netatopd gives the snapshot buffers back after a second without
    // queries (its housekeeping runs every second).
    let settle = Instant::now();
    let mut released = rss(d.pid());
    while settle.elapsed() < Duration::from_secs(5) && released.1 >= after.1 {
        std::thread::sleep(Duration::from_millis(100));
        released = rss(d.pid());
    }
    let [peak] = status_kb(d.pid(), ["VmHWM:"]);
    g.finish();
    println!("| state | VmRSS kB | RssAnon kB |\n|---|---|---|");
    println!("| idle | {} | {} |", idle.0, idle.1);
    println!(
        "| right after {} snapshots of {recs} records | {} | {} |",
        s.queries, after.0, after.1
    );
    println!(
        "| {:.1} s later (buffers given back) | {} | {} |",
        settle.elapsed().as_secs_f64(),
        released.0,
        released.1
    );
    println!("\npeak VmRSS (VmHWM): {peak} kB\n");
    println!("(those snapshots at default map sizes: median {med:.2} ms, max {max:.2} ms)\n");
}

/// Section 5: kernel memory, idle and with processes with traffic, for
/// a few map sizes and thread stores.
pub fn maps(s: &Scale) {
    println!("## 5. Kernel memory (memlock of the map fds, and the threads' task storage)\n");
    let cpus = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    println!("possible CPUs: {}\n", cpus.trim());
    println!(
        "| options | idle bytes | with {} processes with traffic: maps + task storage = bytes | per process |\n|---|---|---|---|",
        s.map_procs
    );
    for opts in [
        &[][..],
        &["--max-processes", "8192"][..],
        &["--thread-counters", "hash-map"][..],
    ] {
        let d = Daemon::start(opts);
        let (idle, idle_storage) = kernel_memory(&d);
        let g = spawn_processes(s.map_procs);
        let (maps, storage) = kernel_memory(&d);
        g.finish();
        let busy = maps + storage;
        println!(
            "| {} | {} | {maps} + {storage} = {busy} | {:.0} |",
            if opts.is_empty() {
                "defaults".to_owned()
            } else {
                opts.join(" ")
            },
            idle + idle_storage,
            (busy - idle - idle_storage) as f64 / s.map_procs as f64
        );
    }
    println!();
}
