//! Clients that misbehave or come in numbers, with responses of 10,000
//! processes (larger than any socket buffer).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netatop_protocol::{read_response, ReadMode, RECORD_SIZE};
use netatopd_tests::{
    expect_closed, record_for, response_on, run_lingering, set_nofile, wait_until, Daemon, Gen,
};

/// Every daemon counts every process on the machine: while one test here
/// keeps 10,000 processes alive, the other's thousand clients would each
/// get 1 MB responses. The tests of this file run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn misbehaving_clients_delay_no_one_with_10k_process_responses() {
    let _serial = one_at_a_time();
    const N: usize = 10_000;
    // With an output cap of one response, pipelined requests wait in the
    // client's socket until it has read the response before.
    let d = Daemon::start(&["--client-timeout", "2", "--max-pending-output", "1"]);
    let mut g = Gen::spawn("fork", &["--count", &N.to_string(), "--size", "50"]);
    let r = g.report();

    // Asks five times and never reads: its first ~1 MB response fills the
    // socket buffer and stays pending.
    let mut stuck = d.connect();
    stuck.write_all(&[0u8; 5 * RECORD_SIZE]).unwrap();
    // Asks twice, takes 100 kB of the first response and is gone.
    let mut vanisher = d.connect();
    vanisher.write_all(&[0u8; 2 * RECORD_SIZE]).unwrap();
    let mut part = vec![0u8; 100_000];
    vanisher.read_exact(&mut part).unwrap();
    drop(vanisher);
    // Sends half a request and waits.
    let mut half = d.connect();
    half.write_all(&[1u8; RECORD_SIZE / 2]).unwrap();
    // Asks three times at once and reads alongside the normal client.
    let mut piped = d.connect();
    piped.write_all(&[0u8; 3 * RECORD_SIZE]).unwrap();
    let first_child = r.children[0];
    let piped = std::thread::spawn(move || {
        for _ in 0..3 {
            let recs = response_on(&mut piped);
            assert_eq!(record_for(&recs, first_child).counters.udpsndbytes, 50);
            assert!(recs.len() >= N);
        }
    });
    // A normal client is served in full meanwhile, twice.
    for _ in 0..2 {
        let recs = d.query();
        assert_eq!(
            record_for(&recs, r.children[N - 1]).counters.udpsndbytes,
            50
        );
        assert!(recs.len() >= N);
    }
    piped.join().expect("the pipelining client");
    // The other half of the request: a whole response.
    half.write_all(&[1u8; RECORD_SIZE / 2]).unwrap();
    let recs = response_on(&mut half);
    assert!(recs.len() >= N);
    // After the timeout the stuck client is disconnected, logged at debug.
    wait_until(
        Duration::from_secs(30),
        "the stuck client to be dropped",
        || d.log().contains("were not taken within 2s"),
    );
    expect_closed(stuck);
    assert!(d.query().len() >= N, "still serving");
    g.finish();
}

#[test]
fn a_thousand_concurrent_clients_are_served_and_the_next_is_refused() {
    let _serial = one_at_a_time();
    const CLIENTS: usize = 1000;
    // Raises this test process's descriptor limit for many connections.
    set_nofile(8192, 8192).expect("raising the descriptor limit");
    let d = Daemon::start(&["--max-clients", &CLIENTS.to_string()]);
    let (g, r) = run_lingering("udp4", &["--count", "10", "--size", "10"]);
    let mut conns: Vec<UnixStream> = (0..CLIENTS).map(|_| d.connect()).collect();
    for c in &mut conns {
        c.write_all(&[0u8; RECORD_SIZE]).unwrap();
    }
    for c in &mut conns {
        let recs = response_on(c);
        assert_eq!(record_for(&recs, r.pid).counters, r.counters);
    }
    // One more than the limit: closed at once, not left hanging.
    let extra = d.connect();
    expect_closed(extra);
    wait_until(Duration::from_secs(10), "a refusal warning", || {
        d.log().contains("refused")
    });
    // When a client leaves, a new one gets in.
    drop(conns.pop());
    wait_until(Duration::from_secs(10), "a free slot", || {
        let mut s = d.connect();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&[0u8; RECORD_SIZE]).is_ok() && read_response(&mut s, ReadMode::AsAtop).is_ok()
    });
    // The connected ones are still served.
    for c in conns.iter_mut().take(10) {
        c.write_all(&[0u8; RECORD_SIZE]).unwrap();
        assert_eq!(record_for(&response_on(c), r.pid).counters, r.counters);
    }
    g.finish();
}

/// A client being streamed a snapshot holds a descriptor for it. When the
/// descriptor limit allows no more streams (here 16, with 40 clients whose
/// streams stay open at once), snapshots are built whole instead, and every
/// client still gets its whole, exact response.
#[test]
fn out_of_descriptors_snapshots_are_built_whole() {
    let _serial = one_at_a_time();
    const N: usize = 4_000;
    const CLIENTS: usize = 40;
    // The daemon starts with a hard limit of 120 descriptors: 104 for 40
    // clients and its own allowance, and room for 16 streams.
    let d = Daemon::builder()
        .args(&["--max-clients", &CLIENTS.to_string()])
        .nofile(60, 120)
        .start();

    // Responses of 4,000 records (384 kB) do not fit in a socket buffer,
    // so a client that does not read keeps its stream open.
    let mut g = Gen::spawn("fork", &["--count", &N.to_string(), "--size", "50"]);
    let r = g.report();
    // With the task iterator 16 stream and the others are built whole; a
    // map walk is always built whole.
    let stats = netatopd_tests::json(d.ctl().args(["stats", "--json"]));
    let walked = stats["attach_mode"]
        .as_str()
        .is_some_and(|m| m.contains("; snapshots: map-walk"));
    let said = if walked {
        "snapshots are walked through the maps: built whole"
    } else {
        "16 snapshots are being streamed: this one is built whole"
    };
    let mut conns: Vec<UnixStream> = (0..CLIENTS).map(|_| d.connect()).collect();
    for c in &mut conns {
        c.write_all(&[0u8; RECORD_SIZE]).unwrap();
    }
    wait_until(Duration::from_secs(30), "a snapshot built whole", || {
        d.log().contains(said)
    });
    for c in &mut conns {
        let recs = response_on(c);
        assert!(recs.len() >= N);
        for &child in [r.children[0], r.children[N - 1]].iter() {
            assert_eq!(record_for(&recs, child).counters.udpsndbytes, 50);
        }
    }
    g.finish();
}
