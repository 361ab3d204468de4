//! netatopctl: look at what a netatop service counts, without atop.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netatop_protocol::{query, Counters, NetPerTask, QueryError, ReadMode, DEFAULT_SOCKET};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(version, about = "Query netatopd (or any netatop-bpf service)")]
struct Args {
    /// Unix socket of the service.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the counters of every process, one row each.
    Dump {
        /// A JSON array of objects instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// One process as `dump --json` prints it.
#[derive(Serialize)]
struct Row {
    pid: i32,
    btime: u64,
    command: String,
    #[serde(flatten)]
    counters: Counters,
}

impl From<&NetPerTask> for Row {
    fn from(r: &NetPerTask) -> Self {
        Row {
            pid: r.id,
            btime: r.btime,
            command: r.command_str(),
            counters: r.counters,
        }
    }
}

/// Local date and time of an epoch second, `YYYY-MM-DD HH:MM:SS`.
fn local_time(epoch: u64) -> String {
    let t = epoch as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is re-entrant.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return epoch.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn print_table(recs: &[NetPerTask], out: &mut impl Write) -> io::Result<()> {
    let header = [
        "PID",
        "START",
        "COMMAND",
        "TCPSNDPKT",
        "TCPSNDBYTES",
        "TCPRCVPKT",
        "TCPRCVBYTES",
        "UDPSNDPKT",
        "UDPSNDBYTES",
        "UDPRCVPKT",
        "UDPRCVBYTES",
    ];
    let rows: Vec<Vec<String>> = recs
        .iter()
        .map(|r| {
            let mut row = vec![r.id.to_string(), local_time(r.btime), r.command_str()];
            row.extend(r.counters.fields().iter().map(u64::to_string));
            row
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                // Text columns align left, numbers right.
                if (1..=2).contains(&i) {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(out, "{}", line(&mut header.iter().copied()))?;
    for row in &rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let path = args.socket.display();
    let mut stream = UnixStream::connect(&args.socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            format!("no netatop service answers on {path} (is netatopd running?)")
        }
        io::ErrorKind::PermissionDenied => {
            format!("permission denied on {path}: run as root or as a member of the socket's group")
        }
        _ => format!("cannot connect to {path}: {e}"),
    })?;
    let mut recs = query(&mut stream, ReadMode::Reassemble).map_err(|e| match e {
        QueryError::Closed => format!("the service on {path} closed the connection mid-response"),
        e => format!("query to {path} failed: {e}"),
    })?;
    recs.sort_by_key(|r| r.id);
    let Command::Dump { json } = args.command;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let res = if json {
        let rows: Vec<Row> = recs.iter().map(Row::from).collect();
        serde_json::to_writer_pretty(&mut out, &rows)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        print_table(&recs, &mut out)
    };
    match res {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| format!("cannot write output: {e}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netatopctl: {e}");
            ExitCode::FAILURE
        }
    }
}
