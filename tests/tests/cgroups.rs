//! Per-cgroup totals: cgroups named the way systemd, docker and kubelet
//! name them, made under the cgroup v2 hierarchy (below a parent of each
//! test's own, removed at the end; where no cgroup2 is mounted, the test
//! mounts one and unmounts it), generators moved into them before their
//! traffic, some exiting between reads. Totals must be exact and never
//! decrease; a removed cgroup's final totals come once, marked, and stay in
//! its parent's; a process that moves counts wholly in its new cgroup;
//! `top --by` rates add up to the traffic; the export passes promtool and a
//! real node_exporter serves it, through the README's recipe.
//!
//! The tests named `kernel_*` need no tools beyond the build and run in the
//! booted kernels too (`tests/tests/kernels.rs`).

use std::io::BufRead;
use std::time::Duration;

use netatop_protocol::Counters;
use netatopd_tests::{json, ok, wait_until, Daemon};

#[path = "cgroups/prometheus.rs"]
mod prometheus;
#[path = "cgroups/totals.rs"]
mod totals;
#[path = "cgroups/tree.rs"]
mod tree;

use prometheus::{node_exporter_serves, promtool_accepts, readme_recipe, tools_dir};
use totals::{find, generator_in, groups, never_lower, read, sum, Group};
use tree::Cgroups;

const CONTAINER: &str = "5a3f9c1e7b2d4608a1b3c5d7e9f01234567890abcdef1234567890abcdef1234";
const POD: &str = "1a2b3c4d-0000-4e5f-8a9b-0c1d2e3f4a5b";
// Another container and pod, for a test that runs beside the one above
// (each daemon counts every process of the machine).
const CONTAINER2: &str = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
const POD2: &str = "9f8e7d6c-1111-4a2b-9c3d-4e5f6a7b8c9d";

