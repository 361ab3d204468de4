//! Scenarios of child processes: children that each send one datagram
//! and stay until released (fork), or exit at once (churn); and their
//! reaping.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};

use crate::loopback::loopback;
use crate::sys::{pipe, read};
use crate::Opts;

/// `count` child processes, each sending one datagram of `size` bytes, that
/// stay alive until the generator's stdin closes. Returns once every child
/// has sent.
pub fn fork(children: &mut Vec<i32>, o: &Opts) -> io::Result<(RawFd, UdpSocket)> {
    let sink = UdpSocket::bind(loopback(false))?;
    let out = UdpSocket::bind(loopback(false))?;
    out.connect(sink.local_addr()?)?;
    // Children wait on `hold` until the parent closes it; they report on
    // `sent` that their datagram is out.
    let (hold_r, hold_w) = pipe()?;
    let (sent_r, sent_w) = pipe()?;
    let msg = vec![9u8; o.size];
    for _ in 0..o.count {
        // SAFETY: the child only makes async-signal-safe calls (close, send,
        // write, read, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            let mut b = [0u8; 1];
            // SAFETY: see above; `b` and `msg` are valid buffers.
            unsafe {
                libc::close(hold_w);
                libc::close(sent_r);
                let ok = libc::send(out.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0)
                    == msg.len() as isize;
                libc::write(sent_w, b.as_ptr().cast(), 1);
                libc::read(hold_r, b.as_mut_ptr().cast(), 1);
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        children.push(pid);
    }
    // SAFETY: closing the parent's copies of the children's ends.
    unsafe {
        libc::close(hold_r);
        libc::close(sent_w);
    }
    let mut done = 0;
    let mut buf = [0u8; 4096];
    while done < o.count {
        let n = read(sent_r, &mut buf);
        if n <= 0 {
            return Err(io::Error::other(format!("only {done} children reported")));
        }
        done += n as usize;
    }
    // SAFETY: closing the read end of the report pipe.
    unsafe { libc::close(sent_r) };
    Ok((hold_w, sink))
}

/// `count` short-lived children, at most 64 at a time: each sends one
/// datagram and exits at once. Returns when every child has been reaped.
pub fn churn(children: &mut Vec<i32>, o: &Opts) -> io::Result<()> {
    let sink = UdpSocket::bind(loopback(false))?;
    let out = UdpSocket::bind(loopback(false))?;
    out.connect(sink.local_addr()?)?;
    let msg = vec![7u8; o.size];
    let mut running = 0;
    let mut failed = 0;
    let mut reap = |running: &mut usize| {
        failed += usize::from(!reap());
        *running -= 1;
    };
    for _ in 0..o.count {
        if running == 64 {
            reap(&mut running);
        }
        // SAFETY: the child only calls send and _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; `msg` is a valid buffer.
            unsafe {
                let ok = libc::send(out.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0)
                    == msg.len() as isize;
                libc::_exit(if ok { 0 } else { 1 });
            }
        }
        children.push(pid);
        running += 1;
    }
    while running > 0 {
        reap(&mut running);
    }
    if failed > 0 {
        return Err(io::Error::other(format!(
            "{failed} children failed to send"
        )));
    }
    Ok(())
}

/// Waits for a child to exit; whether it exited with status 0.
pub fn reap() -> bool {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let pid = unsafe { libc::wait(&mut status) };
    pid >= 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}
