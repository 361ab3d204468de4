//! netatopd on the kernels production servers run: Debian's stock 5.10
//! (Debian 11), 6.1 (Debian 12) and 6.12 (Debian 13), each booted under
//! qemu's TCG emulation (`tests/vm/run.sh`; the kernels come from
//! `tests/vm/kernels.sh`, which `make test` runs), with the host's files
//! shared read-only so the guest runs this build's binaries.
//!
//! In each guest: `netatopd --version` is printed for the record, then the
//! exactness suite (`tests/tests/tiers.rs`) runs once with netatopd's own
//! choice, which must be the best way that kernel takes (and task-local
//! storage for threads' counters from Linux 5.13), once forced to each
//! other way it takes, and once with threads' counters in a hash map.
//! Where the kernel can count the wire (Linux 5.11 and later) the wire
//! suite (`tests/tests/wire.rs`: TCP, UDP, shared sockets and threads
//! between two network namespaces) runs too; where it cannot, `--count
//! wire` must be refused, saying why. The per-cgroup suite
//! (`tests/tests/cgroups.rs`, its `kernel_` tests) runs on each.
//!
//! The same on Debian's arm64 kernels of those releases, booted under
//! qemu-system-aarch64 (`VM_ARCH=arm64`), on the aarch64 build
//! (target/aarch64-unknown-linux-gnu/release: `make test` cross-builds the
//! binaries and these suites) in an arm64 Debian 12 user space
//! (`tests/vm/arm64-root.sh`). arm64 has BPF trampolines from Linux 6.0
//! only: 5.10 counts through kprobes there.

use std::path::{Path, PathBuf};
use std::process::Command;

use netatopd_tests::{bin, test_binary, test_binary_in};

/// One guest at a time: each takes a CPU of its own, and the wire suite's
/// exact counts are at their most reliable when its guest is not starved
/// of one by another guest.
static ONE_GUEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Where tests/vm/kernels.sh left the kernels.
fn kernels_dir() -> PathBuf {
    let dir = std::env::var_os("NETATOPD_TEST_KERNELS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kernels"),
        PathBuf::from,
    );
    assert!(
        dir.is_dir(),
        "no kernels in {}: run `bash tests/vm/kernels.sh {}` (make test does)",
        dir.display(),
        dir.display()
    );
    dir
}

/// The architecture a guest runs.
#[derive(Clone, Copy, PartialEq)]
enum Arch {
    /// The host's (x86_64): the guest runs this build, in the host's files.
    Amd64,
    /// aarch64: the guest runs the aarch64 build in an arm64 user space.
    Arm64,
}

/// What a guest of `arch` runs: netatopd, and the test binaries by name.
struct Build {
    netatopd: PathBuf,
    deps: Option<PathBuf>,
}

impl Build {
    fn of(arch: Arch, repo: &Path) -> Build {
        match arch {
            Arch::Amd64 => Build {
                netatopd: bin("netatopd"),
                deps: None,
            },
            Arch::Arm64 => {
                let out = repo.join("target/aarch64-unknown-linux-gnu/release");
                assert!(
                    out.join("netatopd").is_file(),
                    "no aarch64 build in {}: `make test` cross-builds it (make arm64-suites)",
                    out.display()
                );
                Build {
                    netatopd: out.join("netatopd"),
                    deps: Some(out.join("deps")),
                }
            }
        }
    }

    fn test(&self, name: &str) -> PathBuf {
        match &self.deps {
            None => test_binary(name),
            Some(deps) => test_binary_in(deps, name),
        }
    }
}

/// The arm64 user space the arm64 guests share as their root.
fn arm64_root() -> PathBuf {
    let base = std::env::var_os("NETATOPD_TEST_ROOTFS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/rootfs"),
        PathBuf::from,
    );
    let root = base.join("bookworm-arm64");
    assert!(
        root.join(".done").is_file(),
        "no arm64 root in {}: run `bash tests/vm/arm64-root.sh {}` (make test does)",
        root.display(),
        base.display()
    );
    root
}

