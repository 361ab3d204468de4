//! Hostile clients: garbage, partial requests, pipelining, half-closed and
//! vanishing clients. A seeded random run (bounded; the seed is printed
//! and can be replayed with NETATOPD_FUZZ_SEED) checks after every client
//! that the daemon still answers exactly; it runs as root and again as
//! `nobody` on sockets open to all.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netatop_protocol::{read_response, Counters, NetPerTask, ReadMode, RECORD_SIZE};
use netatopd_tests::{connect_as_nobody, expect_eof, record_for, run_lingering, seed, Daemon, Rng};
use zerocopy::IntoBytes;

/// Reads `n` responses as atop would and checks each carries `pid`'s exact
/// counters.
fn expect_responses(s: &mut UnixStream, n: usize, pid: i32, want: &Counters) {
    for i in 0..n {
        let recs = read_response(s, ReadMode::AsAtop)
            .unwrap_or_else(|e| panic!("response {} of {n}: {e}", i + 1));
        assert_eq!(&record_for(&recs, pid).counters, want);
    }
}

/// Writes `data` in random pieces.
fn send_in_pieces(s: &mut UnixStream, rng: &mut Rng, data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(300)).min(data.len() - at);
        s.write_all(&data[at..at + n]).expect("sending");
        at += n;
    }
}

#[test]
fn random_clients_never_break_the_protocol_for_anyone() {
    // A tiny output cap exercises the stop-and-resume reading path.
    let d = Daemon::start(&["--max-pending-output", "1", "--exit-grace", "0"]);
    random_clients(&d, || d.connect());
}

#[test]
fn random_clients_of_an_unprivileged_user_never_break_the_protocol_either() {
    let d = Daemon::builder()
        .open_to_all()
        .args(&["--max-pending-output", "1", "--exit-grace", "0"])
        .args(&["--max-clients-per-user", "64"])
        .start();
    random_clients(&d, || {
        connect_as_nobody(&d.socket).expect("nobody connects to a 0666 socket")
    });
    // All of them were nobody's.
    let log = d.log();
    assert!(!log.contains("refused"), "{log}");
}

/// 300 random clients, each connected by `connect`; after every tenth,
/// the daemon still answers exactly.
fn random_clients(d: &Daemon, connect: impl Fn() -> UnixStream) {
    let (g, r) = run_lingering("udp4", &["--count", "7", "--size", "77"]);
    let mut rng = Rng(seed());
    for round in 0..300 {
        let mut s = connect();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match rng.below(5) {
            // Random bytes in random pieces, then a half-close: one whole
            // response per whole 96 bytes, the rest ignored, then the end.
            0 => {
                let len = rng.below(20 * RECORD_SIZE);
                let data = rng.bytes(len);
                send_in_pieces(&mut s, &mut rng, &data);
                s.shutdown(Shutdown::Write).unwrap();
                expect_responses(&mut s, data.len() / RECORD_SIZE, r.pid, &r.counters);
                expect_eof(&mut s);
            }
            // A partial request, then nothing: no response, no harm.
            1 => {
                let len = 1 + rng.below(RECORD_SIZE - 1);
                let data = rng.bytes(len);
                s.write_all(&data).unwrap();
            }
            // Pipelined requests; gone in the middle of the responses.
            2 => {
                let n = 1 + rng.below(30);
                s.write_all(&rng.bytes(n * RECORD_SIZE)).unwrap();
                // Each response has at least the generator's record and
                // the terminator.
                let mut part = vec![0u8; rng.below(n * 2 * RECORD_SIZE)];
                s.read_exact(&mut part)
                    .expect("reading part of the responses");
            }
            // What atop sends: the terminator (all zeros) or the last
            // record it received.
            3 => {
                let rec = if rng.below(2) == 0 {
                    NetPerTask::TERMINATOR
                } else {
                    record_for(&d.query(), r.pid)
                };
                let n = 1 + rng.below(5);
                for _ in 0..n {
                    s.write_all(rec.as_bytes()).unwrap();
                }
                expect_responses(&mut s, n, r.pid, &r.counters);
            }
            // Garbage, never read, and gone.
            _ => {
                let len = rng.below(5000);
                let _ = s.write_all(&rng.bytes(len));
            }
        }
        drop(s);
        // Everyone else is still served exactly.
        if round % 10 == 0 {
            assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
        }
    }
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    assert!(!d.log().contains("panicked"), "{}", d.log());
    g.finish();
}

#[test]
fn a_partial_request_waits_for_its_rest_while_others_are_served() {
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering("tcp4", &["--count", "3"]);
    let mut slow = d.connect();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    slow.write_all(&[7u8; 50]).unwrap();
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    // Half a request gets nothing.
    let mut byte = [0u8; 1];
    let err = slow.read(&mut byte).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(&[7u8; RECORD_SIZE - 50]).unwrap();
    expect_responses(&mut slow, 1, r.pid, &r.counters);
    g.finish();
}

#[test]
fn a_megabyte_of_random_bytes_gets_one_response_per_whole_request() {
    const TOTAL: usize = 1 << 20;
    let d = Daemon::start(&[]);
    let (g, r) = run_lingering("udp6", &["--count", "3"]);
    let mut s = d.connect();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let mut rng = Rng(seed());
    let data = rng.bytes(TOTAL);
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    expect_responses(&mut s, TOTAL / RECORD_SIZE, r.pid, &r.counters);
    expect_eof(&mut s);
    sender.join().unwrap();
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    g.finish();
}
