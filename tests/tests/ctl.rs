//! netatopctl and the control socket, against the real daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::Duration;

use netatop_protocol::control::{self, Request, Response};
use netatop_protocol::Counters;
use netatopd_tests::{
    expect_eof, fails, json, json_counters, netatopctl, ok, record_for, run_lingering, run_to_exit,
    signal, wait_until, Daemon, Gen,
};
use serde_json::Value;

#[test]
fn dump_threads_gives_each_threads_own_counters() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering(
        "live-threads",
        &["--threads", "3", "--count", "20", "--size", "100"],
    );
    let pid = r.pid.to_string();
    let rows = json(d.ctl().args(["dump", "--json", "--threads", "--pid", &pid]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["exited"], false);
    let threads = row["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 3, "{row}");
    let mut sum = Counters::default();
    for (t, truth) in threads.iter().zip(&r.threads) {
        assert_eq!(t["tid"], truth.tid);
        assert_eq!(t["name"], truth.name.as_str());
        assert_eq!(json_counters(t), truth.counters);
        sum.add(&truth.counters);
    }
    // worker-i made 20 * (i + 1) round trips of 100 bytes.
    assert_eq!(r.threads[2].counters.udpsndbytes, 6000);
    assert_eq!(json_counters(row), sum);

    // The table: exact with --raw, a row per thread under its process.
    let table = ok(d.ctl().args(["dump", "--threads", "--raw", "--pid", &pid]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let t2: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(t2[0], r.threads[2].tid.to_string());
    assert_eq!(t2[1], "worker-2");
    assert_eq!(t2[6..8], ["60", "6000"]);
    // Human units by default: 6000 bytes are 5.9KiB.
    let human = ok(d.ctl().args(["dump", "--threads", "--pid", &pid]));
    assert!(human.lines().nth(4).unwrap().contains("5.9KiB"), "{human}");
    g.finish();
}

#[test]
fn dump_sorts_filters_and_cuts() {
    let d = Daemon::start(&[]);
    let (small, rs) = run_lingering(
        "udp4",
        &["--count", "10", "--size", "10", "--name", "ctl-small"],
    );
    let (big, rb) = run_lingering(
        "tcp4",
        &["--count", "10", "--size", "5000", "--name", "ctl-big"],
    );
    let (ps, pb) = (rs.pid.to_string(), rb.pid.to_string());
    let pids = |v: Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["pid"].as_i64().unwrap())
            .collect()
    };
    let by = |key: &str| {
        pids(json(
            d.ctl()
                .args(["dump", "--json", "--sort", key, "--pid", &ps, &pb]),
        ))
    };
    let (s, b) = (rs.pid as i64, rb.pid as i64);
    assert_eq!(by("bytes"), vec![b, s]);
    assert_eq!(by("udp-send-bytes"), vec![s, b]);
    assert_eq!(by("pid"), {
        let mut v = vec![s, b];
        v.sort();
        v
    });
    assert_eq!(by("command"), vec![b, s], "ctl-big < ctl-small");
    let top = json(
        d.ctl()
            .args(["dump", "--json", "--top", "1", "--pid", &ps, &pb]),
    );
    assert_eq!(pids(top), vec![b]);
    let named = json(d.ctl().args(["dump", "--json", "--command", "ctl-small"]));
    let named = named.as_array().unwrap();
    assert_eq!(named.len(), 1);
    assert_eq!(json_counters(&named[0]), rs.counters);
    assert_eq!(named[0]["command"], "ctl-small");

    // A bad field is refused with the valid ones listed.
    let err = fails(d.ctl().args(["dump", "--sort", "nonsense"]));
    assert!(err.contains("tcp-send-bytes"));
    small.finish();
    big.finish();
}

#[test]
fn dump_exited_marks_processes_that_are_gone() {
    let d = Daemon::start(&[]);
    let r = run_to_exit("udp6", &["--count", "33", "--size", "700"]);
    let pid = r.pid.to_string();
    // Collected from the kernel within 100 ms of the exit.
    wait_until(Duration::from_secs(10), "the exit to be collected", || {
        !json(d.ctl().args(["dump", "--json", "--exited", "--pid", &pid]))
            .as_array()
            .unwrap()
            .is_empty()
    });
    let rows = json(d.ctl().args(["dump", "--json", "--exited", "--pid", &pid]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["exited"], true);
    assert_eq!(json_counters(&rows[0]), r.counters);
    let table = ok(d.ctl().args(["dump", "--exited", "--pid", &pid]));
    assert!(table.contains("netatop-gen (exited)"), "{table}");
    // Without --exited it is not listed.
    let rows = json(d.ctl().args(["dump", "--json", "--pid", &pid]));
    assert!(rows.as_array().unwrap().is_empty());
}

#[test]
fn dump_falls_back_to_the_atop_socket_and_says_what_needs_netatopd() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering("tcp6", &["--count", "5"]);
    let nowhere = d.control_socket().with_extension("missing");
    let rows =
        json(netatopctl(&d.socket, &nowhere).args(["dump", "--json", "--pid", &r.pid.to_string()]));
    assert_eq!(json_counters(&rows[0]), r.counters);

    let err = fails(netatopctl(&d.socket, &nowhere).args(["dump", "--threads"]));
    assert!(
        err.contains("--threads needs netatopd's control socket") && err.lines().count() == 1,
        "{err}"
    );
    g.finish();
}

#[test]
fn top_reports_rates_connections_and_exits_once() {
    let d = Daemon::start(&[]);
    // A steady sender (2 UDP sockets), sending during the whole run:
    // 4,000 round trips, one every 0.5 ms or more.
    let mut steady = Gen::spawn(
        "udp4",
        &[
            "--count",
            "4000",
            "--size",
            "100",
            "--pace-us",
            "500",
            "--name",
            "ctl-steady",
        ],
    );
    let steady_pid = steady.pid();
    // A process that sends 100 x 1000 bytes when told, then exits.
    let mut once = Gen::spawn("udp4", &["--wait-go", "--count", "100", "--size", "1000"]);
    let mut top = d
        .ctl()
        .args(["top", "--json", "-i", "0.3", "-n", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(top.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    once.go();
    let ro = once.report();
    once.finish();
    let mut samples = vec![first];
    for line in lines {
        samples.push(serde_json::from_str(&line.unwrap()).unwrap());
    }
    assert!(top.wait().unwrap().success());
    assert_eq!(samples.len(), 4);

    let mut once_bytes = 0.0;
    let mut once_rows = 0;
    for s in &samples {
        let interval = s["interval"].as_f64().unwrap();
        assert!(s["time"].as_f64().unwrap() > 1.6e9);
        let procs = s["processes"].as_array().unwrap();
        let steady_row = procs
            .iter()
            .find(|p| p["pid"] == steady_pid)
            .expect("the steady sender in every interval");
        assert_eq!(steady_row["command"], "ctl-steady");
        assert_eq!(steady_row["connections"], 2);
        assert!(steady_row["send_bytes_per_sec"].as_f64().unwrap() > 0.0);
        for keys in [
            "recv_bytes_per_sec",
            "send_packets_per_sec",
            "recv_packets_per_sec",
        ] {
            assert!(steady_row[keys].is_number(), "{keys}");
        }
        if let Some(p) = procs.iter().find(|p| p["pid"] == ro.pid) {
            once_rows += 1;
            once_bytes += p["send_bytes_per_sec"].as_f64().unwrap() * interval;
        }
    }
    // Its whole traffic, over the intervals it appeared in, exactly once.
    assert!(once_rows >= 1);
    assert_eq!(once_bytes.round() as u64, ro.counters.udpsndbytes);
    assert_eq!(ro.counters.udpsndbytes, 100_000);
    let last_seen = samples
        .iter()
        .rev()
        .find_map(|s| {
            s["processes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["pid"] == ro.pid)
        })
        .unwrap();
    assert_eq!(last_seen["exited"], true);
    steady.report();
    steady.finish();
}

#[test]
fn top_prints_plain_blocks_when_not_on_a_terminal() {
    let d = Daemon::start(&[]);
    let (g, _) = run_lingering(
        "tcp4",
        &["--count", "2000", "--size", "10", "--pace-us", "500"],
    );
    let text = ok(d.ctl().args(["top", "-i", "0.2", "-n", "2", "--split"]));
    assert_eq!(text.matches("netatopctl top").count(), 2, "{text}");
    assert_eq!(text.matches("TCPSND/s").count(), 2, "{text}");
    assert!(
        !text.contains('\x1b'),
        "no terminal control codes: {text:?}"
    );
    g.finish();
}

/// Runs `netatopctl top` on a pseudo-terminal; `interrupt` sends it SIGINT
/// after its first screen. Returns everything it wrote.
fn top_on_a_terminal(d: &Daemon, args: &[&str], interrupt: bool) -> String {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: valid out-pointers; no name buffer; a valid window size.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: openpty returned these descriptors; each is owned once.
    let (master, slave) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    };
    let mut child = d
        .ctl()
        .arg("top")
        .args(args)
        .stdout(Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    let mut reader = master;
    let mut buf = [0u8; 4096];
    let mut interrupted = false;
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once the child has closed its side
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if interrupt && !interrupted && String::from_utf8_lossy(&out).contains("PID") {
            signal(child.id(), libc::SIGINT);
            interrupted = true;
        }
    }
    assert!(child.wait().unwrap().success());
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn top_on_a_terminal_redraws_in_place_and_restores_it() {
    let d = Daemon::start(&[]);
    for (args, interrupt) in [
        (&["-i", "0.2", "-n", "2"][..], false),
        (&["-i", "0.2"][..], true),
    ] {
        let screen = top_on_a_terminal(&d, args, interrupt);
        assert!(screen.starts_with("\x1b[?1049h\x1b[?25l"), "{screen:?}");
        assert!(screen.contains("\x1b[H\x1b[2J"), "{screen:?}");
        assert!(screen.contains("netatopctl top"), "{screen:?}");
        assert!(screen.ends_with("\x1b[?25h\x1b[?1049l"), "{screen:?}");
        if !interrupt {
            assert_eq!(screen.matches("\x1b[H\x1b[2J").count(), 2);
        }
    }
}

#[test]
fn stats_describes_the_daemon() {
    let d = Daemon::start(&["--max-processes", "4096"]);
    let (g, r) = run_lingering("udp4", &["--count", "50", "--size", "10"]);
    let _ = d.query();
    let mut held = d.connect();
    let s = json(d.ctl().args(["stats", "--json"]));
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["max_processes"], 4096);
    assert!(s["processes"].as_u64().unwrap() >= 1);
    assert!(s["threads"].as_u64().unwrap() >= 1);
    // Every call of the generator is among the events counted.
    assert!(s["events"].as_u64().unwrap() >= r.counters.udpsndpacks + r.counters.udprcvpacks);
    assert!(s["queries"].as_u64().unwrap() >= 1);
    assert_eq!(s["atop_clients"], 1);
    assert_eq!(s["control_clients"], 1);
    assert_eq!(s["pinned"], "nothing");
    assert!(s["map_memory_bytes"].as_u64().unwrap() > 0);
    // Task storage, which the maps' figure leaves out: each counted thread
    // holds at least a storage element and its task's storage.
    let per_thread = s["thread_storage_bytes"].as_u64().unwrap() / s["threads"].as_u64().unwrap();
    if s["max_threads"] == 0 {
        assert!((128..=1024).contains(&per_thread), "{s}");
    } else {
        assert_eq!(per_thread, 0, "{s}");
    }
    assert!(s["kernel"].as_str().unwrap().len() > 2);
    for k in [
        "thread_map_full",
        "proc_map_full",
        "exit_map_full",
        "exited_kept",
        "exited_dropped",
        "exited_undelivered",
    ] {
        assert!(s[k].is_u64(), "{k}");
    }
    let text = ok(d.ctl().arg("stats"));
    for label in [
        "version:",
        "events counted:",
        "thread map full:",
        "kernel memory:",
        "query time:",
    ] {
        assert!(text.contains(label), "{label}: {text}");
    }
    held.write_all(&[0; 96]).unwrap();
    drop(held);
    g.finish();
}

#[test]
fn stats_counts_map_full_drops() {
    let d = Daemon::start(&["--max-processes", "8", "--max-threads", "8"]);
    let mut g = Gen::spawn("fork", &["--count", "40", "--size", "10"]);
    g.report();
    let s = json(d.ctl().args(["stats", "--json"]));
    let lost = s["thread_map_full"].as_u64().unwrap() + s["proc_map_full"].as_u64().unwrap();
    assert!(
        lost >= 32,
        "40 one-send processes, at most 8 in the map: {s}"
    );
    g.finish();
}

#[test]
fn export_openmetrics_per_pid_and_per_command() {
    let d = Daemon::start(&[]);
    let (a, ra) = run_lingering(
        "udp4",
        &["--count", "11", "--size", "100", "--name", "ctl-export"],
    );
    let (b, rb) = run_lingering(
        "tcp4",
        &["--count", "3", "--size", "1000", "--name", "ctl-export"],
    );
    let text = ok(d.ctl().args(["export", "--format", "openmetrics"]));
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE netatop_udp_send_bytes counter\n"));
    assert!(text.contains(&format!(
        "netatop_udp_send_bytes_total{{pid=\"{}\",command=\"ctl-export\"}} 1100\n",
        ra.pid
    )));
    assert!(text.contains(&format!(
        "netatop_tcp_send_bytes_total{{pid=\"{}\",command=\"ctl-export\"}} {}\n",
        rb.pid, rb.counters.tcpsndbytes
    )));

    let file = d.control_socket().with_file_name("netatop.prom");
    ok(d.ctl()
        .args([
            "export",
            "--format",
            "openmetrics",
            "--by",
            "command",
            "--output",
        ])
        .arg(&file));
    let text = std::fs::read_to_string(&file).unwrap();
    let packets = ra.counters.udpsndpacks + rb.counters.udpsndpacks;
    assert!(text.contains(&format!(
        "netatop_udp_send_packets_total{{command=\"ctl-export\"}} {packets}\n"
    )));
    assert!(text.contains(&format!(
        "netatop_tcp_recv_bytes_total{{command=\"ctl-export\"}} {}\n",
        ra.counters.tcprcvbytes + rb.counters.tcprcvbytes
    )));
    assert!(!text.contains("pid=\""));
    a.finish();
    b.finish();
}

/// Sends raw bytes on the control socket and reads the one response.
fn raw_control(d: &Daemon, bytes: &[u8]) -> Response {
    let mut s = UnixStream::connect(d.control_socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let content = control::read_frame(&mut s, control::MAX_RESPONSE).unwrap();
    let resp: Response = control::decode(&content).unwrap();
    // Refused: the daemon closes the connection after the error.
    expect_eof(&mut s);
    resp
}

#[test]
fn the_control_socket_refuses_bad_frames_clearly_and_goes_on() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering("udp4", &["--count", "4"]);
    // Another version: the content starts with 99.
    let frame = [3u8, 0, 0, 0, 99, 1, 0];
    let Response::Error(why) = raw_control(&d, &frame) else {
        panic!("not refused")
    };
    assert!(why.contains("version 99"), "{why}");
    // A length over the request limit: refused before anything is read.
    let Response::Error(why) = raw_control(&d, &(1u32 << 30).to_le_bytes()) else {
        panic!("not refused")
    };
    assert!(why.contains("over the limit"), "{why}");
    // Garbage of the right length.
    let v = control::VERSION as u8;
    let Response::Error(why) = raw_control(&d, &[4, 0, 0, 0, v, 0xff, 0xff, 0xff]) else {
        panic!("not refused")
    };
    assert!(why.contains("malformed"), "{why}");

    // Pipelined good requests are answered in order on one connection.
    let mut s = UnixStream::connect(d.control_socket()).unwrap();
    let mut both = control::encode(&Request::Stats);
    both.extend(control::encode(&Request::Processes {
        threads: false,
        exited: false,
    }));
    s.write_all(&both).unwrap();
    let first: Response =
        control::decode(&control::read_frame(&mut s, control::MAX_RESPONSE).unwrap()).unwrap();
    assert!(matches!(first, Response::Stats(_)));
    let Response::Processes(procs) =
        control::decode(&control::read_frame(&mut s, control::MAX_RESPONSE).unwrap()).unwrap()
    else {
        panic!("processes expected")
    };
    let p = procs
        .iter()
        .find(|p| p.pid == r.pid)
        .expect("the generator");
    assert_eq!(p.counters, r.counters);
    // The atop socket is untouched by all this.
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    g.finish();
}
