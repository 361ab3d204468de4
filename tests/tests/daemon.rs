//! netatopd as a program: start-up checks, the socket, signals, clean-up.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use netatopd_tests::{
    bin, fails, json, ok, one_line_error, record_for, require_bpf_machine, run_lingering,
    run_to_exit, scratch_dir, signal, Daemon,
};

const NOBODY: u32 = 65534;

/// netatopd in the foreground on the atop socket `socket`.
fn netatopd_on(socket: &Path) -> Command {
    let mut cmd = Command::new(bin("netatopd"));
    cmd.arg("--foreground").arg("--socket").arg(socket);
    cmd
}

#[test]
fn socket_is_private_and_removed_on_sigterm_with_programs_detached() {
    let mut d = Daemon::start(&[]);
    for sock in [&d.socket, &d.control_socket()] {
        let meta = fs::metadata(sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), 0);
    }
    let ids = d.map_ids();
    let mut names: Vec<String> = ids.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    // Threads' counters in task storage (`tstore`) unless forced into the
    // hash map; the hash map exists either way, of one entry when unused.
    let mut want = vec![
        "cgroups",
        "cgroups_gone",
        "exited",
        "gone_scratch",
        "inflight",
        "meta",
        "netatop_.bss",
        "netatop_.rodata",
        "procs",
        "threads",
        "user_procs",
        "walk",
        "walk_stale",
    ];
    if std::env::var("NETATOPD_TEST_THREADS").as_deref() != Ok("hash-map") {
        want.push("tstore");
        want.sort();
    }
    assert_eq!(names, want);
    assert!(d.pin_dir.join("link_send").exists());
    let status = d.stop();
    assert!(status.success(), "{status}");
    assert!(!d.socket.exists(), "socket left behind");
    assert!(!d.control_socket().exists(), "control socket left behind");
    assert!(!d.pin_dir.exists(), "pins left behind");
    // The maps are freed (asynchronously, by the kernel) only once no
    // program uses them: so all programs were detached and unloaded.
    netatopd_tests::wait_until(std::time::Duration::from_secs(20), "maps freed", || {
        ids.iter()
            .all(|(_, id)| libbpf_rs::MapHandle::from_map_id(*id).is_err())
    });
    assert!(d.log().contains("stopping"));
}

#[test]
fn sigint_and_sighup_also_stop_cleanly() {
    for sig in [libc::SIGINT, libc::SIGHUP] {
        let d = Daemon::start(&[]);
        signal(d.pid(), sig);
        netatopd_tests::wait_until(std::time::Duration::from_secs(20), "clean stop", || {
            !d.socket.exists() && !d.pin_dir.exists()
        });
        assert!(
            d.log().contains(&format!("signal {sig} received")),
            "{}",
            d.log()
        );
    }
}

/// `--version`: version, git revision, and the kernel's features; as root
/// the programs are really loaded, without privileges they are not tried.
#[test]
fn version_reports_revision_and_kernel_features() {
    require_bpf_machine();
    for name in ["netatopd", "netatopctl"] {
        let text = ok(Command::new(bin(name)).arg("--version"));
        let first = text.lines().next().unwrap_or_default();
        let rev = first
            .strip_prefix(&format!("{name} {} (git ", env!("CARGO_PKG_VERSION")))
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("first line {first:?}"));
        assert!(
            rev == "unknown" || (rev.len() == 12 && rev.bytes().all(|b| b.is_ascii_hexdigit())),
            "revision {rev:?}"
        );
        if name == "netatopctl" {
            // A client: it does not probe the kernel (netatopd does).
            assert_eq!(text.lines().count(), 1, "{text}");
            continue;
        }
        for want in [
            "BTF (/sys/kernel/btf/vmlinux): yes",
            "tracepoints: sched_process_exit yes, sched_process_exec yes, task_rename yes",
            "attach tracepoint: yes (used)",
            "attach fexit: ",
            "attach kprobe: ",
            "spliced TCP receives: ",
            "snapshot task-iterator: yes (used)",
            "snapshot map-walk: ",
            "thread-counters task-storage: yes (used)",
            "thread-counters hash-map: yes",
            "verdict: netatopd can count on this kernel",
        ] {
            assert!(
                text.contains(want),
                "{name} --version lacks {want:?}:\n{text}"
            );
        }
    }
    // No bpf programs are left behind by the probes.
    let before = libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| {
            p.name
                .to_str()
                .is_some_and(|n| n.starts_with("empty_") || n.starts_with("netatop_probe"))
        })
        .count();
    assert_eq!(before, 0, "the probe's programs are still loaded");
    let text = ok(Command::new(bin("netatopd"))
        .arg("--version")
        .uid(NOBODY)
        .gid(NOBODY));
    assert!(
        text.contains("attach: not checked (needs root or CAP_BPF and CAP_PERFMON)")
            && text.contains("verdict: netatopd can count on this kernel, run as root"),
        "{text}"
    );
}

