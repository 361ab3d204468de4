//! Other users than root. Sockets widened to them (`--socket-mode 0666`):
//! a user other than root is held to its share of connections, never takes
//! the slots kept for root, and loses connections it leaves idle; root is
//! served throughout. And whatever the sockets: one user's processes
//! cannot fill the process map. The other user is `nobody`, on a thread of
//! its own (`as_user`).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netatop_protocol::control::{self, Request, Response};
use netatop_protocol::{Counters, NetPerTask, RECORD_SIZE};
use netatopd_tests::{
    as_user, bin, connect_as_nobody, expect_closed, json, ok, query_on, record_for, records_for,
    run_lingering, wait_until, Daemon, Gen, Report, NOBODY,
};
use serde_json::Value;
use zerocopy::{FromBytes, IntoBytes};

/// A netatopd with both sockets open to everyone and options `extra`.
fn widened(extra: &[&str]) -> Daemon {
    Daemon::builder().open_to_all().args(extra).start()
}

/// Whether a connection is served: one atop query on it answers with
/// `pid`'s exact counters, or it is closed unanswered (refused).
fn atop_served(s: &mut UnixStream, pid: i32, want: &Counters) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    if s.write_all(&[0u8; RECORD_SIZE]).is_err() {
        return false;
    }
    let mut response = vec![0u8; RECORD_SIZE];
    match s.read(&mut response[..1]) {
        Ok(0) => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
        Err(e) => panic!("neither answered nor closed: {e}"),
        Ok(_) => {
            s.read_exact(&mut response[1..]).expect("a whole record");
            let mut rec = [0u8; RECORD_SIZE];
            while !ends_response(&response) {
                s.read_exact(&mut rec).expect("a whole response");
                response.extend_from_slice(&rec);
            }
            assert_eq!(&record_for(&records(&response), pid).counters, want);
            true
        }
    }
}

/// Whether a control connection is served: a statistics request gets its
/// response, or the connection is closed unanswered (refused).
fn control_served(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    match control::call(s, &Request::Stats) {
        Ok(Response::Stats(_)) => true,
        Ok(other) => panic!("not statistics: {other:?}"),
        Err(control::ControlError::Io(e))
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
            ) =>
        {
            false
        }
        Err(e) => panic!("neither answered nor closed: {e}"),
    }
}

/// `n` connections of nobody to `socket`, each tried with `served`: the
/// ones served (kept open) and the number refused.
fn nobody_opens(
    socket: &Path,
    n: usize,
    mut served: impl FnMut(&mut UnixStream) -> bool,
) -> (Vec<UnixStream>, usize) {
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..n {
        let mut s = connect_as_nobody(socket).expect("nobody connects to a 0666 socket");
        if served(&mut s) {
            kept.push(s);
        } else {
            refused += 1;
        }
    }
    (kept, refused)
}

fn stats(d: &Daemon) -> Value {
    json(d.ctl().args(["stats", "--json"]))
}

/// Connections open now of `uid`, from `netatopctl stats --json`.
fn held_by(s: &Value, uid: u32) -> u64 {
    s["clients_by_uid"]
        .as_array()
        .expect("clients_by_uid")
        .iter()
        .find(|pair| pair[0] == uid)
        .map_or(0, |pair| pair[1].as_u64().unwrap())
}

/// The traffic every query must show exactly.
fn known_traffic() -> (netatopd_tests::Gen, Report) {
    run_lingering("udp4", &["--count", "9", "--size", "99"])
}

