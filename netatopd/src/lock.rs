//! The pid file, locked for the daemon's life: exactly one netatopd per
//! pid file. The lock goes with the process, so a crashed netatopd leaves
//! a file the next one simply takes over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

pub struct PidFile {
    /// Open for as long as the lock is held.
    _file: File,
    path: PathBuf,
}

impl PidFile {
    /// Locks `path` and writes this process's pid into it; refuses when
    /// another process holds the lock, naming it.
    pub fn lock(path: &Path) -> Result<Self> {
        crate::dirs::create_parent(path)?;
        loop {
            let file = Self::open_locked(path)?;
            // A netatopd that was stopping may have removed the file between
            // our open and our lock: then the lock is on a dead file.
            let same = match (file.metadata(), fs::metadata(path)) {
                (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
                _ => false,
            };
            if same {
                return Self::write_pid(file, path);
            }
        }
    }

    fn open_locked(path: &Path) -> Result<File> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // A link in its place is refused, never followed.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => anyhow!(
                    "the pid file {} is a symbolic link: give the path of a file, or remove it",
                    path.display()
                ),
                _ => anyhow!(e).context(format!("cannot open the pid file {}", path.display())),
            })?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot inspect the pid file {}", path.display()))?;
        let me = nix::unistd::geteuid().as_raw();
        if !meta.is_file() || meta.uid() != me {
            bail!(
                "the pid file {} is not a regular file of uid {me}: remove it, or give another \
                 --pid-file",
                path.display()
            );
        }
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                bail!(
                    "netatopd is already running (pid {}, lock {}): stop it first, or give this one \
                     its own --pid-file, --socket and --pin-dir",
                    pid.trim(),
                    path.display()
                );
            }
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(file)
    }

    fn write_pid(mut file: File, path: &Path) -> Result<Self> {
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write the pid file {}", path.display()))?;
        Ok(Self {
            _file: file,
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no newcomer's file is removed.
        let _ = fs::remove_file(&self.path);
    }
}
