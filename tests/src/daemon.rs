//! The daemon under test: netatopd started on private sockets, pid file
//! and pin directory, with the options a test gives and the ways the run
//! forces; restarted, stopped, killed, and cleaned up after.

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use netatop_protocol::NetPerTask;

use crate::cgroup2::{cgroup2_mount_points, unmount_in_new_namespace};
use crate::{
    bin, netatopctl, query_on, require_bpf_machine, scratch_dir, set_nofile, signal, wait_exit,
    wait_while_alive,
};

/// The way of attaching, of taking snapshots and of keeping threads'
/// counters every netatopd of this test run is forced to, from
/// NETATOPD_TEST_ATTACH (tracepoint, fexit, kprobe), NETATOPD_TEST_SNAPSHOT
/// (task-iterator, map-walk) and NETATOPD_TEST_THREADS (task-storage,
/// hash-map); unset: netatopd's own choice. `make test` runs the counting
/// suites again with the fallbacks.
pub fn forced_ways() -> Vec<String> {
    let mut args = Vec::new();
    for (var, opt) in [
        ("NETATOPD_TEST_ATTACH", "--attach"),
        ("NETATOPD_TEST_SNAPSHOT", "--snapshot"),
        ("NETATOPD_TEST_THREADS", "--thread-counters"),
    ] {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            args.push(opt.to_owned());
            args.push(v);
        }
    }
    args
}

/// netatopd's bpffs pin directory for a test using scratch directory `dir`.
pub fn pin_dir_for(dir: &Path) -> PathBuf {
    Path::new("/sys/fs/bpf").join(dir.file_name().expect("a scratch directory"))
}

/// Options that give a netatopd its own files for a test: the atop socket
/// `socket`, and under `dir` its control socket, pid file, and a pin
/// directory named after `dir`.
pub fn private_args(dir: &Path, socket: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "--socket".into(),
        socket.into(),
        "--control-socket".into(),
        dir.join("control.sock").into(),
        "--pid-file".into(),
        dir.join("netatopd.pid").into(),
        "--pin-dir".into(),
        pin_dir_for(dir).into(),
    ]
}

/// A running netatopd; stopped (SIGTERM) and reaped when dropped, and
/// whatever it left pinned removed.
pub struct Daemon {
    child: Option<Child>,
    /// Its atop socket.
    pub socket: PathBuf,
    /// Its private bpffs pin directory.
    pub pin_dir: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    /// The descriptor limit it starts with (soft, hard), if not inherited.
    nofile: Option<(u64, u64)>,
    /// It starts in a mount namespace of its own without cgroup2 mounts.
    without_cgroup2: bool,
    /// Variables added to its environment.
    env: Vec<(String, String)>,
}

/// How to start a [`Daemon`]: `Daemon::builder()`, its settings, `start()`.
/// By default netatopd runs with no extra options, in a fresh scratch
/// directory, on the socket `netatop.sock` there, with the descriptor
/// limit of this process.
#[derive(Default)]
pub struct DaemonBuilder {
    extra: Vec<String>,
    dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    nofile: Option<(u64, u64)>,
    without_cgroup2: bool,
    env: Vec<(String, String)>,
}

impl DaemonBuilder {
    /// Adds options to netatopd's command line (after its private paths).
    pub fn args(mut self, extra: &[&str]) -> Self {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// Its atop socket, instead of `netatop.sock` in its directory.
    pub fn socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.socket = Some(socket.into());
        self
    }

    /// Its directory (control socket, pid file, log; the pin directory is
    /// named after it), instead of a fresh scratch directory. It is removed
    /// when the daemon is dropped.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Both sockets open to every user (`--socket-mode 0666`), in a fresh
    /// scratch directory every user may pass through.
    pub fn open_to_all(mut self) -> Self {
        let dir = scratch_dir();
        fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("opening the scratch directory");
        self.dir = Some(dir);
        self.args(&["--socket-mode", "0666"])
    }

    /// The descriptor limit (soft, hard) it starts with, instead of this
    /// process's.
    pub fn nofile(mut self, soft: u64, hard: u64) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// It starts in a mount namespace of its own, in which no cgroup2 is
    /// mounted (as on a system without cgroup v2 mounted).
    pub fn without_cgroup2(mut self) -> Self {
        self.without_cgroup2 = true;
        self
    }

