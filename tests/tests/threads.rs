//! Thread records on the atop socket (netatop-protocol(5), "Thread
//! records"): only the exact opt-in request gets them; every other request
//! (random bytes, zeros, netatopd's terminator, the last record received,
//! the opt-in with any one bit changed) gets exactly the baseline stream.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netatop_protocol::{query_with, Counters, NetPerTask, ReadMode, RECORD_SIZE};
use netatopd_tests::{response_on, run_lingering, seed, Daemon, Report, Rng};
use zerocopy::IntoBytes;

fn opt_in() -> [u8; RECORD_SIZE] {
    NetPerTask::THREADS_REQUEST.as_bytes().try_into().unwrap()
}

/// What netatopd must report for the generator's process: the sum over
/// its threads (its main thread makes no traffic).
fn total(r: &Report) -> Counters {
    let mut sum = r.counters;
    for t in &r.threads {
        sum.add(&t.counters);
    }
    sum
}

fn ask(s: &mut UnixStream, request: &[u8; RECORD_SIZE]) -> Vec<NetPerTask> {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    query_with(s, request, ReadMode::AsAtop).expect("query as atop reads")
}

/// The baseline stream: process records only.
fn assert_baseline(records: &[NetPerTask], what: &str) {
    let threads: Vec<_> = records.iter().filter(|r| r.pad != 0).collect();
    assert!(threads.is_empty(), "{what}: thread records {threads:?}");
}

#[test]
fn opt_in_request_gets_each_threads_exact_counters() {
    let d = Daemon::start(&[]);
    let (_g, r) = run_lingering(
        "live-threads",
        &["--threads", "4", "--count", "15", "--size", "200"],
    );
    let mut s = d.connect();
    let records = ask(&mut s, &opt_in());
    let process: Vec<_> = records
        .iter()
        .filter(|x| x.id == r.pid && x.pad == 0)
        .collect();
    assert_eq!(process.len(), 1, "one process record for {}", r.pid);
    let process = process[0];
    assert_eq!(process.counters, total(&r));
    assert_ne!(total(&r), Counters::default());

    let threads: Vec<_> = records
        .iter()
        .filter(|x| x.thread_of() == Some(r.pid))
        .collect();
    assert_eq!(threads.len(), 4, "{threads:?}");
    for truth in &r.threads {
        let t = threads
            .iter()
            .find(|t| t.id == truth.tid)
            .unwrap_or_else(|| panic!("no record for thread {}", truth.tid));
        assert_eq!(t.counters, truth.counters, "thread {}", truth.name);
        assert!(d.thread_counted(truth.tid, r.pid), "thread {}", truth.name);
        assert_eq!(t.btime, process.btime);
        assert_eq!(t.command, process.command);
    }
    // worker-i made 15 * (i + 1) round trips of 200 bytes.
    assert_eq!(r.threads[3].counters.udpsndbytes, 15 * 4 * 200);

    // Every thread record names a process record of the same response,
    // and none of them could be taken for a request to opt in.
    for t in records.iter().filter(|x| x.pad != 0) {
        assert!(t.id > 0, "{t:?}");
        let tgid = t.thread_of().unwrap();
        assert!(
            records.iter().any(|p| p.pad == 0 && p.id == tgid),
            "thread {} of {tgid}, which has no process record",
            t.id
        );
    }
    assert!(records.iter().all(|x| x.as_bytes() != opt_in()));
}

#[test]
fn every_other_request_gets_the_baseline_stream() {
    let d = Daemon::start(&[]);
    let (_g, r) = run_lingering(
        "live-threads",
        &["--threads", "2", "--count", "10", "--size", "100"],
    );
    let mut s = d.connect();
    let check = |records: &[NetPerTask], what: &str| {
        assert_baseline(records, what);
        let mine: Vec<_> = records.iter().filter(|x| x.id == r.pid).collect();
        assert_eq!(mine.len(), 1, "{what}");
        assert_eq!(mine[0].counters, total(&r), "{what}");
    };

    // atop's first request (uninitialized memory, here zeros or random
    // bytes), then the last record it received: netatopd's terminator.
    check(&ask(&mut s, &[0; RECORD_SIZE]), "zeros");
    let terminator: [u8; RECORD_SIZE] = NetPerTask::TERMINATOR.as_bytes().try_into().unwrap();
    check(&ask(&mut s, &terminator), "the terminator");
    let mut rng = Rng(seed());
    for i in 0..50 {
        let request: [u8; RECORD_SIZE] = rng.bytes(RECORD_SIZE).try_into().unwrap();
        check(&ask(&mut s, &request), &format!("random request {i}"));
    }
    // Any record netatopd sent, sent back, including thread records.
    let with_threads = ask(&mut s, &opt_in());
    for record in with_threads.iter().filter(|x| x.id == r.pid || x.pad != 0) {
        let request: [u8; RECORD_SIZE] = record.as_bytes().try_into().unwrap();
        check(&ask(&mut s, &request), "a record sent back");
    }
    // The opt-in request with any one bit flipped.
    for bit in 0..RECORD_SIZE * 8 {
        let mut request = opt_in();
        request[bit / 8] ^= 1 << (bit % 8);
        check(
            &ask(&mut s, &request),
            &format!("opt-in with bit {bit} flipped"),
        );
    }
}

/// Opting in is per request: pipelined requests get their own streams, in
/// order, on one connection.
#[test]
fn opting_in_holds_for_one_request() {
    let d = Daemon::start(&[]);
    let (_g, r) = run_lingering(
        "live-threads",
        &["--threads", "2", "--count", "5", "--size", "100"],
    );
    let mut s = d.connect();
    let mut burst = Vec::new();
    for threads in [true, false, true, false] {
        burst.extend_from_slice(&if threads { opt_in() } else { [0; RECORD_SIZE] });
    }
    s.write_all(&burst).unwrap();
    for (i, threads) in [true, false, true, false].into_iter().enumerate() {
        let records = response_on(&mut s);
        let mine = records
            .iter()
            .filter(|x| x.thread_of() == Some(r.pid))
            .count();
        assert_eq!(mine, if threads { 2 } else { 0 }, "response {i}");
        if !threads {
            assert_baseline(&records, &format!("response {i}"));
        }
    }
}
