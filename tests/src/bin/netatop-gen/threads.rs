//! Scenarios of threads: threads that exit before the report, threads
//! that stay alive (a few, or a farm of many), and an exec by a thread
//! that is not the leader.

use std::io;

use netatopd_tests::{ThreadReport, Truth};

use crate::loopback::udp;
use crate::Opts;

/// The calling thread's UDP round trips (for the thread scenarios), with
/// its thread id.
fn thread_udp(count: usize, size: usize) -> io::Result<(Truth, i32)> {
    let mut t = Truth::default();
    udp(&mut t, false, false, &Opts::round_trips(count, size))?;
    // SAFETY: gettid has no preconditions.
    Ok((t, unsafe { libc::gettid() }))
}

/// Threads that each send and receive, then exit before the report.
pub fn threads(t: &mut Truth, tids: &mut Vec<i32>, o: &Opts) -> io::Result<()> {
    let handles: Vec<_> = (0..o.threads)
        .map(|_| {
            let (count, size) = (o.count, o.size);
            // Named threads: the process record must carry the leader's name.
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || thread_udp(count, size))
                .expect("spawning a thread")
        })
        .collect();
    for h in handles {
        let (tt, tid) = h.join().expect("thread panicked")?;
        t.add(&tt);
        tids.push(tid);
    }
    Ok(())
}

/// Thread i (named worker-i) makes count * (i + 1) UDP round trips, then
/// stays alive (parked) until the process exits.
pub fn live_threads(out: &mut Vec<ThreadReport>, o: &Opts) -> io::Result<()> {
    parked_threads(out, o, "worker", |i| o.count * (i + 1), None)
}

/// Many live threads, as large servers have: thread i (named farm-i)
/// makes count + i % 3 UDP round trips, one thread at a time (each with
/// its own two sockets, so descriptors stay few), then stays alive
/// (parked, on a 64 KiB stack) until the process exits.
pub fn thread_farm(out: &mut Vec<ThreadReport>, o: &Opts) -> io::Result<()> {
    let turn = std::sync::Arc::new(std::sync::Mutex::new(()));
    parked_threads(out, o, "farm", |i| o.count + i % 3, Some((turn, 64 * 1024)))
}

/// `o.threads` threads, thread i named PREFIX-i making `count(i)` UDP
/// round trips (holding `serial`'s lock, on its stack size, where given),
/// then parked until the process exits; their reports in `out`.
fn parked_threads(
    out: &mut Vec<ThreadReport>,
    o: &Opts,
    prefix: &str,
    count: impl Fn(usize) -> usize,
    serial: Option<(std::sync::Arc<std::sync::Mutex<()>>, usize)>,
) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..o.threads {
        let (count, size, tx, serial) = (count(i), o.size, tx.clone(), serial.clone());
        let name = format!("{prefix}-{i}");
        let mut b = std::thread::Builder::new().name(name.clone());
        if let Some((_, stack)) = &serial {
            b = b.stack_size(*stack);
        }
        b.spawn(move || {
            let report = {
                let _turn = serial
                    .as_ref()
                    .map(|(turn, _)| turn.lock().unwrap_or_else(|e| e.into_inner()));
                thread_udp(count, size).map(|(truth, tid)| ThreadReport { tid, name, truth })
            };
            let _ = tx.send(report);
            loop {
                std::thread::park();
            }
        })?;
    }
    // Each thread keeps its sender while parked: take one message from each.
    for _ in 0..o.threads {
        out.push(rx.recv().map_err(io::Error::other)??);
    }
    out.sort_by_key(|t| t.tid);
    Ok(())
}

/// exec by a thread that is not the leader: the leader makes `count` UDP
/// round trips, then a second thread makes as many and execs this program
/// again (it takes over the process's pid), which makes `count` more as
/// `udp4` and reports all three, carried over in --carry. Never returns.
pub fn exec_thread(t: &mut Truth, o: &Opts, linger: bool) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    udp(t, false, false, o)?;
    let (count, size, leader) = (o.count, o.size, *t);
    let exec = std::thread::spawn(move || -> io::Error {
        let mut t = leader;
        if let Err(e) = udp(&mut t, false, false, &Opts::round_trips(count, size)) {
            return e;
        }
        let carry = t.counters.fields().map(|v| v.to_string()).join(",");
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return e,
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "udp4",
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
        ])
        .args(["--carry", &carry]);
        if linger {
            cmd.arg("--linger");
        }
        cmd.exec()
    });
    Err(exec.join().expect("the exec thread panicked"))
}
