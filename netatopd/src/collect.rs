//! Turns the kernel maps into atop's per-process records.

use std::collections::HashMap;
use std::io;

use netatop_protocol::{Counters, NetPerTask};
use netatopd_bpf::{comm_bytes, types, Tracer};

use crate::exits::ExitLog;

pub use netatopd_bpf::boottime_ns;
use netatopd_bpf::clock_ns;

/// Process start times in atop's terms: atop derives the boot time in clock
/// ticks from the real-time clock minus the time since boot (not from
/// /proc/stat's whole second) and divides start + boot by the tick rate.
#[derive(Debug, Clone, Copy)]
pub struct StartClock {
    hz: u64,
    boot_ticks: u64,
}

impl StartClock {
    pub fn now() -> Self {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as u64 } else { 100 };
        let ticks = |ns: u64| (ns as u128 * hz as u128 / 1_000_000_000) as u64;
        let boot = ticks(boottime_ns());
        let real = ticks(clock_ns(libc::CLOCK_REALTIME));
        Self::new(hz, real.saturating_sub(boot))
    }

    pub fn new(hz: u64, boot_ticks: u64) -> Self {
        Self { hz, boot_ticks }
    }

    /// Seconds since the epoch of a start `start_ns` after boot, computed
    /// like atop's btime from /proc/PID/stat's start time in ticks.
    pub fn btime(&self, start_ns: u64) -> u64 {
        let start_ticks = (start_ns as u128 * self.hz as u128 / 1_000_000_000) as u64;
        (start_ticks + self.boot_ticks) / self.hz
    }
}

/// One process's totals while it is assembled.
#[derive(Debug, Clone, Copy)]
struct Proc {
    tgid: u32,
    start_ns: u64,
    comm: [u8; 16],
    c: Counters,
}

/// Builds records from the maps; owns the buffers reused across queries.
pub struct Collector {
    tracer: Tracer,
    clock: StartClock,
    pkeys: Vec<u32>,
    pvals: Vec<types::proc_val>,
    tkeys: Vec<u32>,
    tvals: Vec<types::thread_val>,
    ekeys: Vec<types::exit_key>,
    evals: Vec<types::exit_val>,
    procs: Vec<Proc>,
    index: HashMap<u32, usize>,
    /// Last totals reported per process (tgid -> start, counters).
    reported: HashMap<u32, (u64, Counters)>,
    /// The next query's `reported`, kept to reuse its allocation.
    reported_next: HashMap<u32, (u64, Counters)>,
}

impl Collector {
    pub fn new(tracer: Tracer) -> Self {
        Self {
            tracer,
            clock: StartClock::now(),
            pkeys: Vec::new(),
            pvals: Vec::new(),
            tkeys: Vec::new(),
            tvals: Vec::new(),
            ekeys: Vec::new(),
            evals: Vec::new(),
            procs: Vec::new(),
            index: HashMap::new(),
            reported: HashMap::new(),
            reported_next: HashMap::new(),
        }
    }

    pub fn tracer(&self) -> &Tracer {
        &self.tracer
    }

    fn record(&self, tgid: u32, start_ns: u64, comm: &[u8; 16], c: Counters) -> NetPerTask {
        let mut r = NetPerTask {
            id: tgid as i32,
            btime: self.clock.btime(start_ns),
            counters: c,
            ..Default::default()
        };
        r.set_command(comm);
        r
    }

