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

/// One series: its labels, its counters, and since when they count (Unix
/// seconds; for `_created`).
pub struct Series {
    pub labels: String,
    pub counters: Counters,
    pub created: f64,
}

/// Label sets and their counters, per process or command; each counts
/// since its process started or since counting started (`since`),
/// whichever is later (a command: its oldest process).
fn series(procs: &[Process], by: By, since: f64) -> Vec<Series> {
    let start = |p: &Process| (p.btime as f64).max(since);
    match by {
        By::Cgroup | By::Unit | By::Container | By::Pod => {
            unreachable!("cgroup groupings come from group_series")
        }
        By::Pid => {
            let mut v: Vec<&Process> = procs.iter().collect();
            v.sort_by_key(|p| p.pid);
            v.into_iter()
                .map(|p| Series {
                    labels: format!("pid=\"{}\",command=\"{}\"", p.pid, escape(&p.command)),
                    counters: p.counters,
                    created: start(p),
                })
                .collect()
        }
        By::Command => {
            let mut sums: BTreeMap<&str, (Counters, f64)> = BTreeMap::new();
            for p in procs {
                let e = sums
                    .entry(&p.command)
                    .or_insert((Counters::default(), f64::MAX));
                e.0.add(&p.counters);
                e.1 = e.1.min(start(p));
            }
            sums.into_iter()
                .map(|(cmd, (c, created))| Series {
                    labels: format!("command=\"{}\"", escape(cmd)),
                    counters: c,
                    created,
                })
                .collect()
        }
    }
}

/// Label sets and their counters, per group of cgroups (removed ones
/// left out: their totals were final), counting since counting started.
fn group_series(rows: &[crate::groups::Row], since: f64) -> Vec<Series> {
    rows.iter()
        .filter(|r| !r.removed)
        .map(|r| {
            let labels: Vec<String> = r
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            Series {
                labels: labels.join(","),
                counters: r.counters,
                created: since,
            }
        })
        .collect()
}

/// One counter family: its metadata in `format`, then one sample per
/// label set, and with `created`, when each began counting (Unix
/// seconds): `_created` samples of the family in OpenMetrics, a gauge
/// family of their own in the Prometheus text format.
fn family<'a>(
    out: &mut impl Write,
    format: Format,
    name: &str,
    bytes: bool,
    help: &str,
    created: bool,
    samples: impl Iterator<Item = (&'a str, u64, f64)> + Clone,
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
    for (labels, v, since) in samples.clone() {
        writeln!(out, "{name}_total{{{labels}}} {v}")?;
        if created && format == Format::Openmetrics {
            writeln!(out, "{name}_created{{{labels}}} {since:.3}")?;
        }
    }
    if created && format == Format::Prometheus {
        writeln!(out, "# TYPE {name}_created gauge")?;
        writeln!(
            out,
            "# HELP {name}_created When {family} began counting (Unix seconds)"
        )?;
        for (labels, _, since) in samples {
            writeln!(out, "{name}_created{{{labels}}} {since:.3}")?;
        }
    }
    Ok(())
}

/// What one export or scrape shows.
pub struct Metrics {
    pub series: Vec<Series>,
    /// Counting the wire: what is unattributed, per network namespace.
    pub wire: Option<Vec<(u32, Counters)>>,
    /// The exited processes' final totals no client had, by why (none
    /// from a plain netatop service).
    pub exited_lost: Vec<(&'static str, u64)>,
    /// When counting started (Unix seconds; 0 when the source cannot
    /// tell: a plain netatop service).
    pub since: f64,
}

impl Metrics {
    /// Asks `source` for the series of `by`.
    pub fn collect(source: &mut Source, by: By) -> Result<Metrics> {
        let stats = source.stats()?;
        let wire = stats.as_deref().and_then(crate::wire_of).map(<[_]>::to_vec);
        let exited_lost = stats
            .as_ref()
            .map(|s| {
                vec![
                    ("max-exited", s.exited_dropped),
                    ("expired", s.exited_undelivered),
                ]
            })
            .unwrap_or_default();
        let since = stats.as_ref().map_or(0.0, |s| s.counting_since_unix as f64);
        let series = match by.group() {
            None => series(&source.processes(false, false)?, by, since),
            Some(g) => group_series(
                &crate::groups::rows(&crate::groups::fetch(source, false)?, g),
                since,
            ),
        };
        Ok(Metrics {
            series,
            wire,
            exited_lost,
            since,
        })
    }
}

/// The metrics text in `format`: the counters of `m` (none when the
/// source did not answer), with `_created` samples if `created`, then
/// `gauges` (name, help, value), then OpenMetrics's `# EOF`. Counting the
/// wire, each family's help says that its packets are IP packets and its
/// bytes their IP length, and the unattributed families follow, labelled
/// by namespace.
pub fn write_metrics(
    m: Option<&Metrics>,
    format: Format,
    created: bool,
    gauges: &[(&str, &str, f64)],
    out: &mut impl Write,
) -> io::Result<()> {
    if let Some(m) = m {
        write_counters(m, format, created, out)?;
    }
    for (name, help, v) in gauges {
        writeln!(out, "# TYPE {name} gauge\n# HELP {name} {help}\n{name} {v}")?;
    }
    if format == Format::Openmetrics {
        writeln!(out, "# EOF")?;
    }
    Ok(())
}

/// The counter families of `m` (see [`write_metrics`]).
fn write_counters(
    m: &Metrics,
    format: Format,
    created: bool,
    out: &mut impl Write,
) -> io::Result<()> {
    for (i, f) in FIELDS.iter().enumerate() {
        let help = match m.wire {
            Some(_) => format!(
                "{} (counting the wire: IP packets, bytes with headers)",
                f.help
            ),
            None => f.help.to_owned(),
        };
        let samples = m
            .series
            .iter()
            .map(|s| (s.labels.as_str(), s.counters.fields()[i], s.created));
        family(out, format, &f.metric(), f.bytes, &help, created, samples)?;
    }
    if let Some(unattributed) = &m.wire {
        let labels: Vec<(String, Counters)> = unattributed
            .iter()
            .map(|(netns, c)| (format!("netns=\"{netns}\""), *c))
            .collect();
        for (i, f) in FIELDS.iter().enumerate() {
            let help = format!(
                "{} for no process, per network namespace (counting the wire)",
                f.help
            );
            let samples = labels
                .iter()
                .map(|(l, c)| (l.as_str(), c.fields()[i], m.since));
            let name = format!("netatop_unattributed_{}", f.key);
            family(out, format, &name, f.bytes, &help, created, samples)?;
        }
    }
    if !m.exited_lost.is_empty() {
        let labels: Vec<(String, u64)> = m
            .exited_lost
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
            created,
            labels.iter().map(|(l, n)| (l.as_str(), *n, m.since)),
        )?;
    }
    Ok(())
}