#[test]
fn kernel_totals_by_cgroup_unit_container_and_pod_are_exact_and_never_go_back() {
    let d = Daemon::start(&[]);
    let mut cg = Cgroups::new("totals");
    let service = cg.make("system.slice/nginx.service");
    let worker = cg.make("system.slice/nginx.service/worker");
    let docker = cg.make(&format!("system.slice/docker-{CONTAINER}.scope"));
    let pod = cg.make(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CONTAINER}.scope",
        POD.replace('-', "_")
    ));
    // Two generators in each cgroup (one in the worker), each of its own
    // known UDP traffic, moved in before it.
    let mut gens = Vec::new();
    let mut truth = [Counters::default(); 4];
    for (i, dir) in [&service, &docker, &pod, &worker].into_iter().enumerate() {
        for k in 0..if i == 3 { 1 } else { 2 } {
            let (g, c) = generator_in(dir, 10 * (i + 1) + k);
            truth[i].add(&c);
            gens.push(g);
        }
    }
    let nginx = sum(&truth[0], &truth[3]);
    let mut last: Option<Vec<Group>> = None;
    for read in 0..6 {
        // Between reads, one generator exits: its totals stay its cgroup's.
        if read % 2 == 1 {
            gens.remove(0).finish();
        }
        let units = groups(&d, "unit", "unit");
        assert_eq!(
            find(&units, "nginx.service"),
            Some(&nginx),
            "read {read}: {units:?}"
        );
        let containers = groups(&d, "container", "container_id");
        // The docker scope and the pod's containerd scope name the same
        // container id here: the container's total is both.
        let both = sum(&truth[1], &truth[2]);
        assert_eq!(find(&containers, CONTAINER), Some(&both), "read {read}");
        let pods = groups(&d, "pod", "pod_uid");
        assert_eq!(find(&pods, POD), Some(&truth[2]), "read {read}");
        let cgroups = groups(&d, "cgroup", "cgroup");
        assert_eq!(
            find(&cgroups, "-totals/system.slice/nginx.service/worker"),
            Some(&truth[3])
        );
        assert_eq!(
            find(&cgroups, "-totals/system.slice/nginx.service"),
            Some(&truth[0])
        );
        if let Some(before) = &last {
            for (k, c, _) in before {
                let now = find(&cgroups, k).unwrap_or_else(|| panic!("{k} gone at read {read}"));
                assert!(
                    never_lower(c, now),
                    "{k} went back at read {read}: {c:?} then {now:?}"
                );
            }
        }
        last = Some(cgroups);
    }
    for g in gens {
        g.finish();
    }
    // The worker's removal: its final totals come once, marked, and stay
    // in nginx.service's, so the unit does not go back.
    cg.remove(&worker);
    wait_until(
        Duration::from_secs(5),
        "the worker's removal collected",
        || {
            read(&d, "cgroup", "cgroup", true)
                .iter()
                .any(|(k, c, removed)| {
                    *removed
                        && k.ends_with("-totals/system.slice/nginx.service/worker")
                        && *c == truth[3]
                })
        },
    );
    let cgroups = groups(&d, "cgroup", "cgroup");
    assert!(
        find(&cgroups, "-totals/system.slice/nginx.service/worker").is_none(),
        "{cgroups:?}"
    );
    assert_eq!(
        find(&cgroups, "-totals/system.slice/nginx.service"),
        Some(&nginx)
    );
    let units = read(&d, "unit", "unit", true);
    assert_eq!(
        units
            .iter()
            .filter(|(k, _, _)| k == "nginx.service")
            .collect::<Vec<_>>(),
        [&("nginx.service".to_owned(), nginx, false)],
        "the removed worker is in the unit's row, not a row of its own: {units:?}"
    );
    // The unit's removal: its final totals come once, marked; then the
    // unit is gone, and its totals are its parent slice's.
    cg.remove(&service);
    wait_until(
        Duration::from_secs(5),
        "the unit's removal collected",
        || {
            read(&d, "unit", "unit", true)
                .iter()
                .any(|(k, c, removed)| *removed && k == "nginx.service" && *c == nginx)
        },
    );
    assert!(find(&groups(&d, "unit", "unit"), "nginx.service").is_none());
    assert_eq!(
        find(&groups(&d, "cgroup", "cgroup"), "-totals/system.slice"),
        Some(&nginx)
    );
    let stats = json(d.ctl().args(["stats", "--json"]));
    // (Every daemon sees the removals of the tests beside this one too.)
    assert!(stats["cgroups_removed"].as_u64() >= Some(2), "{stats}");
    assert_eq!(stats["cgroup_map_full"], 0, "{stats}");
    assert_eq!(stats["cgroup_gone_full"], 0, "{stats}");
    assert_eq!(stats["max_cgroups"], 16384, "{stats}");
}

#[test]
fn kernel_a_process_that_moves_counts_wholly_in_its_new_cgroup() {
    let d = Daemon::start(&[]);
    let mut cg = Cgroups::new("moves");
    let a = cg.make("system.slice/a.service");
    let b = cg.make("system.slice/b.service");
    let (g, x) = generator_in(&a, 20);
    assert_eq!(find(&groups(&d, "unit", "unit"), "a.service"), Some(&x));
    // Moved after its traffic: all of it shows in b; a keeps what it
    // showed.
    Cgroups::enter(&b, g.pid());
    let units = groups(&d, "unit", "unit");
    assert_eq!(find(&units, "a.service"), Some(&x), "{units:?}");
    assert_eq!(find(&units, "b.service"), Some(&x), "{units:?}");
    // It exits in b: its totals stay b's.
    g.finish();
    let units = groups(&d, "unit", "unit");
    assert_eq!(find(&units, "a.service"), Some(&x), "{units:?}");
    assert_eq!(find(&units, "b.service"), Some(&x), "{units:?}");
    // Less new traffic in a than it showed: a shows no less than before
    // until its own traffic catches up.
    let (g2, y) = generator_in(&a, 5);
    assert!(never_lower(&y, &x));
    g2.finish();
    assert_eq!(find(&groups(&d, "unit", "unit"), "a.service"), Some(&x));
    let (g3, z) = generator_in(&a, 30);
    let now = *find(&groups(&d, "unit", "unit"), "a.service").expect("a.service");
    assert_eq!(now, sum(&y, &z), "a's own traffic has caught up");
    g3.finish();
    // Removed: a's final totals never less than it showed.
    cg.remove(&a);
    wait_until(Duration::from_secs(5), "a's removal collected", || {
        read(&d, "unit", "unit", true)
            .iter()
            .any(|(k, c, removed)| *removed && k == "a.service" && *c == sum(&y, &z))
    });
}

