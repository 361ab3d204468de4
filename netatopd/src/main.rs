//! netatopd: answers atop (`-K`) on the netatop-bpf socket with per-process
//! TCP/UDP counters gathered by BPF programs.
//!
//! This file starts the daemon in order (checks, pid file, sockets
//! claimed, programs loaded, sockets bound, event loop) and stops it in the
//! reverse order; each thing it creates is owned by a guard that undoes it
//! on every way out (`SocketFile`, `PidFile`, `Pins`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use log::{error, info, warn};
use netatopd::collect::Collector;
use netatopd::exits::ExitLog;
use netatopd::server::{stop_signals, Config, Server};
use netatopd_bpf::{Kernel, LoadOptions, MapSizes, Pinned, Tracer};
use sd_notify::NotifyState;

mod cli;
mod dirs;
mod group;
mod lock;
mod sockets;

use cli::Args;
use lock::PidFile;

/// Descriptors the daemon needs beside its clients (maps, programs, links,
/// listener, epoll, signal pipe, logs), with room to spare.
const OWN_FDS: u64 = 64;

/// Clients served at once unless --max-clients says otherwise.
const DEFAULT_MAX_CLIENTS: usize = 4096;

/// Raises the soft descriptor limit so that `max_clients` can connect,
/// and as far as the hard limit allows, so that each can also hold the
/// kernel snapshot being streamed to it (one descriptor more). Without
/// --max-clients, the default is lowered to what the hard limit allows,
/// with a warning. Returns the client limit and how many snapshots may be
/// streamed at once; beyond that they are built whole, with a descriptor
/// from the daemon's own allowance.
fn raise_fd_limit(asked: Option<usize>) -> Result<(usize, usize)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error()).context("cannot read the descriptor limit");
    }
    let fits = lim.rlim_max.saturating_sub(OWN_FDS) as usize;
    let max_clients = match asked {
        Some(n) if (n as u64).saturating_add(OWN_FDS) > lim.rlim_max => bail!(
            "--max-clients {n} needs {} file descriptors but the hard limit is {}: \
             lower --max-clients or raise LimitNOFILE",
            n as u64 + OWN_FDS,
            lim.rlim_max
        ),
        Some(n) => n,
        None if fits < DEFAULT_MAX_CLIENTS => {
            if fits == 0 {
                bail!(
                    "the hard limit of {} file descriptors leaves none for clients: raise it \
                     (LimitNOFILE, ulimit -Hn) to at least {}",
                    lim.rlim_max,
                    OWN_FDS + 1
                );
            }
            warn!(
                "serving at most {fits} clients at once, not {DEFAULT_MAX_CLIENTS}: the hard limit \
                 is {} file descriptors (raise LimitNOFILE or ulimit -Hn, or set --max-clients)",
                lim.rlim_max
            );
            fits
        }
        None => DEFAULT_MAX_CLIENTS,
    };
    let need = max_clients as u64 + OWN_FDS;
    let want = (need + max_clients as u64).min(lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: `lim` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error()).context("cannot raise the descriptor limit");
        }
    }
    let streams = (lim.rlim_cur.saturating_sub(need) as usize).min(max_clients);
    Ok((max_clients, streams))
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
/// The pid file's directory, if this run made it for its lock, goes too
/// (when empty: a netatopd that started meanwhile keeps it).
fn unload(args: &Args) -> Result<()> {
    let made = args
        .pid_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_owned);
    let res = unload_locked(args);
    if let Some(dir) = made {
        let _ = fs::remove_dir(dir);
    }
    res
}

