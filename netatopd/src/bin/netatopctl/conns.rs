//! Open TCP and UDP sockets per process, for the CONNS column of
//! `netatopctl top`.
//!
//! A socket is a TCP or UDP socket (IPv4 or IPv6) if its inode is listed in
//! /proc/net/{tcp,tcp6,udp,udp6}. A process has it open if one of the links
//! in /proc/PID/fd reads "socket:[INODE]".

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The tables under /proc/net that list TCP and UDP sockets.
const TABLES: [&str; 4] = ["tcp", "tcp6", "udp", "udp6"];

/// Open TCP/UDP sockets per process.
///
/// A snapshot taken by [`SocketCounts::read`] or [`SocketCounts::read_from`].
#[derive(Debug)]
pub struct SocketCounts {
    /// Processes with at least one TCP or UDP socket; others are absent.
    counts: HashMap<i32, u32>,
}

impl SocketCounts {
    /// Reads /proc/net/{tcp,tcp6,udp,udp6} (of the caller's network
    /// namespace) and every /proc/PID/fd once.
    ///
    /// /proc/net lists only the sockets of the calling process's network
    /// namespace. Sockets of other network namespaces are not counted, so a
    /// process in another network namespace usually counts 0.
    ///
    /// The tables are read first, then the fd directories, and not
    /// atomically: a socket opened after its table was read is not counted.
    /// Only processes (/proc/PID) are scanned, not their tasks. A process
    /// that exits during the scan or whose fd directory cannot be read
    /// (ENOENT, ESRCH, EACCES, EPERM) is skipped and counts 0; a missing
    /// table (e.g. tcp6 without IPv6) counts as empty.
    ///
    /// Fails if /proc cannot be listed, if a table exists but cannot be
    /// read, if a table line has no numeric inode in its 10th field
    /// ([`io::ErrorKind::InvalidData`]), or on any other error reading a
    /// process's fd directory.
    pub fn read() -> io::Result<SocketCounts> {
        Self::read_from(Path::new("/proc"))
    }

    /// Same, with another /proc root (for tests): `root` like "/proc".
    ///
    /// Reads `root`/net/{tcp,tcp6,udp,udp6} and `root`/PID/fd for every
    /// all-digit entry PID of `root`.
    pub fn read_from(root: &Path) -> io::Result<SocketCounts> {
        let inodes = read_inodes(root)?;
        let counts = count_per_process(root, &inodes)?;
        Ok(SocketCounts { counts })
    }

    /// TCP and UDP sockets (IPv4 and IPv6) process `pid` has open; 0 if unknown.
    ///
    /// A socket open on several fds of the process (e.g. after dup) counts
    /// once.
    pub fn get(&self, pid: i32) -> u32 {
        self.counts.get(&pid).copied().unwrap_or(0)
    }
}

/// Inodes of the sockets in `root`/net/{tcp,tcp6,udp,udp6}, without 0.
fn read_inodes(root: &Path) -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    let mut path = root.join("net");
    let mut line = String::new();
    for table in TABLES {
        path.push(table);
        let res = read_table(&path, &mut line, &mut inodes);
        path.pop();
        res?;
    }
    Ok(inodes)
}

/// Adds the inodes of one table to `inodes`; a missing table adds none.
fn read_table(path: &Path, line: &mut String, inodes: &mut HashSet<u64>) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(e, path)),
    };
    let mut reader = BufReader::new(file);
    let mut lineno = 0u64;
    loop {
        line.clear();
        if reader.read_line(line).map_err(|e| with_path(e, path))? == 0 {
            return Ok(());
        }
        lineno += 1;
        // The first line is the header; skip blank lines too.
        if lineno == 1 || line.trim().is_empty() {
            continue;
        }
        match parse_inode(line) {
            Some(0) => {} // e.g. TIME_WAIT: no socket behind it
            Some(inode) => {
                inodes.insert(inode);
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} line {lineno}: no inode in 10th field: {:?}",
                        path.display(),
                        line.trim_end()
                    ),
                ))
            }
        }
    }
}

