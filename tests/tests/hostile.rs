//! Hostile clients: garbage, partial requests, pipelining, half-closed and
//! vanishing clients, on the atop socket and on the control socket, and
//! hostile frames for the control protocol's decoders. Seeded random runs
//! (bounded; the seed is printed and can be replayed with
//! NETATOPD_FUZZ_SEED, and NETATOPD_FUZZ_CASES makes the decoders' run
//! longer) check that nothing panics and that the daemon still answers
//! exactly; the atop socket's run is made as root and again as `nobody`
//! on sockets open to all.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netatop_protocol::control::{self, ControlError, Request, Response};
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

/// `seed` changed in one to four random places: bits flipped, bytes that
/// start long varints, bytes inserted, cut or repeated, the end cut off.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(m.len() + 1);
        let end = (at + 1 + rng.below(24)).min(m.len());
        match rng.below(6) {
            0 if at < m.len() => m[at] ^= 1 << rng.below(8),
            1 if at < m.len() => m[at] = [0, 0x80, 0xfb, 0xfc, 0xfd, 0xff][rng.below(6)],
            2 => {
                let n = rng.below(9);
                m.splice(at..at, rng.bytes(n));
            }
            3 => m.truncate(at),
            4 if at < end => {
                m.drain(at..end);
            }
            _ if at < end => {
                let part = m[at..end].to_vec();
                m.splice(at..at, part);
            }
            _ => {}
        }
    }
    m
}

/// A request the daemon answers.
fn any_request(rng: &mut Rng) -> Request {
    let flag = |rng: &mut Rng| rng.below(2) == 0;
    match rng.below(3) {
        0 => Request::Processes {
            threads: flag(rng),
            exited: flag(rng),
        },
        1 => Request::Stats,
        _ => Request::Cgroups { removed: flag(rng) },
    }
}

/// Asserts that `content` decodes as a `T` or is refused, never a panic,
/// and that what decodes encodes back to what decodes the same; returns
/// whether it decoded.
fn decodes_or_refuses<T>(content: &[u8]) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(msg) = control::decode::<T>(content) else {
        return false;
    };
    let again: T = control::decode(&control::encode(&msg)[4..]).expect("re-encoded");
    assert_eq!(again, msg);
    true
}

#[test]
fn random_control_frames_never_break_the_decoders_or_the_daemon() {
    let d = Daemon::start(&["--exit-grace", "0"]);
    let (g, r) = run_lingering("udp4", &["--count", "5", "--size", "55"]);
    let mut rng = Rng(seed());
    // The decoders (netatopd's of requests, netatopctl's of responses),
    // from the daemon's own responses and every request.
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for req in [
        Request::Stats,
        Request::Processes {
            threads: true,
            exited: true,
        },
        Request::Cgroups { removed: true },
    ] {
        let mut s = UnixStream::connect(d.control_socket()).unwrap();
        s.write_all(&control::encode(&req)).unwrap();
        seeds.push(control::read_frame(&mut s, control::MAX_RESPONSE).unwrap());
        seeds.push(control::encode(&req)[4..].to_vec());
    }
    seeds.push(control::encode(&Response::Error("refused".into()))[4..].to_vec());
    let cases: usize = std::env::var("NETATOPD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut decoded = 0;
    for _ in 0..cases {
        let pick = rng.below(seeds.len());
        let content = mutate(&mut rng, &seeds[pick]);
        decoded += decodes_or_refuses::<Response>(&content) as usize;
        decoded += decodes_or_refuses::<Request>(&content) as usize;
        let mut frame = (content.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&content);
        let _ = control::read_frame(&mut &mutate(&mut rng, &frame)[..], control::MAX_RESPONSE);
    }

    // Changed frames that still decode are what reach the deepest.
    assert!(
        decoded > cases / 100,
        "{decoded} of {cases} changed frames decoded"
    );
    eprintln!("{decoded} of {cases} changed frames decoded");

    // The daemon: 200 clients, each sending up to five frames (requests
    // whole, changed, or random bytes under a random length) in random
    // pieces, then reading every response until the daemon closes.
    let (mut answers, mut refusals) = (0, 0);
    for round in 0..200 {
        let mut s = UnixStream::connect(d.control_socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut data = Vec::new();
        for _ in 0..1 + rng.below(5) {
            let good = control::encode(&any_request(&mut rng));
            match rng.below(3) {
                0 => data.extend_from_slice(&good),
                1 => {
                    let content = mutate(&mut rng, &good[4..]);
                    data.extend_from_slice(&(content.len() as u32).to_le_bytes());
                    data.extend_from_slice(&content);
                }
                _ => {
                    let len = rng.below(2 * control::MAX_REQUEST);
                    data.extend_from_slice(&(len as u32).to_le_bytes());
                    let n = rng.below(len + 1);
                    data.extend_from_slice(&rng.bytes(n));
                }
            }
        }
        // A refused frame ends the connection: the rest may not be taken.
        let mut at = 0;
        while at < data.len() {
            let n = (1 + rng.below(300)).min(data.len() - at);
            if s.write_all(&data[at..at + n]).is_err() {
                break;
            }
            at += n;
        }
        let _ = s.shutdown(Shutdown::Write);
        loop {
            match control::read_frame(&mut s, control::MAX_RESPONSE) {
                Ok(content) => {
                    let resp: Response = control::decode(&content).unwrap_or_else(|e| {
                        panic!("round {round}: a response that does not decode: {e}")
                    });
                    match resp {
                        Response::Error(_) => refusals += 1,
                        Response::Processes(procs) => {
                            assert!(procs.iter().any(|p| p.pid == r.pid));
                            answers += 1;
                        }
                        _ => answers += 1,
                    }
                }
                Err(ControlError::Closed) => break,
                Err(ControlError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        if round % 10 == 0 {
            assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
        }
    }
    eprintln!("{answers} answers and {refusals} refusals to 200 clients");
    assert!(
        answers > 0 && refusals > 0,
        "{answers} answers, {refusals} refusals"
    );
    assert_eq!(record_for(&d.query(), r.pid).counters, r.counters);
    assert!(!d.log().contains("panicked"), "{}", d.log());
    g.finish();
}
