//! The eight counters of a record, and the one table of their names.

use serde::{Deserialize, Serialize};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The eight counters, in wire order. In JSON (netatopctl and the tests)
/// they carry the names given here.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Serialize,
    Deserialize,
)]
#[repr(C)]
pub struct Counters {
    #[serde(rename = "tcp_send_packets")]
    pub tcpsndpacks: u64,
    #[serde(rename = "tcp_send_bytes")]
    pub tcpsndbytes: u64,
    #[serde(rename = "tcp_recv_packets")]
    pub tcprcvpacks: u64,
    #[serde(rename = "tcp_recv_bytes")]
    pub tcprcvbytes: u64,
    #[serde(rename = "udp_send_packets")]
    pub udpsndpacks: u64,
    #[serde(rename = "udp_send_bytes")]
    pub udpsndbytes: u64,
    #[serde(rename = "udp_recv_packets")]
    pub udprcvpacks: u64,
    #[serde(rename = "udp_recv_bytes")]
    pub udprcvbytes: u64,
}

/// What one of the eight counters is: where it is in the record and what
/// it is called wherever it is shown. The one table of their names:
/// netatopctl's columns, sort keys, JSON keys and metric families come
/// from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// JSON key (as serde names the field), e.g. `tcp_send_packets`.
    pub key: &'static str,
    /// Column header of `netatopctl dump`, e.g. `TCPSNDPKT`.
    pub column: &'static str,
    /// What it counts, one sentence (the metric's help text).
    pub help: &'static str,
    /// Bytes (else packets).
    pub bytes: bool,
    /// TCP (else UDP).
    pub tcp: bool,
    /// Sent (else received).
    pub send: bool,
}

const fn field(
    key: &'static str,
    column: &'static str,
    help: &'static str,
    tcp: bool,
    send: bool,
    bytes: bool,
) -> Field {
    Field {
        key,
        column,
        help,
        bytes,
        tcp,
        send,
    }
}

impl Field {
    /// The OpenMetrics family: `netatop_` and the key.
    pub fn metric(&self) -> String {
        format!("netatop_{}", self.key)
    }

    /// The command-line spelling: the key with dashes.
    pub fn option(&self) -> String {
        self.key.replace('_', "-")
    }
}

/// The eight counters in wire order (the order of [`Counters::fields`]).
pub const FIELDS: [Field; 8] = [
    field(
        "tcp_send_packets",
        "TCPSNDPKT",
        "Successful send calls on TCP sockets (one per message).",
        true,
        true,
        false,
    ),
    field(
        "tcp_send_bytes",
        "TCPSNDBYTES",
        "Bytes passed to TCP sockets by successful send calls.",
        true,
        true,
        true,
    ),
    field(
        "tcp_recv_packets",
        "TCPRCVPKT",
        "Successful receive calls on TCP sockets.",
        true,
        false,
        false,
    ),
    field(
        "tcp_recv_bytes",
        "TCPRCVBYTES",
        "Bytes returned by successful receive calls on TCP sockets.",
        true,
        false,
        true,
    ),
    field(
        "udp_send_packets",
        "UDPSNDPKT",
        "Successful send calls on UDP sockets (one per datagram).",
        false,
        true,
        false,
    ),
    field(
        "udp_send_bytes",
        "UDPSNDBYTES",
        "Bytes passed to UDP sockets by successful send calls.",
        false,
        true,
        true,
    ),
    field(
        "udp_recv_packets",
        "UDPRCVPKT",
        "Successful receive calls on UDP sockets (one per datagram).",
        false,
        false,
        false,
    ),
    field(
        "udp_recv_bytes",
        "UDPRCVBYTES",
        "Bytes returned by successful receive calls on UDP sockets.",
        false,
        false,
        true,
    ),
];

impl Counters {
    fn fields_mut(&mut self) -> [&mut u64; 8] {
        [
            &mut self.tcpsndpacks,
            &mut self.tcpsndbytes,
            &mut self.tcprcvpacks,
            &mut self.tcprcvbytes,
            &mut self.udpsndpacks,
            &mut self.udpsndbytes,
            &mut self.udprcvpacks,
            &mut self.udprcvbytes,
        ]
    }

    /// Counters from their values in wire order (as [`Counters::fields`]
    /// gives them).
    pub fn from_fields(v: [u64; 8]) -> Self {
        let mut c = Self::default();
        for (a, b) in c.fields_mut().into_iter().zip(v) {
            *a = b;
        }
        c
    }

