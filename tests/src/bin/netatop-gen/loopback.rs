//! Scenarios on loopback whose every call is counted: UDP and TCP with
//! send/recv or write/read, sendmmsg/recvmmsg, MPTCP, splice() and
//! sendfile(); and the loopback pairs other scenarios use too.

use std::ffi::c_void;
use std::io;
use std::mem::zeroed;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use netatopd_tests::{Proto, Truth};

use crate::sys::{pipe, read, recv, send, sockaddr, socket, splice, write};
use crate::Opts;

/// Loopback, IPv6 or IPv4, on any port.
pub fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    }
}

/// A pair of connected UDP sockets on loopback.
pub fn udp_pair(v6: bool) -> io::Result<(UdpSocket, UdpSocket)> {
    let a = UdpSocket::bind(loopback(v6))?;
    let b = UdpSocket::bind(loopback(v6))?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    Ok((a, b))
}

/// A connected TCP pair on loopback.
pub fn tcp_pair(v6: bool) -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind(loopback(v6))?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (s, _) = l.accept()?;
    Ok((c, s))
}

/// UDP datagrams a -> b, each received; `rw` uses write()/read().
pub fn udp(t: &mut Truth, v6: bool, rw: bool, o: &Opts) -> io::Result<()> {
    let (a, b) = udp_pair(v6)?;
    let msg = vec![0x5au8; o.size];
    let mut buf = vec![0u8; o.size + 1];
    for _ in 0..o.count {
        std::thread::sleep(o.pace);
        let n = if rw {
            write(a.as_raw_fd(), &msg)
        } else {
            send(a.as_raw_fd(), &msg, 0)
        };
        t.call(Proto::Udp, true, n);
        let n = if rw {
            read(b.as_raw_fd(), &mut buf)
        } else {
            recv(b.as_raw_fd(), &mut buf, 0)
        };
        t.call(Proto::Udp, false, n);
    }
    Ok(())
}

/// Sends `count` pieces of `size` bytes over `from`; `to` reads each
/// piece completely before the next is sent.
fn tcp_stream(t: &mut Truth, from: &TcpStream, to: &TcpStream, rw: bool, o: &Opts) {
    let msg = vec![0xa5u8; o.size];
    let mut buf = vec![0u8; o.size];
    for _ in 0..o.count {
        let mut sent = 0;
        while sent < o.size {
            let n = if rw {
                write(from.as_raw_fd(), &msg[sent..])
            } else {
                send(from.as_raw_fd(), &msg[sent..], 0)
            };
            t.call(Proto::Tcp, true, n);
            assert!(n > 0, "tcp send failed");
            sent += n as usize;
        }
        let mut got = 0;
        while got < o.size {
            let n = if rw {
                read(to.as_raw_fd(), &mut buf[got..])
            } else {
                recv(to.as_raw_fd(), &mut buf[got..], 0)
            };
            t.call(Proto::Tcp, false, n);
            assert!(n > 0, "tcp receive failed");
            got += n as usize;
        }
    }
}

/// Reads exactly `buf.len()` bytes from a TCP socket, counting each call.
pub fn tcp_read_exact(t: &mut Truth, fd: RawFd, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = recv(fd, &mut buf[got..], 0);
        t.call(Proto::Tcp, false, n);
        if n <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed early",
            ));
        }
        got += n as usize;
    }
    Ok(())
}

/// Writes all of `buf` to a TCP socket, counting each call.
pub fn tcp_write_all(t: &mut Truth, fd: RawFd, buf: &[u8]) -> io::Result<()> {
    let mut sent = 0;
    while sent < buf.len() {
        let n = send(fd, &buf[sent..], 0);
        t.call(Proto::Tcp, true, n);
        if n <= 0 {
            return Err(io::Error::last_os_error());
        }
        sent += n as usize;
    }
    Ok(())
}

/// TCP both ways on one loopback connection.
pub fn tcp(t: &mut Truth, v6: bool, rw: bool, o: &Opts) -> io::Result<()> {
    let (c, s) = tcp_pair(v6)?;
    tcp_stream(t, &c, &s, rw, o);
    tcp_stream(t, &s, &c, rw, o);
    Ok(())
}

