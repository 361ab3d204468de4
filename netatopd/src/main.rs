//! netatopd: answers atop (`-K`) on the netatop-bpf socket with per-process
//! TCP/UDP counters gathered by BPF programs.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};
use log::{info, warn};
use netatopd::collect::Collector;
use netatopd::exits::ExitLog;
use netatopd::server::{stop_signals, Config, Server};
use netatopd_bpf::{MapSizes, Pinned, Tracer, DEFAULT_PIN_DIR};
use sd_notify::NotifyState;

mod lock;
use lock::PidFile;

#[derive(Parser, Debug)]
#[command(
    name = "netatopd",
    version,
    about = "Per-process TCP/UDP accounting in eBPF, served to atop -K"
)]
struct Args {
    /// Unix socket atop connects to.
    #[arg(long, value_name = "PATH", default_value = netatop_protocol::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Unix socket of the control protocol (netatopctl): per-thread records,
    /// exited processes, statistics. Same permissions as --socket.
    #[arg(long, value_name = "PATH", default_value = netatop_protocol::control::DEFAULT_CONTROL_SOCKET)]
    control_socket: PathBuf,
    /// Permissions of the sockets, octal. The default lets only root read the
    /// counters; 0660 with --socket-group lets a group in. Whoever can
    /// connect sees the network traffic volumes of every process.
    #[arg(long, value_name = "MODE", default_value = "0600", value_parser = parse_mode)]
    socket_mode: u32,
    /// Group owning the sockets (name or number), e.g. for --socket-mode 0660.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,
    /// bpffs directory where the programs and maps are pinned, so counting
    /// goes on while netatopd is down and a restarted netatopd adopts them.
    /// bpffs is mounted on /sys/fs/bpf if it is not.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// On SIGTERM/SIGINT, leave the programs counting (pinned) for the next
    /// netatopd, e.g. across an upgrade. Without it a clean stop unloads them.
    #[arg(long)]
    keep_counting: bool,
    /// Remove every pinned program and map (stopping the counting left by
    /// --keep-counting or by a crash) and exit.
    #[arg(long, conflicts_with = "keep_counting")]
    unload: bool,
    /// Lock file holding the pid of the running netatopd: a second instance
    /// with the same file refuses to start.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/netatopd/netatopd.pid"
    )]
    pid_file: PathBuf,
    /// Run in the foreground with timestamped logs on stderr (without it,
    /// log lines carry syslog priority prefixes for the journal).
    #[arg(long)]
    foreground: bool,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Seconds after a process exits during which a newly connected client
    /// still gets its final totals.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    exit_grace: f64,
    /// Exited-process records kept for clients; beyond it the oldest go.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    max_exited: usize,
    /// Clients served at once; connections beyond it are closed at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_clients: usize,
    /// Bytes of responses a client may leave unread before netatopd stops
    /// reading its requests (one response is always sent whole; about 1 MB
    /// at 10,000 processes).
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 20)]
    max_pending_output: usize,
    /// Seconds a client may leave its pending response unread before it is
    /// disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    client_timeout: f64,
    /// Kernel map size: threads counted at once.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().threads)]
    max_threads: u32,
    /// Kernel map size: processes counted at once.
    #[arg(long, value_name = "N", default_value_t = MapSizes::default().procs)]
    max_processes: u32,
    /// Kernel map size: exited processes awaiting collection (collected
    /// within 100 ms of their exit). Default: --max-processes, so that even
    /// every counted process exiting at once fits.
    #[arg(long, value_name = "N")]
    max_pending_exits: Option<u32>,
    /// Print a completion script for SHELL on standard output and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
}