    /// The counters in wire order, as described by [`FIELDS`].
    pub fn fields(&self) -> [u64; 8] {
        [
            self.tcpsndpacks,
            self.tcpsndbytes,
            self.tcprcvpacks,
            self.tcprcvbytes,
            self.udpsndpacks,
            self.udpsndbytes,
            self.udprcvpacks,
            self.udprcvbytes,
        ]
    }

    /// Adds `o` field by field (wrapping, like the kernel's counters).
    pub fn add(&mut self, o: &Self) {
        for (a, b) in self.fields_mut().into_iter().zip(o.fields()) {
            *a = a.wrapping_add(b);
        }
    }

    /// Raises each field to at least `o`'s.
    pub fn raise_to(&mut self, o: &Self) {
        for (a, b) in self.fields_mut().into_iter().zip(o.fields()) {
            *a = (*a).max(b);
        }
    }

    /// What grew since `before`, field by field (0 where a field is lower:
    /// counters only grow, so that is another process or a reset).
    pub fn since(&self, before: &Self) -> Self {
        let mut d = *self;
        for (a, b) in d.fields_mut().into_iter().zip(before.fields()) {
            *a = a.saturating_sub(b);
        }
        d
    }

    /// The sum of the fields that `pick` selects.
    pub fn sum(&self, pick: impl Fn(&Field) -> bool) -> u64 {
        FIELDS
            .iter()
            .zip(self.fields())
            .filter(|(f, _)| pick(f))
            .map(|(_, v)| v)
            .sum()
    }

    /// Bytes sent and received, TCP and UDP.
    pub fn bytes(&self) -> u64 {
        self.sum(|f| f.bytes)
    }

    /// Packets sent and received, TCP and UDP.
    pub fn packets(&self) -> u64 {
        self.sum(|f| !f.bytes)
    }

    pub fn send_bytes(&self) -> u64 {
        self.sum(|f| f.bytes && f.send)
    }

    pub fn recv_bytes(&self) -> u64 {
        self.sum(|f| f.bytes && !f.send)
    }

    pub fn send_packets(&self) -> u64 {
        self.sum(|f| !f.bytes && f.send)
    }

    pub fn recv_packets(&self) -> u64 {
        self.sum(|f| !f.bytes && !f.send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_and_raise_field_by_field() {
        let mut a = Counters {
            tcpsndpacks: 1,
            udprcvbytes: 10,
            ..Default::default()
        };
        let b = Counters {
            tcpsndpacks: 2,
            udprcvbytes: 5,
            ..Default::default()
        };
        a.add(&b);
        assert_eq!((a.tcpsndpacks, a.udprcvbytes), (3, 15));
        a.raise_to(&Counters {
            tcpsndpacks: 9,
            ..Default::default()
        });
        assert_eq!((a.tcpsndpacks, a.udprcvbytes), (9, 15));
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["tcp_send_packets"], 9);
        assert_eq!(json["udp_recv_bytes"], 15);
        assert_eq!(json.as_object().unwrap().len(), 8);
    }

    #[test]
    fn the_field_table_names_the_serde_keys_in_wire_order() {
        let c = Counters {
            tcpsndpacks: 1,
            tcpsndbytes: 2,
            tcprcvpacks: 3,
            tcprcvbytes: 4,
            udpsndpacks: 5,
            udpsndbytes: 6,
            udprcvpacks: 7,
            udprcvbytes: 8,
        };
        let json = serde_json::to_value(c).unwrap();
        for (i, f) in FIELDS.iter().enumerate() {
            assert_eq!(json[f.key], i as u64 + 1, "{}", f.key);
            assert_eq!(c.fields()[i], i as u64 + 1);
        }
        assert_eq!((c.bytes(), c.packets()), (2 + 4 + 6 + 8, 1 + 3 + 5 + 7));
        assert_eq!((c.send_bytes(), c.recv_packets()), (2 + 6, 3 + 7));
        let before = Counters {
            tcpsndpacks: 9,
            udprcvbytes: 3,
            ..Default::default()
        };
        let d = c.since(&before);
        assert_eq!((d.tcpsndpacks, d.udprcvbytes, d.tcpsndbytes), (0, 5, 2));
    }
}
