//! netatop-bench: netatopd's benchmark suite (see BENCHMARKS.md).
//!
//! Usage: netatop-bench [--quick] [SECTION...]
//! Sections: calls threads snapshot memory maps churn startup (default: all),
//! and `others`, only when named: the same ping-pong under nethogs (Debian
//! package nethogs), for the comparison in the README.
//!
//! Runs the real daemon (the netatopd beside this binary: build with
//! `cargo build --release --bins`), as root. Prints Markdown. Times are
//! compared as ratios within one run; medians over interleaved rounds.
//! --quick runs every section at a small scale: it checks the suite works,
//! not that anything is fast.

use std::fs;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use netatop_protocol::{query, ReadMode};
use netatopd_tests::{require_bpf_machine, wait_until, Daemon, Gen};

struct Scale {
    /// UDP round trips per measurement.
    round_trips: u64,
    /// Interleaved A/B rounds.
    rounds: usize,
    snapshot_sizes: Vec<usize>,
    queries: usize,
    memory_procs: usize,
    map_procs: usize,
    churn: usize,
    churn_rounds: usize,
    startups: usize,
    /// A large host: processes with traffic, and live threads as
    /// thread-farm processes of so many threads each.
    large_procs: usize,
    large_farms: usize,
    large_threads_per_farm: usize,
    /// The wire section's traffic, divided by this.
    wire_divisor: usize,
}

impl Scale {
    fn full() -> Scale {
        Scale {
            round_trips: 100_000,
            rounds: 21,
            snapshot_sizes: vec![1_000, 10_000, 40_000],
            queries: 30,
            memory_procs: 10_000,
            map_procs: 1_000,
            churn: 10_000,
            churn_rounds: 3,
            startups: 7,
            large_procs: 40_000,
            large_farms: 50,
            large_threads_per_farm: 2_000,
            wire_divisor: 1,
        }
    }