#[test]
fn a_user_gets_its_share_of_connections_while_root_is_served() {
    let d = widened(&["--max-clients", "64", "--max-clients-per-user", "5"]);
    let (g, r) = known_traffic();
    let mut root = d.connect();

    // Eight on the atop socket: five served, three refused; root's
    // queries are answered between them.
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let (k, n) = nobody_opens(&d.socket, 1, |s| atop_served(s, r.pid, &r.counters));
        kept.extend(k);
        refused += n;
        assert_eq!(record_for(&query_on(&mut root), r.pid).counters, r.counters);
    }
    assert_eq!((kept.len(), refused), (5, 3));
    // The ones kept go on being served.
    for s in &mut kept {
        assert!(atop_served(s, r.pid, &r.counters));
    }

    // The limit covers both sockets: no control connection is left, until
    // two atop connections go.
    let (_, n) = nobody_opens(&d.control_socket(), 2, control_served);
    assert_eq!(n, 2);
    kept.truncate(3);
    wait_for_uid(&d, NOBODY, 3);
    let (mut ctl, n) = nobody_opens(&d.control_socket(), 3, control_served);
    assert_eq!((ctl.len(), n), (2, 1));
    for s in &mut ctl {
        assert!(control_served(s));
    }

    // Root is limited only by --max-clients.
    let mut roots: Vec<UnixStream> = (0..20).map(|_| d.connect()).collect();
    for s in &mut roots {
        assert!(atop_served(s, r.pid, &r.counters));
    }

    let s = stats(&d);
    assert_eq!(held_by(&s, NOBODY), 5, "{s}");
    // Root: the 20, the first, and netatopctl's own connection.
    assert_eq!(held_by(&s, 0), 22, "{s}");
    assert_eq!(s["refused_per_user"], 3 + 2 + 1, "{s}");
    assert_eq!(s["refused_reserved"], 0, "{s}");
    assert_eq!(s["refused_max_clients"], 0, "{s}");
    let text = ok(d.ctl().arg("stats"));
    assert!(
        text.contains("clients by uid:") && text.contains("65534: 5"),
        "{text}"
    );
    assert!(
        text.contains("refused:") && text.contains("6 --max-clients-per-user"),
        "{text}"
    );
    let log = d.log();
    assert!(
        log.contains(
            "connection(s) refused (the last from uid 65534): uid 65534 holds 5 connections \
             (--max-clients-per-user)"
        ),
        "{log}"
    );
    g.finish();
}

/// Waits until netatopd counts `n` connections of `uid` (a connection the
/// client closed is seen closed at netatopd's next turn).
fn wait_for_uid(d: &Daemon, uid: u32, n: u64) {
    netatopd_tests::wait_until(Duration::from_secs(20), "connections to be counted", || {
        held_by(&stats(d), uid) == n
    });
}

#[test]
fn the_slots_kept_for_root_stay_free_for_root() {
    // 20 slots, the last 10 of them root's; nobody's own limit is higher.
    let d = widened(&["--max-clients", "20", "--max-clients-per-user", "16"]);
    let (g, r) = known_traffic();
    let (mut kept, refused) = nobody_opens(&d.socket, 16, |s| atop_served(s, r.pid, &r.counters));
    assert_eq!((kept.len(), refused), (10, 6));
    // Root gets the other 10 (a control connection among them).
    let mut roots: Vec<UnixStream> = (0..9).map(|_| d.connect()).collect();
    for s in &mut roots {
        assert!(atop_served(s, r.pid, &r.counters));
    }
    let mut ctl = UnixStream::connect(d.control_socket()).unwrap();
    assert!(control_served(&mut ctl));
    // Full now, for root too.
    let mut late = d.connect();
    assert!(!atop_served(&mut late, r.pid, &r.counters));
    for s in &mut kept {
        assert!(atop_served(s, r.pid, &r.counters));
    }
    drop(ctl);
    drop(late);
    // The statistics take the root slot the control connection left.
    let s = {
        let mut s = None;
        netatopd_tests::wait_until(Duration::from_secs(20), "a free slot", || {
            let out = netatopd_tests::run(d.ctl().args(["stats", "--json"]));
            if out.status.success() {
                s = Some(serde_json::from_slice::<Value>(&out.stdout).unwrap());
            }
            s.is_some()
        });
        s.unwrap()
    };
    assert_eq!(s["refused_reserved"], 6, "{s}");
    assert_eq!(s["refused_per_user"], 0, "{s}");
    assert!(s["refused_max_clients"].as_u64().unwrap() >= 1, "{s}");
    let log = d.log();
    assert!(
        log.contains(
            "connection(s) refused (the last from uid 65534): the last 10 of --max-clients 20 \
             are kept for root"
        ),
        "{log}"
    );
    assert!(
        log.contains("refused (the last from uid 0): 20 clients connected"),
        "{log}"
    );
    g.finish();
}

