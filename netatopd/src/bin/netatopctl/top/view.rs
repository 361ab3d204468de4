//! What the process view and the group view of `netatopctl top` share:
//! the rate columns (the split ones derived from `FIELDS`), their cells,
//! a rate's JSON and the header line.

use netatop_protocol::{Field, FIELDS};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::rates::Rate;
use crate::table::{self, num, Column};

/// The counters in the order of the split columns: the bytes, then the
/// packets, each in wire order (TCP sent, TCP received, UDP sent, UDP
/// received); each with its index in `FIELDS`.
fn split_order() -> impl Iterator<Item = (usize, &'static Field)> {
    [true, false].into_iter().flat_map(|bytes| {
        FIELDS
            .iter()
            .enumerate()
            .filter(move |(_, f)| f.bytes == bytes)
    })
}

/// A counter's split column: `TCPSND/s` and `TCPRCV/s` for TCP's bytes
/// sent and received, `TCPSPKT/s` and `TCPRPKT/s` for its packets; UDP's
/// alike.
fn split_header(f: &Field) -> String {
    let proto = if f.tcp { "TCP" } else { "UDP" };
    let what = match (f.bytes, f.send) {
        (true, true) => "SND",
        (true, false) => "RCV",
        (false, true) => "SPKT",
        (false, false) => "RPKT",
    };
    format!("{proto}{what}/s")
}

/// The rate columns: bytes sent and received, then packets; with `split`,
/// one per counter, TCP and UDP apart.
pub fn rate_columns(split: bool) -> Vec<Column> {
    if split {
        split_order().map(|(_, f)| num(split_header(f))).collect()
    } else {
        ["SEND/s", "RECV/s", "SNDPKT/s", "RCVPKT/s"].map(num).into()
    }
}

/// A rate's cells under [`rate_columns`].
pub fn rate_cells<E>(r: &Rate<'_, E>, split: bool) -> Vec<String> {
    if split {
        split_order()
            .map(|(i, f)| table::amount(f.bytes, r.fields[i]))
            .collect()
    } else {
        vec![
            table::bytes(r.send_bytes),
            table::bytes(r.recv_bytes),
            table::count(r.send_packets),
            table::count(r.recv_packets),
        ]
    }
}

/// A rate as a JSON object: what the entry is (`names`: pid and command,
/// or labels), the four rates, what else is known of it (`state`), and
/// with --split the eight rates in a `split` object.
#[derive(Serialize)]
pub struct Json<'a, N, S> {
    #[serde(flatten)]
    names: N,
    send_bytes_per_sec: f64,
    recv_bytes_per_sec: f64,
    send_packets_per_sec: f64,
    recv_packets_per_sec: f64,
    #[serde(flatten)]
    state: S,
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<Split<'a>>,
}

impl<'a, N, S> Json<'a, N, S> {
    pub fn new<E>(rate: &'a Rate<'_, E>, split: bool, names: N, state: S) -> Self {
        Json {
            names,
            send_bytes_per_sec: rate.send_bytes,
            recv_bytes_per_sec: rate.recv_bytes,
            send_packets_per_sec: rate.send_packets,
            recv_packets_per_sec: rate.recv_packets,
            state,
            split: split.then_some(Split(&rate.fields)),
        }
    }
}

/// A rate's eight counters per second: an object in wire order, each
/// named after its field: `tcp_send_packets_per_sec`, ...
struct Split<'a>(&'a [f64; 8]);

impl Serialize for Split<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(FIELDS.len()))?;
        for (f, v) in FIELDS.iter().zip(self.0) {
            m.serialize_entry(&format!("{}_per_sec", f.key), v)?;
        }
        m.end()
    }
}

/// The line above the table: the clock, the interval, the bytes sent and
/// received per second in all, and how many rows (`what`) had traffic.
pub fn header_line(
    time: f64,
    interval: f64,
    (send, recv): (f64, f64),
    n: usize,
    what: &str,
) -> String {
    let clock = table::local_time(time as u64);
    format!(
        "netatopctl top  {}  interval {interval:.2}s  send {}/s  recv {}/s  {n} {what} with traffic",
        &clock[11..],
        table::bytes(send),
        table::bytes(recv),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use netatop_protocol::control::Process;
    use netatop_protocol::Counters;

    #[test]
    fn split_columns_follow_the_fields_and_their_cells() {
        let headers: Vec<String> = rate_columns(true)
            .iter()
            .map(|c| c.header.to_string())
            .collect();
        assert_eq!(
            headers,
            [
                "TCPSND/s",
                "TCPRCV/s",
                "UDPSND/s",
                "UDPRCV/s",
                "TCPSPKT/s",
                "TCPRPKT/s",
                "UDPSPKT/s",
                "UDPRPKT/s"
            ]
        );
        let p = Process {
            pid: 1,
            btime: 0,
            command: "p".into(),
            counters: Counters::default(),
            exited: false,
            threads: Vec::new(),
        };
        // Each field a value of its own: 1, 2, ... KiB per second for the
        // bytes, 1, 2, ... k for the packets.
        let r = Rate {
            entry: &p,
            send_bytes: 0.0,
            recv_bytes: 0.0,
            send_packets: 0.0,
            recv_packets: 0.0,
            fields: std::array::from_fn(|i| {
                let v = i as f64 + 1.0;
                if FIELDS[i].bytes {
                    v * 1024.0
                } else {
                    v * 1000.0
                }
            }),
        };
        assert_eq!(
            rate_cells(&r, true),
            ["2.0KiB", "4.0KiB", "6.0KiB", "8.0KiB", "1.0k", "3.0k", "5.0k", "7.0k"]
        );
        assert_eq!(rate_cells(&r, false).len(), rate_columns(false).len());
        let json = serde_json::to_value(Json::new(&r, true, (), ())).unwrap();
        assert_eq!(json["split"]["tcp_send_bytes_per_sec"], 2048.0);
        assert_eq!(json["split"].as_object().unwrap().len(), 8);
        assert_eq!(json.as_object().unwrap().len(), 5);
    }
}
