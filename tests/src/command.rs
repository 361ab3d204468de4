//! Commands run to their end: their output captured, checked and parsed
//! (text, JSON, netatopctl's counters), and netatopctl pointed at a
//! daemon's sockets.

use std::path::Path;
use std::process::{Command, Output};

use netatop_protocol::Counters;
use serde_json::Value;

use crate::bin;

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
