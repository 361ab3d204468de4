//! netatop-gen, the traffic generator of netatopd's tests: its command
//! line, the table of its scenarios, and the report it prints. It makes
//! known socket traffic and prints its own ground truth, counted from the
//! return value of every call.
//!
#![doc = "```text"]
#![doc = include_str!("usage.txt")]
#![doc = "```"]

mod handover;
mod loopback;
mod processes;
mod sys;
mod threads;
mod uncounted;
mod wire;

use std::io::{self, BufRead, Read};
use std::net::UdpSocket;
use std::os::fd::RawFd;
use std::process::ExitCode;
use std::time::Duration;

use netatop_protocol::Counters;
use netatopd_tests::{Report, Truth};

use wire::Peer;

/// What `netatop-gen` prints on a wrong command line (and its doc says).
const USAGE: &str = include_str!("usage.txt");

/// The shape of a scenario's traffic.
pub struct Opts {
    /// --count: how many calls, round trips, exchanges or children.
    pub count: usize,
    /// --size: bytes per call or exchange.
    pub size: usize,
    /// --threads: how many threads the thread scenarios start.
    pub threads: usize,
    /// Pause between the UDP round trips (steady traffic over time).
    pub pace: Duration,
}

impl Opts {
    /// `count` UDP round trips of `size` bytes, unpaced, by one thread.
    pub fn round_trips(count: usize, size: usize) -> Opts {
        Opts {
            count,
            size,
            threads: 1,
            pace: Duration::ZERO,
        }
    }
}

/// The command line, the program's name first: the scenario, then
/// options anywhere after it.
struct Args(Vec<String>);

impl Args {
    /// Whether option `f` is given.
    fn flag(&self, f: &str) -> bool {
        self.0.iter().any(|a| a == f)
    }

    /// The value of option `f`, if given.
    fn value(&self, f: &str) -> Option<&str> {
        self.0
            .iter()
            .position(|a| a == f)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    /// The numeric value of option `f`, or `default`.
    fn num(&self, f: &str, default: usize) -> usize {
        self.value(f)
            .map_or(default, |v| v.parse().expect("numeric option"))
    }
}

/// A scenario's command line: its name, its options, and the shape of its
/// traffic they give.
struct Cli {
    scenario: String,
    args: Args,
    opts: Opts,
}

impl Cli {
    /// The command line `args` for `scenario`.
    fn new(scenario: String, args: Args) -> Cli {
        let opts = Opts {
            count: args.num("--count", 100),
            size: args.num("--size", 100),
            threads: args.num("--threads", 4),
            pace: Duration::from_micros(args.num("--pace-us", 0) as u64),
        };
        Cli {
            scenario,
            args,
            opts,
        }
    }

