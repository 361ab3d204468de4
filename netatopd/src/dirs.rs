//! The directories netatopd puts its sockets and pid file in: made when
//! missing, and refused when anyone but root or netatopd's own user could
//! replace what netatopd puts there.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Creates the directory `path` lies in, if it does not exist (mode 0755),
/// and checks it as [`check_parent`] does.
pub fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = parent(path) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    check_parent(path)
}

/// Refuses `path` when its directory (symbolic links followed) belongs to
/// another user than root or this one, or others may write in it without
/// the sticky bit: they could replace the file with another, or with a
/// link to one. A directory that does not exist is left to the caller.
pub fn check_parent(path: &Path) -> Result<()> {
    let Some(dir) = parent(path) else {
        return Ok(());
    };
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
    };
    if let Some(why) = unsafe_dir(&meta) {
        bail!(
            "{}: its directory {} {why}, who could replace what netatopd puts there: give a path \
             in a directory only root can write in",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The directory `path` is in; None for a bare name (the working
/// directory, the caller's choice).
fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

/// Whom else a directory lets replace its entries (None: nobody).
fn unsafe_dir(meta: &Metadata) -> Option<String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!("belongs to uid {}", meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "lets others write in it (mode {mode:04o}, no sticky bit)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_others_may_write_in_is_refused_unless_sticky() {
        let dir = std::env::temp_dir().join(format!("netatopd-dirs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        for (mode, ok) in [
            (0o755, true),
            (0o700, true),
            (0o1777, true),
            (0o777, false),
            (0o775, false),
        ] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let res = check_parent(&file);
            assert_eq!(res.is_ok(), ok, "mode {mode:o}: {res:?}");
            if let Err(e) = res {
                assert!(e.to_string().contains("lets others write in it"), "{e}");
            }
        }
        fs::remove_dir(&dir).unwrap();
        assert!(
            check_parent(&file).is_ok(),
            "a missing directory is the caller's"
        );
        assert!(check_parent(Path::new("bare-name")).is_ok());
    }
}
