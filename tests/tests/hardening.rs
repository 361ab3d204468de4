//! What a mistyped option or a hostile file system cannot do: every number
//! is checked before anything is loaded, and netatopd never removes,
//! follows or writes through what is not its own (a foreign pin
//! directory, a symbolic link, a directory others may write in).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use netatopd_tests::{
    bin, one_line_error, pin_dir_for, private_args, require_bpf_machine, run, scratch_dir,
};

const NOBODY: u32 = 65534;

/// netatopd with its own files under `dir` (pins under /sys/fs/bpf), but
/// for the options `instead` gives other values.
fn netatopd_in(dir: &Path, instead: &[(&str, &Path)]) -> Command {
    let mut args = private_args(dir, &dir.join("netatop.sock")).into_iter();
    let mut cmd = Command::new(bin("netatopd"));
    cmd.arg("--foreground");
    while let (Some(option), Some(value)) = (args.next(), args.next()) {
        match instead.iter().find(|(o, _)| option == *o) {
            Some((_, other)) => cmd.arg(option).arg(other),
            None => cmd.arg(option).arg(value),
        };
    }
    cmd
}

/// Asserts that netatopd in `dir` made nothing: no socket, pid file or pins.
fn made_nothing(dir: &Path) {
    for f in ["netatop.sock", "control.sock", "netatopd.pid"] {
        assert!(!dir.join(f).exists(), "{f} was made");
    }
    assert!(!pin_dir_for(dir).exists(), "pins were made");
}

#[test]
fn every_number_out_of_its_range_is_refused_before_anything_is_loaded() {
    let dir = scratch_dir();
    let huge = "99999999999999999999";
    // (option, values it refuses); 0 is a valid --exit-grace and
    // --socket-mode.
    let cases: &[(&str, &[&str])] = &[
        ("--exit-grace", &["-1", "1e300", "86401", "nan", "inf"]),
        ("--idle-timeout", &["0", "-1", "1e300", "nan"]),
        ("--client-timeout", &["0", "-1", "1e300", "inf"]),
        ("--max-exited", &["0", "-1", huge]),
        ("--max-clients", &["0", "-1", huge]),
        ("--max-clients-per-user", &["0", "-1", huge]),
        ("--max-pending-output", &["0", "-1", huge, "1073741825"]),
        (
            "--max-unprivileged-output",
            &["0", "-1", huge, "1073741825"],
        ),
        ("--max-threads", &["0", "-1", huge, "4194305"]),
        ("--max-processes", &["0", "-1", huge]),
        ("--max-pending-exits", &["0", "-1", huge]),
        ("--max-cgroups", &["0", "-1", huge, "1048577"]),
        ("--max-removed-cgroups", &["0", "-1", huge]),
        ("--socket-mode", &["-1", "1000", "0o7777", huge]),
    ];
    for (option, values) in cases {
        for value in *values {
            let out = run(netatopd_in(&dir, &[]).arg(format!("{option}={value}")));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{option}={value}: {err}");
            assert!(
                err.contains(&format!("invalid value '{value}' for '{option} ")),
                "{option}={value}: {err}"
            );
            made_nothing(&dir);
        }
    }
    fs::remove_dir_all(dir).unwrap();
}

/// A directory on bpffs for a test, removed with everything in it when
/// dropped.
struct BpfDir(PathBuf);

impl BpfDir {
    fn new(dir: &Path, suffix: &str) -> Self {
        let name = format!("{}{suffix}", dir.file_name().unwrap().to_string_lossy());
        let path = Path::new("/sys/fs/bpf").join(name);
        fs::create_dir(&path).expect("a directory on bpffs");
        Self(path)
    }

    /// Pins an array map of another tool's at `name`, holding 42 at 0.
    fn pin_foreign_map(&self, name: &str) {
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let mut map = MapHandle::create(MapType::Array, Some("other_tool"), 4, 8, 1, &opts)
            .expect("an array map");
        map.update(&0u32.to_ne_bytes(), &42u64.to_ne_bytes(), MapFlags::ANY)
            .unwrap();
        map.pin(self.0.join(name)).expect("pinning it");
    }

    /// Whether the map pinned at `name` still holds 42.
    fn foreign_map_intact(&self, name: &str) -> bool {
        MapHandle::from_pinned_path(self.0.join(name))
            .ok()
            .and_then(|m| m.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok().flatten())
            .is_some_and(|v| v == 42u64.to_ne_bytes())
    }
}