    /// Where the server of a scenario across namespaces runs:
    /// --peer-netns PATH, --peer-addr IPV4.
    fn peer(&self) -> Peer {
        let text = |f: &str| {
            self.args
                .value(f)
                .unwrap_or_else(|| panic!("{} needs {f}", self.scenario))
                .to_string()
        };
        Peer {
            netns: text("--peer-netns"),
            addr: text("--peer-addr").parse().expect("an IPv4 --peer-addr"),
        }
    }
}

/// What a scenario leaves behind: its report, and what must outlive it.
#[derive(Default)]
struct Outcome {
    report: Report,
    /// fork: the pipe end whose closing releases the children, and the
    /// socket they sent to.
    held: Option<(RawFd, UdpSocket)>,
}

impl Outcome {
    /// What the generator did, as the scenario records it.
    fn truth(&mut self) -> &mut Truth {
        &mut self.report.truth
    }
}

/// A scenario: its traffic, recorded in the outcome.
type Run = fn(&mut Outcome, &Cli) -> io::Result<()>;

/// Every scenario, by name (the usage says what each does).
const SCENARIOS: &[(&str, Run)] = &[
    ("udp4", |o, c| {
        loopback::udp(o.truth(), false, false, &c.opts)
    }),
    ("udp6", |o, c| {
        loopback::udp(o.truth(), true, false, &c.opts)
    }),
    ("tcp4", |o, c| {
        loopback::tcp(o.truth(), false, false, &c.opts)
    }),
    ("tcp6", |o, c| {
        loopback::tcp(o.truth(), true, false, &c.opts)
    }),
    ("rw", |o, c| {
        let t = o.truth();
        loopback::udp(t, false, true, &c.opts)?;
        loopback::tcp(t, true, true, &c.opts)
    }),
    ("mmsg", |o, c| loopback::mmsg(o.truth(), &c.opts)),
    ("fail", |o, c| uncounted::fail(o.truth(), &c.opts)),
    ("zero", |o, c| uncounted::zero(o.truth(), &c.opts)),
    ("peek", |o, c| uncounted::peek(o.truth(), &c.opts)),
    ("threads", |o, c| {
        let r = &mut o.report;
        threads::threads(&mut r.truth, &mut r.tids, &c.opts)
    }),
    ("live-threads", |o, c| {
        threads::live_threads(&mut o.report.threads, &c.opts)
    }),
    ("thread-farm", |o, c| {
        threads::thread_farm(&mut o.report.threads, &c.opts)
    }),
    ("exec-thread", |o, c| {
        threads::exec_thread(o.truth(), &c.opts, c.args.flag("--linger"))
    }),
    ("unix", |o, c| uncounted::unix(o.truth(), &c.opts)),
    ("raw", |o, c| uncounted::raw(o.truth(), &c.opts)),
    ("mptcp4", |o, c| loopback::mptcp(o.truth(), false, &c.opts)),
    ("mptcp6", |o, c| loopback::mptcp(o.truth(), true, &c.opts)),
    ("splice4", |o, c| {
        loopback::tcp_splice(o.truth(), false, &c.opts)
    }),
    ("splice6", |o, c| {
        loopback::tcp_splice(o.truth(), true, &c.opts)
    }),
    ("errqueue", |o, c| uncounted::errqueue(o.truth(), &c.opts)),
    ("sendfile4", |o, c| {
        loopback::tcp_sendfile(o.truth(), false, &c.opts)
    }),
    ("sendfile6", |o, c| {
        loopback::tcp_sendfile(o.truth(), true, &c.opts)
    }),
    ("fork", |o, c| {
        o.held = Some(processes::fork(&mut o.report.children, &c.opts)?);
        Ok(())
    }),
    ("churn", |o, c| {
        processes::churn(&mut o.report.children, &c.opts)
    }),
    ("tcp-rr", |o, c| {
        let (n, size) = (c.opts.count, c.opts.size);
        wire::tcp_exchanges(o.truth(), &c.peer(), 1, n, size)
    }),
    ("tcp-conns", |o, c| {
        let (n, size) = (c.opts.count, c.opts.size);
        wire::tcp_exchanges(o.truth(), &c.peer(), n, 1, size)
    }),
    ("tcp-bulk", |o, c| {
        let (n, size) = (c.opts.count, c.opts.size);
        wire::tcp_bulk(o.truth(), &c.peer(), n, size)
    }),
    ("tcp-fork", |o, c| {
        handover::handover(&mut o.report.children, &c.peer(), &c.opts, false)
    }),
    ("tcp-scm", |o, c| {
        handover::handover(&mut o.report.children, &c.peer(), &c.opts, true)
    }),
    ("tcp-threads", |o, c| {
        wire::tcp_threads(&mut o.report.threads, &c.peer(), &c.opts)
    }),
    ("udp-rr", |o, c| {
        let (n, size, gso) = (c.opts.count, c.opts.size, c.args.num("--gso", 0));
        wire::udp_exchanges(o.truth(), &c.peer(), n, size, gso)
    }),
    ("udp-conns", |o, c| {
        let (n, size) = (c.opts.count, c.opts.size);
        (0..n).try_for_each(|_| wire::udp_exchanges(o.truth(), &c.peer(), 1, size, 0))
    }),
];

/// Prints `report` as the one JSON line the test reads.
pub fn print(report: &Report) {
    println!(
        "{}",
        serde_json::to_string(report).expect("serialising the report")
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(scenario) = args.get(1).cloned() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let Some(&(_, run)) = SCENARIOS.iter().find(|(name, _)| *name == scenario) else {
        eprintln!("netatop-gen: unknown scenario {scenario}\n");
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let cli = Cli::new(scenario, Args(args));
    // --name NAME: the process's comm, set before any traffic.
    if let Some(name) = cli.args.value("--name") {
        sys::set_name(name);
    }
    let stdin = io::stdin();
    if cli.args.flag("--wait-go") {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).expect("reading stdin");
    }
    let mut out = Outcome::default();
    // --carry: counters of an image before an exec (exec-thread), still
    // the process's.
    if let Some(carry) = cli.args.value("--carry") {
        let v: Vec<u64> = carry
            .split(',')
            .map(|x| x.parse().expect("numeric --carry"))
            .collect();
        out.report.truth.counters =
            Counters::from_fields(v.try_into().expect("--carry takes the eight counters"));
    }
    if let Err(e) = run(&mut out, &cli) {
        eprintln!("netatop-gen: {}: {e}", cli.scenario);
        return ExitCode::FAILURE;
    }
    // --rename NAME: the process's comm, changed after the traffic.
    if let Some(name) = cli.args.value("--rename") {
        sys::set_name(name);
    }
    out.report.pid = std::process::id() as i32;
    print(&out.report);
    if cli.args.flag("--linger") || out.held.is_some() {
        let mut sink = Vec::new();
        let _ = stdin.lock().read_to_end(&mut sink);
    }
    if let Some((wfd, _sink)) = out.held {
        // SAFETY: closing the write end releases the children; then reap them.
        unsafe { libc::close(wfd) };
        let children = out.report.children.len();
        let failed = (0..children).filter(|_| !processes::reap()).count();
        if failed > 0 {
            eprintln!("netatop-gen: {failed} children failed to send");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::{SCENARIOS, USAGE};

    /// The usage names every scenario there is, and no other.
    #[test]
    fn the_usage_names_every_scenario() {
        let mut listed = netatopd_tests::listed_names(USAGE, "Scenarios", "Options:");
        let mut known: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
        listed.sort_unstable();
        known.sort_unstable();
        assert_eq!(listed, known);
    }
}
