//! Section 9b (only when named): candidate designs of wire counting
//! against today's and against netatop-bpf, in one run, on three
//! workloads: the UDP ping-pong of section 1 (each call one packet), a
//! TCP request/response of 64 B on one connection, a TCP bulk transfer
//! in 64 KiB writes, and a service-like mix (keep-alive connections, 200 B
//! requests, 8 KiB responses, a new connection every 10 exchanges), both
//! ends on one CPU.
//!
//! netatop-bpf, the C daemon atop's `-K` was written for, takes part when
//! NETATOP_BENCH_ANCHOR names the script that starts and stops it (see
//! BENCHMARKS.md); it is a reference for measurements only.

use std::cell::RefCell;
use std::process::{Command, Stdio};

use crate::candidates::{Floor, FloorCalls, SockFold};
use crate::measure::{interleaved_rounds, median, ping_pong, service_mix, tcp_bulk, tcp_ping_pong};
use crate::programs::{BpfStats, NetatopdPrograms};
use crate::Scale;

/// What is attached while a workload runs.
#[derive(Clone, Copy)]
enum Variant {
    Nothing,
    Anchor,
    Calls,
    Wire,
    EmptyHooks,
    EmptyAll,
    EmptyRecvHooks,
    SockFold,
    OwnerOnly,
    Packed,
    PackedDevice,
    OwnerAtEgress,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Nothing => "nothing",
            Variant::Anchor => "netatop-bpf (C; counts calls)",
            Variant::Calls => "netatopd --count calls",
            Variant::Wire => "netatopd --count wire (device and socket programs)",
            Variant::EmptyHooks => "empty cgroup_skb programs, egress and ingress (their floor)",
            Variant::EmptyAll => {
                "empty programs on the calls' tracepoints and the cgroup hooks (the floor of \
                 any design with both)"
            }
            Variant::EmptyRecvHooks => {
                "empty programs on the receive tracepoint only and the cgroup hooks (the floor \
                 of a design whose sends need no call program)"
            }
            Variant::SockFold => "candidate: socket counters at the cgroup hooks, folded at calls",
            Variant::OwnerOnly => {
                "candidate 2: the same counters, calls only record the owner (summed at snapshots)"
            }
            Variant::Packed => "candidate 3: the second, one atomic add per packet",
            Variant::PackedDevice => {
                "candidate 4: the third, packets sent counted at the device (tp_btf)"
            }
            Variant::OwnerAtEgress => {
                "candidate 5: the third, no send call program (owners recorded by packets sent \
                 in their call)"
            }
        }
    }
}

/// A workload: its title, what one unit of it is, and a run of it (ns per
/// unit).
type Workload = (&'static str, &'static str, Box<dyn Fn() -> f64>);

/// netatop-bpf started by `script` for as long as it lives.
struct Anchor<'a>(&'a str);