pub fn run(args: &Args, o: &Opts) -> Result<()> {
    let mut source = Source::open(args, o.by.group().map(|_| "--by with cgroups"))?;
    let m = Metrics::collect(&mut source, o.by)?;
    let mut text = Vec::new();
    write_metrics(Some(&m), o.format, false, &[], &mut text).expect("writing to memory");
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
            btime: 1_000,
            command: command.into(),
            counters: Counters {
                tcpsndbytes,
                ..Default::default()
            },
            exited: false,
            threads: Vec::new(),
        }
    }

    fn metrics(series: Vec<Series>) -> Metrics {
        Metrics {
            series,
            wire: None,
            exited_lost: Vec::new(),
            since: 500.0,
        }
    }

    #[test]
    fn families_series_and_eof() {
        let procs = [proc(20, "a\"b", 5), proc(10, "x", 7), proc(30, "x", 1)];
        let mut out = Vec::new();
        write_metrics(
            Some(&metrics(series(&procs, By::Pid, 500.0))),
            Format::Openmetrics,
            false,
            &[],
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
            Some(&metrics(series(&procs, By::Command, 500.0))),
            Format::Openmetrics,
            false,
            &[],
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
        let m = Metrics {
            wire: Some(un.to_vec()),
            exited_lost: vec![("max-exited", 2), ("expired", 3)],
            ..metrics(series(&procs, By::Pid, 500.0))
        };
        write_metrics(Some(&m), Format::Prometheus, false, &[], &mut out).unwrap();
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

    #[test]
    fn created_samples_and_gauges() {
        // Started before counting (500): counts since 500; after: since
        // its start.
        let mut old = proc(10, "x", 7);
        old.btime = 100;
        let procs = [old, proc(20, "x", 5)];
        let m = metrics(series(&procs, By::Pid, 500.0));
        let up = [("netatopd_up", "Whether netatopd answered", 1.0)];
        let mut out = Vec::new();
        write_metrics(Some(&m), Format::Openmetrics, true, &up, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(
            "netatop_tcp_send_bytes_total{pid=\"10\",command=\"x\"} 7\n\
             netatop_tcp_send_bytes_created{pid=\"10\",command=\"x\"} 500.000\n\
             netatop_tcp_send_bytes_total{pid=\"20\",command=\"x\"} 5\n\
             netatop_tcp_send_bytes_created{pid=\"20\",command=\"x\"} 1000.000\n"
        ));
        assert!(text.ends_with(
            "# TYPE netatopd_up gauge\n# HELP netatopd_up Whether netatopd answered\n\
             netatopd_up 1\n# EOF\n"
        ));
        assert_eq!(text.matches("_created{").count(), 16);

        let mut out = Vec::new();
        write_metrics(Some(&m), Format::Prometheus, true, &up, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(
            "# TYPE netatop_tcp_send_bytes_created gauge\n\
             # HELP netatop_tcp_send_bytes_created When netatop_tcp_send_bytes_total began \
             counting (Unix seconds)\n\
             netatop_tcp_send_bytes_created{pid=\"10\",command=\"x\"} 500.000\n"
        ));
        assert_eq!(text.matches("# TYPE").count(), 17);

        // A command counts since its oldest process.
        let m = metrics(series(&procs, By::Command, 500.0));
        assert_eq!(m.series[0].created, 500.0);
    }
}
