//! `netatopctl export`: the counters as OpenMetrics text.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::ValueEnum;
use netatop_protocol::control::Process;
use netatop_protocol::{Counters, FIELDS};

use crate::{output, Args, Source};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// OpenMetrics text (also read by Prometheus and node_exporter's
    /// textfile collector).
    Openmetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// One series per process: labels pid and command.
    Pid,
    /// One series per command name: the sums over its processes.
    Command,
}

#[derive(clap::Args, Debug)]
pub struct Opts {
    #[arg(long, value_enum)]
    format: Format,
    /// Series per process or per command name.
    #[arg(long, value_enum, default_value = "pid")]
    by: By,
    /// Write here (atomically: a temporary file renamed into place)
    /// instead of to standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Label sets and their counters.
fn series(procs: &[Process], by: By) -> Vec<(String, Counters)> {
    match by {
        By::Pid => {
            let mut v: Vec<(i32, String, Counters)> = procs
                .iter()
                .map(|p| {
                    (
                        p.pid,
                        format!("pid=\"{}\",command=\"{}\"", p.pid, escape(&p.command)),
                        p.counters,
                    )
                })
                .collect();
            v.sort_by_key(|(pid, ..)| *pid);
            v.into_iter().map(|(_, l, c)| (l, c)).collect()
        }
        By::Command => {
            let mut sums: BTreeMap<&str, Counters> = BTreeMap::new();
            for p in procs {
                sums.entry(&p.command).or_default().add(&p.counters);
            }
            sums.into_iter()
                .map(|(cmd, c)| (format!("command=\"{}\"", escape(cmd)), c))
                .collect()
        }
    }
}

/// The OpenMetrics text. Counting the wire (`wire`: what is unattributed
/// per network namespace), each family's help says that its packets are
/// IP packets and its bytes their IP length, and the unattributed
/// families follow, labelled by namespace.
pub fn write_openmetrics(
    procs: &[Process],
    by: By,
    wire: Option<&[(u32, Counters)]>,
    out: &mut impl Write,
) -> io::Result<()> {
    let series = series(procs, by);
    for (i, f) in FIELDS.iter().enumerate() {
        let name = f.metric();
        writeln!(out, "# TYPE {name} counter")?;
        if f.bytes {
            writeln!(out, "# UNIT {name} bytes")?;
        }
        if wire.is_some() {
            writeln!(
                out,
                "# HELP {name} {} (counting the wire: IP packets, bytes with headers)",
                f.help
            )?;
        } else {
            writeln!(out, "# HELP {name} {}", f.help)?;
        }
        for (labels, c) in &series {
            writeln!(out, "{name}_total{{{labels}}} {}", c.fields()[i])?;
        }
    }
    if let Some(unattributed) = wire {
        for (i, f) in FIELDS.iter().enumerate() {
            let name = format!("netatop_unattributed_{}", f.key);
            writeln!(out, "# TYPE {name} counter")?;
            if f.bytes {
                writeln!(out, "# UNIT {name} bytes")?;
            }
            writeln!(
                out,
                "# HELP {name} {} for no process, per network namespace (counting the wire)",
                f.help
            )?;
            for (netns, c) in unattributed {
                writeln!(out, "{name}_total{{netns=\"{netns}\"}} {}", c.fields()[i])?;
            }
        }
    }
    writeln!(out, "# EOF")
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    let Format::Openmetrics = o.format;
    let mut source = Source::open(args, None)?;
    let wire = source.wire()?;
    let procs = source.processes(false, false)?;
    let mut text = Vec::new();
    write_openmetrics(&procs, o.by, wire.as_deref(), &mut text).expect("writing to memory");
    match &o.output {
        None => output(io::stdout().lock().write_all(&text)),
        Some(path) => {
            let mut tmp = path.clone().into_os_string();
            tmp.push(format!(".tmp.{}", std::process::id()));
            fs::write(&tmp, &text)
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    anyhow!("cannot write {}: {e}", path.display())
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, command: &str, tcpsndbytes: u64) -> Process {
        Process {
            pid,
            btime: 0,
            command: command.into(),
            counters: Counters {
                tcpsndbytes,
                ..Default::default()
            },
            exited: false,
            threads: Vec::new(),
        }
    }

    #[test]
    fn families_series_and_eof() {
        let procs = [proc(20, "a\"b", 5), proc(10, "x", 7), proc(30, "x", 1)];
        let mut out = Vec::new();
        write_openmetrics(&procs, By::Pid, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(
            "# TYPE netatop_tcp_send_packets counter\n# HELP netatop_tcp_send_packets "
        ));
        assert!(text.contains(
            "# TYPE netatop_tcp_send_bytes counter\n# UNIT netatop_tcp_send_bytes bytes\n"
        ));
        assert!(text.contains(
            "netatop_tcp_send_bytes_total{pid=\"10\",command=\"x\"} 7\n\
             netatop_tcp_send_bytes_total{pid=\"20\",command=\"a\\\"b\"} 5\n"
        ));
        assert!(text.ends_with("netatop_udp_recv_bytes_total{pid=\"30\",command=\"x\"} 0\n# EOF\n"));
        assert_eq!(text.matches("# TYPE").count(), 8);
        assert_eq!(text.matches("_total{").count(), 24);

        let mut out = Vec::new();
        write_openmetrics(&procs, By::Command, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("netatop_tcp_send_bytes_total{command=\"x\"} 8\n"));
        assert_eq!(text.matches("_total{").count(), 16);
    }
}
