//! Section 9: counting the wire, its added cost per call and packet, and
//! each way of counting against what the interfaces carried between two
//! network namespaces.

use netatopd_tests::netns::{start_across, Before, Wire};
use netatopd_tests::Daemon;

use crate::candidates::TcpInfo;
use crate::measure::{cost_table, interleaved, ping_pong};
use crate::programs::{empty_programs, kernel_figure, NetatopdPrograms};
use crate::Scale;

/// Section 9, counting the wire against counting calls: the ping-pong of section 1
/// sends and receives one packet per call, so the wire's figure is the
/// added cost of a call and of a packet each way.
pub fn wire(s: &Scale) {
    println!(
        "## 9. Counting the wire: added cost per call and packet (the ping-pong of section 1)\n"
    );
    let counting = |count| {
        let _programs = NetatopdPrograms::load_opts(netatopd_bpf::LoadOptions {
            count,
            ..Default::default()
        });
        ping_pong(s.round_trips, 0)
    };
    let [off, empty, calls, wire, tcpinfo] = interleaved(s.rounds, |which| match which {
        0 => ping_pong(s.round_trips, 0),
        1 => {
            let _probe = empty_programs();
            ping_pong(s.round_trips, 0)
        }
        2 => counting(netatopd_bpf::Count::Calls),
        3 => counting(netatopd_bpf::Count::Wire),
        _ => {
            let _probe = TcpInfo::attach().expect("the tcp_info programs");
            ping_pong(s.round_trips, 0)
        }
    });
    let rows = [
        ("nothing (netatopd stopped)", off),
        ("empty tp_btf programs", empty),
        ("netatopd --count calls", calls),
        ("netatopd --count wire", wire),
        (
            "the other design: TCP's counters at calls, UDP per call",
            tcpinfo,
        ),
    ];
    cost_table(s, "2 calls, 2 loopback packets", "attached", &rows);
    println!(
        "\n--count wire beyond --count calls: {:.1} ns per call and its packet\n",
        wire - calls
    );
    kernel_figure(s, &["--count", "wire"]);
    wire_accuracy(s);
}

/// Each way of counting against what the interfaces carried, between two
/// network namespaces (netatopd_tests::netns): netatopd --count wire, the
/// other design (TCP's own counters read at calls, `TcpInfo`) and
/// netatopd's calls, for the same traffic at once.
fn wire_accuracy(s: &Scale) {
    println!(
        "\n### Against the interfaces: packets and IP bytes sent (both ends are the \
         generator's; each packet is sent once)\n"
    );
    let d = Daemon::start(&["--count", "wire"]);
    let tcpinfo = TcpInfo::attach().expect("loading the tcp_info programs");
    let w = Wire::create("bench");
    println!(
        "| traffic | the wire carried | --count wire (processes + unattributed) | TCP's counters at calls | calls |\n|---|---|---|---|---|"
    );
    let n = s.wire_divisor;
    let cases: [(&str, &str, usize, usize, &[&str]); 5] = [
        (
            "TCP, request/response of 32 B on one connection",
            "tcp-rr",
            5000 / n,
            32,
            &[],
        ),
        (
            "TCP, short connections, one exchange of 32 B each",
            "tcp-conns",
            500 / n,
            32,
            &[],
        ),
        (
            "TCP, one way, 64 KiB sends",
            "tcp-bulk",
            800 / n,
            65536,
            &[],
        ),
        ("UDP, exchanges of 200 B", "udp-rr", 1000 / n, 200, &[]),
        (
            "UDP, exchanges of 3,000 B (IP fragments)",
            "udp-rr",
            200 / n,
            3000,
            &[],
        ),
    ];
    for (what, scenario, count, size, extra) in cases {
        let before = Before::take(&d, &w);
        let (g, r) = start_across(&w, scenario, count, size, extra);
        let rk = before.settle(&d, &w, &[r.pid], what);
        let b = tcpinfo.counted(r.pid as u32);
        let mut a = rk.process;
        a.add(&rk.unattributed);
        let cell = |packets: u64, bytes: u64| {
            let err = |x: u64, of: u64| 100.0 * (x as f64 - of as f64) / of as f64;
            format!(
                "{packets} pk ({:+.1}%), {bytes} B ({:+.1}%)",
                err(packets, rk.carried.packets),
                err(bytes, rk.carried.bytes)
            )
        };
        println!(
            "| {what} ({count} x {size} B) | {} pk, {} B | {} | {} | {} |",
            rk.carried.packets,
            rk.carried.bytes,
            cell(a.send_packets(), a.send_bytes()),
            cell(b.send_packets(), b.send_bytes()),
            cell(r.counters.send_packets(), r.counters.send_bytes()),
        );
        g.finish();
    }
    println!();
}
