//! netatopctl: which process uses the network, for people and scripts.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::builder::PossibleValue;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use netatop_protocol::control::{self, ControlError, Process, Request, Response};
use netatop_protocol::{query, Counters, QueryError, ReadMode, DEFAULT_SOCKET, FIELDS};

mod conns;
mod dump;
mod export;
mod groups;
mod serve;
mod stats;
mod table;
mod top;

#[derive(Parser, Debug)]
#[command(
    name = "netatopctl",
    version,
    about = "Per-process network traffic from netatopd (or any netatop-bpf service)"
)]
struct Args {
    /// The atop socket (any netatop-bpf service); used when the control
    /// socket does not answer and what is asked needs no more.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// netatopd's control socket: threads, exited processes, statistics.
    #[arg(long, value_name = "PATH", default_value = control::DEFAULT_CONTROL_SOCKET, global = true)]
    control_socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the counters of every process, one row each.
    Dump(dump::Opts),
    /// Live bandwidth per process, refreshed every interval.
    Top(top::Opts),
    /// netatopd's own statistics.
    Stats {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The counters in a metrics format (for node_exporter's textfile
    /// collector).
    Export(export::Opts),
    /// Serve the counters over HTTP for Prometheus to scrape (GET
    /// /metrics), asking netatopd's control socket at each scrape.
    Serve(serve::Opts),
    /// Print a completion script for SHELL on standard output.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// What a counter row is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Bytes sent and received, TCP and UDP together (descending).
    Bytes,
    /// Packets sent and received (descending).
    Packets,
    Pid,
    Command,
    /// One of the eight counters (its index in `FIELDS`), descending.
    Counter(usize),
}

const SORT_KEYS: [SortKey; 12] = [
    SortKey::Bytes,
    SortKey::Packets,
    SortKey::Pid,
    SortKey::Command,
    SortKey::Counter(0),
    SortKey::Counter(1),
    SortKey::Counter(2),
    SortKey::Counter(3),
    SortKey::Counter(4),
    SortKey::Counter(5),
    SortKey::Counter(6),
    SortKey::Counter(7),
];

impl ValueEnum for SortKey {
    fn value_variants<'a>() -> &'a [Self] {
        &SORT_KEYS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            SortKey::Bytes => PossibleValue::new("bytes")
                .help("Bytes sent and received, TCP and UDP together (descending)"),
            SortKey::Packets => {
                PossibleValue::new("packets").help("Packets sent and received (descending)")
            }
            SortKey::Pid => PossibleValue::new("pid"),
            SortKey::Command => PossibleValue::new("command"),
            SortKey::Counter(i) => PossibleValue::new(FIELDS[*i].option()),
        })
    }
}

impl SortKey {
    /// The counter value sorted on, for the numeric keys.
    fn value(self, c: &Counters) -> Option<u64> {
        match self {
            SortKey::Bytes => Some(c.bytes()),
            SortKey::Packets => Some(c.packets()),
            SortKey::Pid | SortKey::Command => None,
            SortKey::Counter(i) => Some(c.fields()[i]),
        }
    }

    /// Sorts processes: counters descending, pid and command ascending;
    /// ties by pid.
    pub fn sort(self, procs: &mut [Process]) {
        procs.sort_by(|a, b| {
            let primary = match self {
                SortKey::Pid => a.pid.cmp(&b.pid),
                SortKey::Command => a.command.cmp(&b.command),
                k => k.value(&b.counters).cmp(&k.value(&a.counters)),
            };
            primary
                .then(a.pid.cmp(&b.pid))
                .then(a.exited.cmp(&b.exited))
        });
    }
}

/// Where the counters come from.
pub enum Source {
    /// netatopd's control socket.
    Control(UnixStream, PathBuf),
    /// The atop socket: live processes, and final totals of exited ones
    /// (not marked as such); no threads.
    Atop(UnixStream, PathBuf),
}

fn connect(path: &Path, what: &str) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => anyhow!(
            "no {what} answers on {} (is netatopd running?)",
            path.display()
        ),
        io::ErrorKind::PermissionDenied => anyhow!(
            "permission denied on {}: run as root or as a member of the socket's group",
            path.display()
        ),
        _ => anyhow!("cannot connect to {}: {e}", path.display()),
    })
}

impl Source {
    /// The control socket; if it does not answer and `need_control` is
    /// None, the atop socket.
    fn open(args: &Args, need_control: Option<&str>) -> Result<Source> {
        match connect(&args.control_socket, "netatopd control socket") {
            Ok(s) => Ok(Source::Control(s, args.control_socket.clone())),
            Err(e) => match need_control {
                Some(what) => bail!("{e}; {what} needs netatopd's control socket"),
                None => connect(&args.socket, "netatop service")
                    .map(|s| Source::Atop(s, args.socket.clone()))
                    .map_err(|atop| anyhow!("{atop}; and {e}")),
            },
        }
    }

