//! Turns the kernel's snapshots and maps into atop's per-process records.
//!
//! The snapshot iterator writes `struct snapshot_rec`, laid out like
//! atop's record with the start time (ns since boot) in place of `btime`:
//! its bytes are sent to atop as they are, once `btime` is rewritten. A
//! compile-time check below holds that layout against atop's.

use std::cell::Cell;
use std::io;
use std::mem::offset_of;
use std::rc::Rc;

use netatop_protocol::{Counters, NetPerTask, RECORD_SIZE};
use netatopd_bpf::{comm_bytes, types, Tracer};
use zerocopy::{FromBytes, IntoBytes};

use crate::exits::ExitLog;

pub use netatopd_bpf::boottime_ns;
use netatopd_bpf::clock_ns;

// `struct snapshot_rec`, as the programs were compiled (its Rust type is
// generated from their BTF), is atop's record: its size, and each field
// where atop's is. Changing either fails the build here.
const _: () = {
    use std::mem::size_of;
    use types::snapshot_rec as S;
    assert!(size_of::<S>() == RECORD_SIZE);
    assert!(offset_of!(S, tgid) == offset_of!(NetPerTask, id));
    assert!(offset_of!(S, _pad) == offset_of!(NetPerTask, pad));
    assert!(offset_of!(S, start_ns) == offset_of!(NetPerTask, btime));
    assert!(offset_of!(S, comm) == offset_of!(NetPerTask, command));
    assert!(offset_of!(S, c) == offset_of!(NetPerTask, counters));
};

// The kernel's counters (inside snapshot_rec and every map value) are the
// protocol's, field for field.
const _: () = {
    use netatop_protocol::Counters as P;
    use std::mem::size_of;
    use types::counters as K;
    assert!(size_of::<K>() == size_of::<P>());
    assert!(offset_of!(K, tcpsndpacks) == offset_of!(P, tcpsndpacks));
    assert!(offset_of!(K, tcpsndbytes) == offset_of!(P, tcpsndbytes));
    assert!(offset_of!(K, tcprcvpacks) == offset_of!(P, tcprcvpacks));
    assert!(offset_of!(K, tcprcvbytes) == offset_of!(P, tcprcvbytes));
    assert!(offset_of!(K, udpsndpacks) == offset_of!(P, udpsndpacks));
    assert!(offset_of!(K, udpsndbytes) == offset_of!(P, udpsndbytes));
    assert!(offset_of!(K, udprcvpacks) == offset_of!(P, udprcvpacks));
    assert!(offset_of!(K, udprcvbytes) == offset_of!(P, udprcvbytes));
};

/// The kernel's counters as the protocol's.
pub fn counters(c: &types::counters) -> Counters {
    Counters {
        tcpsndpacks: c.tcpsndpacks,
        tcpsndbytes: c.tcpsndbytes,
        tcprcvpacks: c.tcprcvpacks,
        tcprcvbytes: c.tcprcvbytes,
        udpsndpacks: c.udpsndpacks,
        udpsndbytes: c.udpsndbytes,
        udprcvpacks: c.udprcvpacks,
        udprcvbytes: c.udprcvbytes,
    }
}

/// Processes and threads in the kernel maps now.
#[derive(Debug, Clone, Copy)]
pub struct Census {
    pub processes: usize,
    pub threads: usize,
}

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

/// A snapshot being read from the kernel: one record per counted process,
/// its threads summed and its totals never lower than last reported (both
/// done by the snapshot iterator in the kernel). It holds a descriptor
/// while it lives, counted by [`Collector::open_snapshots`].
pub struct Snapshot {
    kernel: netatopd_bpf::Snapshot,
    /// Time spent reading it so far.
    pub elapsed: std::time::Duration,
    _open: Open,
}

/// Counts a snapshot among the open ones while it lives.
struct Open(Rc<Cell<usize>>);

