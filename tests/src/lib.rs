//! Harness for netatopd's integration tests: starts the real daemon, runs
//! the traffic generator, reads counters the way atop does, and looks into
//! the daemon's kernel maps.
//!
//! These tests need root and a kernel with BTF. They never skip: on a
//! machine that cannot load BPF they fail, saying why.

pub mod netns;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libbpf_rs::MapCore;
use netatop_protocol::{query, read_response, Counters, NetPerTask, ReadMode};
use serde::Deserialize;
use serde_json::Value;

/// A binary of this workspace: beside the running executable (a binary
/// such as netatop-bench) or one directory up (a test in target/*/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the executable's directory");
    let path = [dir.join(name), dir.parent().unwrap_or(dir).join(name)]
        .into_iter()
        .find(|p| p.exists());
    path.unwrap_or_else(|| {
        panic!(
            "{name} is missing beside {}: build the binaries first (`cargo build --workspace --bins`; \
             `make test` does)",
            exe.display()
        )
    })
}

/// Another integration test of this crate, built beside the running one
/// (target/*/deps/NAME-HASH; `cargo test` builds every test before it
/// runs any): the newest such executable.
pub fn test_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test's directory");
    let prefix = format!("{name}-");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(deps)
        .expect("the deps directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_none()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no test binary {name}-* in {}", deps.display()))
        .1
}

/// Fails loudly where BPF cannot run: these tests must not pass by skipping.
pub fn require_bpf_machine() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "netatopd's integration tests load BPF programs and must run as root"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "this kernel has no BTF (/sys/kernel/btf/vmlinux): the tests need Linux >= 6.7 with BTF"
    );
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory for one test.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "netatopd-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// netatopd's systemd unit, as shipped in the repository.
pub fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../netatopd/systemd/netatopd.service")
}

/// Runs `cmd` to its end with its output captured; fails if it cannot run.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, asserts that it succeeded and returns its standard output.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `cmd` (e.g. `netatopctl ... --json`), asserts that it succeeded and
/// parses its standard output as JSON.
pub fn json(cmd: &mut Command) -> Value {
    serde_json::from_str(&ok(cmd)).expect("JSON output")
}

/// The eight counters of a row of netatopctl's JSON output.
pub fn json_counters(v: &Value) -> Counters {
    serde_json::from_value(v.clone()).expect("the eight counters")
}

/// Runs `cmd`, asserts that it failed and returns its standard error.
pub fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(!out.status.success(), "{cmd:?} did not fail: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cmd`, asserts that it exited with status 1 and said why in one
/// line on standard error, and returns that line.
pub fn one_line_error(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(1), "exit status of {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got {err:?}"
    );
    err
}

/// netatopctl pointed at the atop socket `socket` and the control socket
/// `control_socket`.
pub fn netatopctl(socket: &Path, control_socket: &Path) -> Command {
    let mut cmd = Command::new(bin("netatopctl"));
    cmd.arg("--socket")
        .arg(socket)
        .arg("--control-socket")
        .arg(control_socket);
    cmd
}

/// Sends signal `sig` to process `pid` (one of the test's own children).
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the callers
    // signal their own children, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sets the descriptor limit (soft, hard) of the calling process. Safe to
