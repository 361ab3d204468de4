//! What the wire tests share: one test at a time, what closed
//! connections' sockets may leave unattributed, and a namespace's count
//! of retransmitted segments.

use std::sync::{Mutex, MutexGuard};

use netatop_protocol::Counters;
use netatopd_tests::netns::End;

/// One test at a time: a BPF program attaching to or detaching from a
/// tracepoint (another test's netatopd starting or stopping) can make the
/// kernel skip a run of the programs already there, and these tests count
/// every packet.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the test's turn until dropped.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// At most what the sockets of `conns` closed connections sent and
/// received, which are no process's: the kernel keeps a closed socket
/// whose FIN was acknowledged as a FIN_WAIT2 or TIME_WAIT minisocket.
/// Header-only segments. Sent: the ACK of the peer's FIN, one per
/// connection at most. Received: the peer's FIN when it came after, and
/// the window updates the peer sends as its reader drains what it got, the
/// more the slower it reads (a loaded machine): any number, with no data.
pub fn only_time_wait(un: &Counters, conns: u64, what: &str) {
    assert_eq!((un.udpsndpacks, un.udprcvpacks), (0, 0), "{what}: {un:?}");
    assert!(
        un.tcpsndpacks <= conns && un.tcpsndbytes <= 60 * un.tcpsndpacks,
        "{what}: unattributed {un:?} sent beyond the ACKs of {conns} connections' last FIN"
    );
    // IP and TCP headers, options included: 80 bytes at most.
    assert!(
        un.tcprcvbytes <= 80 * un.tcprcvpacks,
        "{what}: unattributed {un:?} received with data"
    );
}

/// The namespace's TCP segments retransmitted so far (nstat).
pub fn retransmitted(e: &End) -> u64 {
    let out = netatopd_tests::ok(std::process::Command::new("ip").args([
        "netns",
        "exec",
        &e.netns,
        "nstat",
        "-a",
        "-z",
        "-j",
        "TcpRetransSegs",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("nstat -j output");
    v["kernel"]["TcpRetransSegs"]
        .as_u64()
        .unwrap_or_else(|| panic!("no TcpRetransSegs in {out}"))
}
