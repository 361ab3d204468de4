//! The process view of `netatopctl top`: each process's rates, as the
//! model computed them, as a table row or a JSON object.

use std::io;

use netatop_protocol::control::Process;
use serde::Serialize;

use super::rates::{totals, Rate};
use super::screen::Output;
use super::view::{header_line, rate_cells, rate_columns, Json};
use crate::table::{num, text};

/// What a process is, in its JSON object.
#[derive(Serialize)]
struct Names<'a> {
    pid: i32,
    command: &'a str,
}

/// What else is known of a process, in its JSON object.
#[derive(Serialize)]
struct State {
    /// Open TCP and UDP sockets (0 once the process has exited).
    connections: u32,
    /// It exited during the interval; these are its final deltas.
    exited: bool,
}

#[derive(Serialize)]
struct Sample<'a> {
    /// Seconds since the epoch at the end of the interval.
    time: f64,
    /// The interval's real length, seconds.
    interval: f64,
    processes: Vec<Json<'a, Names<'a>, State>>,
}

/// Shows one interval's `rates` of processes, with each live process's
/// open sockets from `connections` (a pid's).
pub fn show(
    out: &Output,
    rates: &[Rate<'_, Process>],
    connections: impl Fn(i32) -> u32,
    time: f64,
    interval: f64,
) -> io::Result<()> {
    let conns: Vec<u32> = rates
        .iter()
        .map(|r| {
            if r.entry.exited {
                0
            } else {
                connections(r.entry.pid)
            }
        })
        .collect();
    let mut columns = vec![num("PID"), text("COMMAND")];
    columns.extend(rate_columns(out.split));
    columns.push(num("CONNS"));
    let rows = rates
        .iter()
        .zip(&conns)
        .map(|(r, c)| {
            let mut row = vec![r.entry.pid.to_string(), crate::dump::command_cell(r.entry)];
            row.extend(rate_cells(r, out.split));
            row.push(c.to_string());
            row
        })
        .collect();
    let header = header_line(time, interval, totals(rates), rates.len(), "processes");
    let sample = Sample {
        time,
        interval,
        processes: rates
            .iter()
            .zip(conns)
            .map(|(r, connections)| {
                let p = r.entry;
                let names = Names {
                    pid: p.pid,
                    command: &p.command,
                };
                let state = State {
                    connections,
                    exited: p.exited,
                };
                Json::new(r, out.split, names, state)
            })
            .collect(),
    };
    out.emit(&sample, header, &columns, rows)
}
