//! What crosses a wire against what netatopd counts: traffic between two
//! network namespaces the test makes (tests/src/netns.rs), compared with
//! the veth's own counters.

use std::time::Duration;

use libbpf_rs::MapCore;
use netatop_protocol::Counters;
use netatopd_tests::netns::{
    across, reckon, reckon_with, spawn_across, start_across, Before, Flow, Wire,
};
use netatopd_tests::{atop_binary, parse_prn, record_for, Daemon};

#[path = "wire/support.rs"]
mod support;

use support::{one_at_a_time, only_time_wait, retransmitted};

/// Today's counting (socket calls and their payload) against the wire,
/// for the small exchanges where the difference is largest: the reason
/// for counting what the wire carries.
#[test]
fn counting_calls_misses_most_of_what_small_exchanges_carry() {
    let _serial = one_at_a_time();
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

/// A connection used by two processes in turn, shared after fork or
/// passed with SCM_RIGHTS: once the second has used it, nothing more is
/// counted to the first; everything after goes to the second, its close
/// included.
#[test]
fn a_shared_socket_counts_to_whoever_used_it_last() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("share");
    for scenario in ["tcp-fork", "tcp-scm"] {
        let before = Before::take(&d, &w);
        let (mut g, r) = start_across(&w, scenario, 50, 64, &[]);
        let (first, second) = (r.children[0], r.pid);
        // The second has made one exchange.
        let recs = d.query();
        let f1 = record_for(&recs, first).counters;
        let s1 = record_for(&recs, second).counters;
        g.go();
        let _ = g.report();
        let all = before.settle(&d, &w, &[first, second], scenario);
        let recs = d.query();
        let f2 = record_for(&recs, first).counters;
        let s2 = record_for(&recs, second).counters;
        eprintln!("{scenario}: first {f1:?} then {f2:?}; second {s1:?} then {s2:?}");
        assert!(
            f1.tcpsndpacks >= 50,
            "{scenario}: the first's 50 requests: {f1:?}"
        );
        assert_eq!(
            f2, f1,
            "{scenario}: counted to the first after the second took over"
        );
        assert!(
            s2.tcpsndpacks >= s1.tcpsndpacks + 49,
            "{scenario}: the second's last 49 requests: {s1:?} then {s2:?}"
        );
        only_time_wait(&all.unattributed, 1, scenario);
        g.finish();
    }
}

/// Counted with --count wire, TCP: small exchanges, short connections and
/// large messages add up to what the wire carried, all of it the
/// process's but what closed connections' sockets send and receive.
#[test]
fn tcp_counted_on_the_wire_adds_up() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("tcp");
    for (scenario, count, size) in [
        ("tcp-rr", 5000, 32),
        ("tcp-conns", 500, 32),
        ("tcp-rr", 20, 50_000),
    ] {
        let r = reckon(&d, &w, scenario, count, size, &[]);
        let conns = if scenario == "tcp-conns" { count } else { 1 };
        only_time_wait(&r.unattributed, conns as u64, scenario);
        assert_eq!((r.process.udpsndpacks, r.process.udprcvpacks), (0, 0));
    }
    // What netatopctl shows says what it counts.
    let ok = |args: &[&str]| netatopd_tests::ok(d.ctl().args(args));
    let note = "counting the wire: packets are IP packets, bytes their IP length";
    assert!(ok(&["dump"]).starts_with(note));
    assert!(ok(&["top", "-i", "0.1", "-n", "1"])
        .lines()
        .nth(1)
        .unwrap_or("")
        .starts_with(note));
    let export = ok(&["export", "--format", "openmetrics"]);
    assert_eq!(
        export
            .matches("(counting the wire: IP packets, bytes with headers)")
            .count(),
        8
    );
    // What is unattributed, per namespace, as stats has it.
    for e in [&w.a, &w.b] {
        let ns = netatopd_tests::netns::netns_inode(e);
        let un = netatopd_tests::netns::unattributed(&d, ns);
        for (metric, value) in [
            ("tcp_send_packets", un.tcpsndpacks),
            ("tcp_recv_bytes", un.tcprcvbytes),
        ] {
            let line = format!("netatop_unattributed_{metric}_total{{netns=\"{ns}\"}} {value}\n");
            assert!(export.contains(&line), "{line} missing:\n{export}");
        }
    }
    let stats = ok(&["stats"]);
    assert!(
        stats.contains("wire: IP packets and their bytes, headers included"),
        "{stats}"
    );
    assert!(stats.contains("unattributed:"), "{stats}");
}

