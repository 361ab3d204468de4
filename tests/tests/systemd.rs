//! netatopd's unit under a real systemd: Debian 12's (252) and Debian 13's
//! (257), each PID 1 of a container (systemd-nspawn) booted from a
//! debootstrapped root file system (`tests/rootfs.sh`, run by `make test`).
//!
//! The guest runs the repository's unit file with the built binaries, so
//! every sandbox setting is applied by systemd itself: the mount namespace
//! (read-only paths, the writable ones), the capability bounding set, the
//! system-call filter, the private network. The guest gets a bpffs of its
//! own on /sys/fs/bpf, mounted by the test, as systemd mounts one at boot.
//! What is checked there is what a user of the package meets: the service
//! reaches `active (running)` through READY=1 with no restart, writes its
//! pins, sockets and pid file, answers atop exactly and netatopctl, stops
//! cleanly, and its journal has no warning, denial or error.
//!
//! The guest shares the host's kernel, so counting is checked with traffic
//! made on the host (the kernel reports host pids; the guest has its own
//! pid namespace). A control run with `ProtectKernelTunables=yes` added to
//! the unit must fail the way the packaged service used to: that proves
//! this harness sees a read-only pin directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use netatopd_tests::{
    bin, netatopctl, ok, query_on, record_for, require_bpf_machine, scratch_dir, signal, unit_path,
    wait_exit, wait_while_alive, Gen,
};

/// One guest at a time: they share nspawn's runtime directory, and two
/// cores boot one systemd about as fast as two.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// The directory nspawn creates on first use and leaves behind.
const NSPAWN_RUN: &str = "/run/systemd/nspawn";

/// The debootstrapped root file system of `suite`.
fn rootfs(suite: &str) -> PathBuf {
    let base = std::env::var_os("NETATOPD_TEST_ROOTFS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/rootfs"),
        PathBuf::from,
    );
    let root = base.join(suite);
    assert!(
        root.join("lib/systemd/systemd").exists(),
        "no {suite} root file system with systemd in {}: run `bash tests/rootfs.sh {} {suite}` \
         (make test does)",
        root.display(),
        base.display()
    );
    root
}

/// Runs inside the guest as netatopd-check.service: waits until netatopd
/// is up (or has failed), records its state, waits for the host's checks,
/// stops it, records its state and journal, and shuts the guest down.
const CHECK_SCRIPT: &str = r#"#!/bin/sh
out=/check/out
show() {
    systemctl show netatopd -p ActiveState -p SubState -p Result -p NRestarts \
        -p StatusText -p ExecMainStatus -p MainPID -p CapabilityBoundingSet \
        -p SystemCallFilter -p PrivateNetwork -p ProtectSystem >"$out/$1"
}
i=0
while [ $i -lt 600 ]; do
    state=$(systemctl show -P ActiveState netatopd)
    restarts=$(systemctl show -P NRestarts netatopd)
    [ "$state" = active ] || [ "$state" = failed ] || [ "${restarts:-0}" -gt 0 ] && break
    i=$((i + 1)); sleep 0.1
done
show started
cat /run/netatopd/netatopd.pid >"$out/pid" 2>&1
touch "$out/ready"
i=0
while [ ! -e /check/done ] && [ $i -lt 1800 ]; do i=$((i + 1)); sleep 0.1; done
systemctl stop netatopd
show stopped
ls /run >"$out/run-after-stop" 2>&1
journalctl -b -u netatopd --no-pager -o cat >"$out/journal" 2>&1
journalctl -b -u netatopd --no-pager -o cat -p warning >"$out/warnings" 2>&1
systemctl exit 0
"#;

const CHECK_UNIT: &str = "[Unit]
Description=netatopd under test: checks from inside the guest
After=netatopd.service

[Service]
Type=oneshot
ExecStart=/check/check.sh
";