impl Open {
    fn new(count: &Rc<Cell<usize>>) -> Self {
        count.set(count.get() + 1);
        Self(Rc::clone(count))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Builds records from the kernel; owns the buffers reused across queries.
pub struct Collector {
    tracer: Tracer,
    clock: StartClock,
    pkeys: Vec<u32>,
    pvals: Vec<types::proc_val>,
    tkeys: Vec<u32>,
    tvals: Vec<types::thread_val>,
    tnames: Vec<[u8; 16]>,
    ekeys: Vec<types::exit_key>,
    evals: Vec<types::exit_val>,
    /// Snapshots open now.
    open: Rc<Cell<usize>>,
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
            tnames: Vec::new(),
            ekeys: Vec::new(),
            evals: Vec::new(),
            open: Rc::default(),
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

    /// Starts a snapshot of the live processes.
    pub fn snapshot(&self) -> io::Result<Snapshot> {
        Ok(Snapshot {
            kernel: self.tracer.snapshot()?,
            elapsed: std::time::Duration::ZERO,
            _open: Open::new(&self.open),
        })
    }

    /// Snapshots started and not yet dropped (each holds a descriptor).
    pub fn open_snapshots(&self) -> usize {
        self.open.get()
    }

    /// Appends the next whole records of `snap` to `out`, at most `max`
    /// bytes of them (a multiple of the record size), in atop's terms;
    /// returns the bytes appended, 0 at the end.
    pub fn read_into<T: FromBytes + IntoBytes + Clone>(
        &self,
        snap: &mut Snapshot,
        out: &mut Vec<T>,
        max: usize,
    ) -> io::Result<usize> {
        let size = std::mem::size_of::<T>();
        let at = out.len();
        out.resize(at + max / size, T::new_zeroed());
        let n = self.read(snap, out[at..].as_mut_bytes());
        out.truncate(at + n.as_ref().map_or(0, |n| n / size));
        n
    }

    /// Appends the rest of `snap` to `out`, a chunk at a time.
    pub fn read_to_end<T: FromBytes + IntoBytes + Clone>(
        &self,
        snap: &mut Snapshot,
        out: &mut Vec<T>,
    ) -> io::Result<()> {
        while self.read_into(snap, out, CHUNK)? > 0 {}
        Ok(())
    }

    /// Reads the next whole records of `snap` into `buf` (whose length is
    /// a multiple of the record size), in atop's terms; returns the bytes
    /// filled, 0 at the end.
    fn read(&self, snap: &mut Snapshot, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        debug_assert_eq!(buf.len() % RECORD_SIZE, 0);
        let start = std::time::Instant::now();
        let mut got = 0;
        while got < buf.len() {
            match snap.kernel.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if got % RECORD_SIZE == 0 {
                break;
            }
        }
        snap.elapsed += start.elapsed();
        if got % RECORD_SIZE != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the snapshot iterator ended within a record ({got} bytes)"),
            ));
        }
        // The kernel writes the start time (ns since boot) where atop's
        // record has btime (s since the epoch).
        for rec in buf[..got].chunks_exact_mut(RECORD_SIZE) {
            let field = &mut rec[BTIME..BTIME + 8];
            let start_ns = u64::from_ne_bytes(field.try_into().expect("8 bytes"));
            field.copy_from_slice(&self.clock.btime(start_ns).to_ne_bytes());
        }
        Ok(got)
    }

    /// Takes a whole snapshot: appends one record per live process, then
    /// moves the final totals of processes that exited into `exits` (after
    /// the live records, so that a process that exits while the kernel
    /// walks the tasks is covered by its final record).
    pub fn snapshot_into(
        &mut self,
        out: &mut Vec<NetPerTask>,
        exits: &mut ExitLog,
    ) -> io::Result<()> {
        let mut snap = self.snapshot()?;
        self.read_to_end(&mut snap, out)?;
        self.drain(exits)
    }

    /// Live threads as of the last call of [`Collector::read_threads`] or
    /// [`Collector::census`]: (tid, tgid, counters, name where the kernel
    /// gave it).
    pub fn threads(&self) -> impl Iterator<Item = (u32, u32, Counters, Option<[u8; 16]>)> + '_ {
        self.tkeys
            .iter()
            .zip(&self.tvals)
            .enumerate()
            .map(|(i, (&tid, t))| (tid, t.tgid, counters(&t.c), self.tnames.get(i).copied()))
    }

    /// Reads the live threads' counters.
    pub fn read_threads(&mut self) -> io::Result<()> {
        self.tkeys.clear();
        self.tvals.clear();
        self.tnames.clear();
        self.tracer
            .read_threads(&mut self.tkeys, &mut self.tvals, &mut self.tnames)
    }

    /// Socket calls counted since counting started: those of exited
    /// threads, plus the packets of the live threads read by the last
    /// census.
    pub fn events(&self) -> u64 {
        let live: u64 = self.tvals.iter().map(|t| counters(&t.c).packets()).sum();
        self.tracer.stats().exited_events + live
    }

    /// Processes and threads in the kernel maps now.
    pub fn census(&mut self) -> io::Result<Census> {
        self.pkeys.clear();
        self.pvals.clear();
        self.tracer.read_procs(&mut self.pkeys, &mut self.pvals)?;
        self.read_threads()?;
        Ok(Census {
            processes: self.pkeys.len(),
            threads: self.tkeys.len(),
        })
    }

    /// Frees the buffers of the last snapshot.
    pub fn release(&mut self) {
        self.pkeys = Vec::new();
        self.pvals = Vec::new();
        self.tkeys = Vec::new();
        self.tvals = Vec::new();
        self.tnames = Vec::new();
        self.ekeys = Vec::new();
        self.evals = Vec::new();
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
            exits.push(
                v.exit_ns,
                self.record(k.tgid, k.start_ns, &comm_bytes(&v.comm), counters(&v.c)),
            );
        }
        Ok(())
    }
}

/// Where btime lies in a record.
const BTIME: usize = std::mem::offset_of!(NetPerTask, btime);
/// Whole records within one unix-socket buffer (32 KiB): the most read
/// from the kernel at a time, and the largest write to a client.
pub const CHUNK: usize = 32 * 1024 / RECORD_SIZE * RECORD_SIZE;

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
