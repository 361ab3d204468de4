//! netatopd's command line.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use netatopd_bpf::{MapSizes, DEFAULT_PIN_DIR};

/// The largest --max-threads, --max-processes and --max-pending-exits:
/// Linux's own limit on process ids (PID_MAX_LIMIT on 64-bit), which no
/// host can have more threads than.
pub const MAX_TASKS: i64 = 4_194_304;
/// The largest --max-cgroups and --max-removed-cgroups.
pub const MAX_CGROUPS: i64 = 1_048_576;
/// The largest --max-clients and --max-clients-per-user (the descriptor
/// limit may allow fewer: then --max-clients is refused at start).
const MAX_CLIENTS: usize = 1 << 20;
/// The largest --max-pending-output: 1 GiB.
const MAX_PENDING_OUTPUT: usize = 1 << 30;
/// The longest --exit-grace, --idle-timeout and --client-timeout: a day.
const MAX_SECONDS: f64 = 86_400.0;
/// The shortest --idle-timeout and --client-timeout.
const MIN_TIMEOUT: f64 = 0.1;

#[derive(Parser, Debug)]
#[command(
    name = "netatopd",
    version,
    about = "Per-process TCP/UDP accounting in eBPF, served to atop -K"
)]
pub struct Args {
    /// Unix socket atop connects to.
    #[arg(long, value_name = "PATH", default_value = netatop_protocol::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Unix socket of the control protocol (netatopctl): per-thread records,
    /// exited processes, statistics. Same permissions as --socket.
    #[arg(long, value_name = "PATH", default_value = netatop_protocol::control::DEFAULT_CONTROL_SOCKET)]
    pub control_socket: PathBuf,
    /// Permissions of the sockets, octal. The default lets only root read the
    /// counters; 0660 with --socket-group lets a group in. Whoever can
    /// connect sees the network traffic volumes of every process.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Group owning the sockets: a number, or a name in /etc/group (looked up
    /// there only), e.g. for --socket-mode 0660.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// bpffs directory where the programs and maps are pinned, so counting
    /// goes on while netatopd is down and a restarted netatopd adopts them.
    /// bpffs is mounted on /sys/fs/bpf if it is not.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// On SIGTERM/SIGINT, leave the programs counting (pinned) for the next
    /// netatopd, e.g. across an upgrade. Without it a clean stop unloads them.
    #[arg(long)]
    pub keep_counting: bool,
    /// Remove every pinned program and map (stopping the counting left by
    /// --keep-counting or by a crash) and exit. Of the other options only
    /// --pin-dir and --pid-file matter then.
    #[arg(long)]
    pub unload: bool,
    /// Lock file holding the pid of the running netatopd: a second instance
    /// with the same file refuses to start.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/netatopd/netatopd.pid"
    )]
    pub pid_file: PathBuf,
    /// Run in the foreground with timestamped logs on stderr (without it,
    /// log lines carry syslog priority prefixes for the journal).
    #[arg(long)]
    pub foreground: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Seconds after a process exits during which a newly connected client
    /// still gets its final totals.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0,
          value_parser = seconds(0.0, MAX_SECONDS))]
    pub exit_grace: f64,
    /// Exited-process records kept for clients; beyond it the oldest go.
    #[arg(long, value_name = "N", default_value_t = 65536,
          value_parser = count(1, MAX_TASKS as usize))]
    pub max_exited: usize,
    /// Clients served at once; connections beyond it are closed at once.
    /// Default 4096, lowered (with a warning) to what the descriptor limit
    /// allows; a number given here that the limit cannot meet is refused.
    #[arg(long, value_name = "N", value_parser = count(1, MAX_CLIENTS))]
    pub max_clients: Option<usize>,
    /// Connections one user other than root may hold at once (both sockets
    /// together). Root's connections are never limited this way, and the
    /// last 16 slots of --max-clients (half, below 32) are kept for root.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = count(1, MAX_CLIENTS))]
    pub max_clients_per_user: usize,
    /// Seconds a connection of a user other than root may stay without
    /// sending a whole request or taking a response before it is closed
    /// (root's are never closed for idleness: atop's daily logger asks
    /// every 10 minutes).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0,
          value_parser = seconds(MIN_TIMEOUT, MAX_SECONDS))]
    pub idle_timeout: f64,
    /// Bytes of responses a client may leave unread before netatopd stops
    /// reading its requests (one response is always sent whole; about 1 MB
    /// at 10,000 processes).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20,
          value_parser = count(1, MAX_PENDING_OUTPUT))]
    pub max_pending_output: usize,
    /// Bytes of responses the clients of users other than root may leave
    /// unread all together; beyond it none of their requests is read until
    /// they take some (root's are never held back).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20,
          value_parser = count(1, MAX_PENDING_OUTPUT))]
    pub max_unprivileged_output: usize,
    /// Seconds a client may take to read what it was sent: output it leaves
    /// unread this long (taking nothing, or a trickle) disconnects it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0,
          value_parser = seconds(MIN_TIMEOUT, MAX_SECONDS))]
    pub client_timeout: f64,
    /// Kernel map size: threads counted at once, where their counters are
    /// kept in a hash map (--thread-counters hash-map; task storage has no
    /// size). With --attach kprobe, also the calls in flight at once.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().threads,
          value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS))]
    pub max_threads: u32,
    /// Kernel map size: processes counted at once.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().procs,
          value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS))]
    pub max_processes: u32,
    /// The most processes of one user other than root counted at once
    /// (entries of the process map), so that no one user can fill it and
    /// leave everyone else uncounted. Default: a quarter of
    /// --max-processes; --max-processes or more: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS))]
    pub max_processes_per_user: Option<u32>,
    /// Kernel map size: exited processes awaiting collection (collected
    /// within 100 ms of their exit). Default: --max-processes, so that even
    /// every counted process exiting at once fits.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=MAX_TASKS))]
    pub max_pending_exits: Option<u32>,
    /// Kernel map size: cgroups whose exited processes' totals are kept
    /// (a cgroup's total is these and its live processes').
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().cgroups,
          value_parser = clap::value_parser!(u32).range(1..=MAX_CGROUPS))]
    pub max_cgroups: u32,
    /// Kernel map size: removed cgroups' final totals awaiting collection
    /// (collected within a second of their removal).
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().removed_cgroups,
          value_parser = clap::value_parser!(u32).range(1..=MAX_CGROUPS))]
    pub max_removed_cgroups: u32,
    /// How the send and receive calls are hooked: tracepoint (BTF raw
    /// tracepoints, Linux 6.3+), fexit (BPF trampolines on the inet socket
    /// operations), kprobe (kprobes on them), or auto: the first of these
    /// the kernel takes.
    #[arg(long, value_name = "WAY", default_value = "auto", value_parser = parse_attach)]
    pub attach: Auto<netatopd_bpf::Mode>,
    /// How snapshots are taken: task-iterator (one pass, streamed; Linux
    /// 6.7+), map-walk (three passes over the maps, each read whole), or
    /// auto: the first the kernel has.
    #[arg(long, value_name = "WAY", default_value = "auto", value_parser = parse_snapshot)]
    pub snapshot: Auto<netatopd_bpf::SnapshotMethod>,
    /// Where each thread's counters live: task-storage (the thread's
    /// task-local storage, Linux 5.13+: no capacity, nothing to size),
    /// hash-map (a map of --max-threads entries), or auto: task-storage
    /// where the kernel has it.
    #[arg(long, value_name = "WAY", default_value = "auto", value_parser = parse_threads)]
    pub thread_counters: Auto<netatopd_bpf::ThreadStore>,
    /// What a packet and a byte are: calls (socket calls and their payload,
    /// as netatop-bpf counts) or wire (IP packets and their bytes, headers
    /// included, as the interfaces carry them, each counted to the process
    /// that owns its socket; Linux 5.11+, tracepoint or fexit way).
    #[arg(long, value_name = "WHAT", default_value = "calls", value_parser = parse_count)]
    pub count: netatopd_bpf::Count,
    /// Print a completion script for SHELL on standard output and exit.
    #[arg(long, value_name = "SHELL")]
    pub completions: Option<clap_complete::Shell>,
}

