//! The sections on the cost of a socket call: netatopd's programs against
//! nothing and against programs that do nothing (1), each way of
//! attaching (1b), two threads on two CPUs (2), and nethogs (others).

use std::process::{Child, Command, Stdio};

use netatopd_tests::signal;

use crate::measure::{cost_table, interleaved, interleaved_n, ping_pong, ping_pong_threads};
use crate::programs::{empty_programs, kernel_figure, NetatopdPrograms};
use crate::Scale;

/// `measure` with nothing attached, with programs that do nothing on the
/// same tracepoints, and with netatopd's programs, interleaved.
fn abc(rounds: usize, mut measure: impl FnMut() -> f64) -> [f64; 3] {
    interleaved(rounds, |which| match which {
        0 => measure(),
        1 => {
            let _probe = empty_programs();
            measure()
        }
        _ => {
            let _programs = NetatopdPrograms::load();
            measure()
        }
    })
}

/// Section 1: the added cost per socket call, and the kernel's own
/// figures per program run.
pub fn calls(s: &Scale) {
    println!("## 1. Added cost per socket call (one UDP socket, CPU 0)\n");
    let storage = netatopd_bpf::Kernel::probe()
        .task_storage_unavailable()
        .is_none();
    // netatopd as the kernel has it (threads' counters in task storage
    // where it can), and with them in a hash map, in the same rounds.
    let netatopd = |hash_map: bool| {
        let store = hash_map.then_some(netatopd_bpf::ThreadStore::HashMap);
        let _programs = NetatopdPrograms::load_with(store);
        ping_pong(s.round_trips, 0)
    };
    let [off, empty, on, on_hash] = interleaved(s.rounds, |which| match which {
        0 => ping_pong(s.round_trips, 0),
        1 => {
            let _probe = empty_programs();
            ping_pong(s.round_trips, 0)
        }
        2 => netatopd(false),
        _ if storage => netatopd(true),
        // Not measured where the kernel has no task storage.
        _ => 0.0,
    });
    let mut rows = vec![
        ("nothing (netatopd stopped)", off),
        ("empty tp_btf programs", empty),
        (
            if storage {
                "netatopd's programs (threads' counters in task storage)"
            } else {
                "netatopd's programs (threads' counters in a hash map)"
            },
            on,
        ),
    ];
    if storage {
        rows.push((
            "netatopd's programs, threads' counters in a hash map",
            on_hash,
        ));
    }
    cost_table(s, "2 calls", "attached", &rows);
    println!(
        "\nnetatopd's programs beyond an empty program: {:.1} ns per call",
        on - empty
    );
    if storage {
        println!(
            "with threads' counters in a hash map: {:.1} ns per call",
            on_hash - empty
        );
    }
    println!();
    kernel_figure(s, &[]);
    if storage {
        kernel_figure(s, &["--thread-counters", "hash-map"]);
    }
}

/// Section 1b: the cost per call of each way of attaching this kernel
/// takes, beside nothing and the do-nothing tp_btf programs, in
/// interleaved rounds.
pub fn ways(s: &Scale) {
    println!("## 1b. Added cost per socket call, each way of attaching\n");
    let kernel = netatopd_bpf::Kernel::probe();
    let mut variants: Vec<(String, Option<netatopd_bpf::Mode>)> = vec![("nothing".into(), None)];
    let tracepoints = netatopd_bpf::Mode::Tracepoint
        .unavailable(&kernel)
        .is_none();
    for mode in netatopd_bpf::Mode::ALL {
        match mode.unavailable(&kernel) {
            None => variants.push((format!("netatopd, {}", mode.name()), Some(mode))),
            Some(why) => println!("- {}: not measured: {why}", mode.name()),
        }
    }
    drop(kernel);
    let empty = variants.len();
    if tracepoints {
        variants.push(("empty tp_btf programs".into(), None));
    }
    println!();
    let medians = interleaved_n(s.rounds, variants.len(), |which| {
        if which == empty {
            let _probe = empty_programs();
            ping_pong(s.round_trips, 0)
        } else if let Some(mode) = variants[which].1 {
            let _programs = NetatopdPrograms::load_way(mode);
            ping_pong(s.round_trips, 0)
        } else {
            ping_pong(s.round_trips, 0)
        }
    });
    let rows: Vec<(&str, f64)> = variants
        .iter()
        .zip(medians)
        .map(|((what, _), v)| (what.as_str(), v))
        .collect();
    cost_table(s, "2 calls", "attached", &rows);
    println!();
}

/// Section 2: two threads of one process on two CPUs.
pub fn threads(s: &Scale) {
    println!("## 2. Two threads of one process on two CPUs\n");
    let [off1, _, on1] = abc(s.rounds, || ping_pong_threads(s.round_trips, 1));
    let [off2, _, on2] = abc(s.rounds, || ping_pong_threads(s.round_trips, 2));
    println!("| threads | nothing attached, ns/call | netatopd's programs, ns/call | added ns/call | ratio |\n|---|---|---|---|---|");
    for (n, off, on) in [(1, off1, on1), (2, off2, on2)] {
        println!(
            "| {n} | {off:.1} | {on:.1} | {:.1} | {:.3} |",
            on - off,
            on / off
        );
    }
    println!();
}

/// nethogs watching loopback (TCP and UDP), output discarded; stopped and
/// reaped when dropped.
struct Nethogs(Child);

impl Nethogs {
    fn start() -> Nethogs {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("nethogs")
            .args(["-a", "-t", "-C", "-d", "1", "lo"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nethogs (apt-get install nethogs)");
        // Ready once it prints its first refresh, i.e. it is capturing.
        let out = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("Refreshing") => break,
                Some(Ok(_)) => continue,
                _ => panic!("nethogs exited before capturing"),
            }
        }
        // Keep draining so that nethogs never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Nethogs(child)
    }
}

impl Drop for Nethogs {
    fn drop(&mut self) {
        signal(self.0.id(), libc::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Section others: the ping-pong of section 1 with nothing attached, with
/// netatopd's programs, and with nethogs capturing loopback, interleaved.
pub fn others(s: &Scale) {
    println!("## Comparison: the ping-pong of section 1 under nethogs\n");
    let [off, ours, nethogs] = interleaved(s.rounds, |which| match which {
        0 => ping_pong(s.round_trips, 0),
        1 => {
            let _programs = NetatopdPrograms::load();
            ping_pong(s.round_trips, 0)
        }
        _ => {
            let _nethogs = Nethogs::start();
            ping_pong(s.round_trips, 0)
        }
    });
    let rows = [
        ("nothing", off),
        ("netatopd's programs", ours),
        ("nethogs -a -t -C lo", nethogs),
    ];
    cost_table(s, "2 calls", "running", &rows);
    println!();
}
