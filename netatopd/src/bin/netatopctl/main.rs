//! netatopctl: which process uses the network, for people and scripts.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use netatop_protocol::control::{self, ControlError, Process, Request, Response};
use netatop_protocol::{query, Counters, QueryError, ReadMode, DEFAULT_SOCKET};

mod dump;
mod export;
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
    /// Print a completion script for SHELL on standard output.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// What a counter row is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// Bytes sent and received, TCP and UDP together (descending).
    Bytes,
    /// Packets sent and received (descending).
    Packets,
    Pid,
    Command,
    TcpSendPackets,
    TcpSendBytes,
    TcpRecvPackets,
    TcpRecvBytes,
    UdpSendPackets,
    UdpSendBytes,
    UdpRecvPackets,
    UdpRecvBytes,
}

/// Sums of a counter set.
pub trait Totals {
    fn bytes(&self) -> u64;
    fn packets(&self) -> u64;
    fn send_bytes(&self) -> u64;
    fn recv_bytes(&self) -> u64;
    fn send_packets(&self) -> u64;
    fn recv_packets(&self) -> u64;
}

impl Totals for Counters {
    fn bytes(&self) -> u64 {
        self.send_bytes() + self.recv_bytes()
    }
    fn packets(&self) -> u64 {
        self.send_packets() + self.recv_packets()
    }
    fn send_bytes(&self) -> u64 {
        self.tcpsndbytes + self.udpsndbytes
    }
    fn recv_bytes(&self) -> u64 {
        self.tcprcvbytes + self.udprcvbytes
    }
    fn send_packets(&self) -> u64 {
        self.tcpsndpacks + self.udpsndpacks
    }
    fn recv_packets(&self) -> u64 {
        self.tcprcvpacks + self.udprcvpacks
    }
}

impl SortKey {
    /// The counter value sorted on, for the numeric keys.
    fn value(self, c: &Counters) -> Option<u64> {
        let f = c.fields();
        Some(match self {
            SortKey::Bytes => c.bytes(),
            SortKey::Packets => c.packets(),
            SortKey::Pid | SortKey::Command => return None,
            SortKey::TcpSendPackets => f[0],
            SortKey::TcpSendBytes => f[1],
            SortKey::TcpRecvPackets => f[2],
            SortKey::TcpRecvBytes => f[3],
            SortKey::UdpSendPackets => f[4],
            SortKey::UdpSendBytes => f[5],
            SortKey::UdpRecvPackets => f[6],
            SortKey::UdpRecvBytes => f[7],
        })
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

fn connect(path: &Path, what: &str) -> Result<UnixStream, String> {
    UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!(
                "no {what} answers on {} (is netatopd running?)",
                path.display()
            )
        }
        io::ErrorKind::PermissionDenied => format!(
            "permission denied on {}: run as root or as a member of the socket's group",
            path.display()
        ),
        _ => format!("cannot connect to {}: {e}", path.display()),
    })
}

impl Source {
    /// The control socket; if it does not answer and `need_control` is
    /// false, the atop socket.
    fn open(args: &Args, need_control: Option<&str>) -> Result<Source, String> {
        match connect(&args.control_socket, "netatopd control socket") {
            Ok(s) => Ok(Source::Control(s, args.control_socket.clone())),
            Err(e) => match need_control {
                Some(what) => Err(format!("{e}; {what} needs netatopd's control socket")),
                None => connect(&args.socket, "netatop service")
                    .map(|s| Source::Atop(s, args.socket.clone()))
                    .map_err(|atop| format!("{atop}; and {e}")),
            },
        }
    }

    /// One control request; an error response becomes the error.
    fn call(&mut self, req: &Request) -> Result<Response, String> {
        let Source::Control(stream, path) = self else {
            unreachable!("control requests go to the control socket");
        };
        let path = path.display();
        match control::call(stream, req) {
            Ok(Response::Error(why)) => Err(format!("netatopd on {path} refused: {why}")),
            Ok(resp) => Ok(resp),
            Err(ControlError::Version { theirs }) => Err(format!(
                "netatopd on {path} speaks control protocol version {theirs}, this netatopctl {}: \
                 use the netatopctl of the same release",
                control::VERSION
            )),
            Err(e) => Err(format!("control request to {path} failed: {e}")),
        }
    }

    /// Every process, as the source can tell.
    pub fn processes(&mut self, threads: bool, exited: bool) -> Result<Vec<Process>, String> {
        match self {
            Source::Control(..) => match self.call(&Request::Processes { threads, exited })? {
                Response::Processes(p) => Ok(p),
                other => Err(format!("unexpected response {other:?}")),
            },
            Source::Atop(stream, path) => {
                let path = path.display();
                let recs = query(stream, ReadMode::Reassemble).map_err(|e| match e {
                    QueryError::Closed => {
                        format!("the service on {path} closed the connection mid-response")
                    }
                    e => format!("query to {path} failed: {e}"),
                })?;
                // A process that exited may come twice: live, then final.
                Ok(merge(
                    recs.iter()
                        .map(|r| Process {
                            pid: r.id,
                            btime: r.btime,
                            command: r.command_str(),
                            counters: r.counters,
                            exited: false,
                            threads: Vec::new(),
                        })
                        .collect(),
                ))
            }
        }
    }
}

/// One entry per process (pid and start time): a process listed both live
/// and with its final totals (it exited while the response was built)
/// keeps the larger counters and the exited mark.
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
pub fn output(res: io::Result<()>) -> Result<(), String> {
    match res {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| format!("cannot write output: {e}")),
    }
}

fn run(args: &Args) -> Result<(), String> {
    match &args.command {
        Command::Dump(o) => dump::run(args, o),
        Command::Top(o) => top::run(args, o),
        Command::Stats { json } => stats::run(args, *json),
        Command::Export(o) => export::run(args, o),
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
    let args: Args = netatopd::version::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netatopctl: {e}");
            ExitCode::FAILURE
        }
    }
}