#[test]
fn idle_connections_of_a_user_are_closed_but_active_ones_and_roots_are_not() {
    let d = widened(&["--idle-timeout", "2"]);
    let (g, r) = known_traffic();
    let start = Instant::now();
    // nobody: one atop and one control connection that never ask, one atop
    // connection that sent half a request.
    let idle = connect_as_nobody(&d.socket).unwrap();
    let idle_ctl = connect_as_nobody(&d.control_socket()).unwrap();
    let mut half = connect_as_nobody(&d.socket).unwrap();
    half.write_all(&[1u8; 40]).unwrap();
    // nobody, active: asks every 0.5 s, as atop would.
    let mut active = connect_as_nobody(&d.socket).unwrap();
    let mut active_ctl = connect_as_nobody(&d.control_socket()).unwrap();
    // nobody, slow: takes 3 s over each response, longer than the timeout.
    let mut slow = connect_as_nobody(&d.socket).unwrap();
    // root, idle.
    let mut root_idle = d.connect();
    let mut root_ctl = UnixStream::connect(d.control_socket()).unwrap();

    let closer = std::thread::spawn(move || {
        let mut closed_after = Vec::new();
        for s in [idle, idle_ctl, half] {
            expect_closed(s);
            closed_after.push(start.elapsed());
        }
        closed_after
    });
    let want = r.counters;
    let slow_reader = std::thread::spawn(move || {
        slow.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        for _ in 0..2 {
            slow.write_all(&[0u8; RECORD_SIZE]).unwrap();
            let mut response = vec![0u8; RECORD_SIZE];
            slow.read_exact(&mut response)
                .expect("the slow reader is served");
            std::thread::sleep(Duration::from_secs(3));
            let mut rec = [0u8; RECORD_SIZE];
            while !ends_response(&response) {
                slow.read_exact(&mut rec)
                    .expect("the slow reader is served");
                response.extend_from_slice(&rec);
            }
            assert_eq!(record_for(&records(&response), r.pid).counters, want);
        }
        slow
    });
    while start.elapsed() < Duration::from_secs(6) {
        assert!(atop_served(&mut active, r.pid, &r.counters));
        assert!(control_served(&mut active_ctl));
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut slow = slow_reader.join().unwrap();
    // Both still served.
    assert!(atop_served(&mut slow, r.pid, &r.counters));
    assert!(atop_served(&mut active, r.pid, &r.counters));
    let closed_after = closer.join().unwrap();
    for t in &closed_after {
        assert!(
            *t >= Duration::from_secs(2),
            "closed before --idle-timeout: {t:?}"
        );
    }
    // Root's connections, idle all along, are still served.
    assert_eq!(
        record_for(&query_on(&mut root_idle), r.pid).counters,
        r.counters
    );
    assert!(control_served(&mut root_ctl));
    let s = stats(&d);
    assert_eq!(s["closed_idle"], 3, "{s}");
    // The active pair and the slow reader.
    assert_eq!(held_by(&s, NOBODY), 3, "{s}");
    g.finish();
}

/// The records of a whole response.
fn records(bytes: &[u8]) -> Vec<NetPerTask> {
    bytes
        .chunks(RECORD_SIZE)
        .map(|c| NetPerTask::read_from_bytes(c).expect("a record"))
        .collect()
}

/// Whether `bytes` hold a whole atop response: whole records, the last the
/// terminator (id 0).
fn ends_response(bytes: &[u8]) -> bool {
    bytes.len() >= RECORD_SIZE
        && bytes.len() % RECORD_SIZE == 0
        && bytes[bytes.len() - RECORD_SIZE..][..4] == [0, 0, 0, 0]
}

#[test]
fn netatopctl_run_by_a_user_reads_widened_sockets() {
    let d = widened(&[]);
    let (g, r) = known_traffic();
    // A separate process, as nobody (setpriv, from util-linux).
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(bin("netatopctl"))
            .arg("--socket")
            .arg(&d.socket)
            .arg("--control-socket")
            .arg(d.control_socket())
            .args(args);
        json(&mut cmd)
    };
    let dump = as_nobody(&["dump", "--json", "--raw", "--pid", &r.pid.to_string()]);
    assert_eq!(dump[0]["udp_send_bytes"], r.counters.udpsndbytes, "{dump}");
    let s = as_nobody(&["stats", "--json"]);
    // Its own connection, seen from inside.
    assert_eq!(held_by(&s, NOBODY), 1, "{s}");
    g.finish();
}