/// What counting the wire does on a kernel: count (the wire suite runs),
/// or be refused with a reason that says this.
#[derive(Clone, Copy)]
enum Wire {
    Counts,
    Refused(&'static str),
}

/// Boots kernel `prefix` of `arch` and runs the suite: with netatopd's own
/// choice, which must be way `auto` with threads' counters in `threads`,
/// then forced to each way of `forced`, and once with threads' counters in
/// a hash map where task storage is the choice. Where it is not, a start
/// that asks for it must be refused, saying why.
fn suite_on(arch: Arch, prefix: &str, auto: &str, threads: &str, forced: &[&str], wire: Wire) {
    let refusal = match wire {
        Wire::Counts => None,
        Wire::Refused(why) => Some(why),
    };
    let wire = refusal.is_none();
    // Kernels from 5.11 charge BPF maps to the memory cgroup, not to the
    // locked-memory limit.
    let memcg = prefix != "5.10";
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.canonicalize().expect("the repository");
    let build = Build::of(arch, &repo);
    let netatopd = &build.netatopd;
    let tiers = build.test("tiers");
    let mut script = String::from("#!/bin/sh\nset -e\n");
    script += &format!("cd '{}'\n", repo.display());
    script += &format!("'{}' --version\n", netatopd.display());
    script += &format!(
        "NETATOPD_TEST_EXPECT_ATTACH={auto} NETATOPD_TEST_EXPECT_THREADS='{threads}' '{}' --test-threads 1\n",
        tiers.display()
    );
    for way in forced {
        script += &format!(
            "NETATOPD_TEST_ATTACH={way} '{}' --test-threads 1\n",
            tiers.display()
        );
    }
    script += &format!(
        "'{}' --test-threads 1 kernel_\n",
        build.test("cgroups").display()
    );
    if wire {
        script += &format!(
            "'{}' --test-threads 1 tcp_counted udp_counted shared_socket packets_count\n",
            build.test("wire").display()
        );
    } else {
        script += &format!(
            "if '{}' --foreground --count wire --socket /tmp/w.sock --control-socket /tmp/w.ctl \
             --pid-file /tmp/w.pid --pin-dir /sys/fs/bpf/w 2>/tmp/w.err; then \
             echo 'wire counting was not refused'; exit 1; fi\ncat /tmp/w.err\n",
            netatopd.display()
        );
    }
    let storage = threads == "task-local storage";
    if storage {
        script += &format!(
            "NETATOPD_TEST_THREADS=hash-map '{}' --test-threads 1\n",
            tiers.display()
        );
    } else {
        script += &format!(
            "if '{}' --foreground --thread-counters task-storage --socket /tmp/t.sock \
             --control-socket /tmp/t.ctl --pid-file /tmp/t.pid --pin-dir /sys/fs/bpf/t \
             2>/tmp/t.err; then echo 'task storage was not refused'; exit 1; fi\n\
             cat /tmp/t.err\n",
            netatopd.display()
        );
    }
    script += &memlock_check(netatopd, memcg);
    let dir = repo.join("target/vm");
    std::fs::create_dir_all(&dir).unwrap();
    let name = match arch {
        Arch::Amd64 => prefix.to_string(),
        Arch::Arm64 => format!("{prefix}-arm64"),
    };
    let path = dir.join(format!("suite-{name}.sh"));
    std::fs::write(&path, script).unwrap();
    let mut vm = Command::new("bash");
    vm.arg(repo.join("tests/vm/run.sh"))
        .arg(prefix)
        .arg("/bin/sh")
        .arg(&path)
        .env("VM_CACHE", kernels_dir())
        .env("VM_TIMEOUT", "400");
    if arch == Arch::Arm64 {
        // Emulated aarch64 is slower than emulated x86.
        vm.env("VM_ARCH", "arm64")
            .env("VM_ROOT", arm64_root())
            .env("VM_TIMEOUT", "900");
    }
    let out = vm
        .output()
        .expect("bash tests/vm/run.sh (qemu-system-x86 and -arm; make test installs them)");
    let prefix = name.as_str();
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the suite failed on Linux {prefix} ({}):\n{console}\n{stderr}",
        out.status
    );
    assert!(
        console.contains(&format!("attach {auto}: yes (used)")),
        "netatopd --version on Linux {prefix} does not choose {auto}:\n{console}"
    );
    let runs = console.matches("test result: ok. 2 passed").count();
    assert_eq!(runs, 1 + forced.len() + usize::from(storage), "{console}");
    // The cgroup suite's four, and the wire suite's four.
    assert_eq!(
        console.matches("test result: ok. 4 passed").count(),
        1 + usize::from(wire),
        "the cgroup suite{} did not pass on Linux {prefix}:\n{console}",
        if wire { " or the wire suite" } else { "" }
    );
    if wire {
        assert!(
            console.contains("test result: ok. 4 passed"),
            "the wire suite did not pass on Linux {prefix}:\n{console}"
        );
    } else {
        assert!(
            refusal.is_some_and(|why| console.contains(&format!("--count wire: {why}"))),
            "a start counting the wire on Linux {prefix} was not refused, saying why:\n{console}"
        );
    }
    if !storage {
        assert!(
            console.contains("--thread-counters task-storage: the kernel has no"),
            "a start with task storage on Linux {prefix} was not refused, saying why:\n{console}"
        );
    }
    assert!(
        console.contains(if memcg {
            "memlock: started under ulimit -l 64"
        } else {
            "memlock: said "
        }),
        "the locked-memory check did not run on Linux {prefix}:\n{console}"
    );
    for line in console.lines().filter(|l| l.starts_with("memlock: ")) {
        eprintln!("Linux {prefix}: {line}");
    }
    eprintln!("Linux {prefix}: {}", stderr.trim());
}