/// The inode (10th whitespace-separated field) of a /proc/net/{tcp,udp}*
/// line.
fn parse_inode(line: &str) -> Option<u64> {
    parse_digits(line.split_whitespace().nth(9)?.as_bytes())
}

/// The number of distinct sockets from `inodes` each process has open;
/// processes with none are left out.
fn count_per_process(root: &Path, inodes: &HashSet<u64>) -> io::Result<HashMap<i32, u32>> {
    let mut counts = HashMap::new();
    let mut fd_dir = PathBuf::from(root);
    let mut found = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| with_path(e, root))? {
        let name = entry.map_err(|e| with_path(e, root))?.file_name();
        let Some(pid) = parse_pid(&name) else {
            continue;
        };
        fd_dir.push(&name);
        fd_dir.push("fd");
        found.clear();
        let res = scan_fds(&mut fd_dir, inodes, &mut found);
        let res = match res {
            Ok(()) => Ok(()),
            Err(e) if vanished_or_denied(&e) => {
                found.clear();
                Ok(())
            }
            Err(e) => Err(with_path(e, &fd_dir)),
        };
        fd_dir.pop();
        fd_dir.pop();
        res?;
        if !found.is_empty() {
            found.sort_unstable();
            found.dedup();
            counts.insert(pid, u32::try_from(found.len()).unwrap_or(u32::MAX));
        }
    }
    Ok(counts)
}

/// Appends to `found` the inode of every fd in `fd_dir` that is a socket in
/// `inodes`. `fd_dir` is the same path again on return.
fn scan_fds(fd_dir: &mut PathBuf, inodes: &HashSet<u64>, found: &mut Vec<u64>) -> io::Result<()> {
    for entry in fs::read_dir(&*fd_dir)? {
        let entry = entry?;
        fd_dir.push(entry.file_name());
        let target = fs::read_link(&*fd_dir);
        fd_dir.pop();
        let target = match target {
            Ok(target) => target,
            // This fd was closed after the directory was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(inode) = socket_inode(target.as_os_str()) {
            if inodes.contains(&inode) {
                found.push(inode);
            }
        }
    }
    Ok(())
}

/// Whether an error reading a process's fds means it exited or is not ours
/// to read.
fn vanished_or_denied(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(libc::ESRCH)
}

/// The PID of a /proc entry named by digits only.
fn parse_pid(name: &OsStr) -> Option<i32> {
    i32::try_from(parse_digits(name.as_bytes())?).ok()
}

/// The inode of a link target "socket:[INODE]".
fn socket_inode(target: &OsStr) -> Option<u64> {
    parse_digits(
        target
            .as_bytes()
            .strip_prefix(b"socket:[")?
            .strip_suffix(b"]")?,
    )
}