/// A booted guest; shut down and cleaned up when dropped.
struct Guest {
    nspawn: Option<Child>,
    dir: PathBuf,
    bpffs: PathBuf,
    /// Whether this guest's boot created nspawn's runtime directory.
    created_run: bool,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Guest {
    /// Boots `suite` with netatopd's unit (plus `dropin` as a drop-in, if
    /// any) and waits until the check script has recorded netatopd's state.
    fn boot(suite: &str, dropin: Option<&str>) -> Guest {
        require_bpf_machine();
        let root = rootfs(suite);
        let one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
        let created_run = !Path::new(NSPAWN_RUN).exists();
        let dir = scratch_dir();
        let out = dir.join("out");
        fs::create_dir(&out).unwrap();
        let script = dir.join("check.sh");
        fs::write(&script, CHECK_SCRIPT).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("netatopd-check.service"), CHECK_UNIT).unwrap();
        // The guest's /sys/fs/bpf: a bpffs of its own, as systemd mounts at boot.
        let bpffs = dir.join("bpffs");
        fs::create_dir(&bpffs).unwrap();
        let st = Command::new("mount")
            .args(["-t", "bpf", "-o", "mode=0700", "bpf"])
            .arg(&bpffs)
            .status()
            .expect("mount");
        assert!(st.success(), "cannot mount a bpffs on {}", bpffs.display());

        let ro = |host: &Path, guest: &str| format!("--bind-ro={}:{guest}", host.display());
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--register=no",
            "--keep-unit",
            "--quiet",
            "--volatile=overlay",
        ])
        .arg("--directory")
        .arg(&root)
        .arg("--private-network")
        // A container drops these by default; a host's systemd has them.
        .arg("--capability=CAP_BPF,CAP_PERFMON")
        .arg("--system-call-filter=bpf perf_event_open")
        .arg(format!("--bind={}:/check", dir.display()))
        .arg(format!("--bind={}:/sys/fs/bpf", bpffs.display()))
        .arg(ro(&bin("netatopd"), "/usr/sbin/netatopd"))
        .arg(ro(&bin("netatopctl"), "/usr/bin/netatopctl"))
        .arg(ro(&unit_path(), "/etc/systemd/system/netatopd.service"))
        .arg(ro(
            &dir.join("netatopd-check.service"),
            "/etc/systemd/system/netatopd-check.service",
        ));
        if let Some(text) = dropin {
            let path = dir.join("dropin.conf");
            fs::write(&path, text).unwrap();
            cmd.arg(ro(
                &path,
                "/etc/systemd/system/netatopd.service.d/test.conf",
            ));
        }
        cmd.args(["--boot", "--"])
            .args([
                "systemd.unit=multi-user.target",
                "systemd.wants=netatopd.service",
            ])
            .arg("systemd.wants=netatopd-check.service")
            // systemd 257 runs only on the unified cgroup hierarchy.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("console")).unwrap())
            .stderr(fs::File::create(dir.join("nspawn.log")).unwrap());
        let nspawn = cmd
            .spawn()
            .expect("systemd-nspawn (Debian package systemd-container; make test installs it)");
        let mut guest = Guest {
            nspawn: Some(nspawn),
            dir,
            bpffs,
            created_run,
            _one: one,
        };
        guest.wait_for("ready", Duration::from_secs(180));
        guest
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.join("out").join(name)
    }

    /// A `systemctl show` record the check script wrote: property -> value.
    fn show(&self, name: &str) -> Vec<(String, String)> {
        fs::read_to_string(self.out(name))
            .unwrap_or_else(|e| panic!("the guest wrote no {name}: {e}"))
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn prop(&self, name: &str, key: &str) -> String {
        self.show(name)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {key} in {name}: {:?}", self.show(name)))
    }

    fn wait_for(&mut self, file: &str, limit: Duration) {
        let path = self.out(file);
        let dir = self.dir.clone();
        wait_while_alive(
            self.nspawn.as_mut().unwrap(),
            limit,
            &format!("waiting for the guest to write {file}"),
            || path.exists(),
            || console_of(&dir),
        );
    }

    fn journal(&self) -> String {
        fs::read_to_string(self.out("journal")).unwrap_or_default()
    }

    /// The guest's PID 1 as the host sees it: nspawn's child.
    fn init_pid(&self) -> u32 {
        let pid = self.nspawn.as_ref().unwrap().id();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("systemd-nspawn ({pid}) has no child"))
    }

    /// The host's pid of the guest's process `pid`.
    fn host_pid(&self, pid: i32) -> i32 {
        let ns = |p: &str| fs::read_link(format!("/proc/{p}/ns/pid")).ok();
        let guest_ns = ns(&self.init_pid().to_string());
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) || ns(&name) != guest_ns {
                continue;
            }
            let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let nspid: Vec<i32> = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if nspid.last() == Some(&pid) {
                return nspid[0];
            }
        }
        panic!("no process of the guest has pid {pid} there");
    }

    /// A path of the guest's file system, reached from the host.
    fn path(&self, guest: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{guest}", self.init_pid()))
    }

    /// Lets the check script stop netatopd and shut the guest down.
    fn finish(&mut self) {
        fs::write(self.dir.join("done"), b"").unwrap();
        self.wait_for("stopped", Duration::from_secs(60));
        let mut child = self.nspawn.take().unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("the guest did not shut down within 60 s")
        });
        assert!(status.success(), "systemd-nspawn: {status}");
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            // SIGTERM makes nspawn shut the guest down cleanly.
            signal(child.id(), libc::SIGTERM);
            if wait_exit(&mut child, Duration::from_secs(30)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Pins left by a guest that did not stop netatopd go with the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.bpffs).status();
        let _ = fs::remove_dir_all(&self.dir);
        if self.created_run {
            let _ = fs::remove_dir_all(NSPAWN_RUN);
        }
    }
}

