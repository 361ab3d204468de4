//! `netatopctl top`: bandwidth per process, every interval.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use netatop_protocol::control::Process;
use netatop_protocol::{Counters, FIELDS};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::conns::SocketCounts;
use crate::table::{self, num, text, Column};
use crate::{output, Args, Source};

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Seconds between refreshes (fractions allowed).
    #[arg(short = 'i', long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    /// Stop after COUNT intervals.
    #[arg(short = 'n', long, value_name = "COUNT")]
    count: Option<u64>,
    /// One JSON object per interval, one per line.
    #[arg(long)]
    json: bool,
    /// TCP and UDP in separate columns.
    #[arg(long)]
    split: bool,
}

/// One process's traffic in one interval, per second.
#[derive(Serialize)]
struct Rate {
    pid: i32,
    command: String,
    send_bytes_per_sec: f64,
    recv_bytes_per_sec: f64,
    send_packets_per_sec: f64,
    recv_packets_per_sec: f64,
    /// Open TCP and UDP sockets (0 once the process has exited).
    connections: u32,
    /// It exited during the interval; these are its final deltas.
    exited: bool,
    /// The eight counters per second, with --split.
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<Split>,
}

/// The eight counters per second, in wire order, each named after its
/// field: `tcp_send_packets_per_sec`, ...
struct Split([f64; 8]);

