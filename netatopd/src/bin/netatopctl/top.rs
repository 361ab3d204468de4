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
use crate::groups::{self, Group, Row};
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
    /// Per cgroup v2, or summed per systemd unit, container or pod,
    /// instead of per process (needs netatopd).
    #[arg(long, value_enum, value_name = "GROUP")]
    by: Option<Group>,
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
    row.extend(rate_cells(
        [r.send_bytes_per_sec, r.recv_bytes_per_sec],
        [r.send_packets_per_sec, r.recv_packets_per_sec],
        r.split.as_ref(),
    ));
    row.push(r.connections.to_string());
    row
}

/// The rate cells of a row: bytes sent and received, then packets; with
/// `split`, each TCP send, TCP receive, UDP send, UDP receive
/// (SPLIT_COLUMNS).
fn rate_cells(bytes: [f64; 2], packets: [f64; 2], split: Option<&Split>) -> Vec<String> {
    match split {
        Some(s) => [true, false]
            .into_iter()
            .flat_map(|b| {
                FIELDS
                    .iter()
                    .zip(s.0)
                    .filter(move |(f, _)| f.bytes == b)
                    .map(move |(_, v)| if b { table::bytes(v) } else { table::count(v) })
            })
            .collect(),
        None => vec![
            table::bytes(bytes[0]),
            table::bytes(bytes[1]),
            table::count(packets[0]),
            table::count(packets[1]),
        ],
    }
}

fn header(s: &Sample) -> String {
    let send: f64 = s.processes.iter().map(|r| r.send_bytes_per_sec).sum();
    let recv: f64 = s.processes.iter().map(|r| r.recv_bytes_per_sec).sum();
    header_line(
        s.time,
        s.interval,
        send,
        recv,
        s.processes.len(),
        "processes",
    )
}

fn header_line(time: f64, interval: f64, send: f64, recv: f64, n: usize, what: &str) -> String {
    let clock = table::local_time(time as u64);
    format!(
        "netatopctl top  {}  interval {interval:.2}s  send {}/s  recv {}/s  {n} {what} with traffic",
        &clock[11..],
        table::bytes(send),
        table::bytes(recv),
    )
}