/// call between fork and exec: it neither allocates nor locks.
pub fn set_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit for the call's duration.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Polls `ready` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !ready() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `ready` every few milliseconds until it holds, failing with
/// `log()` if `child` exits first or `limit` passes.
pub fn wait_while_alive(
    child: &mut Child,
    limit: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let end = Instant::now() + limit;
    while !ready() {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("{what}: it exited ({status}) first:\n{}", log());
        }
        assert!(
            Instant::now() < end,
            "{what}: not within {limit:?}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

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

    /// Ids of the daemon's kernel maps, by name.
    pub fn map_ids(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let fdinfo = format!("/proc/{}/fdinfo", self.pid());
        for entry in fs::read_dir(&fdinfo).expect("reading the daemon's fdinfo") {
            let Ok(text) = fs::read_to_string(entry.expect("fdinfo entry").path()) else {
                continue;
            };
            let Some(id) = text
                .lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(map) = libbpf_rs::MapHandle::from_map_id(id) {
                out.push((map.name().to_string_lossy().into_owned(), id));
            }
        }
        out
    }

    /// Keys of one of the daemon's kernel maps (`threads`, `procs`, `exited`).
    pub fn map_keys(&self, name: &str) -> Vec<Vec<u8>> {
        let (_, id) = self
            .map_ids()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("netatopd has no map named {name}"));
        let map = libbpf_rs::MapHandle::from_map_id(id).expect("opening the map");
        map.keys().collect()
    }

    /// Whether thread `tid` of process `tgid` has counters in the kernel:
    /// in its task-local storage or in the threads map, whichever this
    /// netatopd uses (a thread that is gone has no storage: it went with
    /// the thread; a reused tid of another process does not count).
    pub fn thread_counted(&self, tid: i32, tgid: i32) -> bool {
        self.threads_counted(&[(tid, tgid)]) == 1
    }

    /// How many of the threads (tid, tgid) have counters in the kernel
    /// (see [`Daemon::thread_counted`]).
    pub fn threads_counted(&self, threads: &[(i32, i32)]) -> usize {
        let ids = self.map_ids();
        let name = if ids.iter().any(|(n, _)| n == "tstore") {
            "tstore"
        } else {
            "threads"
        };
        let (_, id) = ids
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("netatopd has no map named {name}"));
        let map = libbpf_rs::MapHandle::from_map_id(id).expect("opening the map");
        // struct thread_val: the eight counters, then the tgid.
        threads
            .iter()
            .filter(|(tid, tgid)| {
                thread_value(&map, *tid).is_some_and(|v| v[64..68] == tgid.to_ne_bytes())
            })
            .count()
    }

    /// Whether a map has an entry whose key starts with the u32 `id` (a tid
    /// in `threads`, a tgid in `procs` and `exited`).
    pub fn map_has(&self, name: &str, id: u32) -> bool {
        self.map_keys(name)
            .iter()
            .any(|k| k.len() >= 4 && u32::from_ne_bytes(k[..4].try_into().unwrap()) == id)
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

/// Thread `tid`'s value (struct thread_val) in a map of netatopd's threads'
/// counters: a hash map keyed by tid, or task storage, looked up through a
/// pidfd of the thread (a thread that is gone has none). An entry whose
/// thread has exited (`linked` 0) counts as none.
pub fn thread_value(map: &libbpf_rs::MapHandle, tid: i32) -> Option<Vec<u8>> {
    use libbpf_rs::{MapCore, MapFlags, MapType};
    let value = if map.map_type() == MapType::TaskStorage {
        // SAFETY: pidfd_open takes a pid and flags, and returns a new
        // descriptor or -1.
        let open = |flags: libc::c_uint| unsafe { libc::syscall(libc::SYS_pidfd_open, tid, flags) };
        // A thread's own pidfd (Linux 6.9); before, a process's only.
        let mut fd = open(libc::PIDFD_THREAD);
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            fd = open(0);
        }
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::ESRCH),
                "pidfd_open({tid}): {err} (a thread's pidfd needs Linux 6.9)"
            );
            return None;
        }
        // SAFETY: a new descriptor that this function owns.
        let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        map.lookup(&pidfd.as_raw_fd().to_ne_bytes(), MapFlags::ANY)
    } else {
        map.lookup(&(tid as u32).to_ne_bytes(), MapFlags::ANY)
    };
    value
        .expect("looking up a thread's counters")
        .filter(|v| v[v.len() - 4..] != [0, 0, 0, 0])
}

/// One query on an open connection, read as atop reads it (one recv of 96
/// bytes per record; a short read fails the test).
pub fn query_on(stream: &mut UnixStream) -> Vec<NetPerTask> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    query(stream, ReadMode::AsAtop).expect("query as atop reads")
}

/// The next whole response on `stream` (to a request already sent), read
/// as atop reads it, waiting up to 30 s.
pub fn response_on(stream: &mut UnixStream) -> Vec<NetPerTask> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    read_response(stream, ReadMode::AsAtop).expect("a whole response")
}

/// The uid and gid of `nobody`.
pub const NOBODY: u32 = 65534;

/// Runs `f` on a thread of its own that has given up root for `uid` and
/// `gid` (no supplementary groups), and returns its result. Linux keeps
/// credentials per thread; the raw system calls change only the calling
/// thread's (glibc's wrappers would change every thread's). A socket it
/// connects carries `uid` to the server (`SO_PEERCRED`) wherever it is used
/// afterwards; a process it starts runs as `uid`.
pub fn as_user<T: Send + 'static>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: raw credential calls with plain integer arguments and a
        // null list of groups of length 0; they affect this thread only,
        // which ends when `f` returns.
        let rc = unsafe {
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
                -1
            } else if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                -2
            } else {
                libc::syscall(libc::SYS_setresuid, uid, uid, uid)
            }
        };
        assert_eq!(
            rc,
            0,
            "cannot become uid {uid}: {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("the thread of another user panicked")
}