/// Counted with --count wire, UDP: datagrams, datagrams larger than the
/// MTU (IP fragments, each a packet), and UDP_SEGMENT sends (one call, a
/// datagram per segment).
#[test]
fn udp_counted_on_the_wire_adds_up() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("udp");
    for (count, size, extra) in [
        (1000, 200, &[][..]),
        (200, 3000, &[][..]),
        (200, 6000, &["--gso", "1000"][..]),
    ] {
        let r = reckon(&d, &w, "udp-rr", count, size, extra);
        // Every packet the process's: the first datagram each socket
        // sends or receives before its first call returns, and each
        // fragment of a reassembled datagram, included.
        assert_eq!(r.unattributed, Counters::default(), "{size} {extra:?}");
        assert_eq!((r.process.tcpsndpacks, r.process.tcprcvpacks), (0, 0));
        assert_eq!(r.process.udpsndpacks, r.carried.packets, "{size} {extra:?}");
        assert_eq!(r.process.udprcvbytes, r.carried.bytes, "{size} {extra:?}");
    }
    // Every datagram the first of its socket: a reply can reach the
    // client's socket while the call that sent the request is still
    // returning, on another CPU, as it makes the socket the client's.
    let r = reckon(&d, &w, "udp-conns", 2000, 64, &[]);
    assert_eq!(r.unattributed, Counters::default(), "udp-conns");
    assert_eq!(r.process.udpsndpacks, r.carried.packets, "udp-conns");
    assert_eq!(r.process.udprcvbytes, r.carried.bytes, "udp-conns");
}

/// A process whose address is on a bridge: its packets leave through the
/// bridge and then the veth beneath it, and arrive through the veth and
/// then the bridge; each counts once, as the veth carried it.
#[test]
fn packets_through_a_bridge_count_once() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("bridge");
    w.bridge_a();
    let r = reckon(&d, &w, "udp-rr", 500, 200, &[]);
    assert_eq!(r.unattributed, Counters::default());
    assert_eq!(r.process.udpsndpacks, r.carried.packets);
    assert_eq!(r.process.udprcvbytes, r.carried.bytes);
    let r = reckon(&d, &w, "tcp-rr", 500, 32, &[]);
    only_time_wait(&r.unattributed, 1, "bridge");
}

/// 50 MB one way; then the same with 5% of the TCP packets arriving in
/// the server's namespace dropped before they reach a socket (nftables):
/// the interfaces carried them, so they count as sent by the sender and
/// as received unattributed, and the retransmissions (sent from the
/// kernel's timers and ACK processing, not from the process's calls) are
/// counted to the sender.
#[test]
fn bulk_tcp_and_retransmissions_counted_to_the_sender() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("bulk");
    let r = reckon(&d, &w, "tcp-bulk", 800, 65536, &[]);
    only_time_wait(&r.unattributed, 1, "bulk");
    let nft = |w: &Wire, args: &[&str]| {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &w.b.netns, "nft"]).args(args);
        netatopd_tests::ok(&mut c)
    };
    // The drop rule made again for each attempt (on its wire): its counter
    // counts that attempt's drops only; likewise the retransmissions.
    let mut before = 0;
    let r = reckon_with(&d, &w, "tcp-bulk", 80, 65536, &[], |w| {
        nft(w, &["add", "table", "inet", "loss"]);
        nft(
            w,
            &[
                "add",
                "chain",
                "inet",
                "loss",
                "in",
                "{ type filter hook prerouting priority 0; }",
            ],
        );
        nft(w, &["flush", "chain", "inet", "loss", "in"]);
        nft(
            w,
            &[
                "add", "rule", "inet", "loss", "in", "meta", "l4proto", "tcp", "numgen", "random",
                "mod", "20", "==", "0", "counter", "drop",
            ],
        );
        before = retransmitted(&w.a);
    });
    let used = r.wire(&w);
    let retrans = retransmitted(&used.a) - before;
    let listing: serde_json::Value =
        serde_json::from_str(&nft(used, &["-j", "list", "table", "inet", "loss"])).expect("nft -j");
    let counter = listing["nftables"]
        .as_array()
        .expect("nft's list")
        .iter()
        .find_map(|o| o["rule"]["expr"].as_array())
        .and_then(|e| e.iter().find_map(|x| x.get("counter").cloned()))
        .expect("the drop rule's counter");
    let dropped = counter["packets"].as_u64().expect("dropped packets");
    let dropped_bytes = counter["bytes"].as_u64().expect("dropped bytes");
    eprintln!("{dropped} dropped ({dropped_bytes} B), {retrans} segments retransmitted");
    assert!(
        dropped > 0 && retrans > 0,
        "no loss: {dropped} dropped, {retrans} retransmitted"
    );
    // Everything sent is the process's: the retransmissions included.
    assert!(r.unattributed.tcpsndpacks <= 1, "{:?}", r.unattributed);
    // What arrived and was dropped is unattributed, and beyond it only what
    // the closed connection's socket received (see only_time_wait):
    // segments without data (retransmitted FINs, window updates and
    // duplicate ACKs, with SACK blocks under loss), at most 80 bytes each
    // (IP and TCP headers with options).
    let (lost, lost_bytes) = (r.unattributed.tcprcvpacks, r.unattributed.tcprcvbytes);
    assert!(
        lost >= dropped
            && lost_bytes >= dropped_bytes
            && lost_bytes - dropped_bytes <= 80 * (lost - dropped),
        "{dropped} dropped ({dropped_bytes} B), {lost} unattributed on the way in ({lost_bytes} B)"
    );
}

