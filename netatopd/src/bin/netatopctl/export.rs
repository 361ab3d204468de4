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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// OpenMetrics text (Prometheus scrapes it; families named without
    /// `_total`, units, `# EOF`).
    Openmetrics,
    /// The Prometheus text format, which node_exporter's textfile
    /// collector and `promtool check metrics` read: families named with
    /// `_total`, no units, no `# EOF`.
    Prometheus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// One series per process: labels pid and command.
    Pid,
    /// One series per command name: the sums over its processes.
    Command,
    /// One series per cgroup v2: label cgroup (needs netatopd).
    Cgroup,
    /// One series per systemd unit: label unit (needs netatopd).
    Unit,
    /// One series per container: label container_id (needs netatopd).
    Container,
    /// One series per Kubernetes pod: labels pod_uid and qos (needs
    /// netatopd).
    Pod,
}

impl By {
    /// The cgroup grouping it asks for, if any.
    fn group(self) -> Option<crate::groups::Group> {
        use crate::groups::Group;
        match self {
            By::Pid | By::Command => None,
            By::Cgroup => Some(Group::Cgroup),
            By::Unit => Some(Group::Unit),
            By::Container => Some(Group::Container),
            By::Pod => Some(Group::Pod),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Opts {
    #[arg(long, value_enum)]
    format: Format,
    /// Series per process or command name, or per cgroup, systemd unit,
    /// container or pod (counters that do not drop when a process exits).
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

/// Label sets and their counters, per process or command.
fn series(procs: &[Process], by: By) -> Vec<(String, Counters)> {
    match by {
        By::Cgroup | By::Unit | By::Container | By::Pod => {
            unreachable!("cgroup groupings come from group_series")
        }
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

/// Label sets and their counters, per group of cgroups (removed ones
/// left out: their totals were final).
fn group_series(rows: &[crate::groups::Row]) -> Vec<(String, Counters)> {
    rows.iter()
        .filter(|r| !r.removed)
        .map(|r| {
            let labels: Vec<String> = r
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            (labels.join(","), r.counters)
        })
        .collect()
}

/// One counter family: its metadata in `format`, then one sample per
/// label set.
fn family<'a>(
    out: &mut impl Write,
    format: Format,
    name: &str,
    bytes: bool,
    help: &str,
    samples: impl Iterator<Item = (&'a str, u64)>,
) -> io::Result<()> {
    // OpenMetrics names the family without the `_total` of its samples;
    // the Prometheus text format names it as they are.
    let family = match format {
        Format::Openmetrics => name.to_owned(),
        Format::Prometheus => format!("{name}_total"),
    };
    writeln!(out, "# TYPE {family} counter")?;
    if bytes && format == Format::Openmetrics {
        writeln!(out, "# UNIT {family} bytes")?;
    }
    writeln!(out, "# HELP {family} {help}")?;
    for (labels, v) in samples {
        writeln!(out, "{name}_total{{{labels}}} {v}")?;
    }
    Ok(())
}

/// The metrics text in `format`. Counting the wire (`wire`: what is
/// unattributed per network namespace), each family's help says that its
/// packets are IP packets and its bytes their IP length, and the
/// unattributed families follow, labelled by namespace. `exited_lost`:
/// the exited processes' final totals no client had, by why (none from a
/// plain netatop service).
pub fn write_metrics(
    series: &[(String, Counters)],
    wire: Option<&[(u32, Counters)]>,
    exited_lost: &[(&str, u64)],
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    for (i, f) in FIELDS.iter().enumerate() {
        let help = match wire {
            Some(_) => format!(
                "{} (counting the wire: IP packets, bytes with headers)",
                f.help
            ),
            None => f.help.to_owned(),
        };
        let samples = series.iter().map(|(l, c)| (l.as_str(), c.fields()[i]));
        family(out, format, &f.metric(), f.bytes, &help, samples)?;
    }
    if let Some(unattributed) = wire {
        let labels: Vec<(String, Counters)> = unattributed
            .iter()
            .map(|(netns, c)| (format!("netns=\"{netns}\""), *c))
            .collect();
        for (i, f) in FIELDS.iter().enumerate() {
            let help = format!(
                "{} for no process, per network namespace (counting the wire)",
                f.help
            );
            let samples = labels.iter().map(|(l, c)| (l.as_str(), c.fields()[i]));
            let name = format!("netatop_unattributed_{}", f.key);
            family(out, format, &name, f.bytes, &help, samples)?;
        }
    }
    if !exited_lost.is_empty() {
        let labels: Vec<(String, u64)> = exited_lost
            .iter()
            .map(|(why, n)| (format!("why=\"{why}\""), *n))
            .collect();
        family(
            out,
            format,
            "netatop_exited_lost",
            false,
            "Exited processes whose final totals no client had: dropped beyond \
             --max-exited, or expired (--exit-grace) while no client was connected",
            labels.iter().map(|(l, n)| (l.as_str(), *n)),
        )?;
    }
    if format == Format::Openmetrics {
        writeln!(out, "# EOF")?;
    }
    Ok(())
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    let group = o.by.group();
    let mut source = Source::open(args, group.map(|_| "--by with cgroups"))?;
    let stats = source.stats()?;
    let wire = stats.as_deref().and_then(crate::wire_of);
    let exited_lost: Vec<(&str, u64)> = stats
        .as_ref()
        .map(|s| {
            vec![
                ("max-exited", s.exited_dropped),
                ("expired", s.exited_undelivered),
            ]
        })
        .unwrap_or_default();
    let series = match group {
        None => series(&source.processes(false, false)?, o.by),
        Some(g) => group_series(&crate::groups::rows(
            &crate::groups::fetch(&mut source, false)?,
            g,
        )),
    };
    let mut text = Vec::new();
    write_metrics(&series, wire, &exited_lost, o.format, &mut text).expect("writing to memory");
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
        write_metrics(
            &series(&procs, By::Pid),
            None,
            &[],
            Format::Openmetrics,
            &mut out,
        )
        .unwrap();
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
        write_metrics(
            &series(&procs, By::Command),
            None,
            &[],
            Format::Openmetrics,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("netatop_tcp_send_bytes_total{command=\"x\"} 8\n"));
        assert_eq!(text.matches("_total{").count(), 16);
    }

    #[test]
    fn prometheus_format_names_families_as_their_samples() {
        let procs = [proc(20, "a", 5), proc(10, "x", 7)];
        let mut out = Vec::new();
        let un = [(
            4026531840u32,
            Counters::from_fields([1, 60, 2, 120, 0, 0, 0, 0]),
        )];
        write_metrics(
            &series(&procs, By::Pid),
            Some(&un),
            &[("max-exited", 2), ("expired", 3)],
            Format::Prometheus,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        if let Some(path) = std::env::var_os("NETATOP_EXPORT_SAMPLE") {
            std::fs::write(path, &text).unwrap();
        }
        assert!(text.starts_with(
            "# TYPE netatop_tcp_send_packets_total counter\n# HELP netatop_tcp_send_packets_total "
        ));
        assert!(!text.contains("# UNIT") && !text.contains("# EOF"));
        assert!(
            text.contains("netatop_unattributed_tcp_send_bytes_total{netns=\"4026531840\"} 60\n")
        );
        assert!(text.contains(
            "netatop_exited_lost_total{why=\"max-exited\"} 2\nnetatop_exited_lost_total{why=\"expired\"} 3\n"
        ));
        assert_eq!(text.matches("# TYPE").count(), 17);
    }
}
