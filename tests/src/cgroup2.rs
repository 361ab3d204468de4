//! cgroup2 mounts: where this process sees them, and a mount namespace
//! without them (for a daemon started as on a system without cgroup v2
//! mounted).

use std::fs;

/// The mount points of every cgroup2 file system this process sees.
pub(crate) fn cgroup2_mount_points() -> Vec<std::ffi::CString> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("reading mountinfo")
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2")
                .then(|| std::ffi::CString::new(left.split(' ').nth(4)?).ok())?
        })
        .collect()
}

/// In a new mount namespace (private from here on), detaches `points`.
pub(crate) fn unmount_in_new_namespace(points: &[std::ffi::CString]) -> std::io::Result<()> {
    let root = c"/";
    // SAFETY: plain syscalls on NUL-terminated strings that outlive them.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for p in points {
            if libc::umount2(p.as_ptr(), libc::MNT_DETACH) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}