fn init_logging(args: &Args) {
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

/// Refuses a live socket; removes a stale one left by a crashed service.
fn claim_socket(path: &Path) -> Result<()> {
    match UnixStream::connect(path) {
        Ok(_) => bail!(
            "another netatop service is already answering on {}: stop it first, or give this one \
             another --socket",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            let meta = fs::symlink_metadata(path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            if !meta.file_type().is_socket() {
                bail!(
                    "{} exists and is not a socket: remove it or choose another --socket",
                    path.display()
                );
            }
            info!("removing stale socket {}", path.display());
            fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot check socket {}", path.display())),
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s.trim_start_matches("0o"), 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode such as 0600 or 0660")),
    }
}

fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => bail!("--socket-group: no group named {group:?}"),
        Err(e) => Err(e).with_context(|| format!("cannot look up group {group:?}")),
    }
}

/// Binds the socket, created 0600 (only root), then gives it its group and
/// the requested mode, in that order, so it is never wider than asked.
fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<UnixListener> {
    // SAFETY: umask only swaps the process's file-creation mask; no other
    // thread creates files while the daemon starts.
    let old = unsafe { libc::umask(0o177) };
    let res = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = res.with_context(|| format!("cannot listen on {}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
    if mode & 0o006 != 0 {
        warn!(
            "socket {} is mode {mode:04o}: every local user can read the traffic volumes of every process",
            path.display()
        );
    }
    Ok(listener)
}

/// Binds the control socket, creating its directory if needed.
fn bind_control(args: &Args, gid: Option<u32>) -> Result<UnixListener> {
    if let Some(dir) = args
        .control_socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    bind(&args.control_socket, args.socket_mode, gid)
}

/// Descriptors the daemon needs beside its clients (maps, programs, links,
/// listener, epoll, signal pipe, logs), with room to spare.
const OWN_FDS: u64 = 64;

/// Raises the soft descriptor limit so that `max_clients` can connect,
/// and as far as the hard limit allows, so that each can also hold the
/// kernel snapshot being streamed to it (one descriptor more). Returns how
/// many snapshots may be streamed at once; beyond that they are built
/// whole, with a descriptor from the daemon's own allowance.
fn raise_fd_limit(max_clients: usize) -> Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error()).context("cannot read the descriptor limit");
    }
    let need = max_clients as u64 + OWN_FDS;
    if lim.rlim_max < need {
        bail!(
            "--max-clients {max_clients} needs {need} file descriptors but the hard limit is {}: \
             lower --max-clients or raise LimitNOFILE",
            lim.rlim_max
        );
    }
    let want = (need + max_clients as u64).min(lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: `lim` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error()).context("cannot raise the descriptor limit");
        }
    }
    Ok((lim.rlim_cur.saturating_sub(need) as usize).min(max_clients))
}

/// The inode number of the initial pid namespace (PROC_PID_INIT_INO),
/// the same on every Linux.
const INITIAL_PID_NS: u64 = 0xEFFF_FFFC;

/// A snapshot walks the tasks of netatopd's own pid namespace (and those
/// below it), and records carry pids as the host sees them: in a container
/// with a pid namespace of its own, atop there would see neither the
/// host's processes nor its own pids.
fn warn_if_in_a_pid_namespace() {
    if let Ok(m) = fs::metadata("/proc/self/ns/pid") {
        if m.ino() != INITIAL_PID_NS {
            warn!(
                "netatopd runs in a pid namespace of its own (a container without the host's \
                 pid namespace?): it reports only the processes of this namespace, by their \
                 host pids; run it in the host's pid namespace"
            );
        }
    }
}