impl<'a> Anchor<'a> {
    fn start(script: &'a str) -> Self {
        let ok = Command::new("bash")
            .args([script, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "{script} start failed");
        Anchor(script)
    }
}

impl Drop for Anchor<'_> {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args([self.0, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `work` with `v` attached.
fn with(v: Variant, anchor: Option<&str>, work: &dyn Fn() -> f64) -> f64 {
    let count = |count| {
        NetatopdPrograms::load_opts(netatopd_bpf::LoadOptions {
            count,
            ..Default::default()
        })
    };
    match v {
        Variant::Nothing => work(),
        Variant::Anchor => {
            let _anchor = Anchor::start(anchor.expect("an anchor script"));
            work()
        }
        Variant::Calls => {
            let _p = count(netatopd_bpf::Count::Calls);
            work()
        }
        Variant::Wire => {
            let _p = count(netatopd_bpf::Count::Wire);
            work()
        }
        Variant::EmptyHooks => {
            let _p = Floor::attach(FloorCalls::Neither, true).expect("empty programs");
            work()
        }
        Variant::EmptyAll => {
            let _p = Floor::attach(FloorCalls::Both, true).expect("empty programs");
            work()
        }
        Variant::EmptyRecvHooks => {
            let _p = Floor::attach(FloorCalls::ReceiveOnly, true).expect("empty programs");
            work()
        }
        Variant::SockFold => {
            let _p = SockFold::attach().expect("the candidate's programs");
            work()
        }
        Variant::OwnerOnly => {
            let _p = SockFold::attach_owner_only().expect("the second candidate's programs");
            work()
        }
        Variant::Packed | Variant::PackedDevice => {
            let device = matches!(v, Variant::PackedDevice);
            let _p =
                SockFold::attach_packed(device).expect("the third or fourth candidate's programs");
            work()
        }
        Variant::OwnerAtEgress => {
            let _p = SockFold::attach_owner_at_egress().expect("the fifth candidate's programs");
            work()
        }
    }
}

pub fn design(s: &Scale) {
    println!("## 9b. Designs of wire counting, side by side\n");
    let anchor = std::env::var("NETATOP_BENCH_ANCHOR").ok();
    let mut variants = vec![Variant::Nothing];
    if anchor.is_some() {
        variants.push(Variant::Anchor);
    } else {
        println!("(netatop-bpf not measured: NETATOP_BENCH_ANCHOR is not set)\n");
    }
    variants.extend([
        Variant::Calls,
        Variant::Wire,
        Variant::EmptyHooks,
        Variant::EmptyAll,
        Variant::EmptyRecvHooks,
        Variant::SockFold,
        Variant::OwnerOnly,
        Variant::Packed,
        Variant::PackedDevice,
        Variant::OwnerAtEgress,
    ]);
    let n = s.round_trips;
    let workloads: [Workload; 4] = [
        (
            "### UDP ping-pong, 64 B (section 1's)",
            "ns per call; a send and its receive are one packet",
            Box::new(move || ping_pong(n, 0)),
        ),
        (
            "### TCP request/response, 64 B, both ends on CPU 0",
            "ns per call; a write and its read are one packet",
            Box::new(move || tcp_ping_pong(n / 2, 64, 0)),
        ),
        (
            "### TCP bulk, 64 KiB writes, both ends on CPU 0",
            "ns per 64 KiB write; a twentieth as many as the round trips",
            Box::new(move || tcp_bulk(n / 20, 65536, 0)),
        ),
        (
            "### A service-like mix: 200 B requests, 8 KiB responses, a new connection every \
             10 exchanges, both ends on CPU 0",
            "ns per exchange; a tenth as many as the round trips",
            Box::new(move || service_mix(n / 10, 0)),
        ),
    ];
    for (title, each, work) in &workloads {
        println!("{title}\n");
        let got = interleaved_rounds(s.rounds, variants.len(), |i| {
            with(variants[i], anchor.as_deref(), work.as_ref())
        });
        println!(
            "{} rounds ({each}), interleaved; medians, and the median of each round's \
             ratio to nothing:\n",
            s.rounds
        );
        println!("| attached | ns | added ns | ratio |\n|---|---|---|---|");
        let off = median(&mut got[0].clone());
        for (v, ns) in variants.iter().zip(&got) {
            let mut ratios: Vec<f64> = ns.iter().zip(&got[0]).map(|(a, b)| a / b).collect();
            let ns = median(&mut ns.clone());
            println!(
                "| {} | {ns:.1} | {:.1} | {:.3} |",
                v.name(),
                ns - off,
                median(&mut ratios)
            );
        }
        println!();
    }
    println!(
        "The kernel's own figures per program run (kernel.bpf_stats_enabled=1), one round each:\n"
    );
    for (title, _, work) in &workloads[..2] {
        for v in [
            Variant::Anchor,
            Variant::Wire,
            Variant::SockFold,
            Variant::OwnerOnly,
            Variant::Packed,
            Variant::PackedDevice,
            Variant::OwnerAtEgress,
        ] {
            if matches!(v, Variant::Anchor) && anchor.is_none() {
                continue;
            }
            let stats = BpfStats::enable();
            let figures = RefCell::new(Vec::new());
            with(v, anchor.as_deref(), &|| {
                let ns = work();
                *figures.borrow_mut() = stats.read_named(&["handle_tp_", "netatop_", "sockfold_"]);
                ns
            });
            println!("{}, {}:\n", &title[4..], v.name());
            BpfStats::print(&figures.into_inner());
        }
    }
}
