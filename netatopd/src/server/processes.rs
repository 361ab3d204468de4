//! The control protocol's process list, made from atop's records: each
//! process once (a process listed live and with its final totals keeps
//! the final entry), with its threads, named, if they were asked for.

use std::collections::HashMap;

use netatop_protocol::control::{Process, Thread};
use netatop_protocol::{Counters, NetPerTask};

/// A live thread: the index of its process's record, its tid, its
/// counters and its name where the kernel gave it.
pub(super) type LiveThread = (usize, u32, Counters, Option<[u8; 16]>);

/// The processes of `records`, the first `live` of them live and the rest
/// exited, each once; with `threads` the live threads of each.
pub(super) fn process_list(
    records: &[NetPerTask],
    live: usize,
    threads: Option<Vec<LiveThread>>,
) -> Vec<Process> {
    let mut procs: Vec<Process> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Process::from_record(r, i >= live))
        .collect();
    if let Some(threads) = threads {
        for (i, tid, counters, name) in threads {
            let tgid = procs[i].pid;
            procs[i].threads.push(Thread {
                tid: tid as i32,
                tgid,
                name: name.map_or_else(|| thread_name(tgid as u32, tid), |n| comm_string(&n)),
                counters,
            });
        }
        for p in &mut procs {
            p.threads.sort_unstable_by_key(|t| t.tid);
        }
    }
    once_each(procs)
}

/// One entry per process (pid and start time): a process listed live and
/// then with its final totals keeps the final entry, raised to at least
/// the live one (a snapshot never reports less).
fn once_each(procs: Vec<Process>) -> Vec<Process> {
    let mut index: HashMap<(i32, u64), usize> = HashMap::new();
    let mut out: Vec<Process> = Vec::with_capacity(procs.len());
    for p in procs {
        match index.get(&(p.pid, p.btime)) {
            Some(&i) => {
                let live = std::mem::replace(&mut out[i], p);
                out[i].counters.raise_to(&live.counters);
            }
            None => {
                index.insert((p.pid, p.btime), out.len());
                out.push(p);
            }
        }
    }
    out
}

/// A kernel name: the bytes before the first NUL.
fn comm_string(comm: &[u8; 16]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

/// A thread's own name from /proc (threads' counters in a hash map, which
/// has no names); empty if it is gone.
fn thread_name(tgid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, btime: u64, udpsndbytes: u64, exited: bool) -> Process {
        Process {
            pid,
            btime,
            command: String::new(),
            counters: Counters {
                udpsndbytes,
                ..Default::default()
            },
            exited,
            threads: Vec::new(),
        }
    }

    #[test]
    fn a_process_listed_live_and_exited_is_sent_once_as_exited() {
        let got = once_each(vec![
            p(1, 10, 500, false),
            p(2, 10, 7, false),
            // pid 1 exited during the snapshot; pid 2 reused by another start.
            p(1, 10, 400, true),
            p(2, 11, 3, true),
        ]);
        let view: Vec<(i32, u64, u64, bool)> = got
            .iter()
            .map(|p| (p.pid, p.btime, p.counters.udpsndbytes, p.exited))
            .collect();
        assert_eq!(
            view,
            vec![(1, 10, 500, true), (2, 10, 7, false), (2, 11, 3, true)]
        );
    }
}
