//! The wire itself: two network namespaces and the veth pair between them
//! (optionally a bridge above end A's veth), made quiet, read through the
//! interfaces' own counters, and removed when dropped.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::{ok, run};

/// The Ethernet header each frame has beyond its IP packet.
pub const ETHERNET_HEADER: u64 = 14;

/// One end of the wire.
#[derive(Clone, Debug)]
pub struct End {
    /// The namespace's name (under /run/netns).
    pub netns: String,
    /// The veth device in it.
    pub dev: String,
    /// Its IPv4 address (a /30 shared with the other end).
    pub addr: Ipv4Addr,
}

impl End {
    /// The namespace's path, for setns(2).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// `ip netns exec NETNS`: a prefix that runs a command in this end.
    pub fn exec_prefix(&self) -> Vec<OsString> {
        ["ip", "netns", "exec", &self.netns]
            .iter()
            .map(OsString::from)
            .collect()
    }

    /// `ip -j -s link show` of the device: its address and counters.
    fn link(&self) -> (Value, String) {
        let out = ok(Command::new("ip").args([
            "-n",
            &self.netns,
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            &self.dev,
        ]));
        let v: Value = serde_json::from_str(&out).expect("ip -j link output");
        (v[0].clone(), out)
    }

    /// What the interface has carried so far.
    pub fn counters(&self) -> IfCounters {
        let (v, out) = self.link();
        let s = &v["stats64"];
        let n = |dir: &str, what: &str| {
            s[dir][what]
                .as_u64()
                .unwrap_or_else(|| panic!("no {dir}.{what} in {out}"))
        };
        IfCounters {
            tx_packets: n("tx", "packets"),
            tx_bytes: n("tx", "bytes"),
            rx_packets: n("rx", "packets"),
            rx_bytes: n("rx", "bytes"),
        }
    }

    /// The device's MAC address.
    fn mac(&self) -> String {
        let (v, out) = self.link();
        v["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {out}"))
            .to_string()
    }
}

/// An interface's counters (frames and their bytes, Ethernet header
/// included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl IfCounters {
    /// What was carried between `before` and `self`.
    pub fn since(&self, before: &IfCounters) -> IfCounters {
        IfCounters {
            tx_packets: self.tx_packets - before.tx_packets,
            tx_bytes: self.tx_bytes - before.tx_bytes,
            rx_packets: self.rx_packets - before.rx_packets,
            rx_bytes: self.rx_bytes - before.rx_bytes,
        }
    }

    /// IP-level bytes sent: frames' bytes less their Ethernet headers.
    pub fn tx_ip_bytes(&self) -> u64 {
        self.tx_bytes - ETHERNET_HEADER * self.tx_packets
    }

    /// IP-level bytes received.
    pub fn rx_ip_bytes(&self) -> u64 {
        self.rx_bytes - ETHERNET_HEADER * self.rx_packets
    }
}

/// The two namespaces and the veth pair between them.
pub struct Wire {
    pub a: End,
    pub b: End,
    /// End A's veth is under a bridge ([`Wire::bridge_a`]).
    bridged: std::cell::Cell<bool>,
}

static WIRES: AtomicUsize = AtomicUsize::new(0);