    /// One control request; an error response becomes the error.
    fn call(&mut self, req: &Request) -> Result<Response> {
        let Source::Control(stream, path) = self else {
            unreachable!("control requests go to the control socket");
        };
        let path = path.display();
        match control::call(stream, req) {
            Ok(Response::Error(why)) => bail!("netatopd on {path} refused: {why}"),
            Ok(resp) => Ok(resp),
            Err(ControlError::Version { theirs }) => bail!(
                "netatopd on {path} speaks control protocol version {theirs}, this netatopctl {}: \
                 use the netatopctl of the same release",
                control::VERSION
            ),
            Err(e) => bail!("control request to {path} failed: {e}"),
        }
    }

    /// When netatopd counts the wire (IP packets and their bytes) rather
    /// than calls, what is unattributed per network namespace; None when
    /// it counts calls, or for a plain netatop service (which counts
    /// calls). Asked of the control socket.
    pub fn wire(&mut self) -> Result<Option<Vec<(u32, Counters)>>> {
        Ok(self
            .stats()?
            .as_deref()
            .and_then(wire_of)
            .map(<[_]>::to_vec))
    }

    /// netatopd's statistics; None for a plain netatop service, which has
    /// none.
    pub fn stats(&mut self) -> Result<Option<Box<control::Stats>>> {
        match self {
            Source::Control(..) => match self.call(&Request::Stats)? {
                Response::Stats(s) => Ok(Some(s)),
                other => bail!("unexpected response {other:?}"),
            },
            Source::Atop(..) => Ok(None),
        }
    }

    /// Every process, as the source can tell, each once.
    pub fn processes(&mut self, threads: bool, exited: bool) -> Result<Vec<Process>> {
        match self {
            // netatopd lists each process once.
            Source::Control(..) => match self.call(&Request::Processes { threads, exited })? {
                Response::Processes(p) => Ok(p),
                other => bail!("unexpected response {other:?}"),
            },
            Source::Atop(stream, path) => {
                let path = path.display();
                let recs = query(stream, ReadMode::Reassemble).map_err(|e| match e {
                    QueryError::Closed => {
                        anyhow!("the service on {path} closed the connection mid-response")
                    }
                    e => anyhow!("query to {path} failed: {e}"),
                })?;
                // A service may send a process that exited twice: live,
                // then its final record.
                Ok(merge(
                    recs.iter()
                        .map(|r| Process::from_record(r, false))
                        .collect(),
                ))
            }
        }
    }
}

/// When netatopd counts the wire (IP packets and their bytes) rather than
/// calls, what is unattributed per network namespace, from its statistics.
pub fn wire_of(s: &control::Stats) -> Option<&[(u32, Counters)]> {
    (s.count == "wire").then_some(&s.unattributed[..])
}

/// One entry per process (pid and start time), for services that send a
/// process both live and with its final totals (it exited while the
/// response was built): the larger counters are kept.
pub fn merge(procs: Vec<Process>) -> Vec<Process> {
    let mut index: HashMap<(i32, u64), usize> = HashMap::new();
    let mut out: Vec<Process> = Vec::with_capacity(procs.len());
    for p in procs {
        match index.get(&(p.pid, p.btime)) {
            Some(&i) => {
                out[i].counters.raise_to(&p.counters);
                out[i].exited |= p.exited;
            }
            None => {
                index.insert((p.pid, p.btime), out.len());
                out.push(p);
            }
        }
    }
    out
}

/// Output errors: a closed pipe (`| head`) ends quietly.
pub fn output(res: io::Result<()>) -> Result<()> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| anyhow!("cannot write output: {e}")),
    }
}

fn run(args: &Args) -> Result<()> {
    match &args.command {
        Command::Dump(o) => dump::run(args, o),
        Command::Top(o) => top::run(args, o),
        Command::Stats { json } => stats::run(args, *json),
        Command::Export(o) => export::run(args, o),
        Command::Serve(o) => serve::run(args, o),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Args::command(),
                "netatopctl",
                &mut io::stdout(),
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // netatopctl is a client: it does not probe the kernel (netatopd
    // --version does), so it links no BPF loader.
    let args: Args = netatopd::version::parse(|| None);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netatopctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The line that tells, above a table, that the counters count the wire.
pub const WIRE_NOTE: &str =
    "counting the wire: packets are IP packets, bytes their IP length, headers included";

/// A table, under [`WIRE_NOTE`] where the counters count the `wire`.
pub fn write_table(
    out: &mut impl io::Write,
    wire: bool,
    columns: &[table::Column],
    rows: &[Vec<String>],
) -> io::Result<()> {
    if wire {
        writeln!(out, "{WIRE_NOTE}")?;
    }
    table::write(out, columns, rows)
}