/// Without CAP_NET_ADMIN (nor CAP_SYS_ADMIN, which implies it), which its
/// socket program needs, `--count wire` is refused before anything is
/// loaded, saying so; nothing is left.
#[test]
fn counting_the_wire_without_cap_net_admin_is_refused_saying_why() {
    let _serial = one_at_a_time();
    netatopd_tests::require_bpf_machine();
    let dir = netatopd_tests::scratch_dir();
    let socket = dir.join("netatop.sock");
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--inh-caps=-net_admin,-sys_admin",
            "--bounding-set=-net_admin,-sys_admin",
            "--",
        ])
        .arg(netatopd_tests::bin("netatopd"))
        .args(["--foreground", "--count", "wire"])
        .args(netatopd_tests::private_args(&dir, &socket))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting netatopd under setpriv");
    let status = netatopd_tests::wait_exit(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("reading netatopd's stderr");
    assert!(
        status.is_some_and(|s| !s.success()),
        "it started ({status:?}): {err}"
    );
    assert!(
        err.contains("--count wire: its socket program (cgroup_skb) needs CAP_NET_ADMIN"),
        "{err}"
    );
    assert!(
        !netatopd_tests::pin_dir_for(&dir).exists(),
        "pins left behind"
    );
    std::fs::remove_dir_all(&dir).expect("removing the scratch directory");
}

