//! The atop socket read as atop reads it: queries and responses on a
//! connection, the records of one process in them, and the ways a
//! connection ends.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use netatop_protocol::{query, read_response, NetPerTask, ReadMode};

/// One query on an open connection, read as atop reads it (one recv of 96
/// bytes per record; a short read fails the test).
pub fn query_on(stream: &mut UnixStream) -> Vec<NetPerTask> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    query(stream, ReadMode::AsAtop).expect("query as atop reads")
}

/// The next whole response on `stream` (to a request already sent), read
/// as atop reads it, waiting up to 30 s.
pub fn response_on(stream: &mut UnixStream) -> Vec<NetPerTask> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    read_response(stream, ReadMode::AsAtop).expect("a whole response")
}

/// Reads `stream` to its end (within the read timeout set on it) and
/// asserts that the daemon ended it cleanly, with nothing more sent.
pub fn expect_eof(stream: &mut UnixStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{} stray bytes", rest.len()),
        Err(e) => panic!("no clean end of stream: {e}"),
    }
}

/// Reads until the daemon closes the connection, whatever it sent before
/// (a reset counts as closed); fails after 20 s.
pub fn expect_closed(mut stream: UnixStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed by the daemon: {e}"),
    }
}

/// The records with id `pid` (a well-formed response has at most one per
/// live process, plus one per exited process).
pub fn records_for(recs: &[NetPerTask], pid: i32) -> Vec<NetPerTask> {
    recs.iter().filter(|r| r.id == pid).copied().collect()
}

/// The one record of `pid`; fails if there is none or more than one.
pub fn record_for(recs: &[NetPerTask], pid: i32) -> NetPerTask {
    let found = records_for(recs, pid);
    assert_eq!(
        found.len(),
        1,
        "expected one record for pid {pid}, got {found:?}"
    );
    found[0]
}
