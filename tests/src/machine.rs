//! What the tests find on this machine and in this build: a machine able
//! to load BPF, the workspace's binaries and test executables, netatopd's
//! systemd unit, and fresh scratch directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A binary of this workspace: beside the running executable (a binary
/// such as netatop-bench) or one directory up (a test in target/*/deps).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("the executable's directory");
    let path = [dir.join(name), dir.parent().unwrap_or(dir).join(name)]
        .into_iter()
        .find(|p| p.exists());
    path.unwrap_or_else(|| {
        panic!(
            "{name} is missing beside {}: build the binaries first (`cargo build --workspace --bins`; \
             `make test` does)",
            exe.display()
        )
    })
}

/// Another integration test of this crate, built beside the running one
/// (target/*/deps/NAME-HASH; `cargo test` builds every test before it
/// runs any): the newest such executable.
pub fn test_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    test_binary_in(exe.parent().expect("the test's directory"), name)
}

/// The newest integration test `name` in `deps` (a deps directory of
/// cargo's, such as another target's: target/aarch64-unknown-linux-gnu/release/deps).
pub fn test_binary_in(deps: &Path, name: &str) -> PathBuf {
    let prefix = format!("{name}-");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(deps)
        .expect("the deps directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_none()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no test binary {name}-* in {}", deps.display()))
        .1
}

/// Fails loudly where BPF cannot run: these tests must not pass by skipping.
pub fn require_bpf_machine() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "netatopd's integration tests load BPF programs and must run as root"
    );
    assert!(
        Path::new("/sys/kernel/btf/vmlinux").exists(),
        "this kernel has no BTF (/sys/kernel/btf/vmlinux): the tests need Linux >= 6.7 with BTF"
    );
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory for one test.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "netatopd-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// netatopd's systemd unit, as shipped in the repository.
pub fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../netatopd/systemd/netatopd.service")
}