    /// Starts netatopd and waits until it answers on its socket.
    /// Adds `key=value` to its environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn start(self) -> Daemon {
        require_bpf_machine();
        let dir = self.dir.unwrap_or_else(scratch_dir);
        let socket = self.socket.unwrap_or_else(|| dir.join("netatop.sock"));
        let mut d = Daemon {
            child: None,
            log: dir.join("netatopd.log"),
            socket,
            pin_dir: pin_dir_for(&dir),
            dir,
            extra: self.extra,
            nofile: self.nofile,
            without_cgroup2: self.without_cgroup2,
            env: self.env,
        };
        d.restart();
        d
    }
}

impl Daemon {
    /// A builder, for a daemon on another socket, in another directory or
    /// with another descriptor limit.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// Starts netatopd with options `extra` on a private socket and waits
    /// until it answers: `Daemon::builder().args(extra).start()`.
    pub fn start(extra: &[&str]) -> Daemon {
        Self::builder().args(extra).start()
    }

    /// Runs this daemon's command again (after `stop` or `kill9`), with
    /// the same socket, pin directory and options; waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "netatopd is still running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the daemon log");
        let mut cmd = self.command();
        if let Some((soft, hard)) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: set_nofile only calls setrlimit, which is
            // async-signal-safe, on values copied into the closure.
            unsafe { cmd.pre_exec(move || set_nofile(soft, hard)) };
        }
        if self.without_cgroup2 {
            use std::os::unix::process::CommandExt;
            let points = cgroup2_mount_points();
            // SAFETY: the closure only makes syscalls (unshare, mount,
            // umount2) on C strings built before the fork.
            unsafe { cmd.pre_exec(move || unmount_in_new_namespace(&points)) };
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting netatopd");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Like `restart`, with the options `extra` instead of the ones it had.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// netatopd with this daemon's socket, pin directory, pid file and
    /// options (a way a test gives itself wins over the one the run forces).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("netatopd"));
        cmd.arg("--foreground")
            .arg("-v")
            .args(private_args(&self.dir, &self.socket));
        for pair in forced_ways().chunks(2) {
            if !self.extra.contains(&pair[0]) {
                cmd.args(pair);
            }
        }
        cmd.args(&self.extra);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// netatopctl pointed at this daemon's sockets.
    pub fn ctl(&self) -> Command {
        netatopctl(&self.socket, &self.control_socket())
    }

    /// Its control socket (netatopctl's).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Its pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("netatopd.pid")
    }

    /// Waits (up to 20 s) for the daemon to exit by itself, and returns
    /// its exit status.
    pub fn exit_status(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        wait_exit(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netatopd did not exit within 20 s:\n{}", self.log())
        })
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon not running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    fn wait_ready(&mut self) {
        // The socket is bound only after the programs are attached. A
        // killed daemon's socket file refuses connections until then.
        let socket = self.socket.clone();
        let log = self.log.clone();
        wait_while_alive(
            self.child.as_mut().unwrap(),
            Duration::from_secs(60),
            "waiting for netatopd to answer",
            || UnixStream::connect(&socket).is_ok(),
            || fs::read_to_string(&log).unwrap_or_default(),
        );
    }

    /// Its process id (it must be running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new connection to its atop socket.
    pub fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.socket).expect("connecting to netatopd")
    }

    /// One query on a new connection, every record read as atop reads it.
    pub fn query(&self) -> Vec<NetPerTask> {
        query_on(&mut self.connect())
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        signal(child.id(), libc::SIGTERM);
        wait_exit(&mut child, Duration::from_secs(20)).unwrap_or_else(|| {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            panic!(
                "netatopd ignored SIGTERM for 20 s ({status}):\n{}",
                self.log()
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            if !std::thread::panicking() {
                assert!(
                    status.success(),
                    "netatopd exited with {status}:\n{}",
                    self.log()
                );
            }
        }
        // After a kill -9 or --keep-counting: stop the pinned programs.
        let _ = netatopd_bpf::remove_pins(&self.pin_dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