/// A non-empty string of ASCII digits as a number (no sign, no overflow).
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// `e` with `path` in front of its message, keeping its kind.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::SocketCounts;
    use std::fs;
    use std::io;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "netatopd-conns-{tag}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir(&path).expect("create temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A /proc/net/{tcp,udp}* line for a socket with inode `inode`.
    fn table_line(sl: u32, state: &str, inode: u64) -> String {
        format!(
            "{sl:4}: 0100007F:1F90 00000000:0000 {state} 00000000:00000000 00:00000000 \
             00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
        )
    }

    const TCP_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr \
                              tm->when retrnsmt   uid  timeout inode\n";

    /// Creates `root`/`pid`/fd with links named 0, 1, ... to `targets`.
    fn fd_links(root: &Path, pid: &str, targets: &[&str]) {
        let dir = root.join(pid).join("fd");
        fs::create_dir_all(&dir).unwrap();
        for (fd, target) in targets.iter().enumerate() {
            symlink(target, dir.join(fd.to_string())).unwrap();
        }
    }

    #[test]
    fn counts_own_tcp_and_udp_sockets() -> io::Result<()> {
        let pid = i32::try_from(std::process::id()).unwrap();
        let count = || SocketCounts::read().map(|c| c.get(pid));
        // Sockets inherited from the test runner, if any (normally 0).
        let before = count()?;

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        let client_dup = client.try_clone()?;
        let udp4 = UdpSocket::bind("127.0.0.1:0")?;
        let udp6 = UdpSocket::bind("[::1]:0").unwrap_or_else(|e| {
            panic!("cannot bind a UDP socket to [::1]:0 ({e}); this test needs IPv6 loopback")
        });
        let unix = UnixStream::pair()?;

        // listener + client (twice, via the dup) + server + udp4 + udp6;
        // the Unix pair does not count.
        assert_eq!(count()?, before + 5);

        drop(listener);
        drop(client); // still open via client_dup
        drop(udp6);
        // server + client_dup + udp4
        assert_eq!(count()?, before + 3);

        drop(server);
        drop(client_dup);
        drop(udp4);
        assert_eq!(count()?, before);

        drop(unix);
        // No such process (PIDs are below 2^22).
        assert_eq!(SocketCounts::read()?.get(i32::MAX), 0);
        Ok(())
    }

    #[test]
    fn parses_synthetic_proc_tree() -> io::Result<()> {
        let tmp = TempDir::new("tree");
        let root = tmp.0.as_path();
        fs::create_dir(root.join("net"))?;
        // 12345 listens; the TIME_WAIT line (06) has inode 0. No tcp6, no udp.
        fs::write(
            root.join("net/tcp"),
            format!(
                "{TCP_HEADER}{}{}",
                table_line(0, "0A", 12345),
                table_line(1, "06", 0)
            ),
        )?;
        fs::write(
            root.join("net/udp6"),
            format!("{TCP_HEADER}{}", table_line(0, "07", 23456)),
        )?;

        // 12345 twice (dup), 23456, a pipe, a file, a socket not in the
        // tables (e.g. Unix), and inode 0.
        fd_links(
            root,
            "100",
            &[
                "socket:[12345]",
                "socket:[12345]",
                "socket:[23456]",
                "pipe:[7]",
                "/dev/null",
                "socket:[99999]",
                "socket:[0]",
            ],
        );
        // A task of 100: tasks are not scanned.
        fd_links(&root.join("100/task"), "101", &["socket:[23456]"]);
        // Another process sharing 23456, and one sharing nothing.
        fd_links(root, "200", &["pipe:[7]", "socket:[23456]"]);
        fd_links(root, "201", &["pipe:[7]", "/dev/null", "socket:[99999]"]);
        // A process without fd directory (e.g. gone) and one with no fds.
        fs::create_dir(root.join("300"))?;
        fd_links(root, "400", &[]);
        // Not process directories.
        fd_links(root, "12a", &["socket:[12345]"]);
        fd_links(root, "+5", &["socket:[12345]"]);
        symlink("100", root.join("self"))?;
        fs::write(root.join("uptime"), "1.00 2.00\n")?;

        let counts = SocketCounts::read_from(root)?;
        assert_eq!(counts.get(100), 2);
        assert_eq!(counts.get(101), 0);
        assert_eq!(counts.get(200), 1);
        assert_eq!(counts.get(201), 0);
        assert_eq!(counts.get(300), 0);
        assert_eq!(counts.get(400), 0);
        assert_eq!(counts.get(5), 0);
        assert_eq!(counts.get(999), 0);
        assert_eq!(counts.counts.len(), 2, "{:?}", counts.counts);

        // Without any table, nothing counts.
        fs::remove_dir_all(root.join("net"))?;
        let counts = SocketCounts::read_from(root)?;
        assert_eq!(counts.get(100), 0);
        assert!(counts.counts.is_empty(), "{:?}", counts.counts);
        Ok(())
    }

    #[test]
    fn malformed_table_line_is_an_error() {
        let tmp = TempDir::new("bad");
        let root = tmp.0.as_path();
        fs::create_dir(root.join("net")).unwrap();
        fs::write(
            root.join("net/udp"),
            format!("{TCP_HEADER}   0: 0100007F:1F90 00000000:0000 07\n"),
        )
        .unwrap();
        fd_links(root, "100", &["socket:[12345]"]);
        let err = SocketCounts::read_from(root).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("net/udp line 2"), "{err}");
    }

    #[test]
    fn missing_root_is_an_error() {
        let tmp = TempDir::new("gone");
        let err = SocketCounts::read_from(&tmp.0.join("nonexistent")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
