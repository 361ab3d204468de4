//! Section 8: a large host, many processes with traffic and many live
//! threads at once, counted by one netatopd with its defaults.

use std::time::Instant;

use netatop_protocol::{query, ReadMode};
use netatopd_tests::{run_lingering, Daemon, Gen, Report};

use crate::load::{spawn_processes, time_queries, PidMax};
use crate::memory::{kernel_memory, stats};
use crate::Scale;

/// Section 8, a large host: many processes with traffic and many live
/// threads at once, counted by one netatopd with its defaults.
pub fn large(s: &Scale) {
    let (procs, farms, per_farm) = (s.large_procs, s.large_farms, s.large_threads_per_farm);
    println!(
        "## 8. A large host: {} threads and {procs} processes with traffic\n",
        farms * per_farm
    );
    let _pid_max = PidMax::room_for(procs + farms * per_farm + 10_000);
    let d = Daemon::start(&[]);
    let started = Instant::now();
    let forked = spawn_processes(procs);
    let farms: Vec<(Gen, Report)> = (0..farms)
        .map(|_| {
            run_lingering(
                "thread-farm",
                &[
                    "--threads",
                    &per_farm.to_string(),
                    "--count",
                    "1",
                    "--size",
                    "64",
                ],
            )
        })
        .collect();
    println!(
        "set up in {:.1} s; netatopd's {}\n",
        started.elapsed().as_secs_f64(),
        stats(&d)["attach_mode"]
            .as_str()
            .unwrap_or("")
            .rsplit("; ")
            .next()
            .unwrap_or("")
    );
    let (med, max, recs) = time_queries(&d, s.queries);
    // Every farm process's total, exactly.
    let all = query(&mut d.connect(), ReadMode::AsAtop).expect("query");
    let exact = farms.iter().all(|(_, r)| {
        let mut sum = r.counters;
        for t in &r.threads {
            sum.add(&t.counters);
        }
        all.iter().any(|x| x.id == r.pid && x.counters == sum)
    });
    let t = Instant::now();
    let listed = d
        .ctl()
        .args(["dump", "--json", "--threads"])
        .output()
        .expect("netatopctl dump");
    let list_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(listed.status.success());
    let v = stats(&d);
    let lost: u64 = [
        "thread_map_full",
        "proc_map_full",
        "thread_storage_failed",
        "exit_map_full",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap())
    .sum();
    let (maps, storage) = kernel_memory(&d);
    println!("| measure | value |\n|---|---|");
    println!("| threads with counters | {} |", v["threads"]);
    println!("| processes with counters | {} |", v["processes"]);
    println!("| socket calls not counted (map full, storage refused) | {lost} |");
    println!(
        "| every thread-farm process's total exact | {} |",
        if exact { "yes" } else { "NO" }
    );
    println!("| atop query, {recs} records: median / max ms | {med:.1} / {max:.1} |");
    println!("| netatopctl dump --threads (JSON), ms | {list_ms:.0} |");
    println!("| kernel memory: maps | {maps} |");
    println!("| kernel memory: threads' task storage (estimated) | {storage} |");
    println!();
    for (g, _) in farms {
        g.finish();
    }
    forked.finish();
}
