//! One TCP connection used by two processes in turn (tcp-fork, tcp-scm):
//! shared with a forked child, or passed to the generator with
//! SCM_RIGHTS; the child's part async-signal safe.

use std::io::{self, BufRead};
use std::mem::zeroed;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use netatopd_tests::Report;

use crate::sys::{pipe, read, recv, send, sockaddr, write};
use crate::wire::{echo_server, Peer};
use crate::Opts;

/// `n` request/response exchanges of `size` bytes on `fd` (async-signal
/// safe: no allocation, for a forked child). False when one failed.
fn exchanges_raw(fd: RawFd, n: usize, buf: &mut [u8]) -> bool {
    for _ in 0..n {
        let mut sent = 0;
        while sent < buf.len() {
            let r = send(fd, &buf[sent..], 0);
            if r <= 0 {
                return false;
            }
            sent += r as usize;
        }
        let mut got = 0;
        while got < buf.len() {
            let r = recv(fd, &mut buf[got..], 0);
            if r <= 0 {
                return false;
            }
            got += r as usize;
        }
    }
    true
}

/// Writes one byte to `fd` (a pipe): whether it went.
fn write_byte(fd: RawFd) -> bool {
    write(fd, b"x") == 1
}

/// Reads one byte from `fd` (a pipe): false at its end.
fn read_byte(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    read(fd, &mut b) == 1
}

/// One connection used by two processes in turn: a child makes `count`
/// exchanges, then the generator one; the generator then prints a first
/// report (its pid, and its child's in `children`) and waits for a line
/// on stdin, makes `count - 1` more exchanges and closes the connection.
/// With `scm` the child connects and passes the socket to the generator
/// with SCM_RIGHTS; else the generator connects and forks the child with
/// it. The child closes its copy after its turn. The echo server runs on
/// a thread of the generator (its traffic is the generator's).
pub fn handover(children: &mut Vec<i32>, peer: &Peer, o: &Opts, scm: bool) -> io::Result<()> {
    let (port, server) = echo_server(peer, o.size)?;
    // Child to parent: its turn is over.
    let (done_r, done_w) = pipe()?;
    // Parent to child: closed when the generator exits.
    let (hold_r, hold_w) = pipe()?;
    let mut pair = [0; 2];
    // SAFETY: `pair` has room for the two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let conn = if scm {
        None
    } else {
        Some(TcpStream::connect((peer.addr, port))?)
    };
    let (sa, sa_len) = sockaddr(&SocketAddr::from((peer.addr, port)));
    let mut buf = vec![0x5eu8; o.size];
    let count = o.count;
    // SAFETY: the child makes only async-signal-safe calls (socket,
    // connect, send, recv, sendmsg, read, write, close, _exit) on buffers
    // allocated before.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: the parent's ends and the test's pipe (stdout): the
        // child keeps none of them open; then its turn.
        let ok = unsafe {
            libc::close(done_r);
            libc::close(hold_w);
            libc::close(pair[0]);
            libc::close(1);
            let fd = match &conn {
                Some(c) => c.as_raw_fd(),
                None => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    if fd < 0 || libc::connect(fd, std::ptr::addr_of!(sa).cast(), sa_len) != 0 {
                        libc::_exit(1);
                    }
                    fd
                }
            };
            exchanges_raw(fd, count, &mut buf)
                && (!scm || send_fd(pair[1], fd))
                && libc::close(fd) == 0
                && write_byte(done_w)
        };
        // Stays until the generator exits.
        while read_byte(hold_r) {}
        // SAFETY: exits the child without unwinding.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    children.push(pid);
    // SAFETY: the parent's copies of the child's ends.
    unsafe {
        libc::close(done_w);
        libc::close(hold_r);
        libc::close(pair[1]);
    }
    let fail = |what: &str| io::Error::other(format!("handover: {what}"));
    if !read_byte(done_r) {
        return Err(fail("the child's turn failed"));
    }
    let c = match conn {
        Some(c) => c,
        None => {
            let fd = recv_fd(pair[0]);
            if fd < 0 {
                return Err(fail("no socket came over SCM_RIGHTS"));
            }
            // SAFETY: a descriptor just received, owned by nothing else.
            TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    if !exchanges_raw(c.as_raw_fd(), 1, &mut buf) {
        return Err(fail("the generator's first exchange failed"));
    }
    crate::print(&Report {
        pid: std::process::id() as i32,
        children: children.clone(),
        ..Report::default()
    });
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if !exchanges_raw(c.as_raw_fd(), count - 1, &mut buf) {
        return Err(fail("the generator's last exchanges failed"));
    }
    drop(c);
    server.join().expect("server thread panicked")?;
    // `hold_w` stays open: the child stays until the generator exits.
    Ok(())
}

/// Runs `f` with a one-byte message that has room for one descriptor's
/// control data (8-byte aligned, on the stack), for [`send_fd`] and
/// [`recv_fd`]: async-signal safe.
fn with_fd_message<R>(f: impl FnOnce(&mut libc::msghdr) -> R) -> R {
    let mut byte = [0u8; 1];
    let mut control = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: all-zero is a valid msghdr; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    f(&mut msg)
}

/// Sends descriptor `fd` over the Unix socket `over`. Async-signal safe
/// (a forked child calls it).
fn send_fd(over: RawFd, fd: RawFd) -> bool {
    with_fd_message(|msg| {
        // SAFETY: CMSG_SPACE only computes a size (24 bytes here, within
        // the message's control buffer); the header and data written are
        // within it.
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
            libc::sendmsg(over, msg, 0) == 1
        }
    })
}

/// Receives a descriptor sent with [`send_fd`]; -1 on failure. Async-
/// signal safe (a forked child calls it).
fn recv_fd(over: RawFd) -> RawFd {
    with_fd_message(|msg| {
        // SAFETY: `msg` points to buffers that live through the call; the
        // control message is read only when the kernel says it is there.
        unsafe {
            if libc::recvmsg(over, msg, 0) != 1 {
                return -1;
            }
            let cmsg = libc::CMSG_FIRSTHDR(msg);
            if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
                return -1;
            }
            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>())
        }
    })
}