    fn quick() -> Scale {
        Scale {
            round_trips: 5_000,
            rounds: 3,
            snapshot_sizes: vec![100],
            queries: 5,
            memory_procs: 100,
            map_procs: 50,
            churn: 100,
            churn_rounds: 1,
            startups: 2,
            large_procs: 500,
            large_farms: 2,
            large_threads_per_farm: 1_000,
            wire_divisor: 10,
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One UDP socket sending 64-byte datagrams to itself and reading each
/// back, on `cpu`: nanoseconds per socket call.
fn ping_pong(n: u64, cpu: usize) -> f64 {
    let _cpu = netatopd_tests::Affinity::only(cpu);
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.connect(s.local_addr().unwrap()).expect("connect");
    let msg = [0x42u8; 64];
    let mut buf = [0u8; 128];
    let mut run = |n: u64| {
        for _ in 0..n {
            s.send(&msg).expect("send");
            s.recv(&mut buf).expect("recv");
        }
    };
    run(n / 10); // warm-up
    let t = Instant::now();
    run(n);
    t.elapsed().as_nanos() as f64 / (2 * n) as f64
}

/// `threads` ping-pongs at once, thread i on CPU i: mean ns per call.
fn ping_pong_threads(n: u64, threads: usize) -> f64 {
    let handles: Vec<_> = (0..threads)
        .map(|cpu| std::thread::spawn(move || ping_pong(n, cpu)))
        .collect();
    let per: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    per.iter().sum::<f64>() / per.len() as f64
}

/// netatopd's programs in this process, attached, taking snapshots and
/// keeping threads' counters the ways NETATOPD_TEST_ATTACH,
/// NETATOPD_TEST_SNAPSHOT and NETATOPD_TEST_THREADS force (as every
/// netatopd the suite starts), else the kernel's best.
fn load_forced(
    sizes: netatopd_bpf::MapSizes,
    dir: &std::path::Path,
) -> Result<(netatopd_bpf::Tracer, netatopd_bpf::Pinned), netatopd_bpf::LoadError> {
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let opts = netatopd_bpf::LoadOptions {
        sizes,
        attach: var("NETATOPD_TEST_ATTACH").and_then(|v| netatopd_bpf::Mode::from_name(&v)),
        snapshot: var("NETATOPD_TEST_SNAPSHOT")
            .and_then(|v| netatopd_bpf::SnapshotMethod::from_name(&v)),
        threads: var("NETATOPD_TEST_THREADS")
            .and_then(|v| netatopd_bpf::ThreadStore::from_name(&v)),
        count: var("NETATOPD_TEST_COUNT")
            .and_then(|v| netatopd_bpf::Count::from_name(&v))
            .unwrap_or_default(),
    };
    netatopd_bpf::Tracer::load_on(&netatopd_bpf::Kernel::probe(), &opts, dir)
}

/// netatopd's programs and maps, loaded as the daemon loads them (in this
/// process, so that rounds can switch them quickly); unloaded when dropped.
struct NetatopdPrograms(Option<netatopd_bpf::Tracer>, std::path::PathBuf);

impl NetatopdPrograms {
    fn load() -> Self {
        let dir =
            std::path::PathBuf::from(format!("/sys/fs/bpf/netatop-bench-{}", std::process::id()));
        let (tracer, _) = load_forced(netatopd_bpf::MapSizes::default(), &dir)
            .expect("loading netatopd's programs");
        NetatopdPrograms(Some(tracer), dir)
    }

    /// As the daemon loads them, with threads' counters in `store` (None:
    /// where the kernel and NETATOPD_TEST_THREADS put them).
    fn load_with(store: Option<netatopd_bpf::ThreadStore>) -> Self {
        let Some(store) = store else {
            return Self::load();
        };
        Self::load_opts(netatopd_bpf::LoadOptions {
            threads: Some(store),
            ..Default::default()
        })
    }

    /// As the daemon loads them with options `opts`.
    fn load_opts(opts: netatopd_bpf::LoadOptions) -> Self {
        let dir =
            std::path::PathBuf::from(format!("/sys/fs/bpf/netatop-bench-{}", std::process::id()));
        let (tracer, _) =
            netatopd_bpf::Tracer::load_on(&netatopd_bpf::Kernel::probe(), &opts, &dir)
                .expect("loading netatopd's programs");
        NetatopdPrograms(Some(tracer), dir)
    }
}

impl Drop for NetatopdPrograms {
    fn drop(&mut self) {
        let _ = netatopd_bpf::remove_pins(&self.1);
        drop(self.0.take());
    }
}

/// Medians of `rounds` rounds of `N` variants, `run(i)` measuring variant
/// `i`; the order rotates from round to round.
fn interleaved<const N: usize>(rounds: usize, mut run: impl FnMut(usize) -> f64) -> [f64; N] {
    let mut got: [Vec<f64>; N] = std::array::from_fn(|_| Vec::new());
    for r in 0..rounds {
        for k in 0..N {
            let which = (r + k) % N;
            got[which].push(run(which));
        }
    }
    got.map(|mut v| median(&mut v))
}

/// `measure` with nothing attached, with programs that do nothing on the
/// same tracepoints, and with netatopd's programs, interleaved.
fn abc(rounds: usize, mut measure: impl FnMut() -> f64) -> [f64; 3] {
    interleaved(rounds, |which| match which {
        0 => measure(),
        1 => {
            let _probe = netatopd_bpf::EmptyProbe::attach().expect("empty programs");
            measure()
        }
        _ => {
            let _programs = NetatopdPrograms::load();
            measure()
        }
    })
}

fn calls(s: &Scale) {
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
            let _probe = netatopd_bpf::EmptyProbe::attach().expect("empty programs");
            ping_pong(s.round_trips, 0)
        }
        2 => netatopd(false),
        _ if storage => netatopd(true),
        // Not measured where the kernel has no task storage.
        _ => 0.0,
    });
    println!(
        "{} rounds of {} round trips (2 calls each), interleaved, medians:\n",
        s.rounds, s.round_trips
    );
    println!("| attached | ns per call | added ns | ratio |\n|---|---|---|---|");
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
    for (what, v) in rows {
        println!("| {what} | {v:.1} | {:.1} | {:.3} |", v - off, v / off);
    }
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

/// Counting the wire against counting calls: the ping-pong of section 1
/// sends and receives one packet per call, so the wire's figure is the
/// added cost of a call and of a packet each way.
fn wire(s: &Scale) {
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
            let _probe = netatopd_bpf::EmptyProbe::attach().expect("empty programs");
            ping_pong(s.round_trips, 0)
        }
        2 => counting(netatopd_bpf::Count::Calls),
        3 => counting(netatopd_bpf::Count::Wire),
        _ => {
            let _probe = netatopd_bpf::TcpInfoProbe::attach().expect("the tcp_info programs");
            ping_pong(s.round_trips, 0)
        }
    });
    println!(
        "{} rounds of {} round trips (2 calls, 2 loopback packets each), interleaved, medians:\n",
        s.rounds, s.round_trips
    );
    println!("| attached | ns per call | added ns | ratio |\n|---|---|---|---|");
    for (what, v) in [
        ("nothing (netatopd stopped)", off),
        ("empty tp_btf programs", empty),
        ("netatopd --count calls", calls),
        ("netatopd --count wire", wire),
        (
            "the other design: TCP's counters at calls, UDP per call",
            tcpinfo,
        ),
    ] {
        println!("| {what} | {v:.1} | {:.1} | {:.3} |", v - off, v / off);
    }
    println!(
        "\n--count wire beyond --count calls: {:.1} ns per call and its packet\n",
        wire - calls
    );
    kernel_figure(s, &["--count", "wire"]);
    wire_accuracy(s);
}

