//! Records the git revision for `--version`.
//!
//! Outside a git checkout (a source tarball) the revision comes from
//! `NETATOPD_GIT_REVISION` if set, else it is "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=NETATOPD_GIT_REVISION");
    // A new commit moves HEAD or the branch it points to. Only existing
    // files are watched: cargo reruns the script every time for a missing one.
    let git = Path::new("../.git");
    let mut watch = vec![git.join("HEAD"), git.join("packed-refs")];
    if let Ok(head) = std::fs::read_to_string(git.join("HEAD")) {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            watch.push(git.join(r));
        }
    }
    for path in watch.iter().filter(|p| p.is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // Without anything to watch, cargo would rerun on every change in the
    // package; the sources do not change the revision.
    println!("cargo:rerun-if-changed=build.rs");
    let rev = std::env::var("NETATOPD_GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=NETATOPD_GIT_REVISION={rev}");
}