    /// Appends one record per live process, then moves the final totals of
    /// processes that exited into `exits` (after the live records, so that
    /// a process that exits during the walk is covered by its final record).
    pub fn snapshot(&mut self, out: &mut Vec<NetPerTask>, exits: &mut ExitLog) -> io::Result<()> {
        // Processes before threads: a thread that exits in between is
        // missed for this one walk at worst, never counted twice.
        self.census()?;

        self.procs.clear();
        self.index.clear();
        for (&tgid, p) in self.pkeys.iter().zip(&self.pvals) {
            self.index.insert(tgid, self.procs.len());
            self.procs.push(Proc {
                tgid,
                start_ns: p.start_ns,
                comm: comm_bytes(&p.comm),
                c: p.exited.into(),
            });
        }
        for t in &self.tvals {
            if let Some(&i) = self.index.get(&t.tgid) {
                self.procs[i].c.add(&t.c.into());
            }
        }
        // Such a miss must not show as a counter going backwards.
        self.reported_next.clear();
        for p in &mut self.procs {
            if let Some((start, last)) = self.reported.get(&p.tgid) {
                if *start == p.start_ns {
                    p.c.raise_to(last);
                }
            }
            self.reported_next.insert(p.tgid, (p.start_ns, p.c));
        }
        std::mem::swap(&mut self.reported, &mut self.reported_next);
        out.reserve(self.procs.len());
        for p in &self.procs {
            out.push(self.record(p.tgid, p.start_ns, &p.comm, p.c));
        }
        self.drain(exits)
    }

    /// Live threads as of the last snapshot: (tid, tgid, counters).
    pub fn threads(&self) -> impl Iterator<Item = (u32, u32, Counters)> + '_ {
        self.tkeys
            .iter()
            .zip(&self.tvals)
            .map(|(&tid, t)| (tid, t.tgid, t.c.into()))
    }

    /// Socket calls counted since counting started: those of exited
    /// threads, plus the packets of the live threads read by the last
    /// snapshot or census.
    pub fn events(&self) -> u64 {
        let live: u64 = self
            .tvals
            .iter()
            .map(|t| t.c.tcpsndpacks + t.c.tcprcvpacks + t.c.udpsndpacks + t.c.udprcvpacks)
            .sum();
        self.tracer.stats().exited_events + live
    }

    /// Processes and threads in the kernel maps now.
    pub fn census(&mut self) -> io::Result<(usize, usize)> {
        self.pkeys.clear();
        self.pvals.clear();
        self.tkeys.clear();
        self.tvals.clear();
        self.tracer.read_procs(&mut self.pkeys, &mut self.pvals)?;
        self.tracer.read_threads(&mut self.tkeys, &mut self.tvals)?;
        Ok((self.pkeys.len(), self.tkeys.len()))
    }

    /// Frees the buffers of the last snapshot (all but the last-reported
    /// totals, which the next snapshot needs).
    pub fn release(&mut self) {
        self.pkeys = Vec::new();
        self.pvals = Vec::new();
        self.tkeys = Vec::new();
        self.tvals = Vec::new();
        self.ekeys = Vec::new();
        self.evals = Vec::new();
        self.procs = Vec::new();
        self.index = HashMap::new();
        self.reported_next = HashMap::new();
    }

    /// Moves the final totals of exited processes from the kernel into `exits`.
    pub fn drain(&mut self, exits: &mut ExitLog) -> io::Result<()> {
        self.ekeys.clear();
        self.evals.clear();
        self.tracer.drain_exited(&mut self.ekeys, &mut self.evals)?;
        let mut order: Vec<usize> = (0..self.ekeys.len()).collect();
        order.sort_by_key(|&i| self.evals[i].exit_ns);
        for i in order {
            let (k, v) = (self.ekeys[i], self.evals[i]);
            self.reported.remove(&k.tgid);
            exits.push(
                v.exit_ns,
                self.record(k.tgid, k.start_ns, &comm_bytes(&v.comm), v.c.into()),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::StartClock;

    #[test]
    fn btime_truncates_like_atop() {
        // Booted at 1000.57 s since the epoch (100057 ticks at 100 Hz).
        let c = StartClock::new(100, 100_057);
        // Started 0.42 s after boot: 42 + 100057 ticks -> 1000 s.
        assert_eq!(c.btime(420_000_000), 1000);
        // 0.43 s after boot: 100100 ticks -> 1001 s (whole seconds of the
        // boot time and of the start would say 1000).
        assert_eq!(c.btime(430_000_000), 1001);
        assert_eq!(c.btime(439_999_999), 1001);
    }
}