/// Each way of counting against what the interfaces carried, between two
/// network namespaces (tests/src/netns.rs): netatopd --count wire, the
/// other design (TCP's own counters read at calls, `TcpInfoProbe`) and
/// netatopd's calls, for the same traffic at once.
fn wire_accuracy(s: &Scale) {
    use netatopd_tests::netns::{start_across, Before, Wire};
    println!(
        "\n### Against the interfaces: packets and IP bytes sent (both ends are the \
         generator's; each packet is sent once)\n"
    );
    let d = Daemon::start(&["--count", "wire"]);
    let tcpinfo = netatopd_bpf::TcpInfoProbe::attach().expect("loading the tcp_info programs");
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
            cell(b.tcpsndpacks + b.udpsndpacks, b.tcpsndbytes + b.udpsndbytes),
            cell(r.counters.send_packets(), r.counters.send_bytes()),
        );
        g.finish();
    }
    println!();
}

/// netatopd's programs attached the way `mode` says, in this process;
/// unloaded when dropped.
fn load_way(mode: netatopd_bpf::Mode) -> NetatopdPrograms {
    let dir = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/netatop-bench-{}-{}",
        std::process::id(),
        mode.name()
    ));
    let opts = netatopd_bpf::LoadOptions {
        attach: Some(mode),
        ..Default::default()
    };
    let (tracer, _) = netatopd_bpf::Tracer::load_on(&netatopd_bpf::Kernel::probe(), &opts, &dir)
        .expect("loading netatopd's programs");
    NetatopdPrograms(Some(tracer), dir)
}

/// The cost per call of each way of attaching this kernel takes, beside
/// nothing and the do-nothing tp_btf programs, in interleaved rounds.
fn ways(s: &Scale) {
    println!(
        "## 1b. Added cost per socket call, each way of attaching
"
    );
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
    let n = variants.len();
    let mut got: Vec<Vec<f64>> = vec![Vec::new(); n];
    for r in 0..s.rounds {
        for k in 0..n {
            let which = (r + k) % n;
            let v = if which == empty {
                let _probe = netatopd_bpf::EmptyProbe::attach().expect("empty programs");
                ping_pong(s.round_trips, 0)
            } else if let Some(mode) = variants[which].1 {
                let _programs = load_way(mode);
                ping_pong(s.round_trips, 0)
            } else {
                ping_pong(s.round_trips, 0)
            };
            got[which].push(v);
        }
    }
    let medians: Vec<f64> = got.into_iter().map(|mut v| median(&mut v)).collect();
    let off = medians[0];
    println!(
        "{} rounds of {} round trips (2 calls each), interleaved, medians:\n",
        s.rounds, s.round_trips
    );
    println!("| attached | ns per call | added ns | ratio |\n|---|---|---|---|");
    for ((what, _), v) in variants.iter().zip(&medians) {
        println!("| {what} | {v:.1} | {:.1} | {:.3} |", v - off, v / off);
    }
    println!();
}

/// kernel.bpf_stats_enabled=1 for as long as it lives (then switched back
/// to what it was): the kernel's own run_time_ns / run_cnt per program.
struct BpfStats(String);