impl Wire {
    /// Creates both namespaces and the pair; `tag` names them (with this
    /// test process's pid, so that parallel tests never collide).
    pub fn create(tag: &str) -> Wire {
        let n = WIRES.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // 10.(pid / 256 % 64 + 64).(pid % 256).(4n+1 / 4n+2): a /30 per wire,
        // distinct per test process and per wire within it.
        let net = [
            10,
            (pid / 256 % 64 + 64) as u8,
            (pid % 256) as u8,
            (4 * (n % 64)) as u8,
        ];
        let end = |side: &str, host: u8| End {
            netns: format!("netatop-{tag}-{pid}-{n}{side}"),
            dev: format!("nat{side}"),
            addr: Ipv4Addr::new(net[0], net[1], net[2], net[3] + host),
        };
        // Made before anything else, so that Drop removes whatever a
        // failing step leaves.
        let w = Wire {
            a: end("a", 1),
            b: end("b", 2),
            bridged: std::cell::Cell::new(false),
        };
        for e in [&w.a, &w.b] {
            ok(Command::new("ip").args(["netns", "add", &e.netns]));
        }
        ok(Command::new("ip").args([
            "-n", &w.a.netns, "link", "add", &w.a.dev, "type", "veth", "peer", "name", &w.b.dev,
            "netns", &w.b.netns,
        ]));
        for e in [&w.a, &w.b] {
            let ns = e.netns.as_str();
            let ip = |args: &[&str]| {
                let mut c = Command::new("ip");
                c.args(["-n", ns]).args(args);
                ok(&mut c);
            };
            // No IPv6 on the device at all: nothing it would send unasked.
            ok(Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", e.dev),
            ]));
            // Segmentation offloads off: the device counts the packets a
            // wire would carry (UDP_SEGMENT sends and GSO lists included).
            ok(Command::new("ip").args([
                "netns",
                "exec",
                ns,
                "ethtool",
                "-K",
                &e.dev,
                "tso",
                "off",
                "gso",
                "off",
                "gro",
                "off",
                "tx-udp-segmentation",
                "off",
                "tx-gso-list",
                "off",
            ]));
            ip(&["addr", "add", &format!("{}/30", e.addr), "dev", &e.dev]);
            ip(&["link", "set", "lo", "up"]);
        }
        for (e, peer) in [(&w.a, &w.b), (&w.b, &w.a)] {
            let mac = peer.mac();
            ok(Command::new("ip").args([
                "-n",
                &e.netns,
                "neigh",
                "add",
                &peer.addr.to_string(),
                "lladdr",
                &mac,
                "dev",
                &e.dev,
                "nud",
                "permanent",
            ]));
        }
        for e in [&w.a, &w.b] {
            ok(Command::new("ip").args(["-n", &e.netns, "link", "set", &e.dev, "up"]));
        }
        w
    }
    /// Puts end A's veth under a bridge, and its address on the bridge:
    /// A's sockets then send through two devices (the bridge, then the
    /// veth), and what A receives passes the veth, then the bridge. The
    /// veth's counters still say what the wire carried.
    pub fn bridge_a(&self) {
        let (a, b) = (&self.a, &self.b);
        let ip = |args: &[&str]| {
            let mut c = Command::new("ip");
            c.args(["-n", &a.netns]).args(args);
            ok(&mut c);
        };
        let mac = a.mac();
        // Without multicast snooping, which would have the bridge join the
        // router discovery group and send IGMP reports of its own.
        ip(&[
            "link",
            "add",
            "natbr",
            "address",
            &mac,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ok(Command::new("ip").args([
            "netns",
            "exec",
            &a.netns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.natbr.disable_ipv6=1",
        ]));
        ok(Command::new("ip").args([
            "netns", "exec", &a.netns, "ethtool", "-K", "natbr", "tso", "off", "gso", "off", "gro",
            "off",
        ]));
        ip(&["addr", "del", &format!("{}/30", a.addr), "dev", &a.dev]);
        ip(&["link", "set", &a.dev, "master", "natbr"]);
        ip(&["addr", "add", &format!("{}/30", a.addr), "dev", "natbr"]);
        ip(&[
            "neigh",
            "add",
            &b.addr.to_string(),
            "lladdr",
            &b.mac(),
            "dev",
            "natbr",
            "nud",
            "permanent",
        ]);
        ip(&["link", "set", "natbr", "up"]);
        self.bridged.set(true);
    }

    /// A new wire made like this one.
    pub fn fresh(&self, tag: &str) -> Wire {
        let w = Wire::create(tag);
        if self.bridged.get() {
            w.bridge_a();
        }
        w
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        for e in [&self.a, &self.b] {
            let out = run(Command::new("ip").args(["netns", "del", &e.netns]));
            if !out.status.success() && std::path::Path::new("/run/netns").join(&e.netns).exists() {
                eprintln!(
                    "could not remove network namespace {}: {}",
                    e.netns,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
