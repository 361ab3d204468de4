//! Whether a directory may be netatopd's pin directory: a real directory
//! on bpffs, owned by this user, writable by no one else, holding nothing
//! netatopd never pins. netatopd adopts, discards and removes only what is
//! in such a directory, so a mistyped --pin-dir never touches another
//! tool's pins or ordinary files.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::maps;
use crate::pin::on_bpffs;
use crate::plan;

/// At most this many of a directory's foreign names are quoted.
const QUOTED: usize = 3;

/// Why the existing `dir` cannot be netatopd's pin directory (None: it
/// can).
pub(crate) fn foreign(dir: &Path) -> Option<String> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) => return Some(e.to_string()),
    };
    if meta.file_type().is_symlink() {
        return Some("it is a symbolic link (give the directory itself)".into());
    }
    if !meta.is_dir() {
        return Some("it is not a directory".into());
    }
    match on_bpffs(dir) {
        Ok(true) => {}
        Ok(false) => return Some("it is not on a bpf filesystem".into()),
        Err(e) => return Some(e.to_string()),
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Some(format!(
            "it belongs to uid {}, not to this netatopd's (uid {me})",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Some(format!("others may write in it (mode {mode:04o})"));
    }
    let names = fs::read_dir(dir).and_then(|rd| {
        rd.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<Vec<_>, _>>()
    });
    let names = match names {
        Ok(n) => n,
        Err(e) => return Some(format!("cannot list it: {e}")),
    };
    let ours: BTreeSet<&str> = maps::every_pin().chain(plan::every_link_pin()).collect();
    let mut strangers: Vec<String> = names
        .into_iter()
        .filter(|n| !ours.contains(n.as_str()))
        .collect();
    if strangers.is_empty() {
        return None;
    }
    strangers.sort();
    let n = strangers.len();
    let mut quoted = strangers
        .iter()
        .take(QUOTED)
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if n > QUOTED {
        quoted.push_str(", ...");
    }
    Some(format!(
        "it holds {n} entr{} netatopd never pins ({quoted}): another tool's, or a later \
         netatopd's",
        if n == 1 { "y" } else { "ies" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_name_is_known_and_links_are_apart_from_maps() {
        let maps: BTreeSet<&str> = maps::every_pin().collect();
        let links: BTreeSet<&str> = plan::every_link_pin().into_iter().collect();
        assert!(maps.contains("meta") && maps.contains("threads"));
        assert!(links.contains("link_send") && links.contains("link_kr_splice"));
        assert!(links.contains("link_sock_in") && links.contains("link_cgroup_rmdir"));
        assert!(maps.is_disjoint(&links));
        assert!(links.iter().all(|l| l.starts_with("link_")));
    }

    #[test]
    fn an_ordinary_directory_is_not_a_pin_directory() {
        let dir = std::env::temp_dir();
        let why = foreign(&dir).expect("a temporary directory is refused");
        assert!(
            why.contains("not on a bpf filesystem") || why.contains("others may write"),
            "{why}"
        );
    }
}
