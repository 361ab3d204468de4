//! Two network namespaces joined by a veth pair, made by a test and removed
//! when it drops: a wire whose interface counters count only the test's
//! own traffic.
//!
//! Nothing but the test's packets crosses it: IPv6 is off on both ends
//! before they come up (no router or neighbour solicitations, no MLD),
//! the neighbours are static (no ARP), and segmentation offloads are off
//! (the interface counts packets as a real wire would carry them).

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use netatop_protocol::Counters;
use serde_json::Value;

use crate::{json, json_counters, ok, record_for, run, Daemon, Gen, Report};

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
}

impl Wire {
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

impl End {
    fn mac(&self) -> String {
        let (v, out) = self.link();
        v["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {out}"))
            .to_string()
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

// ---- scenarios across a wire, and what they add up to --------------------

/// Starts `scenario` with its client in `w.a` and its server in `w.b`
/// and waits for its report (its traffic done, its sockets closed); the
/// generator stays until finished.
pub fn start_across(
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
    extra: &[&str],
) -> (Gen, Report) {
    let mut g = spawn_across(w, scenario, count, size, extra);
    let r = g.report();
    assert_eq!(
        r.pid,
        g.pid(),
        "the generator runs in place of ip netns exec"
    );
    (g, r)
}

/// Starts `scenario` across `w` (see [`start_across`]) without waiting.
pub fn spawn_across(w: &Wire, scenario: &str, count: usize, size: usize, extra: &[&str]) -> Gen {
    let prefix = w.a.exec_prefix();
    let prefix: Vec<&std::ffi::OsStr> = prefix.iter().map(|s| s.as_os_str()).collect();
    let peer_netns = w.b.path();
    let (count, size, peer_addr) = (count.to_string(), size.to_string(), w.b.addr.to_string());
    let mut args = vec![
        "--linger",
        "--count",
        &count,
        "--size",
        &size,
        "--peer-netns",
        peer_netns.to_str().expect("UTF-8 path"),
        "--peer-addr",
        &peer_addr,
    ];
    args.extend_from_slice(extra);
    Gen::spawn_in(&prefix, scenario, &args)
}

/// Runs `scenario` across `w`; returns its report, what netatopd counted
/// for it, and what the wire carried meanwhile (seen from `w.a`).
pub fn across(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
) -> (Report, netatop_protocol::NetPerTask, IfCounters) {
    let before = w.a.counters();
    let (g, r) = start_across(w, scenario, count, size, &[]);
    let rec = record_for(&d.query(), r.pid);
    let carried = w.a.counters().since(&before);
    g.finish();
    (r, rec, carried)
}

/// A namespace's inode number, as netatopd keys it.
pub fn netns_inode(e: &End) -> u32 {
    std::fs::metadata(e.path())
        .expect("the namespace is mounted")
        .ino() as u32
}

/// What `netatopctl stats` reports unattributed in namespace `netns`.
pub fn unattributed(d: &Daemon, netns: u32) -> Counters {
    let s = json(d.ctl().args(["stats", "--json"]));
    assert_eq!(s["count"], "wire", "{s}");
    s["unattributed"]
        .as_array()
        .expect("unattributed is a list")
        .iter()
        .find(|e| e[0].as_u64() == Some(u64::from(netns)))
        .map(|e| json_counters(&e[1]))
        .unwrap_or_default()
}

/// What one direction carried: packets and IP bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

/// The generator's counters, what is unattributed in the wire's two
/// namespaces, and what the wire carried, once they add up.
pub struct Reckoning {
    pub process: Counters,
    pub unattributed: Counters,
    pub carried: Flow,
    /// The wire of the second attempt, made afresh, where the first did
    /// not add up.
    pub again: Option<Wire>,
}

impl Reckoning {
    /// The wire the counted attempt ran on: `first`, or the fresh one.
    pub fn wire<'a>(&'a self, first: &'a Wire) -> &'a Wire {
        self.again.as_ref().unwrap_or(first)
    }
}

/// Runs `scenario` across `w` under a daemon counting the wire, and waits
/// until every packet that crossed the wire, in each direction, is the
/// generator's (both ends are its own) or unattributed in one of the two
/// namespaces, IP bytes likewise; fails with the last reading if that
/// does not happen within 5 seconds (the last packets of a close may
/// still be on their way when the generator reports).
pub fn reckon(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
    extra: &[&str],
) -> Reckoning {
    reckon_with(d, w, scenario, count, size, extra, |_| {})
}

/// [`reckon`], running `before_attempt` on the wire of each attempt (to
/// set up or reset what a test measures per attempt).
pub fn reckon_with(
    d: &Daemon,
    w: &Wire,
    scenario: &str,
    count: usize,
    size: usize,
    extra: &[&str],
    mut before_attempt: impl FnMut(&Wire),
) -> Reckoning {
    let what = format!("{scenario} x{count} of {size} B {extra:?}");
    let mut first = None;
    let mut again = None;
    // A second attempt, after a first that did not add up: the kernel can
    // skip the tracing programs for packets (the test machines' kernel
    // does, in its init process's context; see the notes of netatopd(8)
    // on counting the wire). It runs on a fresh wire, so that nothing the
    // first left in its namespaces' counters carries over. Both attempts
    // failing fails.
    for attempt in 1..=2 {
        let wire = again.as_ref().unwrap_or(w);
        before_attempt(wire);
        let before = Before::take(d, wire);
        let (g, r) = start_across(wire, scenario, count, size, extra);
        let outcome = before.try_settle(d, wire, &[r.pid], &what);
        g.finish();
        match outcome {
            Ok(mut r) => {
                if let Some(e) = first {
                    eprintln!("{what}: the first attempt did not add up: {e}");
                }
                r.again = again;
                return r;
            }
            Err(e) if attempt == 1 => {
                first = Some(e);
                again = Some(w.fresh("again"));
            }
            Err(e) => panic!(
                "{what}: twice it did not add up:\n{}\n{e}",
                first.unwrap_or_default()
            ),
        }
    }
    unreachable!("the second attempt returns or panics")
}

/// The counters before a scenario.
pub struct Before {
    wire: IfCounters,
    ua: Counters,
    ub: Counters,
}

impl Before {
    pub fn take(d: &Daemon, w: &Wire) -> Before {
        Before {
            wire: w.a.counters(),
            ua: unattributed(d, netns_inode(&w.a)),
            ub: unattributed(d, netns_inode(&w.b)),
        }
    }