/// What a guest printed, and nspawn's own messages.
fn console_of(dir: &Path) -> String {
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
    format!("{}{}", read("console"), read("nspawn.log"))
}

/// netatopd under the unit as shipped: up, writing, answering, clean.
fn serves_under(suite: &str) {
    let mut g = Guest::boot(suite, None);
    let started = g.show("started");
    let get = |k: &str| g.prop("started", k);
    if (get("ActiveState"), get("SubState"), get("NRestarts"))
        != ("active".into(), "running".into(), "0".into())
    {
        // Let the guest record netatopd's journal, then say what it was.
        let state: Vec<_> = started
            .iter()
            .filter(|(k, _)| k != "SystemCallFilter")
            .collect();
        g.finish();
        panic!(
            "netatopd did not come up under systemd ({suite}): {state:?}\njournal:\n{}",
            g.journal()
        );
    }
    // Type=notify: active only after READY=1, which comes with this status.
    assert_eq!(get("StatusText"), "answering on /run/netatop-bpf-socket");
    assert_eq!(get("PrivateNetwork"), "yes");
    assert_eq!(get("ProtectSystem"), "strict");
    for cap in ["cap_bpf", "cap_perfmon", "cap_chown"] {
        assert!(get("CapabilityBoundingSet").contains(cap), "{started:?}");
    }
    assert!(
        get("CapabilityBoundingSet").split_whitespace().count() == 3,
        "{started:?}"
    );
    assert!(get("SystemCallFilter").contains("bpf"), "{started:?}");

    // Every path it writes: the pid file, both sockets, the pins.
    assert_eq!(
        fs::read_to_string(g.out("pid")).unwrap().trim(),
        get("MainPID")
    );
    assert!(g.path("/run/netatopd/control.sock").exists());
    let mut pins: Vec<String> = fs::read_dir(g.bpffs.join("netatopd"))
        .expect("netatopd pinned nothing in the guest's bpffs")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pins.sort();
    assert!(pins.contains(&"meta".to_owned()), "{pins:?}");
    assert!(pins.iter().any(|p| p.starts_with("link_")), "{pins:?}");

    // Exact counts through the atop socket, for traffic made in the guest:
    // a snapshot sees the processes of netatopd's pid namespace (the
    // guest's), reported by their pids on the host.
    let init = g.init_pid().to_string();
    let nsenter: [&std::ffi::OsStr; 5] = [
        "nsenter".as_ref(),
        "--target".as_ref(),
        init.as_ref(),
        "--pid".as_ref(),
        "--".as_ref(),
    ];
    let mut gen = Gen::spawn_in(&nsenter, "udp4", &["--linger", "--count", "9"]);
    let report = gen.report();
    let pid = g.host_pid(report.pid);
    let sock = g.path("/run/netatop-bpf-socket");
    let recs = query_on(&mut UnixStream::connect(&sock).expect("the atop socket"));
    assert_eq!(record_for(&recs, pid).counters, report.counters);
    gen.finish();
    let ctl =
        |args: &[&str]| ok(netatopctl(&sock, &g.path("/run/netatopd/control.sock")).args(args));
    let stats = ctl(&["stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("attach mode:") && l.contains(" tracepoint (")),
        "{stats}"
    );
    let dump = ctl(&["dump", "--json", "--threads", "--exited", "--raw"]);
    assert!(
        dump.contains(&format!("\"pid\": {pid},")),
        "the exited generator is missing from {dump}"
    );

    g.finish();
    let stopped = g.show("stopped");
    assert_eq!(
        (
            g.prop("stopped", "ActiveState"),
            g.prop("stopped", "Result"),
            g.prop("stopped", "ExecMainStatus")
        ),
        ("inactive".into(), "success".into(), "0".into()),
        "{stopped:?}"
    );
    // A clean stop unloads: nothing pinned, no socket left.
    assert!(!g.bpffs.join("netatopd").exists(), "pins left after a stop");
    let run = fs::read_to_string(g.out("run-after-stop")).unwrap();
    assert!(!run.contains("netatop-bpf-socket"), "{run}");
    // Nothing was denied: no warning or error from netatopd or about it.
    // The one expected: the guest has a pid namespace of its own.
    let warnings = fs::read_to_string(g.out("warnings")).unwrap();
    let unexpected: Vec<&str> = warnings
        .lines()
        .filter(|l| !l.contains("runs in a pid namespace of its own") && *l != "-- No entries --")
        .collect();
    assert!(
        unexpected.is_empty(),
        "warnings in the journal:\n{warnings}"
    );
    assert!(warnings.contains("pid namespace"), "{warnings}");
    // The start-up line may say why a hook the kernel refuses is not used.
    let journal = g.journal();
    let others: Vec<&str> = journal
        .lines()
        .filter(|l| !l.contains(" started: Linux "))
        .collect();
    for bad in ["denied", "not permitted", "Read-only", "seccomp", "SIGSYS"] {
        assert!(
            !others.iter().any(|l| l.contains(bad)),
            "{bad:?} in the journal:\n{journal}"
        );
    }
}

#[test]
fn the_unit_serves_under_systemd_252() {
    serves_under("bookworm");
}

#[test]
fn the_unit_serves_under_systemd_257() {
    serves_under("trixie");
}

/// The control: the setting that kept the packaged service from starting
/// must make this harness fail.
#[test]
fn protect_kernel_tunables_would_keep_it_from_starting() {
    let mut g = Guest::boot(
        "bookworm",
        Some("[Service]\nProtectKernelTunables=yes\nRestartSec=100ms\n"),
    );
    assert_ne!(g.prop("started", "ActiveState"), "active");
    g.finish();
    let journal = g.journal();
    assert!(
        journal.contains("/sys/fs/bpf/netatopd") && journal.contains("Read-only file system"),
        "{journal}"
    );
}
