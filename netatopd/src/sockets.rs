//! The two listening sockets: claimed (a live one is never taken over, a
//! stale one replaced), bound with the asked-for mode and group, and
//! removed when netatopd stops, if they are still its own.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use log::{info, warn};

/// Refuses a live socket, and one in a directory others could replace it
/// in ([`crate::dirs::check_parent`]); removes a stale one left by a
/// crashed service.
pub fn claim_socket(path: &Path) -> Result<()> {
    crate::dirs::check_parent(path)?;
    match UnixStream::connect(path) {
        Ok(_) => bail!(
            "another netatop service is already answering on {}: stop it first, or give this one \
             another --socket",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            let meta = fs::symlink_metadata(path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            if !meta.file_type().is_socket() {
                bail!(
                    "{} exists and is not a socket: remove it or choose another --socket",
                    path.display()
                );
            }
            info!("removing stale socket {}", path.display());
            fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot check socket {}", path.display())),
    }
}

/// A socket file this netatopd bound; removed when dropped, if it is still
/// the one bound (another service may have replaced it meanwhile).
pub struct SocketFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if fs::symlink_metadata(&self.path)
            .map(|m| (m.dev(), m.ino()))
            .ok()
            == self.id
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket, created 0600 (only root), then gives it its group and
/// the requested mode, in that order, so it is never wider than asked.
/// Both are changed on the socket bound, never through a symbolic link
/// put in its place. Its directory was checked when it was claimed (or
/// made, by [`bind_in_dir`]).
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<(UnixListener, SocketFile)> {
    // SAFETY: umask only swaps the process's file-creation mask; no other
    // thread creates files while the daemon starts.
    let old = unsafe { libc::umask(0o177) };
    let res = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = res.with_context(|| format!("cannot listen on {}", path.display()))?;
    // The file itself, not what a link in its place points to.
    let bound = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot open the socket file {}", path.display()))?;
    let meta = bound
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if !meta.file_type().is_socket() || meta.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "{} was replaced by another file right after it was bound",
            path.display()
        );
    }
    let file = SocketFile {
        path: path.to_owned(),
        id: Some((meta.dev(), meta.ino())),
    };
    // The descriptor's own path: changes reach exactly the file opened.
    let inode = PathBuf::from(format!("/proc/self/fd/{}", bound.as_raw_fd()));
    if let Some(gid) = gid {
        std::os::unix::fs::chown(&inode, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
    }
    fs::set_permissions(&inode, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
    if mode & 0o006 != 0 {
        warn!(
            "socket {} is mode {mode:04o}: every local user can read the traffic volumes of every process",
            path.display()
        );
    }
    Ok((listener, file))
}

/// Like [`bind`], creating the socket's directory first if needed.
pub fn bind_in_dir(path: &Path, mode: u32, gid: Option<u32>) -> Result<(UnixListener, SocketFile)> {
    crate::dirs::create_parent(path)?;
    bind(path, mode, gid)
}
