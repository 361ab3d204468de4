//! The system calls the scenarios make, as thin wrappers: each returns
//! what the kernel returned (the generator counts calls from it), or an
//! io::Result where a failure ends the scenario.

use std::io;
use std::mem::zeroed;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// send(2): the bytes sent, or -1.
pub fn send(fd: RawFd, buf: &[u8], flags: i32) -> isize {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) }
}

/// recv(2): the bytes received, 0 at the end, or -1.
pub fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> isize {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the call.
    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }
}

/// write(2): the bytes written, or -1.
pub fn write(fd: RawFd, buf: &[u8]) -> isize {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
}

/// read(2): the bytes read, 0 at the end, or -1.
pub fn read(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the call.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

/// A pipe (close-on-exec): its read end and its write end.
pub fn pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// A new socket, or the error.
pub fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory arguments.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An integer socket option.
pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a valid int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// sendto() of `buf` to `addr`.
pub fn send_to(fd: RawFd, buf: &[u8], addr: &SocketAddr) -> isize {
    let sa = sockaddr(addr);
    // SAFETY: `buf` and the address are valid for the call.
    unsafe {
        libc::sendto(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            0,
            std::ptr::addr_of!(sa.0).cast(),
            sa.1,
        )
    }
}

/// A socket address in the kernel's layout, and its length.
pub fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, u32) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as u32)
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// splice(2) of up to `len` bytes from `from` to `to`, one of them a pipe.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> isize {
    // SAFETY: splice between two valid descriptors, no offsets.
    unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, 0) }
}

/// Sets the calling thread's name (the process's, from the main thread).
pub fn set_name(name: &str) {
    let c = std::ffi::CString::new(name).expect("a name without NUL");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 15 bytes).
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
}