/// `--unload`: removes the pinned state, unless a netatopd is using it.
fn unload(args: &Args) -> Result<()> {
    let _lock = PidFile::lock(&args.pid_file)?;
    let n = netatopd_bpf::remove_pins(&args.pin_dir)
        .with_context(|| format!("cannot unpin {}", args.pin_dir.display()))?;
    if n == 0 {
        info!("nothing pinned under {}", args.pin_dir.display());
    } else {
        info!(
            "removed {n} pinned objects under {}: counting stopped",
            args.pin_dir.display()
        );
    }
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    netatopd_bpf::check_kernel()?;
    if args.unload {
        return unload(args);
    }
    for (name, v) in [
        ("--exit-grace", args.exit_grace),
        ("--client-timeout", args.client_timeout),
    ] {
        if !v.is_finite() || v < 0.0 {
            bail!("{name} must be a number of seconds >= 0");
        }
    }
    if args.max_clients == 0 {
        bail!("--max-clients must be at least 1");
    }
    let max_streams = raise_fd_limit(args.max_clients)?;
    let gid = args
        .socket_group
        .as_deref()
        .map(resolve_group)
        .transpose()?;
    // Before loading or binding anything: from here on, SIGTERM stops cleanly.
    let signals = stop_signals().context("cannot install signal handlers")?;
    netatopd_bpf::route_libbpf_logs();
    let pid_file = PidFile::lock(&args.pid_file)?;
    if args.control_socket == args.socket {
        bail!("--control-socket must differ from --socket");
    }
    claim_socket(&args.socket)?;
    claim_socket(&args.control_socket)?;
    let sizes = MapSizes {
        threads: args.max_threads,
        procs: args.max_processes,
        exited: args.max_pending_exits.unwrap_or(args.max_processes),
    };
    // Counting starts (or goes on) here, before anyone can connect.
    let (tracer, pinned) = Tracer::load(sizes, &args.pin_dir)?;
    // Loading parsed the kernel's BTF (megabytes, now freed): give that
    // memory back to the system instead of keeping it in the heap.
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
    let pin_dir = args.pin_dir.display();
    match &pinned {
        Pinned::Nothing => {}
        Pinned::Adopted => info!("adopted the programs and maps pinned under {pin_dir}: counting went on"),
        Pinned::ProgramsReplaced => info!(
            "adopted the maps pinned under {pin_dir}; replaced the programs of another netatopd build with this one's"
        ),
        Pinned::Discarded(why) => warn!(
            "discarded the state pinned under {pin_dir}, {why}: counters start from zero"
        ),
    }
    // A start that fails from here on removes what it pinned itself (and
    // leaves adopted state as it found it): nothing counts with nobody to ask.
    let created = matches!(pinned, Pinned::Nothing | Pinned::Discarded(_));
    let undo = |e: anyhow::Error| {
        if created {
            let _ = netatopd_bpf::remove_pins(&args.pin_dir);
        }
        e
    };
    let collector = Collector::new(tracer);
    // The control socket first: once the atop socket answers, both do.
    let control = bind_control(args, gid).map_err(undo)?;
    let ours_control = fs::metadata(&args.control_socket)
        .map(|m| (m.dev(), m.ino()))
        .ok();
    let listener = bind(&args.socket, args.socket_mode, gid).map_err(|e| {
        let _ = fs::remove_file(&args.control_socket);
        undo(e)
    })?;
    let ours = fs::metadata(&args.socket).map(|m| (m.dev(), m.ino())).ok();
    let exits = ExitLog::new((args.exit_grace * 1e9) as u64, args.max_exited);
    let mut server = Server::new(
        signals,
        listener,
        control,
        collector,
        exits,
        Config {
            tick: Duration::from_millis(100),
            housekeeping: Duration::from_secs(1),
            max_clients: args.max_clients,
            max_streams,
            client_timeout: Duration::from_secs_f64(args.client_timeout),
            max_pending_output: args.max_pending_output,
            pin_dir: pin_dir.to_string(),
            pinned: pinned.to_string(),
        },
    )
    .context("cannot start the event loop")
    .map_err(|e| {
        for path in [&args.socket, &args.control_socket] {
            let _ = fs::remove_file(path);
        }
        undo(e)
    })?;
    info!(
        "netatopd {} started: Linux {}, programs pinned under {pin_dir}, {}, socket {}, map sizes: {} threads, {} processes, {} pending exits",
        env!("CARGO_PKG_VERSION"),
        fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        server.tracer().extras(),
        args.socket.display(),
        sizes.threads,
        sizes.procs,
        sizes.exited
    );
    warn_if_in_a_pid_namespace();
    // Under systemd (Type=notify): ready means the socket answers.
    let status = format!("answering on {}", args.socket.display());
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]) {
        warn!("cannot tell the service manager that netatopd is ready: {e}");
    }
    let result = server.run();
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    // Remove the sockets only if they are still the ones this process bound.
    for (path, bound) in [(&args.socket, ours), (&args.control_socket, ours_control)] {
        if fs::metadata(path).map(|m| (m.dev(), m.ino())).ok() == bound {
            let _ = fs::remove_file(path);
        }
    }
    let tracer = server.tracer();
    if args.keep_counting {
        info!(
            "stopped; the programs keep counting, pinned under {pin_dir} (netatopd --unload removes them)"
        );
    } else {
        match tracer.unpin() {
            Ok(_) => info!("stopped; programs unloaded"),
            Err(e) => warn!("stopped, but cannot unpin {pin_dir} ({e}): run netatopd --unload"),
        }
    }
    drop(server); // closes the programs: they stop unless still pinned
    drop(pid_file);
    result.context("event loop failed")
}

fn main() -> ExitCode {
    let args: Args = netatopd::version::parse();
    if let Some(shell) = args.completions {
        clap_complete::generate(shell, &mut Args::command(), "netatopd", &mut io::stdout());
        return ExitCode::SUCCESS;
    }
    init_logging(&args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netatopd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
