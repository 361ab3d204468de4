//! The traffic generator's report: its ground truth, counted from the
//! return value of every call it made, and the one JSON line it prints
//! (netatop-gen writes it, the tests read it, and shell scripts grep its
//! field names, so their names and order stay as they are).

use std::ops::Deref;

use netatop_protocol::Counters;
use serde::{Deserialize, Serialize};

/// What the generator, or one of its threads, did: what netatopd must
/// count, and the calls it must not.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Truth {
    /// What netatopd must report: successful calls and their bytes.
    #[serde(flatten)]
    pub counters: Counters,
    /// Calls that failed or moved nothing (not to be counted).
    pub failed_calls: u64,
    /// Successful MSG_PEEK receives (not to be counted).
    pub peeked_calls: u64,
    /// Successful calls that move no TCP/UDP traffic of the process (raw
    /// sockets, error-queue reads): not to be counted.
    pub ignored_calls: u64,
    /// Of the TCP receives, those made with splice() (socket to pipe):
    /// counted only where the kernel runs the hook for them.
    pub spliced_recv_calls: u64,
    /// Of the TCP bytes received, those received with splice().
    pub spliced_recv_bytes: u64,
}

/// The protocol of a counted call.
#[derive(Clone, Copy, PartialEq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Truth {
    /// Records the result of one send (`send`) or receive call.
    pub fn call(&mut self, proto: Proto, send: bool, ret: isize) {
        if ret <= 0 {
            self.failed_calls += 1;
            return;
        }
        let n = ret as u64;
        let c = &mut self.counters;
        let (p, b) = match (proto, send) {
            (Proto::Tcp, true) => (&mut c.tcpsndpacks, &mut c.tcpsndbytes),
            (Proto::Tcp, false) => (&mut c.tcprcvpacks, &mut c.tcprcvbytes),
            (Proto::Udp, true) => (&mut c.udpsndpacks, &mut c.udpsndbytes),
            (Proto::Udp, false) => (&mut c.udprcvpacks, &mut c.udprcvbytes),
        };
        *p += 1;
        *b += n;
    }

    /// Records a call that must not be counted even when it succeeds.
    pub fn ignored(&mut self, ret: isize) {
        if ret > 0 {
            self.ignored_calls += 1;
        } else {
            self.failed_calls += 1;
        }
    }

    /// Adds what another part of the generator did.
    pub fn add(&mut self, o: &Truth) {
        self.counters.add(&o.counters);
        self.failed_calls += o.failed_calls;
        self.peeked_calls += o.peeked_calls;
        self.ignored_calls += o.ignored_calls;
        self.spliced_recv_calls += o.spliced_recv_calls;
        self.spliced_recv_bytes += o.spliced_recv_bytes;
    }
}

/// What the generator reports about itself. It reads as its [`Truth`]
/// (`r.counters`, `r.failed_calls`, ...).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Its process id.
    pub pid: i32,
    /// What it did.
    #[serde(flatten)]
    pub truth: Truth,
    /// Thread ids of the threads scenario (all exited).
    pub tids: Vec<i32>,
    /// Pids of the fork scenario's children (each sent one datagram).
    pub children: Vec<i32>,
    /// live-threads: each thread (still alive) and what it did.
    pub threads: Vec<ThreadReport>,
}

impl Deref for Report {
    type Target = Truth;

    fn deref(&self) -> &Truth {
        &self.truth
    }
}

/// What one thread of the generator did (live-threads). It reads as its
/// [`Truth`] (`t.counters`, ...).
#[derive(Debug, Serialize, Deserialize)]
pub struct ThreadReport {
    /// Its thread id.
    pub tid: i32,
    /// Its name (comm).
    pub name: String,
    /// What it did.
    #[serde(flatten)]
    pub truth: Truth,
}

impl Deref for ThreadReport {
    type Target = Truth;

    fn deref(&self) -> &Truth {
        &self.truth
    }
}

#[cfg(test)]
mod tests {
    use super::{Report, ThreadReport, Truth};
    use netatop_protocol::Counters;

    /// The report's JSON line keeps its field names and their order (shell
    /// scripts grep it), and reads back as it was written.
    #[test]
    fn the_report_line_keeps_its_fields_and_reads_back() {
        let truth = Truth {
            counters: Counters::from_fields([1, 2, 3, 4, 5, 6, 7, 8]),
            failed_calls: 9,
            peeked_calls: 10,
            ignored_calls: 11,
            spliced_recv_calls: 12,
            spliced_recv_bytes: 13,
        };
        let report = Report {
            pid: 42,
            truth,
            tids: vec![43],
            children: vec![44, 45],
            threads: vec![ThreadReport {
                tid: 46,
                name: "worker-0".into(),
                truth,
            }],
        };
        let counts = "\"tcp_send_packets\":1,\"tcp_send_bytes\":2,\"tcp_recv_packets\":3,\
                      \"tcp_recv_bytes\":4,\"udp_send_packets\":5,\"udp_send_bytes\":6,\
                      \"udp_recv_packets\":7,\"udp_recv_bytes\":8,\"failed_calls\":9,\
                      \"peeked_calls\":10,\"ignored_calls\":11,\"spliced_recv_calls\":12,\
                      \"spliced_recv_bytes\":13";
        let line = serde_json::to_string(&report).expect("serialising");
        assert_eq!(
            line,
            format!(
                "{{\"pid\":42,{counts},\"tids\":[43],\"children\":[44,45],\
                 \"threads\":[{{\"tid\":46,\"name\":\"worker-0\",{counts}}}]}}"
            )
        );
        let back: Report = serde_json::from_str(&line).expect("reading back");
        assert_eq!(serde_json::to_string(&back).expect("serialising"), line);
        assert_eq!((back.pid, back.failed_calls), (42, 9));
        assert_eq!(back.threads[0].counters, truth.counters);
    }
}