/// A new connection to `socket` made as `nobody`.
pub fn connect_as_nobody(socket: &Path) -> std::io::Result<UnixStream> {
    let socket = socket.to_owned();
    as_user(NOBODY, NOBODY, move || UnixStream::connect(socket))
}

/// Reads `stream` to its end (within the read timeout set on it) and
/// asserts that the daemon ended it cleanly, with nothing more sent.
pub fn expect_eof(stream: &mut UnixStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{} stray bytes", rest.len()),
        Err(e) => panic!("no clean end of stream: {e}"),
    }
}

/// Reads until the daemon closes the connection, whatever it sent before
/// (a reset counts as closed); fails after 20 s.
pub fn expect_closed(mut stream: UnixStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connection not closed by the daemon: {e}"),
    }
}

/// What the generator reports about itself.
#[derive(Debug, Deserialize)]
pub struct Report {
    /// Its process id.
    pub pid: i32,
    /// What netatopd must report for this process.
    #[serde(flatten)]
    pub counters: Counters,
    /// Calls that failed or moved nothing (not to be counted).
    pub failed_calls: u64,
    /// Successful MSG_PEEK receives (not to be counted).
    pub peeked_calls: u64,
    /// Successful calls that move no traffic to count (raw sockets,
    /// error-queue reads).
    pub ignored_calls: u64,
    /// Of the TCP receives, those made with splice().
    pub spliced_recv_calls: u64,
    /// Of the TCP bytes received, those received with splice().
    pub spliced_recv_bytes: u64,
    /// Thread ids of the threads scenario (all exited).
    pub tids: Vec<i32>,
    /// Pids of the fork scenario's children (each sent one datagram).
    pub children: Vec<i32>,
    /// live-threads: each thread (still alive) and what it did.
    pub threads: Vec<ThreadReport>,
}

/// What one thread of the generator did (live-threads).
#[derive(Debug, Deserialize)]
pub struct ThreadReport {
    /// Its thread id.
    pub tid: i32,
    /// Its name (comm).
    pub name: String,
    /// What netatopd must report for this thread.
    #[serde(flatten)]
    pub counters: Counters,
}

/// A running traffic generator.
pub struct Gen {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Gen {
    /// Starts `netatop-gen SCENARIO ARGS...`.
    pub fn spawn(scenario: &str, args: &[&str]) -> Gen {
        Self::spawn_in(&[], scenario, args)
    }

    /// Starts `PREFIX... netatop-gen SCENARIO ARGS...`, e.g. with nsenter
    /// as the prefix to make the traffic in another namespace.
    pub fn spawn_in(prefix: &[&std::ffi::OsStr], scenario: &str, args: &[&str]) -> Gen {
        let gen = bin("netatop-gen");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&gen);
                c
            }
            None => Command::new(&gen),
        };
        let mut child = cmd
            .arg(scenario)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting netatop-gen");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Gen {
            child,
            stdin,
            stdout,
        }
    }

    /// The generator's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Lets a `--wait-go` generator start its traffic.
    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"go\n").expect("writing go");
        stdin.flush().expect("flushing go");
    }

    /// Waits for the generator's report (its traffic is done by then).
    pub fn report(&mut self) -> Report {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading the report");
        assert!(!line.is_empty(), "netatop-gen exited without a report");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad report {line:?}: {e}"))
    }

    /// Closes stdin (ending --linger) and waits for a successful exit.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        let status = self.child.wait().expect("waiting for netatop-gen");
        assert!(status.success(), "netatop-gen failed: {status}");
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts a scenario and waits for its report, which must be its own.
fn spawn_reported(scenario: &str, args: &[&str]) -> (Gen, Report) {
    let mut g = Gen::spawn(scenario, args);
    let r = g.report();
    assert_eq!(r.pid, g.pid());
    (g, r)
}

/// Runs a scenario that stays alive, returns its report and the generator.
pub fn run_lingering(scenario: &str, args: &[&str]) -> (Gen, Report) {
    let mut all = vec!["--linger"];
    all.extend_from_slice(args);
    spawn_reported(scenario, &all)
}

/// Runs a scenario to its end (the process has exited and been reaped when
/// this returns) and returns its report.
pub fn run_to_exit(scenario: &str, args: &[&str]) -> Report {
    let (g, r) = spawn_reported(scenario, args);
    g.finish();
    r
}

/// The records with id `pid` (a well-formed response has at most one per
/// live process, plus one per exited process).
pub fn records_for(recs: &[NetPerTask], pid: i32) -> Vec<NetPerTask> {
    recs.iter().filter(|r| r.id == pid).copied().collect()
}