/// One group's traffic in one interval, per second; its labels first
/// (`unit`, `container_id`, `pod_uid` and `qos`, or `cgroup`).
struct GroupRate {
    labels: Vec<(&'static str, String)>,
    send_bytes_per_sec: f64,
    recv_bytes_per_sec: f64,
    send_packets_per_sec: f64,
    recv_packets_per_sec: f64,
    /// Its cgroup was removed during the interval; its final deltas.
    removed: bool,
    split: Option<Split>,
}

impl Serialize for GroupRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in &self.labels {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry("send_bytes_per_sec", &self.send_bytes_per_sec)?;
        m.serialize_entry("recv_bytes_per_sec", &self.recv_bytes_per_sec)?;
        m.serialize_entry("send_packets_per_sec", &self.send_packets_per_sec)?;
        m.serialize_entry("recv_packets_per_sec", &self.recv_packets_per_sec)?;
        m.serialize_entry("removed", &self.removed)?;
        // As in a process's rate: the eight rates in a `split` object.
        if let Some(split) = &self.split {
            m.serialize_entry("split", split)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct GroupSample {
    time: f64,
    interval: f64,
    groups: Vec<GroupRate>,
}

/// Per-group readings of the previous sample (live groups only).
type GroupReadings = HashMap<groups::Labels, Counters>;

fn group_readings(rows: &[Row]) -> GroupReadings {
    rows.iter()
        .filter(|r| !r.removed)
        .map(|r| (r.labels.clone(), r.counters))
        .collect()
}

fn group_rates(rows: &[Row], before: &GroupReadings, secs: f64, split: bool) -> Vec<GroupRate> {
    let per_sec = |v: u64| v as f64 / secs;
    let mut out: Vec<GroupRate> = rows
        .iter()
        .filter_map(|r| {
            // A group's counters never go back while its cgroups exist.
            // A restarted unit's new cgroup starts again from zero: its
            // old cgroup's final totals come as removed in the same
            // sample, or its counters are lower than they were; then all
            // of the new cgroup's counters are new.
            let last = before.get(&r.labels).copied().unwrap_or_default();
            let restarted = !r.removed
                && (rows.iter().any(|o| o.removed && o.labels == r.labels)
                    || r.counters
                        .fields()
                        .iter()
                        .zip(last.fields())
                        .any(|(n, b)| n < &b));
            let d = if restarted {
                r.counters
            } else {
                r.counters.since(&last)
            };
            (d != Counters::default()).then(|| GroupRate {
                labels: r.labels.clone(),
                send_bytes_per_sec: per_sec(d.send_bytes()),
                recv_bytes_per_sec: per_sec(d.recv_bytes()),
                send_packets_per_sec: per_sec(d.send_packets()),
                recv_packets_per_sec: per_sec(d.recv_packets()),
                removed: r.removed,
                split: split.then(|| Split(d.fields().map(per_sec))),
            })
        })
        .collect();
    let total = |r: &GroupRate| r.send_bytes_per_sec + r.recv_bytes_per_sec;
    out.sort_by(|a, b| total(b).total_cmp(&total(a)).then(a.labels.cmp(&b.labels)));
    out
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
    let mut source = Source::open(args, o.by.map(|_| "--by"))?;
    let wire = source.wire()?.is_some();
    let tty = !o.json && io::stdout().is_terminal();
    let _screen = if tty {
        Some(Screen::enter().map_err(|e| anyhow!("cannot set up the terminal: {e}"))?)
    } else {
        None
    };
    let out = Output { o, tty, wire };
    if let Some(by) = o.by {
        // Removed cgroups are asked for from the first request on, so that
        // each comes once, in the interval of its removal.
        let fetch = |source: &mut Source| Ok(groups::rows(&groups::fetch(source, true)?, by));
        let mut before = group_readings(&fetch(&mut source)?);
        return every_interval(
            o,
            interval,
            &stop,
            || fetch(&mut source),
            |rows, time, secs| {
                let sample = GroupSample {
                    time,
                    interval: secs,
                    groups: group_rates(&rows, &before, secs, o.split),
                };
                before = group_readings(&rows);
                output(out.groups(&sample))
            },
        );
    }
    let mut before = readings(&source.processes(false, true)?);
    every_interval(
        o,
        interval,
        &stop,
        || source.processes(false, true),
        |procs, time, secs| {
            let mut sample = Sample {
                time,
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
            output(out.processes(&sample))
        },
    )
}

/// Every interval until -n intervals were shown or a stop was requested:
/// `fetch`es a reading, then `show`s it with the time (seconds since the
/// epoch) and the interval's real length in seconds. The first reading is
/// the caller's, just before.
fn every_interval<T>(
    o: &Opts,
    interval: Duration,
    stop: &AtomicBool,
    mut fetch: impl FnMut() -> Result<T>,
    mut show: impl FnMut(T, f64, f64) -> Result<()>,
) -> Result<()> {
    let mut then = Instant::now();
    let mut deadline = then + interval;
    let mut shown = 0u64;
    while o.count.is_none_or(|n| shown < n) && sleep_until(deadline, stop) {
        let reading = fetch()?;
        let now = Instant::now();
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        show(reading, time, (now - then).as_secs_f64())?;
        then = now;
        deadline = (deadline + interval).max(now);
        shown += 1;
    }
    Ok(())
}

/// Where and how samples are shown.
struct Output<'a> {
    o: &'a Opts,
    tty: bool,
    wire: bool,
}

impl Output<'_> {
    fn processes(&self, sample: &Sample) -> io::Result<()> {
        let columns: &[Column] = if self.o.split {
            &SPLIT_COLUMNS
        } else {
            &COLUMNS
        };
        let rows = sample.processes.iter().map(row).collect();
        self.emit(sample, header(sample), columns, rows)
    }

    fn groups(&self, sample: &GroupSample) -> io::Result<()> {
        let mut columns = groups::label_columns(sample.groups.first().map(|g| &g.labels));
        // The process table's rate columns, without PID, COMMAND and CONNS.
        let all: &[Column] = if self.o.split {
            &SPLIT_COLUMNS
        } else {
            &COLUMNS
        };
        columns.extend_from_slice(&all[2..all.len() - 1]);
        let rows = sample
            .groups
            .iter()
            .map(|g| {
                let mut row = groups::label_cells(&g.labels, g.removed);
                row.extend(rate_cells(
                    [g.send_bytes_per_sec, g.recv_bytes_per_sec],
                    [g.send_packets_per_sec, g.recv_packets_per_sec],
                    g.split.as_ref(),
                ));
                row
            })
            .collect();
        let send: f64 = sample.groups.iter().map(|g| g.send_bytes_per_sec).sum();
        let recv: f64 = sample.groups.iter().map(|g| g.recv_bytes_per_sec).sum();
        let what = by_name(sample).unwrap_or("groups");
        let n = sample.groups.len();
        let header = header_line(sample.time, sample.interval, send, recv, n, what);
        self.emit(sample, header, &columns, rows)
    }

    /// One sample: a JSON line, or a table under its header (redrawn in
    /// place on a terminal, as many rows as fit).
    fn emit(
        &self,
        sample: &impl Serialize,
        header: String,
        columns: &[Column],
        mut rows: Vec<Vec<String>>,
    ) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if self.o.json {
            serde_json::to_writer(&mut out, sample)?;
            writeln!(out)?;
            return out.flush();
        }
        let mut text = Vec::new();
        if self.tty {
            text.extend_from_slice(b"\x1b[H\x1b[2J");
            if let Some(n) = terminal_rows() {
                // The header line(s), the column line, and a last line
                // kept free.
                rows.truncate(n.saturating_sub(3 + usize::from(self.wire)));
            }
        }
        writeln!(text, "{header}")?;
        if self.wire {
            writeln!(text, "{}", crate::WIRE_NOTE)?;
        }
        table::write(&mut text, columns, &rows)?;
        if !self.tty {
            writeln!(text)?;
        }
        out.write_all(&text)?;
        out.flush()
    }
}

/// What the rows are, from their first label.
fn by_name(sample: &GroupSample) -> Option<&'static str> {
    Some(match sample.groups.first()?.labels.first()?.0 {
        "cgroup" => "cgroups",
        "unit" => "units",
        "container_id" => "containers",
        "pod_uid" => "pods",
        _ => return None,
    })
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

