//! The container image (`make image`: target/netatopd-image.tar, an OCI
//! archive built from scratch with the static binaries) run on this host as
//! the Kubernetes DaemonSet's pod template runs it
//! (deploy/kubernetes/netatopd.yaml, turned into podman run flags field by
//! field: the node's pid namespace and network, /sys/fs/bpf,
//! /sys/kernel/btf and the cgroups mounted, its capabilities and no
//! privileged mode, the metrics sidecar unprivileged). What it must do:
//! feed the atop socket on the host exactly, and give a real Prometheus
//! server exact per-pod counters from the sidecar. The one change to the
//! template: the host's /run is a directory of the test's own.

use std::path::Path;
use std::time::Duration;

use netatopd_tests::{query_on, record_for, wait_until};

#[allow(dead_code)]
#[path = "cgroups/prometheus.rs"]
mod prometheus;
#[allow(dead_code)]
#[path = "cgroups/totals.rs"]
mod totals;
#[allow(dead_code)]
#[path = "cgroups/tree.rs"]
mod tree;

#[path = "image/podman.rs"]
mod podman;
#[path = "scrape/prom.rs"]
mod prom;

use podman::{daemonset, run_args, Podman};
use prom::{get, prometheus as prometheus_server, tempdir, wait_stored};
use totals::generator_in;
use tree::Cgroups;

const POD: &str = "5f6a7b8c-4444-4d9e-8f0a-2b3c4d5e6f70";
const CONTAINER: &str = "8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e";

/// This process's hard limit of open files.
fn nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit it is given.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    l.rlim_max
}

/// Where `make image` wrote the image.
fn image_archive() -> std::path::PathBuf {
    let path = std::env::var_os("NETATOPD_TEST_IMAGE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/netatopd-image.tar"),
        std::path::PathBuf::from,
    );
    assert!(
        path.exists(),
        "no image at {}: run `make image` (make test does)",
        path.display()
    );
    path
}

#[test]
fn the_daemonsets_pod_template_feeds_atop_and_prometheus_exactly() {
    let tools = prometheus::tools_dir();
    let archive = image_archive();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/netatopd.yaml");
    let ds = daemonset(&manifest);
    let template = &ds["spec"]["template"];
    let image = format!("localhost/netatopd:{}", env!("CARGO_PKG_VERSION"));
    for c in template["spec"]["containers"].as_vec().unwrap() {
        assert_eq!(
            c["image"].as_str(),
            Some(image.as_str()),
            "the manifest's image"
        );
    }
    assert!(
        !Path::new("/sys/fs/bpf/netatopd").exists(),
        "a netatopd is pinned under /sys/fs/bpf/netatopd: the pod template would adopt it"
    );

    let dir = tempdir("image");
    let _gone = RemovedAtEnd(dir.clone());
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let podman = Podman::new(&dir.join("podman"));
    podman.run(&["load", "--quiet", "--input", archive.to_str().unwrap()]);
    let images = podman.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(images.lines().any(|l| l == image), "loaded: {images}");

    let mut cg = Cgroups::new("image");
    let pod = cg.make(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
         cri-containerd-{CONTAINER}.scope",
        POD.replace('-', "_")
    ));
    let containers = run_args(template, &run);
    let names: Vec<&str> = containers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["netatopd", "metrics"]);
    for (name, args) in &containers {
        // Limits podman would otherwise raise, which machines of this kind
        // (no CAP_SYS_RESOURCE) refuse: this process's open files, and
        // few processes (netatopd makes none).
        let out = podman
            .cmd()
            .args(["run", "--detach"])
            .arg(format!("--ulimit=nofile={n}:{n}", n = nofile()))
            .arg("--ulimit=nproc=4096:4096")
            .args(args)
            .output()
            .expect("podman run");
        assert!(
            out.status.success(),
            "podman run of {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let logs = || podman.run(&["logs", "netatopd-test-netatopd"]);

    // The atop socket on the host answers.
    let sock = run.join("netatop-bpf-socket");
    wait_until(
        Duration::from_secs(30),
        "the container's atop socket",
        || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
    );
    let (first, truth) = generator_in(&pod, 41);
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let rec = record_for(&query_on(&mut s), first.pid());
    assert_eq!(
        rec.counters,
        truth,
        "through the host's atop socket:\n{}",
        logs()
    );

    // The sidecar, unprivileged, on the node's port 9977.
    let addr = "127.0.0.1:9977";
    wait_until(Duration::from_secs(30), "the metrics sidecar", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let (_, _, body) = get(addr, "/metrics", None);
    assert!(body.contains("\nnetatopd_up 1\n"), "{body}\n{}", logs());
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let (_prom, prom) = prometheus_server(&tools, &prom_dir, addr);
    let sel = format!("{{pod_uid=\"{POD}\"}}");
    wait_stored(
        &prom,
        &format!("netatop_udp_send_bytes_total{sel}"),
        truth.udpsndbytes as f64,
    );
    wait_stored(&prom, &format!("netatop_udp_send_packets_total{sel}"), 41.0);
    first.finish();

    // A stop unloads what it loaded (the template has no --keep-counting).
    podman.run(&[
        "stop",
        "-t",
        "10",
        "netatopd-test-metrics",
        "netatopd-test-netatopd",
    ]);
    assert!(
        !Path::new("/sys/fs/bpf/netatopd").exists(),
        "pins left after the container stopped:\n{}",
        logs()
    );
    drop(podman);
    drop(cg);
}

/// A directory removed when the test ends, whichever way.
struct RemovedAtEnd(std::path::PathBuf);

impl Drop for RemovedAtEnd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
