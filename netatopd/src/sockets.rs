//! The two listening sockets: claimed (a live one is never taken over, a
//! stale one replaced), bound with the asked-for mode and group, and
//! removed when netatopd stops, if they are still its own.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use log::{info, warn};

/// Refuses a live socket; removes a stale one left by a crashed service.
pub fn claim_socket(path: &Path) -> Result<()> {
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

/// Where group names are read from.
const GROUP_FILE: &str = "/etc/group";

/// The gid of `group`: a number, or a name in /etc/group. Names are read
/// from the file itself, not through the C library's name services: the
/// release build is static, and a static program cannot load their
/// modules (LDAP, systemd's dynamic groups...); such a group is given by
/// its number.
pub fn resolve_group(group: &str) -> Result<u32> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let text = fs::read_to_string(GROUP_FILE)
        .with_context(|| format!("--socket-group {group}: cannot read {GROUP_FILE}"))?;
    match gid_in(&text, group) {
        Some(gid) => Ok(gid),
        None => bail!(
            "--socket-group: no group named {group:?} in {GROUP_FILE} (groups of other \
             sources, such as LDAP, are not looked up: give its number)"
        ),
    }
}

/// The gid of group `name` in the text of a group file (lines of
/// "name:password:gid:members").
fn gid_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.trim().parse().ok()
    })
}

/// A socket file this netatopd bound; removed when dropped, if it is still
/// the one bound (another service may have replaced it meanwhile).
pub struct SocketFile {
    path: PathBuf,
    id: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if fs::metadata(&self.path).map(|m| (m.dev(), m.ino())).ok() == self.id {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket, created 0600 (only root), then gives it its group and
/// the requested mode, in that order, so it is never wider than asked.
pub fn bind(path: &Path, mode: u32, gid: Option<u32>) -> Result<(UnixListener, SocketFile)> {
    // SAFETY: umask only swaps the process's file-creation mask; no other
    // thread creates files while the daemon starts.
    let old = unsafe { libc::umask(0o177) };
    let res = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = res.with_context(|| format!("cannot listen on {}", path.display()))?;
    let file = SocketFile {
        path: path.to_owned(),
        id: fs::metadata(path).map(|m| (m.dev(), m.ino())).ok(),
    };
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid))
            .with_context(|| format!("cannot give {} to group {gid}", path.display()))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
    if mode & 0o006 != 0 {
        warn!(
            "socket {} is mode {mode:04o}: every local user can read the traffic volumes of every process",
            path.display()
        );
    }
    Ok((listener, file))
}

/// Creates the directory `path` lies in, if it does not exist (mode 0755).
pub fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// Like [`bind`], creating the socket's directory first if needed.
pub fn bind_in_dir(path: &Path, mode: u32, gid: Option<u32>) -> Result<(UnixListener, SocketFile)> {
    create_parent(path)?;
    bind(path, mode, gid)
}

#[cfg(test)]
mod tests {
    use super::gid_in;

    #[test]
    fn a_group_file_gives_the_gid_of_a_name() {
        let text = "root:x:0:\nadm:x:4:syslog,alice\n# not a group\nmonitoring:x:998:\nbad:x:\n";
        assert_eq!(gid_in(text, "adm"), Some(4));
        assert_eq!(gid_in(text, "monitoring"), Some(998));
        assert_eq!(gid_in(text, "root"), Some(0));
        assert_eq!(gid_in(text, "mon"), None);
        assert_eq!(gid_in(text, "bad"), None);
        assert_eq!(gid_in(text, "# not a group"), None);
    }
}
