//! The traffic generator run by a test: netatop-gen started (in this
//! namespace or through a prefix such as `ip netns exec`), let go, its
//! report read, and its end waited for.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::{bin, Report};

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