/// sendmmsg/recvmmsg in batches of 8 datagrams.
pub fn mmsg(t: &mut Truth, o: &Opts) -> io::Result<()> {
    const BATCH: usize = 8;
    let (a, b) = udp_pair(false)?;
    let mut bufs = vec![vec![0x11u8; o.size]; BATCH];
    let mut left = o.count;
    while left > 0 {
        let n = left.min(BATCH);
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .take(n)
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast::<c_void>(),
                iov_len: b.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: `hdrs` holds `n` headers whose iovecs point into `bufs`.
        let sent = unsafe { libc::sendmmsg(a.as_raw_fd(), hdrs.as_mut_ptr(), n as u32, 0) };
        if sent < 0 {
            t.failed_calls += 1;
            return Err(io::Error::last_os_error());
        }
        for h in &hdrs[..sent as usize] {
            t.call(Proto::Udp, true, h.msg_len as isize);
        }
        let mut got = 0;
        while got < sent as usize {
            // SAFETY: as above; the kernel writes at most `sent - got` headers' data.
            let r = unsafe {
                libc::recvmmsg(
                    b.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    (sent as usize - got) as u32,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            for h in &hdrs[..r as usize] {
                t.call(Proto::Udp, false, h.msg_len as isize);
            }
            got += r as usize;
        }
        left -= sent as usize;
    }
    Ok(())
}

/// A connected MPTCP pair on loopback (sockets of protocol IPPROTO_MPTCP).
fn mptcp_pair(v6: bool) -> io::Result<(TcpStream, TcpStream)> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let mptcp = |what: &str| {
        socket(domain, libc::SOCK_STREAM, libc::IPPROTO_MPTCP).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("an MPTCP {what} socket (net.mptcp.enabled=1 needed): {e}"),
            )
        })
    };
    let l = mptcp("listening")?;
    let addr = sockaddr(&loopback(v6));
    // SAFETY: the address is valid for the call; listen has no pointers.
    if unsafe { libc::bind(l.as_raw_fd(), std::ptr::addr_of!(addr.0).cast(), addr.1) } != 0
        || unsafe { libc::listen(l.as_raw_fd(), 1) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let listener = TcpListener::from(l);
    let c = TcpStream::from(mptcp("client")?);
    let sa = sockaddr(&listener.local_addr()?);
    // SAFETY: as above.
    if unsafe { libc::connect(c.as_raw_fd(), std::ptr::addr_of!(sa.0).cast(), sa.1) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let (s, _) = listener.accept()?;
    for fd in [c.as_raw_fd(), s.as_raw_fd()] {
        let mut proto: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as u32;
        // SAFETY: `proto` and `len` are valid out-pointers of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PROTOCOL,
                std::ptr::addr_of_mut!(proto).cast(),
                &mut len,
            )
        };
        if rc != 0 || proto != libc::IPPROTO_MPTCP {
            return Err(io::Error::other(format!("not an MPTCP socket: {proto}")));
        }
    }
    Ok((c, s))
}

/// MPTCP both ways on one loopback connection.
pub fn mptcp(t: &mut Truth, v6: bool, o: &Opts) -> io::Result<()> {
    let (c, s) = mptcp_pair(v6)?;
    tcp_stream(t, &c, &s, false, o);
    tcp_stream(t, &s, &c, false, o);
    Ok(())
}

/// TCP with splice(): `count` pieces of `size` bytes received by splicing
/// the socket into a pipe, and `count` pieces sent by splicing a pipe into
/// the socket (`size` at most a page, so each splice is one send).
pub fn tcp_splice(t: &mut Truth, v6: bool, o: &Opts) -> io::Result<()> {
    let (c, s) = tcp_pair(v6)?;
    let (pr, pw) = pipe()?;
    let msg = vec![0x77u8; o.size];
    let mut buf = vec![0u8; o.size];
    for _ in 0..o.count {
        // c -> s, received by splice(s -> pipe), the pipe then emptied.
        let r = send(c.as_raw_fd(), &msg, 0);
        t.call(Proto::Tcp, true, r);
        let mut got = 0;
        while got < o.size {
            let r = splice(s.as_raw_fd(), pw, o.size - got);
            t.call(Proto::Tcp, false, r);
            if r <= 0 {
                return Err(io::Error::last_os_error());
            }
            t.spliced_recv_calls += 1;
            t.spliced_recv_bytes += r as u64;
            got += r as usize;
            let mut drained = 0;
            while drained < r as usize {
                let n = read(pr, &mut buf[..r as usize - drained]);
                if n <= 0 {
                    return Err(io::Error::last_os_error());
                }
                drained += n as usize;
            }
        }
        // s -> c, sent by splice(pipe -> s), received with recv.
        if write(pw, &msg) != o.size as isize {
            return Err(io::Error::other("short pipe write"));
        }
        let r = splice(pr, s.as_raw_fd(), o.size);
        t.call(Proto::Tcp, true, r);
        if r != o.size as isize {
            return Err(io::Error::other(format!("splice into the socket: {r}")));
        }
        tcp_read_exact(t, c.as_raw_fd(), &mut buf)?;
    }
    // SAFETY: closing the pipe's two ends, opened above.
    unsafe {
        libc::close(pr);
        libc::close(pw);
    }
    Ok(())
}

/// TCP with sendfile(): `count` pieces of `size` bytes (at most a page, so
/// each call is one send) from a memory file into the socket, each
/// received with recv.
pub fn tcp_sendfile(t: &mut Truth, v6: bool, o: &Opts) -> io::Result<()> {
    let (c, s) = tcp_pair(v6)?;
    // SAFETY: memfd_create takes a NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(c"netatop-gen".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let data = vec![0x3cu8; o.size];
    if write(file.as_raw_fd(), &data) != o.size as isize {
        return Err(io::Error::other("short write to the memory file"));
    }
    let mut buf = vec![0u8; o.size];
    for _ in 0..o.count {
        let mut off: libc::off_t = 0;
        // SAFETY: valid descriptors and a valid offset pointer.
        let r = unsafe { libc::sendfile(c.as_raw_fd(), file.as_raw_fd(), &mut off, o.size) };
        t.call(Proto::Tcp, true, r);
        if r != o.size as isize {
            return Err(io::Error::other(format!("sendfile: {r}")));
        }
        tcp_read_exact(t, s.as_raw_fd(), &mut buf)?;
    }
    Ok(())
}
