//! What crosses a wire against what netatopd counts: traffic between two
//! network namespaces the test makes (tests/src/netns.rs), compared with
//! the veth's own counters.

use netatopd_tests::netns::{IfCounters, Wire};
use netatopd_tests::{record_for, Daemon, Gen, Report};

/// Runs `scenario` with its client in `w.a` and its server in `w.b`,
/// returns its report, what netatopd counted for it, and what the wire
/// carried meanwhile (seen from `w.a`).
fn across(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
) -> (Report, netatop_protocol::NetPerTask, IfCounters) {
    let before = w.a.counters();
    let prefix = w.a.exec_prefix();
    let prefix: Vec<&std::ffi::OsStr> = prefix.iter().map(|s| s.as_os_str()).collect();
    let peer_netns = w.b.path();
    let mut g = Gen::spawn_in(
        &prefix,
        scenario,
        &[
            "--linger",
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
            "--peer-netns",
            peer_netns.to_str().expect("UTF-8 path"),
            "--peer-addr",
            &w.b.addr.to_string(),
        ],
    );
    let r = g.report();
    assert_eq!(
        r.pid,
        g.pid(),
        "the generator runs in place of ip netns exec"
    );
    let rec = record_for(&d.query(), r.pid);
    let carried = w.a.counters().since(&before);
    g.finish();
    (r, rec, carried)
}

/// Today's counting (socket calls and their payload) against the wire,
/// for the small exchanges where the difference is largest: the reason
/// for counting what the wire carries.
#[test]
fn counting_calls_misses_most_of_what_small_exchanges_carry() {
    let d = Daemon::start(&[]);
    let w = Wire::create("calls");
    for (scenario, count) in [("tcp-rr", 5000), ("tcp-conns", 500)] {
        let (r, rec, wire) = across(&d, &w, scenario, count, 32);
        // What netatopd counts is exact, as everywhere else.
        assert_eq!(rec.counters, r.counters, "{scenario}");
        // Every packet crosses the wire once: sent by one end, received by
        // the other, both ends this process's.
        let wire_packets = wire.tx_packets + wire.rx_packets;
        let wire_bytes = wire.tx_ip_bytes() + wire.rx_ip_bytes();
        let calls = r.counters.tcpsndpacks;
        let bytes = r.counters.tcpsndbytes;
        eprintln!(
            "{scenario}: {calls} sends of {bytes} bytes counted; the wire carried {wire_packets} \
             packets of {wire_bytes} IP bytes ({:.1}% of packets, {:.1}% of bytes counted)",
            100.0 * calls as f64 / wire_packets as f64,
            100.0 * bytes as f64 / wire_bytes as f64
        );
        assert!(calls <= wire_packets, "{scenario}: {calls} sends, {wire:?}");
        assert!(
            2 * bytes < wire_bytes,
            "{scenario}: calls counted {bytes} of {wire_bytes} bytes, not less than half"
        );
        if scenario == "tcp-conns" {
            // Handshakes, FINs and ACKs are most of the packets.
            assert!(
                2 * calls < wire_packets,
                "{scenario}: {calls} of {wire_packets} packets"
            );
        }
    }
}