    /// Waits until the processes `pids` and what is unattributed add up to
    /// what the wire carried since, in each direction (see [`reckon`]).
    pub fn settle(&self, d: &Daemon, w: &Wire, pids: &[i32], what: &str) -> Reckoning {
        self.try_settle(d, w, pids, what)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Before::settle`], with the last reading as the error when it did
    /// not add up.
    pub fn try_settle(
        &self,
        d: &Daemon,
        w: &Wire,
        pids: &[i32],
        what: &str,
    ) -> Result<Reckoning, String> {
        let none = Flow {
            packets: 0,
            bytes: 0,
        };
        self.try_settle_received_extra(d, w, pids, none, what)
    }

    /// [`Before::try_settle`], where what is counted as received is to
    /// exceed what the wire carried by `extra` (packets counted twice).
    pub fn try_settle_received_extra(
        &self,
        d: &Daemon,
        w: &Wire,
        pids: &[i32],
        extra: Flow,
        what: &str,
    ) -> Result<Reckoning, String> {
        let (ns_a, ns_b) = (netns_inode(&w.a), netns_inode(&w.b));
        let mut last = None;
        let settled = (0..500).any(|_| {
            let recs = d.query();
            let mut rec = Counters::default();
            for &pid in pids {
                rec.add(&record_for(&recs, pid).counters);
            }
            let mut un = unattributed(d, ns_a).since(&self.ua);
            un.add(&unattributed(d, ns_b).since(&self.ub));
            let wire = w.a.counters().since(&self.wire);
            // A's sends and B's sends (= A's receives).
            let carried = Flow {
                packets: wire.tx_packets + wire.rx_packets,
                bytes: wire.tx_ip_bytes() + wire.rx_ip_bytes(),
            };
            let mut all = rec;
            all.add(&un);
            let sent = Flow {
                packets: all.send_packets(),
                bytes: all.send_bytes(),
            };
            let received = Flow {
                packets: all.recv_packets(),
                bytes: all.recv_bytes(),
            };
            let done = sent == carried
                && received.packets == carried.packets + extra.packets
                && received.bytes == carried.bytes + extra.bytes;
            last = Some((rec, un, carried, sent, received));
            if !done {
                std::thread::sleep(Duration::from_millis(10));
            }
            done
        });
        let (rec, un, carried, sent, received) = last.expect("at least one reading");
        eprintln!("{what}: wire {carried:?}; processes {rec:?}; unattributed {un:?}");
        if !settled {
            return Err(format!(
                "{what}: the wire carried {carried:?}; counted as sent {sent:?}, as received \
                 {received:?} (processes {rec:?}, unattributed {un:?})"
            ));
        }
        Ok(Reckoning {
            process: rec,
            unattributed: un,
            carried,
            again: None,
        })
    }
}
