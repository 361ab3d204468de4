//! Other users than root: a thread that has given up root for another
//! user, and connections made as `nobody`.

use std::os::unix::net::UnixStream;
use std::path::Path;

/// The uid and gid of `nobody`.
pub const NOBODY: u32 = 65534;

/// Runs `f` on a thread of its own that has given up root for `uid` and
/// `gid` (no supplementary groups), and returns its result. Linux keeps
/// credentials per thread; the raw system calls change only the calling
/// thread's (glibc's wrappers would change every thread's). A socket it
/// connects carries `uid` to the server (`SO_PEERCRED`) wherever it is used
/// afterwards; a process it starts runs as `uid`.
pub fn as_user<T: Send + 'static>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: raw credential calls with plain integer arguments and a
        // null list of groups of length 0; they affect this thread only,
        // which ends when `f` returns.
        let rc = unsafe {
            if libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) != 0 {
                -1
            } else if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                -2
            } else {
                libc::syscall(libc::SYS_setresuid, uid, uid, uid)
            }
        };
        assert_eq!(
            rc,
            0,
            "cannot become uid {uid}: {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("the thread of another user panicked")
}

/// A new connection to `socket` made as `nobody`.
pub fn connect_as_nobody(socket: &Path) -> std::io::Result<UnixStream> {
    let socket = socket.to_owned();
    as_user(NOBODY, NOBODY, move || UnixStream::connect(socket))
}