/// The one record of `pid`; fails if there is none or more than one.
pub fn record_for(recs: &[NetPerTask], pid: i32) -> NetPerTask {
    let found = records_for(recs, pid);
    assert_eq!(
        found.len(),
        1,
        "expected one record for pid {pid}, got {found:?}"
    );
    found[0]
}

fn clock_ns(clock: libc::clockid_t) -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    assert_eq!(unsafe { libc::clock_gettime(clock, &mut ts) }, 0);
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Asserts `btime` is what atop computes for live process `pid`: atop takes
/// the boot time in clock ticks as the real-time clock minus the time since
/// boot, adds /proc/PID/stat's start time (ticks) and divides by the tick
/// rate. Two atop instances can differ by one tick in that boot time, so
/// each of the three neighbouring values is atop's answer for some instance.
pub fn assert_atop_btime(pid: i32, btime: u64) {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u128;
    let boot_ticks = clock_ns(libc::CLOCK_REALTIME) * hz / 1_000_000_000
        - clock_ns(libc::CLOCK_BOOTTIME) * hz / 1_000_000_000;
    let pstat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after_comm = &pstat[pstat.rfind(')').expect("comm in stat") + 2..];
    // Field 22 overall; after "pid (comm) " it is the 20th.
    let start: u128 = after_comm
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .expect("starttime in /proc/PID/stat");
    let atop: Vec<u64> = (boot_ticks - 1..=boot_ticks + 1)
        .map(|b| ((start + b) / hz) as u64)
        .collect();
    assert!(
        atop.contains(&btime),
        "btime {btime} of pid {pid} is not atop's {atop:?}"
    );
}

/// xorshift64*: small, seedable, good enough to pick actions and bytes.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` pseudo-random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The seed of a random run: NETATOPD_FUZZ_SEED, or the clock; printed so
/// that a failing run can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("NETATOPD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("NETATOPD_FUZZ_SEED={seed}");
    seed
}

/// Counters of one PRN process line: `PRN host epoch date time interval pid
/// (name) state flag tcpsnd tcpssz tcprcv tcprsz udpsnd udpssz udprcv udprsz
/// 0 0 tgid isproc`. Thread lines (isproc `n`) are skipped.
pub fn parse_prn(line: &str) -> Option<(i32, Counters)> {
    let rest = line.strip_prefix("PRN ")?;
    let pid: i32 = rest.split_whitespace().nth(5)?.parse().ok()?;
    let after = &rest[rest.rfind(')')? + 1..];
    if after.split_whitespace().last()? != "y" {
        return None;
    }
    let v: Vec<u64> = after
        .split_whitespace()
        .skip(2)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    Some((pid, Counters::from_fields(v.try_into().ok()?)))
}

/// The private atop 2.11.1 that `make test` installs (tests/atop-setup.sh)
/// and names in NETATOPD_TEST_ATOP; fails without it, never skips.
pub fn atop_binary() -> PathBuf {
    let atop = PathBuf::from(std::env::var_os("NETATOPD_TEST_ATOP").expect(
        "NETATOPD_TEST_ATOP is not set: run `make test`, which installs atop 2.11.1 \
         privately with tests/atop-setup.sh and sets it",
    ));
    assert!(atop.exists(), "{} does not exist", atop.display());
    atop
}

/// The mount points of every cgroup2 file system this process sees.
fn cgroup2_mount_points() -> Vec<std::ffi::CString> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("reading mountinfo")
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| std::ffi::CString::new(left.split(' ').nth(4)?).ok())?
        })
        .collect()
}

/// In a new mount namespace (private from here on), detaches `points`.
fn unmount_in_new_namespace(points: &[std::ffi::CString]) -> std::io::Result<()> {
    let root = c"/";
    // SAFETY: plain syscalls on NUL-terminated strings that outlive them.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for p in points {
            if libc::umount2(p.as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The calling thread kept on one CPU until this is dropped, when its
/// former affinity comes back (the processes it starts meanwhile inherit
/// it).
pub struct Affinity(libc::cpu_set_t);

impl Affinity {
    pub fn only(cpu: usize) -> Affinity {
        // SAFETY: an all-zero cpu_set_t is an empty set; sched_getaffinity
        // and sched_setaffinity get valid sets of the size passed.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            assert_eq!(libc::sched_getaffinity(0, size, &mut old), 0);
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(libc::sched_setaffinity(0, size, &set), 0, "CPU {cpu}");
            Affinity(old)
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        // SAFETY: restores the set sched_getaffinity returned, of its size.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        assert_eq!(rc, 0, "restoring the CPU affinity");
    }
}