impl BpfStats {
    const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let before = fs::read_to_string(Self::PATH).unwrap_or_else(|_| "0".into());
        fs::write(Self::PATH, "1").expect("enabling bpf_stats");
        BpfStats(before)
    }

    /// netatopd's programs that ran: name, runs, ns per run.
    fn read(&self) -> Vec<(String, u64, f64)> {
        libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| p.name.to_str().is_some_and(|n| n.starts_with("netatop_")))
            .filter(|p| p.run_cnt > 0)
            .map(|p| {
                let name = p.name.to_string_lossy().into_owned();
                (name, p.run_cnt, p.run_time_ns as f64 / p.run_cnt as f64)
            })
            .collect()
    }

    fn print(figures: &[(String, u64, f64)]) {
        println!("| program | runs | ns per run |\n|---|---|---|");
        for (name, runs, ns) in figures {
            println!("| {name} | {runs} | {ns:.1} |");
        }
        println!();
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(Self::PATH, self.0.trim());
    }
}

/// The kernel's own figure per program run, netatopd started with
/// options `opts`, during one round.
fn kernel_figure(s: &Scale, opts: &[&str]) {
    let stats = BpfStats::enable();
    let d = Daemon::start(opts);
    ping_pong(s.round_trips, 0);
    let figures = stats.read();
    drop(d);
    drop(stats);
    println!(
        "kernel.bpf_stats_enabled=1 during one running round (switched back afterwards), netatopd{}{}:\n",
        if opts.is_empty() { "" } else { " " },
        opts.join(" ")
    );
    BpfStats::print(&figures);
}

/// nethogs watching loopback (TCP and UDP), output discarded; stopped and
/// reaped when dropped.
struct Nethogs(std::process::Child);

