//! The group view of `netatopctl top --by`: each group's rates, as the
//! model computed them, as a table row or a JSON object.

use std::io;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::rates::{totals, Rate};
use super::screen::Output;
use super::view::{header_line, rate_cells, rate_columns, Json};
use crate::groups::{self, Labels, Row};

/// What a group is, in its JSON object: its labels (`unit`,
/// `container_id`, `pod_uid` and `qos`, or `cgroup`).
struct Names<'a>(&'a Labels);

impl Serialize for Names<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// What else is known of a group, in its JSON object.
#[derive(Serialize)]
struct State {
    /// Its cgroup was removed during the interval; its final deltas.
    removed: bool,
}

#[derive(Serialize)]
struct Sample<'a> {
    time: f64,
    interval: f64,
    groups: Vec<Json<'a, Names<'a>, State>>,
}

/// Shows one interval's `rates` of groups.
pub fn show(out: &Output, rates: &[Rate<'_, Row>], time: f64, interval: f64) -> io::Result<()> {
    let mut columns = groups::label_columns(rates.first().map(|r| &r.entry.labels));
    columns.extend(rate_columns(out.split));
    let rows = rates
        .iter()
        .map(|r| {
            let mut row = groups::label_cells(&r.entry.labels, r.entry.removed);
            row.extend(rate_cells(r, out.split));
            row
        })
        .collect();
    let what = kind(rates).unwrap_or("groups");
    let header = header_line(time, interval, totals(rates), rates.len(), what);
    let sample = Sample {
        time,
        interval,
        groups: rates
            .iter()
            .map(|r| {
                let state = State {
                    removed: r.entry.removed,
                };
                Json::new(r, out.split, Names(&r.entry.labels), state)
            })
            .collect(),
    };
    out.emit(&sample, header, &columns, rows)
}

/// What the rows are, from their first label.
fn kind(rates: &[Rate<'_, Row>]) -> Option<&'static str> {
    Some(match rates.first()?.entry.labels.first()?.0 {
        "cgroup" => "cgroups",
        "unit" => "units",
        "container_id" => "containers",
        "pod_uid" => "pods",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::rates::Rates;
    use super::*;
    use netatop_protocol::Counters;

    #[test]
    fn a_group_is_its_labels_its_rates_and_whether_it_was_removed() {
        let row = |removed| Row {
            labels: vec![("pod_uid", "1234".into()), ("qos", "burstable".into())],
            counters: Counters::from_fields([0, 0, 0, 0, 3, 300, 0, 0]),
            removed,
        };
        let first = [row(false)];
        let mut model = Rates::new(&first);
        let now = [Row {
            counters: Counters::from_fields([0, 0, 0, 0, 5, 700, 0, 0]),
            ..row(true)
        }];
        let rates = model.next(&now, 2.0);
        let r = &rates[0];
        let state = State { removed: true };
        let json =
            serde_json::to_string(&Json::new(r, false, Names(&r.entry.labels), state)).unwrap();
        assert_eq!(
            json,
            "{\"pod_uid\":\"1234\",\"qos\":\"burstable\",\"send_bytes_per_sec\":200.0,\
             \"recv_bytes_per_sec\":0.0,\"send_packets_per_sec\":1.0,\
             \"recv_packets_per_sec\":0.0,\"removed\":true}"
        );
        assert_eq!(kind(&rates), Some("pods"));
    }
}