/// `--unload` under the pid file's lock.
fn unload_locked(args: &Args) -> Result<()> {
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

/// The pinned programs and maps, removed when dropped while `remove` is
/// set: on a failed start, if this start pinned them (adopted state is
/// left as it was found); on a stop, unless --keep-counting.
struct Pins {
    dir: PathBuf,
    remove: bool,
}

impl Pins {
    /// Removes them now (a clean stop), saying so.
    fn unload(mut self) {
        self.remove = false;
        let dir = self.dir.display();
        match netatopd_bpf::remove_pins(&self.dir) {
            Ok(_) => info!("stopped; programs unloaded"),
            Err(e) => warn!("stopped, but cannot unpin {dir} ({e}): run netatopd --unload"),
        }
    }

    /// Leaves them counting (a stop with --keep-counting).
    fn keep(mut self) {
        self.remove = false;
        info!(
            "stopped; the programs keep counting, pinned under {} (netatopd --unload removes them)",
            self.dir.display()
        );
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        // A panic never costs what the kernel counted, however netatopd
        // started: the programs go on, and the next netatopd adopts them.
        if std::thread::panicking() {
            error!(
                "netatopd failed; the programs keep counting, pinned under {}: the next netatopd \
                 adopts them (netatopd --unload removes them)",
                self.dir.display()
            );
            return;
        }
        if self.remove {
            let _ = netatopd_bpf::remove_pins(&self.dir);
        }
    }
}

/// What the command line cannot check alone (each number's range it
/// checks as it parses).
fn check_options(args: &Args) -> Result<()> {
    if args.control_socket == args.socket {
        bail!("--control-socket must differ from --socket");
    }
    Ok(())
}

fn run(args: &Args) -> Result<()> {
    let kernel = Kernel::probe();
    kernel.check()?;
    if args.unload {
        return unload(args);
    }
    check_options(args)?;
    let (max_clients, max_streams) = raise_fd_limit(args.max_clients)?;
    let gid = args
        .socket_group
        .as_deref()
        .map(group::resolve_group)
        .transpose()?;
    // Before loading or binding anything: from here on, SIGTERM stops cleanly.
    let signals = stop_signals().context("cannot install signal handlers")?;
    netatopd_bpf::route_libbpf_logs();
    let pid_file = PidFile::lock(&args.pid_file)?;
    sockets::claim_socket(&args.socket)?;
    sockets::claim_socket(&args.control_socket)?;
    let sizes = MapSizes {
        threads: args.max_threads,
        procs: args.max_processes,
        exited: args.max_pending_exits.unwrap_or(args.max_processes),
        cgroups: args.max_cgroups,
        removed_cgroups: args.max_removed_cgroups,
        procs_per_user: args
            .max_processes_per_user
            .unwrap_or(args.max_processes / 4)
            .max(1),
    };
    let opts = LoadOptions {
        sizes,
        attach: args.attach.0,
        snapshot: args.snapshot.0,
        threads: args.thread_counters.0,
        count: args.count,
    };
    // Counting starts (or goes on) here, before anyone can connect.
    let (tracer, pinned) = Tracer::load_on(&kernel, &opts, &args.pin_dir)?;
    drop(kernel);
    let pins = Pins {
        dir: args.pin_dir.clone(),
        remove: matches!(pinned, Pinned::Nothing | Pinned::Discarded(_)),
    };
    // Loading parsed the kernel's BTF (megabytes, now freed): give that
    // memory back to the system instead of keeping it in the heap.
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
    // Responses built whole (about 96 bytes per process) are mapped and
    // unmapped as they come and go, instead of glibc raising this
    // threshold after the first one and keeping them in the heap.
    // SAFETY: mallopt only sets an allocator parameter; no allocation is
    // in flight on another thread.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
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
    // A map walk is read whole, one at a time: nothing is streamed.
    let max_streams = if tracer.snapshots_stream() {
        max_streams
    } else {
        0
    };
    let collector = Collector::new(tracer);
    // The control socket first: once the atop socket answers, both do.
    let (control, control_file) =
        sockets::bind_in_dir(&args.control_socket, args.socket_mode, gid)?;
    let (listener, socket_file) = sockets::bind(&args.socket, args.socket_mode, gid)?;
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
            max_clients,
            max_clients_per_user: args.max_clients_per_user,
            idle_timeout: Duration::from_secs_f64(args.idle_timeout),
            max_streams,
            client_timeout: Duration::from_secs_f64(args.client_timeout),
            max_pending_output: args.max_pending_output,
            max_unprivileged_output: args.max_unprivileged_output,
            pin_dir: pin_dir.to_string(),
            pinned: pinned.to_string(),
        },
    )
    .context("cannot start the event loop")?;
    let tracer = server.tracer();
    let loaded = tracer.map_sizes();
    let threads = match loaded.threads {
        0 => String::new(),
        n => format!("{n} threads, "),
    };
    info!(
        "netatopd {} started: Linux {}, attached as {}, programs pinned under {pin_dir}, socket {}, map sizes: {threads}{} processes, {} pending exits",
        env!("CARGO_PKG_VERSION"),
        netatopd_bpf::kernel::kernel_release(),
        tracer.attached(),
        args.socket.display(),
        loaded.procs,
        loaded.exited
    );
    warn_if_in_a_pid_namespace();
    // Under systemd (Type=notify): ready means the socket answers.
    let status = format!("answering on {}", args.socket.display());
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]) {
        warn!("cannot tell the service manager that netatopd is ready: {e}");
    }
    let result = server.run();
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    // Nobody connects to a stopping daemon: the sockets go first.
    drop((socket_file, control_file));
    if args.keep_counting {
        pins.keep();
    } else {
        pins.unload();
    }
    drop(server); // closes the programs: they stop unless still pinned
    drop(pid_file);
    result.context("event loop failed")
}

fn main() -> ExitCode {
    let args: Args = netatopd::version::parse(|| Some(netatopd_bpf::Features::probe().to_string()));
    if let Some(shell) = args.completions {
        clap_complete::generate(shell, &mut Args::command(), "netatopd", &mut io::stdout());
        return ExitCode::SUCCESS;
    }
    cli::init_logging(&args);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netatopd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
