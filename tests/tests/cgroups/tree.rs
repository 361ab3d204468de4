//! The cgroups a test makes: under a parent of its own in the cgroup v2
//! hierarchy (mounted for the test where the system has none), removed
//! when the test is done; and processes moved into them.

use std::path::{Path, PathBuf};

use netatopd_tests::ok;

/// A cgroup2 mount that shows the whole hierarchy: the system's, else one
/// of this test's own (unmounted when dropped).
struct Hierarchy {
    root: PathBuf,
    own: bool,
}

impl Hierarchy {
    fn find_or_mount() -> Hierarchy {
        if let Some(root) = netatopd_bpf::wire::mounted_cgroup2_root().expect("reading mountinfo") {
            return Hierarchy { root, own: false };
        }
        let root = netatopd_tests::scratch_dir();
        ok(std::process::Command::new("mount")
            .args(["-t", "cgroup2", "none"])
            .arg(&root));
        Hierarchy { root, own: true }
    }
}

impl Drop for Hierarchy {
    fn drop(&mut self) {
        if self.own {
            let _ = std::process::Command::new("umount")
                .arg(&self.root)
                .status();
            let _ = std::fs::remove_dir(&self.root);
        }
    }
}

/// Cgroups made by this test, under a parent of its own; removed (deepest
/// first) when dropped.
pub struct Cgroups {
    root: PathBuf,
    made: Vec<PathBuf>,
    // Dropped after the cgroups are removed.
    _hierarchy: Hierarchy,
}

impl Cgroups {
    /// This test's parent cgroup, `netatop-test-<pid>-<name>`.
    pub fn new(name: &str) -> Cgroups {
        let hierarchy = Hierarchy::find_or_mount();
        let root = hierarchy
            .root
            .join(format!("netatop-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&root).expect("making this test's cgroup");
        Cgroups {
            root,
            made: Vec::new(),
            _hierarchy: hierarchy,
        }
    }

    /// Removes `dir` (empty of processes) and forgets it.
    pub fn remove(&mut self, dir: &Path) {
        std::fs::remove_dir(dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
        self.made.retain(|p| p != dir);
    }

    /// Makes `rel` (and its parents) under this test's parent.
    pub fn make(&mut self, rel: &str) -> PathBuf {
        let dir = self.root.join(rel.trim_start_matches('/'));
        let mut p = self.root.clone();
        for part in rel.trim_start_matches('/').split('/') {
            p = p.join(part);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
                self.made.push(p.clone());
            }
        }
        dir
    }

    /// Moves process `pid` into cgroup `dir`.
    pub fn enter(dir: &Path, pid: i32) {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("moving {pid} into {}: {e}", dir.display()));
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for p in self.made.iter().rev() {
            let _ = std::fs::remove_dir(p);
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}
