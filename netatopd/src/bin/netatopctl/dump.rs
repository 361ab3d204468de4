//! `netatopctl dump`: the counters of every process.

use std::io::{self, Write};

use anyhow::Result;
use netatop_protocol::control::{Process, Thread};
use netatop_protocol::{Counters, FIELDS};
use serde::Serialize;

use crate::table::{self, num, text, Column};
use crate::{output, Args, SortKey, Source};

#[derive(clap::Args, Debug)]
pub struct Opts {
    /// A JSON array of objects (exact integers) instead of a table.
    #[arg(long)]
    json: bool,
    /// Sort by this field: counters descending, pid and command ascending.
    #[arg(long, value_enum, value_name = "FIELD", default_value = "bytes")]
    sort: SortKey,
    /// Only the first N rows after sorting.
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Only these processes.
    #[arg(long, value_name = "PID", num_args = 1..)]
    pid: Vec<i32>,
    /// Only processes with this command name (exactly).
    #[arg(long, value_name = "NAME")]
    command: Option<String>,
    /// Per-thread rows under each process (needs netatopd).
    #[arg(long)]
    threads: bool,
    /// Include processes that exited recently, marked (needs netatopd).
    #[arg(long)]
    exited: bool,
    /// Exact integers in the table instead of human units.
    #[arg(long)]
    raw: bool,
    /// Per cgroup v2, or summed per systemd unit, container or pod,
    /// instead of per process (needs netatopd); with --exited, also the
    /// cgroups removed recently, marked.
    #[arg(long, value_enum, value_name = "GROUP", conflicts_with_all = ["threads", "pid", "command"])]
    by: Option<crate::groups::Group>,
}

/// One process as `dump --json` prints it.
#[derive(Serialize)]
struct Row<'a> {
    pid: i32,
    btime: u64,
    command: &'a str,
    #[serde(flatten)]
    counters: Counters,
    exited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    threads: Option<Vec<ThreadRow<'a>>>,
}

#[derive(Serialize)]
struct ThreadRow<'a> {
    tid: i32,
    name: &'a str,
    #[serde(flatten)]
    counters: Counters,
}

/// A column per counter.
fn counter_columns() -> impl Iterator<Item = Column> {
    FIELDS.iter().map(|f| num(f.column))
}

/// PID, START, COMMAND, then a column per counter.
fn columns() -> Vec<Column> {
    let mut c = vec![num("PID"), text("START"), text("COMMAND")];
    c.extend(counter_columns());
    c
}

fn counter_cells(c: &Counters, raw: bool) -> impl Iterator<Item = String> + '_ {
    FIELDS.iter().zip(c.fields()).map(move |(f, v)| {
        if raw {
            v.to_string()
        } else {
            table::amount(f.bytes, v as f64)
        }
    })
}

/// A process's COMMAND cell: its command, marked where it has exited.
pub fn command_cell(p: &Process) -> String {
    if p.exited {
        format!("{} (exited)", p.command)
    } else {
        p.command.clone()
    }
}

fn process_row(p: &Process, raw: bool) -> Vec<String> {
    let mut row = vec![
        p.pid.to_string(),
        table::local_time(p.btime),
        command_cell(p),
    ];
    row.extend(counter_cells(&p.counters, raw));
    row
}

fn thread_row(t: &Thread, raw: bool) -> Vec<String> {
    let mut row = vec![
        format!("  {}", t.tid),
        String::new(),
        format!("  {}", t.name),
    ];
    row.extend(counter_cells(&t.counters, raw));
    row
}

pub fn select(procs: &mut Vec<Process>, o: &Opts) {
    if !o.pid.is_empty() {
        procs.retain(|p| o.pid.contains(&p.pid));
    }
    if let Some(name) = &o.command {
        procs.retain(|p| &p.command == name);
    }
    o.sort.sort(procs);
    if let Some(n) = o.top {
        procs.truncate(n);
    }
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    if let Some(by) = o.by {
        return run_groups(args, o, by);
    }
    let need = match (o.threads, o.exited) {
        (true, _) => Some("--threads"),
        (_, true) => Some("--exited"),
        _ => None,
    };
    let mut source = Source::open(args, need)?;
    let wire = !o.json && source.wire()?.is_some();
    let mut procs = source.processes(o.threads, o.exited)?;
    select(&mut procs, o);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    output(if o.json {
        print_json(&procs, o.threads, &mut out)
    } else {
        let mut rows = Vec::new();
        for p in &procs {
            rows.push(process_row(p, o.raw));
            rows.extend(p.threads.iter().map(|t| thread_row(t, o.raw)));
        }
        crate::write_table(&mut out, wire, &columns(), &rows)
    })
}

fn print_json(procs: &[Process], threads: bool, out: &mut impl Write) -> io::Result<()> {
    let rows: Vec<Row<'_>> = procs
        .iter()
        .map(|p| Row {
            pid: p.pid,
            btime: p.btime,
            command: &p.command,
            counters: p.counters,
            exited: p.exited,
            threads: threads.then(|| {
                p.threads
                    .iter()
                    .map(|t| ThreadRow {
                        tid: t.tid,
                        name: &t.name,
                        counters: t.counters,
                    })
                    .collect()
            }),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &rows)?;
    writeln!(out)
}

/// `dump --by`: a row per group.
fn run_groups(args: &Args, o: &Opts, by: crate::groups::Group) -> Result<()> {
    let mut source = Source::open(args, Some("--by"))?;
    let wire = !o.json && source.wire()?.is_some();
    let cgroups = crate::groups::fetch(&mut source, o.exited)?;
    let mut rows = crate::groups::rows(&cgroups, by);
    // Counters descending, ties (and --sort pid or command) by the labels.
    rows.sort_by(|a, b| {
        o.sort
            .value(&b.counters)
            .cmp(&o.sort.value(&a.counters))
            .then_with(|| a.labels.cmp(&b.labels))
            .then(a.removed.cmp(&b.removed))
    });
    if let Some(n) = o.top {
        rows.truncate(n);
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    output(if o.json {
        let objects: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                for (k, v) in &r.labels {
                    m.insert((*k).into(), v.clone().into());
                }
                if let serde_json::Value::Object(c) =
                    serde_json::to_value(r.counters).expect("counters as JSON")
                {
                    m.extend(c);
                }
                m.insert("removed".into(), r.removed.into());
                serde_json::Value::Object(m)
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &objects)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        let mut columns = crate::groups::label_columns(rows.first().map(|r| &r.labels));
        columns.extend(counter_columns());
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut row = crate::groups::label_cells(&r.labels, r.removed);
                row.extend(counter_cells(&r.counters, o.raw));
                row
            })
            .collect();
        crate::write_table(&mut out, wire, &columns, &cells)
    })
}