/// Real atop 2.11.1 (`atop -K -P PRN 2 3`) against netatopd counting the
/// wire: what it prints for the generator, summed over its samples, is
/// what netatopd counted for it, which adds up to what the wire carried
/// (short connections: five times the packets of their calls).
#[test]
fn real_atop_shows_the_wire_counts() {
    let _serial = one_at_a_time();
    let atop = atop_binary();
    let d = Daemon::builder()
        .socket(netatop_protocol::DEFAULT_SOCKET)
        .args(&["--count", "wire"])
        .start();
    let w = Wire::create("atop");
    let before = Before::take(&d, &w);
    let mut g = spawn_across(&w, "tcp-conns", 50, 200, &["--wait-go"]);
    let mut child = std::process::Command::new(&atop)
        .args(["-K", "-P", "PRN", "2", "3"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("starting atop");
    let out = std::io::BufReader::new(child.stdout.take().expect("atop's stdout"));
    let mut seen: std::collections::HashMap<i32, Counters> = Default::default();
    let mut samples = 0;
    let mut report = None;
    for line in std::io::BufRead::lines(out) {
        let line = line.expect("reading atop's output");
        if line == "SEP" {
            samples += 1;
            if samples == 1 {
                // atop has taken its first sample: now the traffic.
                g.go();
                report = Some(g.report());
            }
        } else if let Some((pid, c)) = parse_prn(&line) {
            seen.entry(pid).or_default().add(&c);
        }
    }
    let status = child.wait().expect("waiting for atop");
    assert!(status.success(), "atop failed: {status}");
    assert_eq!(samples, 3, "atop printed {samples} samples");
    let r = report.expect("the generator reported");
    let all = before.settle(&d, &w, &[r.pid], "atop");
    let shown = seen.get(&r.pid).copied().unwrap_or_default();
    assert_eq!(
        shown, all.process,
        "atop's sums against netatopd's wire counts"
    );
    assert!(
        shown.tcpsndpacks >= 5 * r.counters.tcpsndpacks,
        "{shown:?}: not the wire's packets (the calls were {:?})",
        r.counters
    );
    g.finish();
}

/// Each thread's own packets are in its record, whatever context they
/// passed in: the responses and ACKs a client thread receives, which the
/// kernel handles outside its calls, are that thread's, not only its
/// process's. Every packet is some live thread's: the threads' records add
/// up to the process's.
#[test]
fn packets_count_to_the_thread_that_owns_the_socket() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("threads");
    let before = Before::take(&d, &w);
    let (g, r) = start_across(&w, "tcp-threads", 200, 64, &["--threads", "4"]);
    let all = before.settle(&d, &w, &[r.pid], "tcp-threads");
    let dump = netatopd_tests::json(d.ctl().args([
        "dump",
        "--json",
        "--threads",
        "--pid",
        &r.pid.to_string(),
    ]));
    let threads = dump[0]["threads"]
        .as_array()
        .expect("the process's threads");
    let mut sum = Counters::default();
    for t in &r.threads {
        let rec = threads
            .iter()
            .find(|x| x["tid"].as_i64() == Some(i64::from(t.tid)))
            .unwrap_or_else(|| panic!("no record for thread {} {}: {dump}", t.tid, t.name));
        let c = netatopd_tests::json_counters(rec);
        // Each exchange: a request and a response, each way one segment.
        assert!(
            c.tcpsndpacks >= 200 && c.tcprcvpacks >= 200,
            "thread {} {}: {c:?}",
            t.name,
            t.tid
        );
        sum.add(&c);
    }
    assert_eq!(r.threads.len(), 8);
    // All but what TIME_WAIT sockets carried, which is no process's.
    assert_eq!(
        sum, all.process,
        "the threads' records against the process's"
    );
    g.finish();
}

/// A packet that reaches its socket without the receive program having
/// seen it (some kernels skip tracing programs in some contexts; the
/// project's test machines do) still counts as received in its namespace:
/// each CPU keeps a tally of the packets the receive program saw and the
/// packets its sockets received, and a CPU's sockets receiving more tells.
/// Forced here: CPU 0's tally given 7 deliveries more, as if the program
/// had missed 7 packets there, and the generator kept on CPU 0. The next 7
/// packets its sockets receive count as received again (the program did
/// see them, so they show as unattributed, exactly 7), the processes'
/// counts stay exact, `stats` counts the 7, and the log warns.
#[test]
fn packets_the_receive_program_missed_count_as_received_at_their_socket() {
    let _serial = one_at_a_time();
    let d = Daemon::start(&["--count", "wire"]);
    let w = Wire::create("unseen");
    let stats = || netatopd_tests::json(d.ctl().args(["stats", "--json"]));
    let unseen_before = stats()["rx_unseen"].as_u64().expect("rx_unseen in stats");
    let before = Before::take(&d, &w);
    let (_, id) = d
        .map_ids()
        .into_iter()
        .find(|(n, _)| n == "rx_tally")
        .expect("the rx_tally map when counting the wire");
    let tally = libbpf_rs::MapHandle::from_map_id(id).expect("opening rx_tally");
    let key = 0u32.to_ne_bytes();
    let mut cpus = tally
        .lookup_percpu(&key, libbpf_rs::MapFlags::ANY)
        .expect("reading rx_tally")
        .expect("rx_tally's one entry");
    // struct rx_tally { seen, delivered, unseen }: CPU 0's `delivered` + 7.
    let delivered = u64::from_ne_bytes(cpus[0][8..16].try_into().unwrap());
    cpus[0][8..16].copy_from_slice(&(delivered + 7).to_ne_bytes());
    tally
        .update_percpu(&key, &cpus, libbpf_rs::MapFlags::EXIST)
        .expect("writing rx_tally");
    let (g, r) = {
        let _cpu0 = netatopd_tests::Affinity::only(0);
        start_across(&w, "udp-rr", 100, 200, &[])
    };
    // Datagrams of 200 bytes: 228 IP bytes each.
    let twice = Flow {
        packets: 7,
        bytes: 7 * 228,
    };
    let all = before
        .try_settle_received_extra(&d, &w, &[r.pid], twice, "unseen")
        .unwrap_or_else(|e| panic!("{e}"));
    g.finish();
    assert_eq!(
        (all.unattributed.udprcvpacks, all.unattributed.udprcvbytes),
        (twice.packets, twice.bytes),
        "{:?}",
        all.unattributed
    );
    assert_eq!(all.process.udprcvpacks, all.carried.packets);
    let s = stats();
    assert_eq!(s["rx_unseen"].as_u64(), Some(unseen_before + 7), "{s}");
    netatopd_tests::wait_until(Duration::from_secs(10), "the warning", || {
        d.log().contains(
            "7 packets reached their sockets unseen by the receive program: the kernel skipped",
        )
    });
    let text = netatopd_tests::ok(d.ctl().arg("stats"));
    let line = text
        .lines()
        .find(|l| l.starts_with("unseen received:"))
        .unwrap_or_else(|| panic!("no unseen line in:\n{text}"));
    assert!(
        line.ends_with(" 7 packets reached sockets without the receive program seeing them (counted at the socket)"),
        "{line}"
    );
}