impl Serialize for Split {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(FIELDS.len()))?;
        for (f, v) in FIELDS.iter().zip(self.0) {
            m.serialize_entry(&format!("{}_per_sec", f.key), &v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Sample {
    /// Seconds since the epoch at the end of the interval.
    time: f64,
    /// The interval's real length, seconds.
    interval: f64,
    processes: Vec<Rate>,
}

/// Per-process readings of the previous sample.
type Readings = HashMap<(i32, u64), Counters>;

fn readings(procs: &[Process]) -> Readings {
    procs
        .iter()
        .filter(|p| !p.exited)
        .map(|p| ((p.pid, p.btime), p.counters))
        .collect()
}

fn rates(procs: &[Process], before: &Readings, secs: f64, split: bool) -> Vec<Rate> {
    let per_sec = |v: u64| v as f64 / secs;
    let mut out: Vec<Rate> = procs
        .iter()
        .filter_map(|p| {
            // Counters only grow: what is new since the last reading (all
            // of it for a process not seen before).
            let d = p.counters.since(
                before
                    .get(&(p.pid, p.btime))
                    .unwrap_or(&Counters::default()),
            );
            if d == Counters::default() {
                return None;
            }
            Some(Rate {
                pid: p.pid,
                command: p.command.clone(),
                send_bytes_per_sec: per_sec(d.send_bytes()),
                recv_bytes_per_sec: per_sec(d.recv_bytes()),
                send_packets_per_sec: per_sec(d.send_packets()),
                recv_packets_per_sec: per_sec(d.recv_packets()),
                connections: 0,
                exited: p.exited,
                split: split.then(|| Split(d.fields().map(per_sec))),
            })
        })
        .collect();
    let total = |r: &Rate| r.send_bytes_per_sec + r.recv_bytes_per_sec;
    out.sort_by(|a, b| total(b).total_cmp(&total(a)).then(a.pid.cmp(&b.pid)));
    out
}

const COLUMNS: [Column; 7] = [
    num("PID"),
    text("COMMAND"),
    num("SEND/s"),
    num("RECV/s"),
    num("SNDPKT/s"),
    num("RCVPKT/s"),
    num("CONNS"),
];

const SPLIT_COLUMNS: [Column; 11] = [
    num("PID"),
    text("COMMAND"),
    num("TCPSND/s"),
    num("TCPRCV/s"),
    num("UDPSND/s"),
    num("UDPRCV/s"),
    num("TCPSPKT/s"),
    num("TCPRPKT/s"),
    num("UDPSPKT/s"),
    num("UDPRPKT/s"),
    num("CONNS"),
];

fn row(r: &Rate) -> Vec<String> {
    let command = if r.exited {
        format!("{} (exited)", r.command)
    } else {
        r.command.clone()
    };
    let mut row = vec![r.pid.to_string(), command];
    match &r.split {
        Some(s) => {
            // Bytes per second, then packets; each TCP send, TCP receive,
            // UDP send, UDP receive (SPLIT_COLUMNS).
            for bytes in [true, false] {
                for (_, v) in FIELDS.iter().zip(s.0).filter(|(f, _)| f.bytes == bytes) {
                    row.push(if bytes {
                        table::bytes(v)
                    } else {
                        table::count(v)
                    });
                }
            }
        }
        None => {
            row.push(table::bytes(r.send_bytes_per_sec));
            row.push(table::bytes(r.recv_bytes_per_sec));
            row.push(table::count(r.send_packets_per_sec));
            row.push(table::count(r.recv_packets_per_sec));
        }
    }
    row.push(r.connections.to_string());
    row
}

fn header(s: &Sample) -> String {
    let send: f64 = s.processes.iter().map(|r| r.send_bytes_per_sec).sum();
    let recv: f64 = s.processes.iter().map(|r| r.recv_bytes_per_sec).sum();
    let clock = table::local_time(s.time as u64);
    format!(
        "netatopctl top  {}  interval {:.2}s  send {}/s  recv {}/s  {} processes with traffic",
        &clock[11..],
        s.interval,
        table::bytes(send),
        table::bytes(recv),
        s.processes.len()
    )
}

/// The terminal's rows, if stdout is one.
fn terminal_rows() -> Option<usize> {
    // SAFETY: an all-zero winsize is valid to be overwritten.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize through a valid pointer.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some(ws.ws_row as usize)
}

/// The alternate screen with the cursor hidden, restored when dropped
/// (at the end, on Ctrl-C and on errors alike).
struct Screen;

impl Screen {
    fn enter() -> io::Result<Screen> {
        let mut out = io::stdout().lock();
        out.write_all(b"\x1b[?1049h\x1b[?25l")?;
        out.flush()?;
        Ok(Screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// Sleeps until `deadline`; false if a stop was requested meanwhile.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    if !(o.interval.is_finite() && o.interval > 0.0) {
        bail!("-i needs a number of seconds > 0");
    }
    let interval = Duration::from_secs_f64(o.interval);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| anyhow!("cannot handle signals: {e}"))?;
    }
    let mut source = Source::open(args, None)?;
    let wire = source.wire()?.is_some();
    let tty = !o.json && io::stdout().is_terminal();
    let _screen = if tty {
        Some(Screen::enter().map_err(|e| anyhow!("cannot set up the terminal: {e}"))?)
    } else {
        None
    };
    let mut before = readings(&source.processes(false, true)?);
    let mut then = Instant::now();
    let mut deadline = then + interval;
    let mut shown = 0u64;
    while o.count.is_none_or(|n| shown < n) && sleep_until(deadline, &stop) {
        let procs = source.processes(false, true)?;
        let now = Instant::now();
        let secs = (now - then).as_secs_f64();
        let mut sample = Sample {
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            interval: secs,
            processes: rates(&procs, &before, secs, o.split),
        };
        if !sample.processes.is_empty() {
            let conns = SocketCounts::read().map_err(|e| anyhow!("cannot read /proc: {e}"))?;
            for r in sample.processes.iter_mut().filter(|r| !r.exited) {
                r.connections = conns.get(r.pid);
            }
        }
        before = readings(&procs);
        then = now;
        deadline = (deadline + interval).max(now);
        shown += 1;
        output(show(&sample, o, tty, wire))?;
    }
    Ok(())
}

fn show(sample: &Sample, o: &Opts, tty: bool, wire: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if o.json {
        serde_json::to_writer(&mut out, sample)?;
        writeln!(out)?;
        return out.flush();
    }
    let mut rows: Vec<Vec<String>> = sample.processes.iter().map(row).collect();
    let columns: &[Column] = if o.split { &SPLIT_COLUMNS } else { &COLUMNS };
    let mut text = Vec::new();
    if tty {
        text.extend_from_slice(b"\x1b[H\x1b[2J");
        if let Some(n) = terminal_rows() {
            // The header line(s), the column line, and a last line kept
            // free.
            rows.truncate(n.saturating_sub(3 + usize::from(wire)));
        }
    }
    writeln!(text, "{}", header(sample))?;
    if wire {
        writeln!(text, "{}", crate::WIRE_NOTE)?;
    }
    table::write(&mut text, columns, &rows)?;
    if !tty {
        writeln!(text)?;
    }
    out.write_all(&text)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, btime: u64, udpsndbytes: u64, exited: bool) -> Process {
        Process {
            pid,
            btime,
            command: format!("p{pid}"),
            counters: Counters {
                udpsndpacks: udpsndbytes / 100,
                udpsndbytes,
                ..Default::default()
            },
            exited,
            threads: Vec::new(),
        }
    }

    #[test]
    fn rates_are_deltas_per_second_with_exits_once_and_reused_pids_apart() {
        let before = readings(&[
            p(1, 10, 1000, false),
            p(2, 10, 500, false),
            p(3, 10, 0, false),
        ]);
        let now = [
            p(1, 10, 3000, false),
            // Exited during the interval: listed once, with its final totals.
            p(2, 10, 900, true),
            // pid 3 reused by a new process: its counts are all new.
            p(3, 11, 400, false),
            // No traffic in the interval: no row.
            p(4, 10, 0, false),
        ];
        let r = rates(&now, &before, 2.0, false);
        let got: Vec<(i32, f64, bool)> = r
            .iter()
            .map(|r| (r.pid, r.send_bytes_per_sec, r.exited))
            .collect();
        // Busiest first; equal rates by pid.
        assert_eq!(
            got,
            vec![(1, 1000.0, false), (2, 200.0, true), (3, 200.0, false)]
        );
        assert_eq!(r[0].send_packets_per_sec, 10.0);
        // The exited process does not carry over to the next interval.
        assert!(!readings(&now).contains_key(&(2, 10)));
    }
}