    fn group(unit: &str, udpsndbytes: u64, removed: bool) -> Row {
        Row {
            labels: vec![("unit", unit.to_owned())],
            counters: Counters {
                udpsndpacks: udpsndbytes / 100,
                udpsndbytes,
                ..Default::default()
            },
            removed,
        }
    }

    #[test]
    fn group_rates_are_deltas_with_a_removed_group_once() {
        let before = group_readings(&[
            group("a.service", 1000, false),
            group("b.service", 500, false),
        ]);
        let now = [
            group("a.service", 1600, false),
            // Removed in the interval: its final deltas, once.
            group("b.service", 700, true),
            // New: all of it.
            group("c.service", 200, false),
        ];
        let r = group_rates(&now, &before, 2.0, false);
        let got: Vec<(&str, f64, bool)> = r
            .iter()
            .map(|g| (g.labels[0].1.as_str(), g.send_bytes_per_sec, g.removed))
            .collect();
        assert_eq!(
            got,
            [
                ("a.service", 300.0, false),
                ("b.service", 100.0, true),
                ("c.service", 100.0, false)
            ]
        );
        assert!(!group_readings(&now).contains_key(&vec![("unit", "b.service".to_owned())]));
        // a.service restarted: its old cgroup's last 100 bytes, and the
        // new cgroup's 300 (lower than the old total).
        let restarted = [
            group("a.service", 1700, true),
            group("a.service", 300, false),
        ];
        let again = group_rates(&restarted, &group_readings(&now), 1.0, false);
        let got: Vec<(f64, bool)> = again
            .iter()
            .map(|g| (g.send_bytes_per_sec, g.removed))
            .collect();
        assert_eq!(got, [(300.0, false), (100.0, true)]);
        let json = serde_json::to_value(&r[1]).unwrap();
        assert_eq!(json["unit"], "b.service");
        assert_eq!(json["send_packets_per_sec"], 1.0);
        assert_eq!(json["removed"], true);
    }
}
