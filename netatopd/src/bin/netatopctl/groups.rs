//! `--by cgroup|unit|container|pod`: counters per cgroup v2, or summed over
//! the cgroups that name the same systemd unit, container or pod.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::ValueEnum;
use netatop_protocol::cgroup::names;
use netatop_protocol::control::{Cgroup, Request, Response};
use netatop_protocol::Counters;

use crate::table::{text, Column};
use crate::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Group {
    /// Each cgroup v2: label `cgroup` (its path).
    Cgroup,
    /// Each systemd unit (service or scope): label `unit`.
    Unit,
    /// Each container: label `container_id`.
    Container,
    /// Each Kubernetes pod: labels `pod_uid` and `qos`.
    Pod,
}

/// A group's labels: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// One group: its labels and its counters; `removed` when it is a removed
/// cgroup's final totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub labels: Vec<(&'static str, String)>,
    pub counters: Counters,
    pub removed: bool,
}

/// The labels of the group of `by` that a cgroup at `path` (id `id`)
/// belongs to; `None` where its path names no group of that kind.
fn group_of(path: &str, id: u64, by: Group) -> Option<Labels> {
    let n = names(path);
    Some(match by {
        Group::Cgroup => vec![(
            "cgroup",
            if path.is_empty() {
                format!("#{id}")
            } else {
                path.to_owned()
            },
        )],
        Group::Unit => vec![("unit", n.unit?)],
        Group::Container => vec![("container_id", n.container_id?)],
        Group::Pod => vec![("pod_uid", n.pod_uid?), ("qos", n.qos?)],
    })
}

/// The groups of `by` over `cgroups`, sorted by their labels. Cgroups that
/// name no group of that kind are left out, and so is a removed cgroup
/// whose parent is in the same group: its final totals moved into its
/// parent's, which the group's live row already holds.
pub fn rows(cgroups: &[Cgroup], by: Group) -> Vec<Row> {
    let mut sums: BTreeMap<(Labels, bool), Counters> = BTreeMap::new();
    for cg in cgroups {
        let Some(labels) = group_of(&cg.path, cg.id, by) else {
            continue;
        };
        if cg.removed {
            let parent = cg.path.rsplit_once('/').map_or("", |(p, _)| p);
            if !parent.is_empty() && group_of(parent, 0, by).as_ref() == Some(&labels) {
                continue;
            }
        }
        sums.entry((labels, cg.removed))
            .or_default()
            .add(&cg.counters);
    }
    sums.into_iter()
        .map(|((labels, removed), counters)| Row {
            labels,
            counters,
            removed,
        })
        .collect()
}

/// Every cgroup netatopd counts (with `removed`, also the cgroups removed
/// since this connection's previous request).
pub fn fetch(source: &mut Source, removed: bool) -> Result<Vec<Cgroup>> {
    match source.call(&Request::Cgroups { removed })? {
        Response::Cgroups(c) => Ok(c),
        other => bail!("unexpected response {other:?}"),
    }
}

/// The label columns of rows labelled like `first` (a GROUP column where
/// there are no rows).
pub fn label_columns(first: Option<&Labels>) -> Vec<Column> {
    match first {
        Some(labels) => labels.iter().map(|(k, _)| text(heading(k))).collect(),
        None => vec![text("GROUP")],
    }
}

/// A row's label cells, the last marked "(removed)" where it is.
pub fn label_cells(labels: &Labels, removed: bool) -> Vec<String> {
    let mut cells: Vec<String> = labels.iter().map(|(_, v)| v.clone()).collect();
    if removed {
        if let Some(last) = cells.last_mut() {
            last.push_str(" (removed)");
        }
    }
    cells
}

/// A group label's column heading.
pub fn heading(label: &str) -> &'static str {
    match label {
        "cgroup" => "CGROUP",
        "unit" => "UNIT",
        "container_id" => "CONTAINER",
        "pod_uid" => "POD",
        "qos" => "QOS",
        _ => "GROUP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(id: u64, path: &str, packets: u64) -> Cgroup {
        Cgroup {
            id,
            path: path.into(),
            counters: Counters::from_fields([packets, 0, 0, 0, 0, 0, 0, 0]),
            removed: false,
        }
    }

    #[test]
    fn groups_sum_their_cgroups() {
        let id = "a".repeat(64);
        let all = [
            cg(1, "/system.slice/nginx.service", 5),
            cg(2, "/system.slice/nginx.service/worker", 7),
            cg(3, &format!("/system.slice/docker-{id}.scope"), 11),
            cg(4, "/", 13),
        ];
        let units = rows(&all, Group::Unit);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].labels, [("unit", format!("docker-{id}.scope"))]);
        assert_eq!(units[1].labels, [("unit", "nginx.service".to_owned())]);
        assert_eq!(units[1].counters.tcpsndpacks, 12);
        let containers = rows(&all, Group::Container);
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0].counters.tcpsndpacks, 11);
        assert_eq!(rows(&all, Group::Cgroup).len(), 4);
        assert!(rows(&all, Group::Pod).is_empty());
    }

    #[test]
    fn a_removed_child_is_in_its_parents_row_and_a_removed_unit_is_its_own() {
        let mut worker = cg(2, "/system.slice/nginx.service/worker", 7);
        worker.removed = true;
        let mut old = cg(5, "/system.slice/cron.service", 3);
        old.removed = true;
        let all = [
            // The worker's 7 moved into nginx.service's 12 at its removal.
            cg(1, "/system.slice/nginx.service", 12),
            worker,
            // cron.service restarted: the old cgroup's final totals, and
            // the new one's.
            old,
            cg(6, "/system.slice/cron.service", 1),
        ];
        let units: Vec<(String, u64, bool)> = rows(&all, Group::Unit)
            .into_iter()
            .map(|r| (r.labels[0].1.clone(), r.counters.tcpsndpacks, r.removed))
            .collect();
        assert_eq!(
            units,
            [
                ("cron.service".to_owned(), 1, false),
                ("cron.service".to_owned(), 3, true),
                ("nginx.service".to_owned(), 12, false),
            ]
        );
        // Per cgroup, each removed cgroup is a row of its own.
        assert_eq!(
            rows(&all, Group::Cgroup)
                .iter()
                .filter(|r| r.removed)
                .count(),
            2
        );
    }
}
