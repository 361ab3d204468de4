//! The benchmark suite still runs end to end (at a small scale). It
//! asserts nothing about time: the figures live in BENCHMARKS.md.

use std::process::Command;

use netatopd_tests::{bin, ok, require_bpf_machine};

/// One suite at a time: each switches kernel.bpf_stats_enabled on and
/// back.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_benchmark_suite_runs_every_section() {
    require_bpf_machine();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(STATS).unwrap();
    let text = ok(Command::new(bin("netatop-bench")).arg("--quick"));
    for section in [
        "## 1. Added cost per socket call",
        "| netatop_send |",
        "| netatop_recv |",
        "netatopd's programs, threads' counters in a hash map",
        "## 1b. Added cost per socket call, each way of attaching",
        "| netatopd, tracepoint |",
        "## 2. Two threads",
        "## 3. Snapshot latency",
        "## 4. Daemon memory",
        "## 5. Kernel memory",
        "| --thread-counters hash-map |",
        "## 6. Exit churn",
        "no map entries left: yes",
        "## 7. Start-up",
        "## 8. A large host",
        "| socket calls not counted (map full, storage refused) | 0 |",
        "| every thread-farm process's total exact | yes |",
        "## 9. Counting the wire",
        "| netatopd --count wire |",
        "| netatop_xmit |",
        "| netatop_sock_in |",
        "### Against the interfaces",
        "| TCP, short connections, one exchange of 32 B each",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    // bpf_stats is switched back to what it was.
    assert_eq!(std::fs::read_to_string(STATS).unwrap(), before);
}

/// The designs of wire counting side by side (a section only run when
/// named), without netatop-bpf, which no test uses.
#[test]
fn the_design_section_runs_without_netatop_bpf() {
    require_bpf_machine();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let text = ok(Command::new(bin("netatop-bench"))
        .args(["--quick", "design"])
        .env_remove("NETATOP_BENCH_ANCHOR"));
    for line in [
        "## 9b. Designs of wire counting",
        "(netatop-bpf not measured: NETATOP_BENCH_ANCHOR is not set)",
        "| candidate: socket counters at the cgroup hooks, folded at calls |",
        "### TCP request/response, 64 B",
        "### TCP bulk, 64 KiB writes",
        "### A service-like mix",
        "| candidate 5: the third, no send call program",
        "| sockfold_egress |",
        "| sockfold_send |",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(!text.contains("netatop-bpf (C"), "{text}");
}