impl Nethogs {
    fn start() -> Nethogs {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new("nethogs")
            .args(["-a", "-t", "-C", "-d", "1", "lo"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
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
        // SAFETY: kill(2) on the pid of our own child, not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The ping-pong of section 1 with nothing attached, with netatopd's
/// programs, and with nethogs capturing loopback, interleaved.
fn others(s: &Scale) {
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
    println!(
        "{} rounds of {} round trips (2 calls each), interleaved, medians:\n",
        s.rounds, s.round_trips
    );
    println!("| running | ns per call | added ns | ratio |\n|---|---|---|---|");
    for (what, v) in [
        ("nothing", off),
        ("netatopd's programs", ours),
        ("nethogs -a -t -C lo", nethogs),
    ] {
        println!("| {what} | {v:.1} | {:.1} | {:.3} |", v - off, v / off);
    }
    println!();
}

fn threads(s: &Scale) {
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

/// `n` live processes that each sent one datagram, counted by `d`.
fn spawn_processes(n: usize) -> Gen {
    let mut g = Gen::spawn("fork", &["--count", &n.to_string(), "--size", "64"]);
    let r = g.report();
    assert_eq!(r.children.len(), n);
    g
}

/// `queries` atop-style queries on one connection: (median, max) ms and
/// the records per response.
fn time_queries(d: &Daemon, queries: usize) -> (f64, f64, usize) {
    let mut conn = d.connect();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut times = Vec::new();
    let mut recs = 0;
    for _ in 0..queries {
        let t = Instant::now();
        recs = query(&mut conn, ReadMode::AsAtop).expect("query").len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    (median(&mut times), max, recs)
}

/// Raises pid_max for the run when `n` processes would not fit; restores
/// it when dropped.
struct PidMax(Option<String>);

impl PidMax {
    fn room_for(n: usize) -> PidMax {
        const PATH: &str = "/proc/sys/kernel/pid_max";
        let old = fs::read_to_string(PATH).unwrap();
        if old.trim().parse::<usize>().unwrap() > n + 20_000 {
            return PidMax(None);
        }
        fs::write(PATH, "4194304").expect("raising pid_max");
        PidMax(Some(old))
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = fs::write("/proc/sys/kernel/pid_max", old.trim());
        }
    }
}

/// atop's reading alone: `n` records and a terminator, one recv of 96
/// bytes each, from a socket pair filled by another thread. The floor of
/// any service's snapshot time, ms.
fn client_floor(n: usize) -> f64 {
    use std::io::{Read, Write};
    let (mut w, mut r) = std::os::unix::net::UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let rec = [1u8; 96];
        let chunk: Vec<u8> = rec.iter().copied().cycle().take(96 * 256).collect();
        let mut left = n;
        while left > 0 {
            let k = left.min(256);
            w.write_all(&chunk[..k * 96]).unwrap();
            left -= k;
        }
        w.write_all(&[0u8; 96]).unwrap();
    });
    let mut buf = [0u8; 96];
    let t = Instant::now();
    loop {
        assert_eq!(r.read(&mut buf).unwrap(), 96);
        if buf[0] == 0 {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    writer.join().unwrap();
    ms
}

/// The batched reads of the procs and threads maps alone (what a snapshot
/// takes from the kernel), median ms.
/// Median ms of the kernel's part of a snapshot alone: reading the whole
/// snapshot iterator (one record per process, threads summed in the kernel).
fn kernel_reads(tracer: &netatopd_bpf::Tracer, times: usize) -> f64 {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut ms: Vec<f64> = (0..times)
        .map(|_| {
            buf.clear();
            let t = Instant::now();
            tracer.snapshot().unwrap().read_to_end(&mut buf).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&mut ms)
}

fn snapshot(s: &Scale) {
    println!("## 3. Snapshot latency, atop's way\n");
    println!(
        "One connection, {} queries (send 96 bytes, read 96-byte records to the terminator). \
         netatopd --max-processes 65536 --max-threads 65536 for every size.\n",
        s.queries
    );
    println!("| live processes | records | median ms | max ms | µs per process (median) | kernel's snapshot alone, ms | atop's reading alone, ms |\n|---|---|---|---|---|---|---|");
    for &n in &s.snapshot_sizes {
        let _pid_max = PidMax::room_for(n);
        let d = Daemon::start(&["--max-processes", "65536", "--max-threads", "65536"]);
        // The same programs and map sizes in this process, to time the
        // kernel's part of a snapshot alone.
        let dir =
            std::path::PathBuf::from(format!("/sys/fs/bpf/netatop-bench-{}", std::process::id()));
        let sizes = netatopd_bpf::MapSizes {
            threads: 65536,
            procs: 65536,
            ..Default::default()
        };
        let (tracer, _) = load_forced(sizes, &dir).expect("loading");
        let _ = netatopd_bpf::remove_pins(&dir);
        let g = spawn_processes(n);
        let (med, max, recs) = time_queries(&d, s.queries);
        let mut floor: Vec<f64> = (0..s.queries).map(|_| client_floor(recs)).collect();
        let reads = kernel_reads(&tracer, s.queries);
        drop(tracer);
        println!(
            "| {n} | {recs} | {med:.2} | {max:.2} | {:.2} | {reads:.2} | {:.2} |",
            med * 1e3 / recs as f64,
            median(&mut floor)
        );
        g.finish();
        drop(d);
    }
    println!();
}

/// (VmRSS, RssAnon) of a process, kB.
fn rss(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn memory(s: &Scale) {
    println!("## 4. Daemon memory (default options)\n");
    let d = Daemon::start(&[]);
    let idle = rss(d.pid());
    let g = spawn_processes(s.memory_procs);
    let (med, max, recs) = time_queries(&d, s.queries);
    let after = rss(d.pid());
    // netatopd gives the snapshot buffers back after a second without
    // queries (its housekeeping runs every second).
    let settle = Instant::now();
    let mut released = rss(d.pid());
    while settle.elapsed() < Duration::from_secs(5) && released.1 >= after.1 {
        std::thread::sleep(Duration::from_millis(100));
        released = rss(d.pid());
    }
    let peak = hwm(d.pid());
    g.finish();
    println!("| state | VmRSS kB | RssAnon kB |\n|---|---|---|");
    println!("| idle | {} | {} |", idle.0, idle.1);
    println!(
        "| right after {} snapshots of {recs} records | {} | {} |",
        s.queries, after.0, after.1
    );
    println!(
        "| {:.1} s later (buffers given back) | {} | {} |",
        settle.elapsed().as_secs_f64(),
        released.0,
        released.1
    );
    println!("\npeak VmRSS (VmHWM): {peak} kB\n");
    println!("(those snapshots at default map sizes: median {med:.2} ms, max {max:.2} ms)\n");
}

/// Peak resident set (VmHWM) of a process, kB.
fn hwm(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// netatopd's statistics (`netatopctl stats --json`).
fn stats(d: &Daemon) -> serde_json::Value {
    let out = d.ctl().args(["stats", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "netatopctl stats: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Kernel memory of the daemon, bytes (netatopctl stats): its maps, and
/// its threads' task storage (estimated from the kernel's types).
fn kernel_memory(d: &Daemon) -> (u64, u64) {
    let v = stats(d);
    (
        v["map_memory_bytes"].as_u64().unwrap(),
        v["thread_storage_bytes"].as_u64().unwrap(),
    )
}

fn maps(s: &Scale) {
    println!("## 5. Kernel memory (memlock of the map fds, and the threads' task storage)\n");
    let cpus = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    println!("possible CPUs: {}\n", cpus.trim());
    println!(
        "| options | idle bytes | with {} processes with traffic: maps + task storage = bytes | per process |\n|---|---|---|---|",
        s.map_procs
    );
    for opts in [
        &[][..],
        &["--max-processes", "8192"][..],
        &["--thread-counters", "hash-map"][..],
    ] {
        let d = Daemon::start(opts);
        let (idle, idle_storage) = kernel_memory(&d);
        let g = spawn_processes(s.map_procs);
        let (maps, storage) = kernel_memory(&d);
        g.finish();
        let busy = maps + storage;
        println!(
            "| {} | {} | {maps} + {storage} = {busy} | {:.0} |",
            if opts.is_empty() {
                "defaults".to_owned()
            } else {
                opts.join(" ")
            },
            idle + idle_storage,
            (busy - idle - idle_storage) as f64 / s.map_procs as f64
        );
    }
    println!();
}

/// A large host: many processes with traffic and many live threads at
/// once, counted by one netatopd with its defaults.
fn large(s: &Scale) {
    let (procs, farms, per_farm) = (s.large_procs, s.large_farms, s.large_threads_per_farm);
    println!(
        "## 8. A large host: {} threads and {procs} processes with traffic\n",
        farms * per_farm
    );
    let _pid_max = PidMax::room_for(procs + farms * per_farm + 10_000);
    let d = Daemon::start(&[]);
    let started = Instant::now();
    let forked = spawn_processes(procs);
    let farms: Vec<(Gen, netatopd_tests::Report)> = (0..farms)
        .map(|_| {
            netatopd_tests::run_lingering(
                "thread-farm",
                &[
                    "--threads",
                    &per_farm.to_string(),
                    "--count",
                    "1",
                    "--size",
                    "64",
                ],
            )
        })
        .collect();
    println!(
        "set up in {:.1} s; netatopd's {}\n",
        started.elapsed().as_secs_f64(),
        stats(&d)["attach_mode"]
            .as_str()
            .unwrap_or("")
            .rsplit("; ")
            .next()
            .unwrap_or("")
    );
    let (med, max, recs) = time_queries(&d, s.queries);
    // Every farm process's total, exactly.
    let all = query(&mut d.connect(), ReadMode::AsAtop).expect("query");
    let exact = farms.iter().all(|(_, r)| {
        let mut sum = r.counters;
        for t in &r.threads {
            sum.add(&t.counters);
        }
        all.iter().any(|x| x.id == r.pid && x.counters == sum)
    });
    let t = Instant::now();
    let listed = d
        .ctl()
        .args(["dump", "--json", "--threads"])
        .output()
        .expect("netatopctl dump");
    let list_ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(listed.status.success());
    let v = stats(&d);
    let lost: u64 = [
        "thread_map_full",
        "proc_map_full",
        "thread_storage_failed",
        "exit_map_full",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap())
    .sum();
    let (maps, storage) = kernel_memory(&d);
    println!("| measure | value |\n|---|---|");
    println!("| threads with counters | {} |", v["threads"]);
    println!("| processes with counters | {} |", v["processes"]);
    println!("| socket calls not counted (map full, storage refused) | {lost} |");
    println!(
        "| every thread-farm process's total exact | {} |",
        if exact { "yes" } else { "NO" }
    );
    println!("| atop query, {recs} records: median / max ms | {med:.1} / {max:.1} |");
    println!("| netatopctl dump --threads (JSON), ms | {list_ms:.0} |");
    println!("| kernel memory: maps | {maps} |");
    println!("| kernel memory: threads' task storage (estimated) | {storage} |");
    println!();
    for (g, _) in farms {
        g.finish();
    }
    forked.finish();
}

fn churn(s: &Scale) {
    println!("## 6. Exit churn\n");
    let n = s.churn;
    let run = || -> (f64, Vec<i32>) {
        let t = Instant::now();
        let mut g = Gen::spawn("churn", &["--count", &n.to_string(), "--size", "32"]);
        let r = g.report();
        let secs = t.elapsed().as_secs_f64();
        g.finish();
        (secs, r.children)
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut checked = false;
    let mut figures = Vec::new();
    for round in 0..s.churn_rounds {
        off.push(run().0);
        let d = Daemon::start(&[]);
        let mut conn = d.connect();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let _ = query(&mut conn, ReadMode::AsAtop).expect("query");
        let stats = (round == 0).then(BpfStats::enable);
        let (secs, children) = run();
        on.push(secs);
        if let Some(stats) = stats {
            figures = stats.read();
        }
        if round == 0 {
            // Every final total arrives, exactly, and nothing stays behind.
            let mut got = std::collections::HashMap::new();
            wait_until(Duration::from_secs(60), "every exit delivered", || {
                for r in query(&mut conn, ReadMode::AsAtop).expect("query") {
                    got.insert(r.id, r.counters);
                }
                children.iter().all(|p| got.contains_key(p))
            });
            assert!(children
                .iter()
                .all(|p| got[p].udpsndpacks == 1 && got[p].udpsndbytes == 32));
            for map in ["procs", "exited"] {
                assert!(
                    children.iter().all(|&p| !d.map_has(map, p as u32)),
                    "entries left in {map}"
                );
            }
            let own: Vec<(i32, i32)> = children.iter().map(|&p| (p, p)).collect();
            assert_eq!(d.threads_counted(&own), 0, "threads' counters left");
            checked = true;
        }
    }
    let (off, on) = (median(&mut off), median(&mut on));
    println!(
        "{n} processes that each send one datagram and exit, 64 at a time; {} rounds.\n",
        s.churn_rounds
    );
    println!("| netatopd | seconds (median) | µs per process |\n|---|---|---|");
    println!("| stopped | {off:.3} | {:.1} |", off * 1e6 / n as f64);
    println!("| running | {on:.3} | {:.1} |", on * 1e6 / n as f64);
    println!(
        "\nadded per fork+exit: {:.2} µs (ratio {:.3}); every final total delivered exactly \
         and no map entries left: {}\n",
        (on - off) * 1e6 / n as f64,
        on / off,
        if checked { "yes" } else { "not checked" }
    );
    println!("kernel.bpf_stats_enabled=1 during the first running round:\n");
    BpfStats::print(&figures);
}

fn startup(s: &Scale) {
    println!("## 7. Start-up: exec to the socket answering\n");
    let mut d = Daemon::start(&[]);
    let mut times = Vec::new();
    for _ in 0..s.startups {
        assert!(d.stop().success());
        let t = Instant::now();
        d.restart();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    println!(
        "{} starts (nothing pinned; programs loaded, attached and pinned each time): \
         median {:.1} ms, max {max:.1} ms\n",
        s.startups,
        median(&mut times)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut scale = if quick { Scale::quick() } else { Scale::full() };
    // --rounds N and --round-trips N scale the per-call sections (calls,
    // ways), e.g. for a guest under emulation where calls are slow.
    let num = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().expect("a number"))
    };
    if let Some(n) = num("--rounds") {
        scale.rounds = n;
    }
    if let Some(n) = num("--round-trips") {
        scale.round_trips = n as u64;
    }
    let sections: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            *a != "--quick"
                && !a.starts_with("--round")
                && !(*i > 0 && args[i - 1].starts_with("--round"))
        })
        .map(|(_, a)| a.as_str())
        .collect();
    const ALL: [&str; 10] = [
        "calls", "ways", "threads", "snapshot", "memory", "maps", "churn", "startup", "large",
        "wire",
    ];
    for s in &sections {
        if !ALL.contains(s) && *s != "others" {
            eprintln!(
                "netatop-bench: unknown section {s}; sections: {}",
                ALL.join(" ")
            );
            std::process::exit(2);
        }
    }
    require_bpf_machine();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "# netatop-bench{}\n\nLinux {}, {} CPUs online\n",
        if quick { " --quick" } else { "" },
        release.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for &name in ALL.iter().chain(&["others"]) {
        let named = sections.contains(&name);
        if (!sections.is_empty() || name == "others") && !named {
            continue;
        }
        match name {
            "calls" => calls(&scale),
            "ways" => ways(&scale),
            "threads" => threads(&scale),
            "snapshot" => snapshot(&scale),
            "memory" => memory(&scale),
            "maps" => maps(&scale),
            "churn" => churn(&scale),
            "startup" => startup(&scale),
            "large" => large(&scale),
            "wire" => wire(&scale),
            _ => others(&scale),
        }
    }
}