#[test]
fn kernel_top_by_unit_rates_add_up_to_the_traffic() {
    let d = Daemon::start(&[]);
    let mut cg = Cgroups::new("top");
    let web = cg.make("system.slice/web.service");
    let mut top = d
        .ctl()
        .args(["top", "--by", "unit", "--json", "-i", "0.2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("netatopctl top");
    let mut lines = std::io::BufReader::new(top.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        let line = lines.next().expect("a sample").expect("reading top");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    // The first sample is printed after top's first reading: what follows
    // is all in later samples.
    let mut samples = vec![next()];
    let (g, x) = generator_in(&web, 30);
    g.finish();
    cg.remove(&web);
    wait_until(Duration::from_secs(5), "the removal collected", || {
        read(&d, "unit", "unit", true)
            .iter()
            .any(|(k, _, removed)| *removed && k == "web.service")
    });
    // Two more samples: the second read after the removal was collected.
    samples.push(next());
    samples.push(next());
    let _ = top.kill();
    let _ = top.wait();
    let mut packets = 0.0;
    let mut bytes = 0.0;
    let mut removed = 0;
    for s in &samples {
        let secs = s["interval"].as_f64().expect("interval");
        for row in s["groups"].as_array().expect("groups") {
            if row["unit"] == "web.service" {
                packets += row["send_packets_per_sec"].as_f64().unwrap() * secs;
                bytes += row["send_bytes_per_sec"].as_f64().unwrap() * secs;
                removed += usize::from(row["removed"] == true);
            }
        }
    }
    assert_eq!(packets.round() as u64, x.send_packets(), "{samples:?}");
    assert_eq!(bytes.round() as u64, x.send_bytes(), "{samples:?}");
    assert!(
        removed <= 1,
        "a removed unit shown more than once: {samples:?}"
    );
    // The table: a UNIT column and the rate columns.
    let text = ok(d
        .ctl()
        .args(["top", "--by", "unit", "-n", "1", "-i", "0.05"]));
    assert!(
        text.contains("units with traffic") || text.contains("groups with traffic"),
        "{text}"
    );
}

#[test]
fn kernel_paths_without_a_cgroup2_mount() {
    // netatopd sees no cgroup2 mounted: it reaches the hierarchy through
    // a mount of its own, detached at once.
    let d = Daemon::builder().without_cgroup2().start();
    let mut cg = Cgroups::new("unmounted");
    let dir = cg.make("system.slice/unmounted.service");
    let (g, x) = generator_in(&dir, 7);
    let cgroups = groups(&d, "cgroup", "cgroup");
    let path = format!(
        "/netatop-test-{}-unmounted/system.slice/unmounted.service",
        std::process::id()
    );
    assert_eq!(find(&cgroups, &path), Some(&x), "{cgroups:?}");
    assert_eq!(
        find(&groups(&d, "unit", "unit"), "unmounted.service"),
        Some(&x)
    );
    g.finish();
    assert!(
        d.log()
            .contains("cgroup paths from a cgroup2 mount of its own"),
        "{}",
        d.log()
    );
}

#[test]
fn a_full_cgroup_map_is_counted_and_warned_about() {
    // Room for one cgroup: of three whose processes exit, at most one
    // keeps their totals.
    let d = Daemon::start(&["--max-cgroups", "1"]);
    let mut cg = Cgroups::new("full");
    for name in ["one", "two", "three"] {
        let dir = cg.make(&format!("system.slice/{name}.service"));
        generator_in(&dir, 3).0.finish();
    }
    let stats = json(d.ctl().args(["stats", "--json"]));
    assert_eq!(stats["max_cgroups"], 1, "{stats}");
    assert!(stats["cgroup_map_full"].as_u64() >= Some(2), "{stats}");
    assert!(stats["cgroups"].as_u64() <= Some(1), "{stats}");
    wait_until(Duration::from_secs(5), "the warning", || {
        d.log()
            .contains("the cgroup map is full (1 entries; raise --max-cgroups)")
    });
    let text = ok(d.ctl().arg("stats"));
    assert!(text.contains("cgroup map full:"), "{text}");
}

#[test]
fn prometheus_tools_take_the_export_through_the_readme_recipe() {
    let d = Daemon::start(&[]);
    let mut cg = Cgroups::new("prometheus");
    let service = cg.make("system.slice/api.service");
    let docker = cg.make(&format!("system.slice/docker-{CONTAINER2}.scope"));
    let pod = cg.make(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CONTAINER2}.scope",
        POD2.replace('-', "_")
    ));
    let (g1, unit) = generator_in(&service, 11);
    let (g2, _) = generator_in(&docker, 12);
    let (g3, in_pod) = generator_in(&pod, 13);
    // Exited or not, the same totals.
    g1.finish();
    let tools = tools_dir();
    for by in ["pid", "command", "cgroup", "unit", "container", "pod"] {
        let text = ok(d
            .ctl()
            .args(["export", "--format", "prometheus", "--by", by]));
        promtool_accepts(&tools, &text);
    }
    // The README's recipe, as written, into a directory of this test.
    let (cron, exec) = readme_recipe();
    let command = cron
        .splitn(7, ' ')
        .nth(6)
        .expect("a cron line: five times, a user, a command");
    assert_eq!(
        exec,
        format!("/usr/bin/{command}"),
        "the timer's command is not the cron line's"
    );
    let textfiles = netatopd_tests::scratch_dir();
    let command = command.replace(
        "/var/lib/prometheus/node-exporter",
        &textfiles.display().to_string(),
    );
    let bin_dir = netatopd_tests::bin("netatopctl");
    let path = format!(
        "{}:{}",
        bin_dir.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let socket_args = format!(
        " --socket '{}' --control-socket '{}'",
        d.socket.display(),
        d.control_socket().display()
    );
    ok(std::process::Command::new("sh")
        .arg("-c")
        .arg(command + &socket_args)
        .env("PATH", path));
    let written = textfiles.join("netatop-units.prom");
    let text = std::fs::read_to_string(&written).expect("the recipe's file");
    promtool_accepts(&tools, &text);
    let served = node_exporter_serves(&tools, &textfiles);
    let line = format!(
        "netatop_udp_send_packets_total{{unit=\"api.service\"}} {}",
        unit.udpsndpacks
    );
    assert!(served.contains(&line), "{line} not served:\n{served}");
    let _ = std::fs::remove_dir_all(&textfiles);
    // Per pod, as served.
    let text = ok(d
        .ctl()
        .args(["export", "--format", "prometheus", "--by", "pod"]));
    let dir = netatopd_tests::scratch_dir();
    std::fs::write(dir.join("netatop.prom"), &text).unwrap();
    let served = node_exporter_serves(&tools, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let line = format!(
        "netatop_udp_send_packets_total{{pod_uid=\"{POD2}\",qos=\"burstable\"}} {}",
        in_pod.udpsndpacks
    );
    assert!(served.contains(&line), "{line} not served:\n{served}");
    g2.finish();
    g3.finish();
}