/// Under `ulimit -l 64`, as root without CAP_SYS_RESOURCE: a kernel that
/// charges BPF maps to the locked-memory limit (before Linux 5.11) refuses
/// netatopd's maps, and netatopd says so in one
/// line, with the limit and what the maps need; which must be what they
/// take when they are created (the `memlock` of their descriptors, read
/// from a netatopd started without the limit). Later kernels charge the
/// memory cgroup instead: netatopd starts there.
fn memlock_check(netatopd: &Path, later: bool) -> String {
    let args = |n: &str| {
        format!(
            "--foreground --socket /tmp/{n}.sock --control-socket /tmp/{n}.ctl \
             --pid-file /tmp/{n}.pid --pin-dir /sys/fs/bpf/{n}"
        )
    };
    let low = format!(
        "(ulimit -l 64 && exec setpriv --bounding-set -sys_resource --inh-caps -sys_resource \
         '{}' -v {} 2>/tmp/m.err)",
        netatopd.display(),
        args("m")
    );
    if later {
        return format!(
            "{low} &\ni=0; until [ -S /tmp/m.sock ]; do i=$((i+1)); [ $i -lt 600 ] || \
             {{ cat /tmp/m.err; echo 'netatopd did not start under ulimit -l 64'; exit 1; }}; \
             sleep 0.1; done\nkill -TERM $(cat /tmp/m.pid); wait\n\
             echo 'memlock: started under ulimit -l 64'\n"
        );
    }
    format!(
        "if {low}; then echo 'netatopd started under ulimit -l 64'; exit 1; fi\n\
         cat /tmp/m.err\n\
         tail -n1 /tmp/m.err | grep -q '^netatopd: cannot create the BPF maps: .* locked-memory \
         limit (RLIMIT_MEMLOCK), which is 64 KiB, and at the sizes chosen they need ' || exit 1\n\
         said=$(sed -n 's/.*they need \\([0-9.]* [KM]iB\\).*/\\1/p' /tmp/m.err)\n\
         bytes=$(sed -n 's/.*the maps count \\([0-9]*\\) bytes against.*/\\1/p' /tmp/m.err)\n\
         '{}' {} 2>/tmp/n.err &\n\
         i=0; until [ -S /tmp/n.sock ]; do i=$((i+1)); [ $i -lt 600 ] || \
         {{ cat /tmp/n.err; exit 1; }}; sleep 0.1; done\n\
         pid=$(cat /tmp/n.pid)\n\
         took=$(for f in /proc/$pid/fdinfo/*; do grep -q '^map_type' $f && \
         sed -n 's/^memlock:[[:space:]]*//p' $f; done | awk '{{ s += $1 }} END {{ print s }}')\n\
         kill -TERM $pid; wait\n\
         echo \"memlock: said $said ($bytes bytes), the maps took $took bytes\"\n\
         [ \"$bytes\" = \"$took\" ] || exit 1\n\
         [ \"$said\" = \"$(awk -v b=$took 'BEGIN {{ printf \"%.1f MiB\", b / 1048576 }}')\" ] || exit 1\n",
        netatopd.display(),
        args("n")
    )
}

#[test]
fn linux_5_10_debian_11() {
    suite_on(
        Arch::Amd64,
        "5.10",
        "fexit",
        "hash map",
        &["kprobe"],
        Wire::Refused("this kernel (Linux 5.10"),
    );
}

#[test]
fn linux_6_1_debian_12() {
    suite_on(
        Arch::Amd64,
        "6.1",
        "fexit",
        "task-local storage",
        &["kprobe"],
        Wire::Counts,
    );
}

#[test]
fn linux_6_12_debian_13() {
    suite_on(
        Arch::Amd64,
        "6.12",
        "tracepoint",
        "task-local storage",
        &["fexit", "kprobe"],
        Wire::Counts,
    );
}

/// Kprobes on arm64 before 6.4, whose BPF trampolines attach to kernel
/// functions only from there (6.1's load an fexit program and refuse to
/// attach it); and so no wire there, which needs the tracepoint or fexit
/// way.
const ARM64_KPROBES_ONLY: Wire = Wire::Refused("kprobe programs cannot use socket-local storage");

#[test]
fn linux_5_10_debian_11_arm64() {
    suite_on(
        Arch::Arm64,
        "5.10",
        "kprobe",
        "hash map",
        &[],
        ARM64_KPROBES_ONLY,
    );
}

#[test]
fn linux_6_1_debian_12_arm64() {
    suite_on(
        Arch::Arm64,
        "6.1",
        "kprobe",
        "task-local storage",
        &[],
        ARM64_KPROBES_ONLY,
    );
}

#[test]
fn linux_6_12_debian_13_arm64() {
    suite_on(
        Arch::Arm64,
        "6.12",
        "tracepoint",
        "task-local storage",
        &["fexit", "kprobe"],
        Wire::Counts,
    );
}
