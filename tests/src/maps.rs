//! A running daemon's kernel maps, looked into: their ids and keys, and
//! whether a thread has counters there (in a hash map or in task storage).

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};

use crate::Daemon;

impl Daemon {
    /// Ids of the daemon's kernel maps, by name.
    pub fn map_ids(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let fdinfo = format!("/proc/{}/fdinfo", self.pid());
        for entry in fs::read_dir(&fdinfo).expect("reading the daemon's fdinfo") {
            let Ok(text) = fs::read_to_string(entry.expect("fdinfo entry").path()) else {
                continue;
            };
            let Some(id) = text
                .lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(map) = MapHandle::from_map_id(id) {
                out.push((map.name().to_string_lossy().into_owned(), id));
            }
        }
        out
    }

    /// Keys of one of the daemon's kernel maps (`threads`, `procs`, `exited`).
    pub fn map_keys(&self, name: &str) -> Vec<Vec<u8>> {
        let (_, id) = self
            .map_ids()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("netatopd has no map named {name}"));
        let map = MapHandle::from_map_id(id).expect("opening the map");
        map.keys().collect()
    }

    /// Whether thread `tid` of process `tgid` has counters in the kernel:
    /// in its task-local storage or in the threads map, whichever this
    /// netatopd uses (a thread that is gone has no storage: it went with
    /// the thread; a reused tid of another process does not count).
    pub fn thread_counted(&self, tid: i32, tgid: i32) -> bool {
        self.threads_counted(&[(tid, tgid)]) == 1
    }

    /// How many of the threads (tid, tgid) have counters in the kernel
    /// (see [`Daemon::thread_counted`]).
    pub fn threads_counted(&self, threads: &[(i32, i32)]) -> usize {
        let ids = self.map_ids();
        let name = if ids.iter().any(|(n, _)| n == "tstore") {
            "tstore"
        } else {
            "threads"
        };
        let (_, id) = ids
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("netatopd has no map named {name}"));
        let map = MapHandle::from_map_id(id).expect("opening the map");
        // struct thread_val: the eight counters, then the tgid.
        threads
            .iter()
            .filter(|(tid, tgid)| {
                thread_value(&map, *tid).is_some_and(|v| v[64..68] == tgid.to_ne_bytes())
            })
            .count()
    }

    /// Whether a map has an entry whose key starts with the u32 `id` (a tid
    /// in `threads`, a tgid in `procs` and `exited`).
    pub fn map_has(&self, name: &str, id: u32) -> bool {
        self.map_keys(name)
            .iter()
            .any(|k| k.len() >= 4 && u32::from_ne_bytes(k[..4].try_into().unwrap()) == id)
    }
}

/// Thread `tid`'s value (struct thread_val) in a map of netatopd's threads'
/// counters: a hash map keyed by tid, or task storage, looked up through a
/// pidfd of the thread (a thread that is gone has none). An entry whose
/// thread has exited (`linked` 0) counts as none.
pub fn thread_value(map: &MapHandle, tid: i32) -> Option<Vec<u8>> {
    let value = if map.map_type() == MapType::TaskStorage {
        // SAFETY: pidfd_open takes a pid and flags, and returns a new
        // descriptor or -1.
        let open = |flags: libc::c_uint| unsafe { libc::syscall(libc::SYS_pidfd_open, tid, flags) };
        // A thread's own pidfd (Linux 6.9); before, a process's only.
        let mut fd = open(libc::PIDFD_THREAD);
        if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            fd = open(0);
        }
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.raw_os_error(),
                Some(libc::ESRCH),
                "pidfd_open({tid}): {err} (a thread's pidfd needs Linux 6.9)"
            );
            return None;
        }
        // SAFETY: a new descriptor that this function owns.
        let pidfd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        map.lookup(&pidfd.as_raw_fd().to_ne_bytes(), MapFlags::ANY)
    } else {
        map.lookup(&(tid as u32).to_ne_bytes(), MapFlags::ANY)
    };
    value
        .expect("looking up a thread's counters")
        .filter(|v| v[v.len() - 4..] != [0, 0, 0, 0])
}
