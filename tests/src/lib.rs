//! Harness for netatopd's integration tests: starts the real daemon, runs
//! the traffic generator, reads counters the way atop does, and looks into
//! the daemon's kernel maps.
//!
//! These tests need root and a kernel with BTF. They never skip: on a
//! machine that cannot load BPF they fail, saying why.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libbpf_rs::MapCore;
use netatop_protocol::{query, Counters, NetPerTask, ReadMode};
use serde::Deserialize;

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
    pub socket: PathBuf,
    /// Its private bpffs pin directory.
    pub pin_dir: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    extra: Vec<String>,
    /// The descriptor limit it starts with (soft, hard), if not inherited.
    nofile: Option<(u64, u64)>,
}

impl Daemon {
    /// Like `start`, with the descriptor limit (soft, hard) it inherits.
    pub fn start_with_nofile(extra: &[&str], nofile: (u64, u64)) -> Daemon {
        let dir = scratch_dir();
        let socket = dir.join("netatop.sock");
        let mut d = Self::new_at(dir, socket, extra);
        d.nofile = Some(nofile);
        d.restart();
        d
    }

    /// Starts netatopd on a private socket and waits until it answers.
    pub fn start(extra: &[&str]) -> Daemon {
        let dir = scratch_dir();
        let socket = dir.join("netatop.sock");
        Self::start_at(dir, socket, extra)
    }

    /// Starts netatopd on `socket` and waits until it answers.
    pub fn start_at(dir: PathBuf, socket: PathBuf, extra: &[&str]) -> Daemon {
        let mut d = Self::new_at(dir, socket, extra);
        d.restart();
        d
    }

    fn new_at(dir: PathBuf, socket: PathBuf, extra: &[&str]) -> Daemon {
        require_bpf_machine();
        let pin_dir = pin_dir_for(&dir);
        Daemon {
            child: None,
            log: dir.join("netatopd.log"),
            socket,
            pin_dir,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            nofile: None,
        }
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
            let lim = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe and `lim` is a copy
            // owned by the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
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

    /// Like `restart`, with other options.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// netatopd with this daemon's socket, pin directory, pid file and
    /// options.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("netatopd"));
        cmd.arg("--foreground")
            .arg("-v")
            .args(private_args(&self.dir, &self.socket))
            .args(&self.extra);
        cmd
    }

    /// netatopctl pointed at this daemon's sockets.
    pub fn ctl(&self) -> Command {
        let mut cmd = Command::new(bin("netatopctl"));
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--control-socket")
            .arg(self.control_socket());
        cmd
    }

    /// Its control socket (netatopctl's).
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

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

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

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
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let status = child.wait().expect("wait");
                panic!(
                    "netatopd ignored SIGTERM for 20 s ({status}):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
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

/// One query on an open connection, read as atop reads it (one recv of 96
/// bytes per record; a short read fails the test).
pub fn query_on(stream: &mut UnixStream) -> Vec<NetPerTask> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    query(stream, ReadMode::AsAtop).expect("query as atop reads")
}

/// What the generator reports about itself.
#[derive(Debug, Deserialize)]
pub struct Report {
    pub pid: i32,
    /// What netatopd must report for this process.
    #[serde(flatten)]
    pub counters: Counters,
    pub failed_calls: u64,
    pub peeked_calls: u64,
    /// Successful calls that move no traffic to count (raw sockets,
    /// error-queue reads).
    pub ignored_calls: u64,
    /// Of the TCP receives, those made with splice().
    pub spliced_recv_calls: u64,
    pub spliced_recv_bytes: u64,
    pub tids: Vec<i32>,
    pub children: Vec<i32>,
    /// live-threads: each thread (still alive) and what it did.
    pub threads: Vec<ThreadReport>,
}

#[derive(Debug, Deserialize)]
pub struct ThreadReport {
    pub tid: i32,
    pub name: String,
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

/// Runs a scenario that stays alive, returns its report and the generator.
pub fn run_lingering(scenario: &str, args: &[&str]) -> (Gen, Report) {
    let mut all = vec!["--linger"];
    all.extend_from_slice(args);
    let mut g = Gen::spawn(scenario, &all);
    let r = g.report();
    assert_eq!(r.pid, g.pid());
    (g, r)
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
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

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
