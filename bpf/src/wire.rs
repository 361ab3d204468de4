//! What the counters count: socket calls and their payload (as atop's
//! netatop-bpf does), or what the wire carries: IP packets and their
//! bytes, each counted to the process that owns its socket.
//!
//! Wire counting adds four programs to the chosen way of attaching: the
//! BTF tracepoints net_dev_start_xmit (every packet an interface sends,
//! after segmentation and fragmentation), netif_receive_skb (every packet
//! an interface receives) and inet_sock_set_state (connect and listen
//! record their caller as the socket's owner), and a cgroup_skb ingress
//! program on the root of the cgroup v2 hierarchy (every packet a socket
//! receives, with the socket). Owners live in socket-local storage, which
//! tracing programs may use from Linux 5.11 on; kprobe programs may not.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::attach::{Hook, Mode};
use crate::kernel::Kernel;

/// What the counters count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Count {
    /// Socket calls and the bytes they moved (netatop-bpf's meaning).
    #[default]
    Calls,
    /// IP packets and their bytes (headers included), as the interfaces
    /// carried them.
    Wire,
}

impl Count {
    pub const ALL: [Count; 2] = [Count::Calls, Count::Wire];

    /// The name users see and choose (`--count`).
    pub fn name(self) -> &'static str {
        match self {
            Count::Calls => "calls",
            Count::Wire => "wire",
        }
    }

    pub fn from_name(name: &str) -> Option<Count> {
        Count::ALL.into_iter().find(|c| c.name() == name)
    }

    /// What a packet and a byte are, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Count::Calls => "socket calls and their payload bytes",
            Count::Wire => "IP packets and their bytes, headers included",
        }
    }
}

/// The tracing programs of wire counting.
pub(crate) const HOOKS: [Hook; 3] = [
    Hook::new("netatop_state", "link_state"),
    Hook::new("netatop_xmit", "link_xmit"),
    Hook::new("netatop_rx", "link_rx"),
];

/// The cgroup_skb program, attached to the cgroup v2 root.
pub(crate) const SOCKET_INGRESS: Hook = Hook::new("netatop_sock_in", "link_sock_in");

/// Why this kernel cannot count the wire with way `mode` (None: it can).
pub fn unavailable(kernel: &Kernel, mode: Mode) -> Option<String> {
    if mode == Mode::Kprobe {
        return Some(
            "kprobe programs cannot use socket-local storage; wire counting needs the \
             tracepoint or fexit way of attaching"
                .into(),
        );
    }
    for tp in [
        "net_dev_start_xmit",
        "netif_receive_skb",
        "inet_sock_set_state",
    ] {
        if kernel.has_tracepoint(tp) != Some(true) {
            return Some(format!(
                "this kernel (Linux {}) has no BTF for the tracepoint {tp}",
                kernel.release
            ));
        }
    }
    if !crate::kernel::net_admin() {
        return Some(
            "its socket program (cgroup_skb) needs CAP_NET_ADMIN, which this process lacks \
             (add it to the unit's AmbientCapabilities and CapabilityBoundingSet)"
                .into(),
        );
    }
    if kernel.has_func("bpf_sk_storage_tracing_allowed") != Some(true) {
        return Some(format!(
            "this kernel (Linux {}) cannot: tracing programs cannot use socket-local storage \
             before Linux 5.11",
            kernel.release
        ));
    }
    None
}

/// The root of the cgroup v2 hierarchy, opened: where the system mounts
/// it, else from a mount of netatopd's own, undone at once (the open
/// directory is all an attachment needs). Says which.
pub fn cgroup2_root() -> io::Result<(OwnedFd, String)> {
    if let Some(dir) = mounted_cgroup2_root()? {
        let f = File::open(&dir)?;
        return Ok((f.into(), dir.display().to_string()));
    }
    let dir = PathBuf::from(format!("/run/netatopd-cgroup2.{}", std::process::id()));
    fs::create_dir(&dir)?;
    let opened = mount_cgroup2(&dir).and_then(|()| {
        let f = File::open(&dir);
        let umounted = umount(&dir);
        let f = f?;
        umounted?;
        Ok(f)
    });
    let removed = fs::remove_dir(&dir);
    let f = opened?;
    removed?;
    Ok((
        f.into(),
        "a cgroup2 mount of its own (none was mounted)".into(),
    ))
}

/// The mount point of a cgroup v2 file system that shows the whole
/// hierarchy (its root is "/"), from /proc/self/mountinfo.
pub fn mounted_cgroup2_root() -> io::Result<Option<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().find_map(|line| {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split(' ').next()?;
        let mut f = left.split(' ');
        let root = f.nth(3)?;
        let point = f.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(unescape(point)))
    }))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn mount_cgroup2(dir: &Path) -> io::Result<()> {
    let (src, target, fstype) = (
        CString::new("cgroup2")?,
        cstr(dir)?,
        CString::new("cgroup2")?,
    );
    // SAFETY: every argument is a NUL-terminated string that outlives the
    // call; no mount data.
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn umount(dir: &Path) -> io::Result<()> {
    let target = cstr(dir)?;
    // SAFETY: `target` is a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Count::ALL {
            assert_eq!(Count::from_name(c.name()), Some(c));
        }
        assert_eq!(Count::from_name("packets"), None);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape(r"/sys/fs/cgroup/my\040dir"),
            "/sys/fs/cgroup/my dir"
        );
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
    }
}