/// Logs on stderr: timestamped in the foreground, else with syslog
/// priority prefixes for the journal.
pub fn init_logging(args: &Args) {
    let level = match args.verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut b = env_logger::Builder::new();
    b.filter_level(level).parse_default_env();
    if !args.foreground {
        b.format(|buf, rec| {
            let prio = match rec.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}", rec.args())
        });
    }
    b.init();
}

/// A whole number from `lo` to `hi`.
fn count(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s| match s.parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {lo} to {hi}")),
    }
}

/// A number of seconds from `lo` to `hi` (fractions allowed).
fn seconds(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |s| match s.parse::<f64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("must be a number of seconds from {lo} to {hi}")),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode such as 0600 or 0660")),
    }
}

/// A choice that may be left to netatopd ("auto": None).
#[derive(Debug, Clone, Copy)]
pub struct Auto<T>(pub Option<T>);

/// `auto`, or one of `names` as `from_name` reads it.
fn parse_auto<T>(
    s: &str,
    from_name: impl Fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<Auto<T>, String> {
    if s == "auto" {
        return Ok(Auto(None));
    }
    from_name(s)
        .map(|m| Auto(Some(m)))
        .ok_or_else(|| format!("{s:?} is not auto, {}", names.join(", ")))
}

fn parse_attach(s: &str) -> Result<Auto<netatopd_bpf::Mode>, String> {
    use netatopd_bpf::Mode;
    let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
    parse_auto(s, Mode::from_name, &names)
}

fn parse_snapshot(s: &str) -> Result<Auto<netatopd_bpf::SnapshotMethod>, String> {
    use netatopd_bpf::SnapshotMethod;
    let names: Vec<&str> = SnapshotMethod::ALL.iter().map(|m| m.name()).collect();
    parse_auto(s, SnapshotMethod::from_name, &names)
}

fn parse_threads(s: &str) -> Result<Auto<netatopd_bpf::ThreadStore>, String> {
    use netatopd_bpf::ThreadStore;
    let names: Vec<&str> = ThreadStore::ALL.iter().map(|m| m.name()).collect();
    parse_auto(s, ThreadStore::from_name, &names)
}

fn parse_count(s: &str) -> Result<netatopd_bpf::Count, String> {
    use netatopd_bpf::Count;
    Count::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Count::ALL.iter().map(|c| c.name()).collect();
        format!("{s:?} is not {}", names.join(" or "))
    })
}
