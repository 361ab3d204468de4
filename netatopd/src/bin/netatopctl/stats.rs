//! `netatopctl stats`: what netatopd reports about itself.

use std::io::{self, Write};

use anyhow::{bail, Result};
use netatop_protocol::control::{Request, Response, Stats};
use netatop_protocol::Counters;
use netatopd_bpf::kernel_stat;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::table;
use crate::{output, Args, Source};

fn duration(secs: f64) -> String {
    let s = secs as u64;
    match s {
        0..=59 => format!("{secs:.1}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// "0: 2, 65534: 16", or "none".
fn by_uid(clients: &[(u32, u64)]) -> String {
    if clients.is_empty() {
        return "none".into();
    }
    let each: Vec<String> = clients.iter().map(|(u, n)| format!("{u}: {n}")).collect();
    each.join(", ")
}

/// One line per network namespace: what no process is counted for.
fn unattributed(per_netns: &[(u32, Counters)]) -> Vec<(&'static str, String)> {
    if per_netns.is_empty() {
        return vec![("unattributed", "none".into())];
    }
    per_netns
        .iter()
        .map(|(netns, c)| {
            (
                "unattributed",
                format!(
                    "net:[{netns}] sent {} packets ({}), received {} packets ({})",
                    c.send_packets(),
                    table::bytes(c.send_bytes() as f64),
                    c.recv_packets(),
                    table::bytes(c.recv_bytes() as f64)
                ),
            )
        })
        .collect()
}

fn print_text(s: &Stats, out: &mut impl Write) -> io::Result<()> {
    let lines = [
        ("version", s.version.clone()),
        ("uptime", duration(s.uptime_secs)),
        ("counting for", duration(s.counting_secs)),
        ("kernel", s.kernel.clone()),
        ("attach mode", s.attach_mode.clone()),
        (
            "counting",
            match s.count.as_str() {
                "wire" => "wire: IP packets and their bytes, headers included".to_owned(),
                "calls" => "calls: socket calls and their payload bytes".to_owned(),
                other => other.to_owned(),
            },
        ),
        (
            "pinned under",
            format!("{} ({} at start)", s.pin_dir, s.pinned),
        ),
        (
            "processes",
            if s.max_processes_per_user < s.max_processes {
                format!(
                    "{} tracked (map of {}), at most {} per user other than root",
                    s.processes, s.max_processes, s.max_processes_per_user
                )
            } else {
                format!("{} tracked (map of {})", s.processes, s.max_processes)
            },
        ),
        (
            "threads",
            if s.max_threads == 0 {
                format!("{} tracked (task-local storage)", s.threads)
            } else {
                format!("{} tracked (map of {})", s.threads, s.max_threads)
            },
        ),
        (
            "cgroups",
            format!(
                "{} with exited processes' totals (map of {}), {} removed kept (map of {})",
                s.cgroups, s.max_cgroups, s.removed_cgroups_kept, s.max_removed_cgroups
            ),
        ),
        ("pending exits", format!("map of {}", s.max_pending_exits)),
        ("events counted", s.events.to_string()),
        (
            "exited records",
            format!(
                "{} kept, {} dropped (--max-exited), {} expired before any client had them",
                s.exited_kept, s.exited_dropped, s.exited_undelivered
            ),
        ),
        (
            "clients",
            format!("{} atop, {} control", s.atop_clients, s.control_clients),
        ),
        ("clients by uid", by_uid(&s.clients_by_uid)),
        (
            "refused",
            format!(
                "{} --max-clients, {} --max-clients-per-user, {} kept for root",
                s.refused_max_clients, s.refused_per_user, s.refused_reserved
            ),
        ),
        ("closed idle", s.closed_idle.to_string()),
        ("queries served", s.queries.to_string()),
        (
            "query time",
            format!(
                "last {:.3} ms, median {:.3} ms",
                s.last_query_us as f64 / 1e3,
                s.median_query_us as f64 / 1e3
            ),
        ),
        (
            "kernel memory",
            if s.max_threads == 0 {
                format!(
                    "{} in maps, {} in threads' task storage (estimated)",
                    table::bytes(s.map_memory_bytes as f64),
                    table::bytes(s.thread_storage_bytes as f64)
                )
            } else {
                format!("{} in maps", table::bytes(s.map_memory_bytes as f64))
            },
        ),
    ];
    let mut lines = lines.to_vec();
    let wire = s.count == "wire";
    if wire {
        lines.extend(unattributed(&s.unattributed));
    }
    // The kernel's counts, each on its line, as netatopd lists them.
    for (name, value) in &s.kernel_counts {
        match kernel_stat(name) {
            Some(stat) if stat.wire_only && !wire => {}
            Some(stat) => lines.push((stat.label, format!("{value} {}", stat.help))),
            None => lines.push((name.as_str(), value.to_string())),
        }
    }
    let w = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in lines {
        writeln!(out, "{:<w$}  {v}", format!("{k}:"), w = w + 1)?;
    }
    Ok(())
}

pub fn run(args: &Args, json: bool) -> Result<()> {
    let mut source = Source::open(args, Some("stats"))?;
    let Response::Stats(s) = source.call(&Request::Stats)? else {
        bail!("unexpected response to a statistics request");
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    output(if json {
        serde_json::to_writer_pretty(&mut out, &json_of(&s)?)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        print_text(&s, &mut out)
    })
}

/// A JSON object with its keys in the order they came.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The statistics as JSON: the response's fields in their order, the
/// kernel's counts last, each under its own name.
fn json_of(s: &Stats) -> io::Result<Ordered> {
    let text = serde_json::to_string(s)?;
    let Ordered(mut entries) = serde_json::from_str(&text)?;
    entries.retain(|(k, _)| k != "kernel_counts");
    entries.extend(
        s.kernel_counts
            .iter()
            .map(|(name, v)| (name.clone(), Value::from(*v))),
    );
    Ok(Ordered(entries))
}