/// The processes of `r` (a `fork` generator's children) that a snapshot
/// has, each checked to be exactly its one datagram of 10 bytes.
fn counted_children(d: &Daemon, r: &Report) -> usize {
    let recs = d.query();
    let mut n = 0;
    for &pid in &r.children {
        if let [rec] = records_for(&recs, pid)[..] {
            assert_eq!(
                (rec.counters.udpsndpacks, rec.counters.udpsndbytes),
                (1, 10)
            );
            n += 1;
        }
    }
    n
}

/// One user's processes take at most --max-processes-per-user entries of
/// the process map: its others are not counted, and counted as lost;
/// root's processes are all counted; and a user's exited processes make
/// room for its next.
#[test]
fn one_user_cannot_fill_the_process_map() {
    let d = Daemon::start(&["--max-processes", "256", "--max-processes-per-user", "16"]);
    let spawn_as_nobody = |n: &'static str| {
        as_user(NOBODY, NOBODY, move || {
            Gen::spawn("fork", &["--count", n, "--size", "10"])
        })
    };
    let mut g = spawn_as_nobody("60");
    let r = g.report();
    let counted = counted_children(&d, &r);
    // Processes starting at once on several CPUs may pass the limit by
    // as many.
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(
        (16..=16 + cpus).contains(&counted),
        "{counted} of nobody's 60 processes counted, limit 16"
    );
    let s = stats(&d);
    assert_eq!(s["max_processes_per_user"], 16, "{s}");
    assert_eq!(s["user_procs_capped"], (60 - counted) as u64, "{s}");
    wait_until(Duration::from_secs(10), "the per-user warning", || {
        d.log().contains("raise --max-processes-per-user")
    });
    let text = ok(d.ctl().arg("stats"));
    assert!(
        text.contains("at most 16 per user other than root"),
        "{text}"
    );
    // Root's are all counted, the map's other entries theirs.
    let mut root = Gen::spawn("fork", &["--count", "40", "--size", "10"]);
    assert_eq!(counted_children(&d, &root.report()), 40);
    root.finish();
    // Once nobody's processes have exited, its next are counted.
    g.finish();
    let mut again = spawn_as_nobody("10");
    assert_eq!(counted_children(&d, &again.report()), 10);
    again.finish();
}

/// A request of a user other than root held back while those users'
/// unread output is over --max-unprivileged-output is not idleness: its
/// connection outlives --idle-timeout, and is answered once that output
/// is taken.
#[test]
fn a_held_request_outlives_the_idle_timeout() {
    let d = widened(&[
        "--idle-timeout",
        "1",
        "--max-unprivileged-output",
        "4096",
        "--client-timeout",
        "120",
    ]);
    // 3,000 processes with traffic, and a request for their threads too:
    // a response of about 576 kB, built whole, more than a socket's buffer
    // takes, so that much of it waits in netatopd.
    let mut g = Gen::spawn("fork", &["--count", "3000", "--size", "10"]);
    let r = g.report();
    let mut hog = connect_as_nobody(&d.socket).unwrap();
    hog.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    hog.write_all(NetPerTask::THREADS_REQUEST.as_bytes())
        .unwrap();
    let mut first = vec![0u8; RECORD_SIZE];
    hog.read_exact(&mut first).expect("the response begins");
    // Another connection of nobody's asks: held while hog takes nothing.
    let mut held = connect_as_nobody(&d.socket).unwrap();
    held.write_all(&[0u8; RECORD_SIZE]).unwrap();
    // Past --idle-timeout and the once-a-second look at idle clients.
    std::thread::sleep(Duration::from_secs(4));
    held.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match held.read(&mut byte) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok(0) => panic!("a held request was closed as idle"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            panic!("a held request was closed as idle (reset)")
        }
        other => panic!("a held request was answered while held: {other:?}"),
    }
    held.set_nonblocking(false).unwrap();
    // hog takes its output: the held request is answered, whole.
    let mut rec = [0u8; RECORD_SIZE];
    let mut response = first;
    while !ends_response(&response) {
        hog.read_exact(&mut rec).expect("hog's response");
        response.extend_from_slice(&rec);
    }
    held.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut response = vec![0u8; RECORD_SIZE];
    held.read_exact(&mut response)
        .expect("the held request is answered");
    while !ends_response(&response) {
        held.read_exact(&mut rec)
            .expect("the held request's response");
        response.extend_from_slice(&rec);
    }
    let recs = records(&response);
    for &pid in &r.children[..10] {
        assert_eq!(record_for(&recs, pid).counters.udpsndpacks, 1);
    }
    g.finish();
}