#[test]
fn a_live_socket_is_never_taken_over() {
    let d = Daemon::start(&[]);
    let err = one_line_error(
        netatopd_on(&d.socket)
            .arg("--pid-file")
            .arg(d.socket.with_extension("second.pid")),
    );
    assert!(err.contains("already answering"), "{err}");
    // The first instance still answers.
    let (g, r) = run_lingering("udp4", &["--count", "5"]);
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    g.finish();
}

#[test]
fn a_stale_socket_is_replaced() {
    require_bpf_machine();
    let dir = scratch_dir();
    let sock = dir.join("stale.sock");
    drop(UnixListener::bind(&sock).unwrap()); // the file stays, nobody listens
    assert!(sock.exists());
    let d = Daemon::builder().dir(dir).socket(sock).start();
    assert!(d.query().iter().all(|r| r.id > 0));
}

#[test]
fn a_path_that_is_not_a_socket_is_left_alone() {
    let dir = scratch_dir();
    let path = dir.join("file");
    fs::write(&path, "keep me").unwrap();
    let err = one_line_error(netatopd_on(&path).arg("--pid-file").arg(dir.join("pid")));
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn refuses_to_start_without_privileges() {
    let dir = scratch_dir();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = one_line_error(netatopd_on(&dir.join("s")).uid(NOBODY).gid(NOBODY));
    assert!(err.contains("needs root"), "{err}");
    assert!(!dir.join("s").exists());
    fs::remove_dir_all(dir).unwrap();
}

/// Each way (of attaching, of taking snapshots, of keeping threads'
/// counters) that `--version` says this kernel cannot take is refused when
/// forced, with the same reason and nothing left behind.
#[test]
fn a_way_the_kernel_cannot_take_is_refused_with_its_reason() {
    require_bpf_machine();
    let version = ok(Command::new(bin("netatopd")).arg("--version"));
    let mut ways = std::collections::HashMap::new();
    for line in version.lines() {
        let Some((option, way, state)) = line.trim().split_once(": ").and_then(|(o, state)| {
            let (option, way) = o.split_once(' ')?;
            ["attach", "snapshot", "thread-counters"]
                .contains(&option)
                .then_some((option, way, state))
        }) else {
            continue;
        };
        *ways.entry(option).or_insert(0) += 1;
        let Some(why) = state.strip_prefix("no: ") else {
            continue;
        };
        let dir = scratch_dir();
        let err = one_line_error(
            Command::new(bin("netatopd"))
                .arg("--foreground")
                .args(netatopd_tests::private_args(&dir, &dir.join("s")))
                .args([format!("--{option}"), way.to_owned()]),
        );
        assert!(
            err.contains(&format!("--{option} {way}: ")) && err.contains(why),
            "{err}"
        );
        assert!(!dir.join("s").exists() && !netatopd_tests::pin_dir_for(&dir).exists());
        fs::remove_dir_all(dir).unwrap();
    }
    let want = [("attach", 3), ("snapshot", 2), ("thread-counters", 2)];
    assert_eq!(ways, want.into_iter().collect(), "{version}");
    let err = fails(Command::new(bin("netatopd")).args(["--attach", "ebpf"]));
    assert!(
        err.contains("is not auto, tracepoint, fexit, kprobe"),
        "{err}"
    );
}

/// Under a hard limit of 4096 open files (a busybox init, some containers),
/// the default client limit is lowered to fit, with a warning; a limit
/// asked for that does not fit is refused.
#[test]
fn a_low_descriptor_limit_lowers_the_default_client_limit() {
    let d = Daemon::builder().nofile(1024, 4096).start();
    let log = d.log();
    assert!(
        log.contains("serving at most 4032 clients at once, not 4096: the hard limit is 4096"),
        "{log}"
    );
    drop(d);
    let dir = scratch_dir();
    let mut cmd = Command::new(bin("netatopd"));
    cmd.arg("--foreground")
        .args(netatopd_tests::private_args(&dir, &dir.join("s")))
        .args(["--max-clients", "4096"]);
    // SAFETY: setrlimit is async-signal-safe; the limit is a copy.
    unsafe {
        cmd.pre_exec(|| netatopd_tests::set_nofile(1024, 4096));
    }
    let err = one_line_error(&mut cmd);
    assert!(
        err.contains("--max-clients 4096 needs 4160 file descriptors but the hard limit is 4096"),
        "{err}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn netatopctl_dump_prints_a_table_and_exact_json() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering("tcp4", &["--count", "40", "--size", "1000"]);
    let rows = json(d.ctl().args(["dump", "--json"]));
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pid"] == r.pid)
        .expect("generator in dump --json");
    let keys = [
        ("tcp_send_packets", r.counters.tcpsndpacks),
        ("tcp_send_bytes", r.counters.tcpsndbytes),
        ("tcp_recv_packets", r.counters.tcprcvpacks),
        ("tcp_recv_bytes", r.counters.tcprcvbytes),
        ("udp_send_packets", 0),
        ("udp_send_bytes", 0),
        ("udp_recv_packets", 0),
        ("udp_recv_bytes", 0),
    ];
    for (k, v) in keys {
        assert_eq!(row[k], v, "{k}");
    }
    assert_eq!(row["command"], "netatop-gen");
    netatopd_tests::assert_atop_btime(r.pid, row["btime"].as_u64().unwrap());
    assert_eq!(row["exited"], false);
    assert_eq!(row.as_object().unwrap().len(), 12);

    let table = ok(d.ctl().args(["dump", "--raw"]));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().trim_start().starts_with("PID"));
    let line = lines
        .find(|l| l.split_whitespace().next() == Some(&r.pid.to_string()))
        .expect("generator row");
    let cells: Vec<&str> = line.split_whitespace().collect();
    // PID, date, time, command, then the eight counters.
    assert_eq!(cells[3], "netatop-gen");
    assert_eq!(
        cells[4..6],
        [
            r.counters.tcpsndpacks.to_string(),
            r.counters.tcpsndbytes.to_string()
        ]
    );
    g.finish();
}

#[test]
fn netatopctl_says_what_is_wrong_in_one_line() {
    let dir = scratch_dir();
    let err = one_line_error(
        Command::new(bin("netatopctl"))
            .arg("--socket")
            .arg(dir.join("none"))
            .arg("dump"),
    );
    assert!(err.contains("no netatop service answers"), "{err}");

    let d = Daemon::start(&[]);
    let err = one_line_error(
        Command::new(bin("netatopctl"))
            .arg("--socket")
            .arg(&d.socket)
            .arg("dump")
            .uid(NOBODY)
            .gid(NOBODY),
    );
    assert!(err.contains("permission denied"), "{err}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn full_maps_lose_updates_counted_and_warned_about() {
    let d = Daemon::start(&["--max-processes", "8", "--max-threads", "8"]);
    let mut g = netatopd_tests::Gen::spawn("fork", &["--count", "40", "--size", "10"]);
    let r = g.report();
    // Each child's one send is either counted exactly or lost and counted as lost.
    let recs = d.query();
    let counted = r
        .children
        .iter()
        .filter(|p| !netatopd_tests::records_for(&recs, **p).is_empty())
        .count();
    assert!(counted <= 8, "more processes than the map holds: {counted}");
    netatopd_tests::wait_until(
        std::time::Duration::from_secs(10),
        "a map-full warning",
        || d.log().contains("socket calls not counted"),
    );
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("socket calls not counted"))
        .unwrap();
    assert!(line.contains("WARN") && line.contains("--max-"), "{line}");
    // Every child that is missing is among the lost updates reported.
    let lost: u64 = log
        .lines()
        .filter(|l| l.contains("socket calls not counted"))
        .filter_map(|l| {
            l.split("] ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(
        lost >= (40 - counted) as u64,
        "{lost} reported lost, {counted} of 40 counted"
    );
    g.finish();
}

#[test]
fn a_full_pending_exit_map_is_warned_about() {
    let d = Daemon::start(&["--max-pending-exits", "2"]);
    // 200 exits at once into a map of 2.
    let r = run_to_exit("fork", &["--count", "200", "--size", "10"]);
    assert_eq!(r.children.len(), 200);
    netatopd_tests::wait_until(
        std::time::Duration::from_secs(10),
        "an exit-map warning",
        || d.log().contains("exited processes lost"),
    );
}

#[test]
fn service_mode_logs_with_journal_priorities() {
    require_bpf_machine();
    let dir = scratch_dir();
    let sock = dir.join("svc.sock");
    let log = dir.join("log");
    let mut child = Command::new(bin("netatopd"))
        .args(netatopd_tests::private_args(&dir, &sock))
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    netatopd_tests::wait_until(std::time::Duration::from_secs(60), "the socket", || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
    signal(child.id(), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("<6>netatopd ") && l.contains("started")),
        "{text}"
    );
    assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
    assert!(!sock.exists());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_group_can_be_let_in_deliberately() {
    // nobody's primary group is nogroup (65534).
    let d = Daemon::start(&["--socket-mode", "0660", "--socket-group", "nogroup"]);
    for sock in [&d.socket, &d.control_socket()] {
        let meta = fs::metadata(sock).unwrap();
        assert_eq!(
            (meta.permissions().mode() & 0o777, meta.gid()),
            (0o660, NOBODY)
        );
    }
    let rows = json(
        d.ctl()
            .args(["dump", "--json", "--threads"])
            .uid(NOBODY)
            .gid(NOBODY),
    );
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["pid"].as_i64().unwrap() > 0));
}

#[test]
fn bad_socket_options_are_refused_clearly() {
    let dir = scratch_dir();
    for args in [
        ["--socket-mode", "999"],
        ["--socket-group", "no-such-group-here"],
        ["--client-timeout", "-1"],
    ] {
        let err = fails(netatopd_on(&dir.join("s")).args(args));
        assert!(
            err.contains(args[0]) || err.contains(args[1]),
            "{args:?}: {err}"
        );
        assert!(!dir.join("s").exists());
    }
    fs::remove_dir_all(dir).unwrap();
}
