//! Cgroup v2 paths by id: the id of a cgroup is the inode number of its
//! directory on a cgroup2 file system, so walking the hierarchy finds each
//! id's path.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use log::{info, warn};

/// The root of the cgroup v2 hierarchy, opened on first use: where the
/// system mounts it, else a mount of netatopd's own, detached at once and
/// reached through the open directory.
#[derive(Default)]
pub struct Hierarchy {
    root: Option<OwnedFd>,
    failed: bool,
}

impl Hierarchy {
    /// Each cgroup's id and its path from the root ("/" for the root), as
    /// the hierarchy is now; empty where it cannot be opened (said once).
    pub fn paths(&mut self) -> HashMap<u64, String> {
        let mut out = HashMap::new();
        if self.root.is_none() && !self.failed {
            match netatopd_bpf::wire::cgroup2_root() {
                Ok((fd, what)) => {
                    info!("cgroup paths from {what}");
                    self.root = Some(fd);
                }
                Err(e) => {
                    warn!("cgroups are reported without their paths: cannot open cgroup v2 ({e})");
                    self.failed = true;
                }
            }
        }
        if let Some(fd) = &self.root {
            let dir = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            walk(&dir, "", &mut out);
        }
        out
    }
}

fn walk(dir: &Path, path: &str, out: &mut HashMap<u64, String>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    out.insert(
        meta.ino(),
        if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
    );
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let name = e.file_name();
            walk(
                &e.path(),
                &format!("{path}/{}", name.to_string_lossy()),
                out,
            );
        }
    }
}