impl Drop for BpfDir {
    fn drop(&mut self) {
        if let Ok(rd) = fs::read_dir(&self.0) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn unload_on_an_ordinary_directory_removes_nothing() {
    require_bpf_machine();
    let dir = scratch_dir();
    let other = dir.join("someone's");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("meta"), "not a map").unwrap();
    let err = one_line_error(netatopd_in(&dir, &[("--pin-dir", &other)]).arg("--unload"));
    assert!(
        err.contains("it is not on a bpf filesystem: it is not netatopd's pin directory; nothing in it was removed"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(other.join("meta")).unwrap(), "not a map");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_tools_pin_directory_is_refused_and_left_as_it_was() {
    require_bpf_machine();
    let dir = scratch_dir();
    let foreign = BpfDir::new(&dir, "-foreign");
    // A name of netatopd's beside one of another tool's.
    foreign.pin_foreign_map("meta");
    foreign.pin_foreign_map("other_tool_map");
    for unload in [false, true] {
        let mut cmd = netatopd_in(&dir, &[("--pin-dir", &foreign.0)]);
        if unload {
            cmd.arg("--unload");
        }
        let err = one_line_error(&mut cmd);
        assert!(
            err.contains("it holds 1 entry netatopd never pins (\"other_tool_map\")"),
            "unload {unload}: {err}"
        );
        assert!(foreign.foreign_map_intact("meta") && foreign.foreign_map_intact("other_tool_map"));
        assert_eq!(fs::read_dir(&foreign.0).unwrap().count(), 2);
    }
    // A directory of netatopd's names only, that others may write in.
    let open = BpfDir::new(&dir, "-open");
    open.pin_foreign_map("meta");
    fs::set_permissions(&open.0, fs::Permissions::from_mode(0o777)).unwrap();
    let err = one_line_error(&mut netatopd_in(&dir, &[("--pin-dir", &open.0)]));
    assert!(err.contains("others may write in it (mode 0777)"), "{err}");
    assert!(open.foreign_map_intact("meta"));
    // A symbolic link to an empty directory netatopd could use: on bpffs
    // where the kernel lets one be made there, else beside the scratch
    // files (then its directory is not on bpffs).
    let target = BpfDir::new(&dir, "-target");
    let on_bpffs = foreign.0.with_extension("link");
    let link = match symlink(&target.0, &on_bpffs) {
        Ok(()) => on_bpffs,
        Err(e) => {
            eprintln!(
                "this kernel refuses a symbolic link on bpffs ({e}): the link is made beside the \
                 scratch files"
            );
            let beside = dir.join("pins-link");
            symlink(&target.0, &beside).unwrap();
            beside
        }
    };
    let err = one_line_error(&mut netatopd_in(&dir, &[("--pin-dir", &link)]));
    assert!(
        err.contains("it is a symbolic link") || err.contains("is not on a bpf filesystem"),
        "{err}"
    );
    assert_eq!(fs::read_dir(&target.0).unwrap().count(), 0);
    fs::remove_file(&link).unwrap();
    made_nothing(&dir);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn links_and_directories_others_may_write_in_are_refused_for_the_pid_file_and_sockets() {
    require_bpf_machine();
    let dir = scratch_dir();
    // A pid file that is a dangling link: its target is never created.
    let target = dir.join("elsewhere");
    symlink(&target, dir.join("netatopd.pid")).unwrap();
    let err = one_line_error(&mut netatopd_in(&dir, &[]));
    assert!(err.contains("netatopd.pid is a symbolic link"), "{err}");
    assert!(!target.exists(), "the link was followed");
    fs::remove_file(dir.join("netatopd.pid")).unwrap();
    // A pid file of another user's.
    fs::write(dir.join("netatopd.pid"), "1\n").unwrap();
    std::os::unix::fs::chown(dir.join("netatopd.pid"), Some(NOBODY), None).unwrap();
    let err = one_line_error(&mut netatopd_in(&dir, &[]));
    assert!(err.contains("is not a regular file of uid 0"), "{err}");
    assert_eq!(fs::read_to_string(dir.join("netatopd.pid")).unwrap(), "1\n");
    fs::remove_file(dir.join("netatopd.pid")).unwrap();
    // A control socket in a directory everyone may write in.
    let open = dir.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let err = one_line_error(&mut netatopd_in(
        &dir,
        &[("--control-socket", &open.join("c.sock"))],
    ));
    assert!(
        err.contains("lets others write in it (mode 0777, no sticky bit)"),
        "{err}"
    );
    // The atop socket in a directory, through a link, of another user's.
    let theirs = dir.join("theirs");
    fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), None).unwrap();
    symlink(&theirs, dir.join("via")).unwrap();
    let err = one_line_error(&mut netatopd_in(&dir, &[("--socket", &dir.join("via/s"))]));
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&theirs).unwrap().count(), 0);
    made_nothing(&dir);
    fs::remove_dir_all(dir).unwrap();
}
