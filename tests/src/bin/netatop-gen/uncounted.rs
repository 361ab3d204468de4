//! Scenarios whose calls are not to be counted: failed and zero-length
//! calls, peeks, error-queue reads, raw sockets, and Unix sockets (some
//! beside counted traffic, to show that only it counts).

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};

use netatopd_tests::{Proto, Truth};

use crate::loopback::{loopback, tcp_pair, udp, udp_pair};
use crate::sys::{errno, recv, send, send_to, setsockopt_int, socket};
use crate::Opts;

/// A UDP socket on loopback connected to a port nobody listens on: what
/// it sends comes back as ICMP port unreachable.
fn connected_to_a_closed_port() -> io::Result<UdpSocket> {
    let closed = UdpSocket::bind(loopback(false))?;
    let dead = closed.local_addr()?;
    drop(closed);
    let u = UdpSocket::bind(loopback(false))?;
    u.connect(dead)?;
    Ok(u)
}

/// Calls that fail: EAGAIN, ECONNREFUSED, and sends on a reset TCP connection.
pub fn fail(t: &mut Truth, o: &Opts) -> io::Result<()> {
    let mut buf = [0u8; 256];
    // EAGAIN on an empty non-blocking UDP socket.
    let s = UdpSocket::bind(loopback(false))?;
    s.set_nonblocking(true)?;
    for _ in 0..o.count {
        let r = recv(s.as_raw_fd(), &mut buf, 0);
        assert!(r < 0 && errno() == libc::EAGAIN, "expected EAGAIN");
        t.call(Proto::Udp, false, r);
    }
    // ECONNREFUSED on a UDP socket connected to a closed port.
    let u = connected_to_a_closed_port()?;
    let mut refused = 0;
    for _ in 0..o.count {
        // The second send finds the first one's ICMP error pending.
        for _ in 0..2 {
            let r = send(u.as_raw_fd(), b"ping", 0);
            if r < 0 && errno() == libc::ECONNREFUSED {
                refused += 1;
            }
            t.call(Proto::Udp, true, r);
        }
        let r = recv(u.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT);
        if r < 0 && errno() == libc::ECONNREFUSED {
            refused += 1;
        }
        t.call(Proto::Udp, false, r);
    }
    assert!(refused > 0, "no ECONNREFUSED seen");
    // A TCP connection reset by its peer (SO_LINGER 0), then sends on it.
    let (c, s) = tcp_pair(false)?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid SO_LINGER value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    drop(s);
    let mut errors = 0;
    let mut reset_seen = false;
    while errors < o.count {
        let r = send(c.as_raw_fd(), b"after reset", libc::MSG_NOSIGNAL);
        if r < 0 {
            errors += 1;
            reset_seen |= matches!(errno(), libc::ECONNRESET | libc::EPIPE);
        }
        t.call(Proto::Tcp, true, r);
    }
    assert!(reset_seen, "no ECONNRESET/EPIPE seen");
    let r = recv(c.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT);
    t.call(Proto::Tcp, false, r);
    Ok(())
}

/// Zero-length datagrams (send and receive return 0) among normal ones.
pub fn zero(t: &mut Truth, o: &Opts) -> io::Result<()> {
    let (a, b) = udp_pair(false)?;
    let msg = vec![7u8; o.size];
    let mut buf = vec![0u8; o.size + 1];
    for i in 0..o.count {
        let m = if i % 2 == 0 { &msg[..0] } else { &msg[..] };
        t.call(Proto::Udp, true, send(a.as_raw_fd(), m, 0));
        t.call(Proto::Udp, false, recv(b.as_raw_fd(), &mut buf, 0));
    }
    assert!(t.failed_calls > 0, "no zero-length calls");
    Ok(())
}

/// Every datagram and TCP chunk is peeked first, then read.
pub fn peek(t: &mut Truth, o: &Opts) -> io::Result<()> {
    let (a, b) = udp_pair(false)?;
    let (c, s) = tcp_pair(false)?;
    let msg = vec![3u8; o.size];
    let mut buf = vec![0u8; o.size];
    for _ in 0..o.count {
        t.call(Proto::Udp, true, send(a.as_raw_fd(), &msg, 0));
        let r = recv(b.as_raw_fd(), &mut buf, libc::MSG_PEEK);
        assert_eq!(r, o.size as isize);
        t.peeked_calls += 1;
        t.call(Proto::Udp, false, recv(b.as_raw_fd(), &mut buf, 0));

        t.call(Proto::Tcp, true, send(c.as_raw_fd(), &msg, 0));
        let mut got = 0;
        while got < o.size {
            // Peek until the whole chunk is there, then read it once.
            let r = recv(s.as_raw_fd(), &mut buf, libc::MSG_PEEK);
            assert!(r > 0);
            t.peeked_calls += 1;
            if r as usize == o.size {
                let r = recv(s.as_raw_fd(), &mut buf, 0);
                t.call(Proto::Tcp, false, r);
                got += r as usize;
            }
        }
    }
    Ok(())
}

/// Waits until `fd` has something on its error queue.
fn wait_errqueue(fd: RawFd) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 5000) };
    if n == 1 && p.revents & libc::POLLERR != 0 {
        Ok(())
    } else {
        Err(io::Error::other("no error queued within 5 s"))
    }
}

/// Reads of the error queue (MSG_ERRQUEUE): `count` ICMP errors of a UDP
/// socket with IP_RECVERR, and `count` transmit timestamps of a UDP socket
/// with SO_TIMESTAMPING, beside the datagrams that are counted.
pub fn errqueue(t: &mut Truth, o: &Opts) -> io::Result<()> {
    let msg = vec![0x2eu8; o.size];
    let mut buf = vec![0u8; o.size + 512];
    // ICMP port unreachable, queued as an error with IP_RECVERR.
    let u = connected_to_a_closed_port()?;
    setsockopt_int(u.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
    for _ in 0..o.count {
        t.call(Proto::Udp, true, send(u.as_raw_fd(), &msg, 0));
        wait_errqueue(u.as_raw_fd())?;
        let r = recv(u.as_raw_fd(), &mut buf, libc::MSG_ERRQUEUE);
        if r <= 0 {
            return Err(io::Error::other(format!("error-queue read: {r}")));
        }
        t.ignored(r);
    }
    // Software transmit timestamps, each queued with a copy of the packet.
    let (a, b) = udp_pair(false)?;
    let flags = libc::SOF_TIMESTAMPING_TX_SOFTWARE | libc::SOF_TIMESTAMPING_SOFTWARE;
    setsockopt_int(
        a.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_TIMESTAMPING,
        flags as i32,
    )?;
    for _ in 0..o.count {
        t.call(Proto::Udp, true, send(a.as_raw_fd(), &msg, 0));
        t.call(Proto::Udp, false, recv(b.as_raw_fd(), &mut buf, 0));
        wait_errqueue(a.as_raw_fd())?;
        let r = recv(a.as_raw_fd(), &mut buf, libc::MSG_ERRQUEUE);
        if r <= 0 {
            return Err(io::Error::other(format!("timestamp read: {r}")));
        }
        t.ignored(r);
    }
    Ok(())
}

/// Reads a non-blocking socket until it has nothing more; each read is a
/// call that must not be counted. Returns how many succeeded.
fn drain_ignored(t: &mut Truth, fd: RawFd, flags: i32) -> usize {
    let mut buf = vec![0u8; 65536];
    let mut n = 0;
    loop {
        let r = recv(fd, &mut buf, flags | libc::MSG_DONTWAIT);
        if r <= 0 {
            return n;
        }
        t.ignored(r);
        n += 1;
    }
}

/// Raw sockets of protocol UDP and TCP, IPv4 and IPv6, send `count`
/// packets each and read what they see (a raw socket gets a copy of every
/// packet of its protocol on the host), beside a connected UDP pair whose
/// `count` round trips are the only traffic to count.
pub fn raw(t: &mut Truth, o: &Opts) -> io::Result<()> {
    // Raw packets go to sockets that never read them.
    let sink4 = UdpSocket::bind(loopback(false))?;
    let sink6 = UdpSocket::bind(loopback(true))?;
    let raws = [
        (libc::AF_INET, libc::IPPROTO_UDP, sink4.local_addr()?),
        (libc::AF_INET6, libc::IPPROTO_UDP, sink6.local_addr()?),
        (libc::AF_INET, libc::IPPROTO_TCP, sink4.local_addr()?),
    ];
    let payload = vec![0x42u8; o.size];
    let mut fds = Vec::new();
    for (domain, proto, to) in raws {
        let fd = socket(domain, libc::SOCK_RAW, proto)?;
        // The transport header is the caller's: 8 bytes of UDP, or 20 of
        // TCP (a bare SYN to a port nobody listens on).
        let mut pkt = vec![0x30, 0x39, (to.port() >> 8) as u8, to.port() as u8];
        if proto == libc::IPPROTO_TCP {
            pkt.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            let len = (8 + payload.len()) as u16;
            pkt.extend_from_slice(&[(len >> 8) as u8, len as u8, 0, 0]);
        }
        pkt.extend_from_slice(&payload);
        // Raw sockets have no ports: the destination's port is in the header.
        let mut dest = to;
        dest.set_port(0);
        for _ in 0..o.count {
            let r = send_to(fd.as_raw_fd(), &pkt, &dest);
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            t.ignored(r);
        }
        fds.push(fd);
    }
    // The traffic to count, also seen by the raw UDP sockets.
    udp(t, false, false, o)?;
    let seen: usize = fds
        .iter()
        .map(|fd| drain_ignored(t, fd.as_raw_fd(), 0))
        .sum();
    if seen == 0 {
        return Err(io::Error::other("the raw sockets received nothing"));
    }
    Ok(())
}

/// Unix-socket traffic only: nothing to count.
pub fn unix(t: &mut Truth, o: &Opts) -> io::Result<()> {
    let (a, b) = UnixDatagram::pair()?;
    let (c, d) = UnixStream::pair()?;
    let msg = vec![1u8; o.size];
    let mut buf = vec![0u8; o.size];
    for _ in 0..o.count {
        for (x, y) in [
            (a.as_raw_fd(), b.as_raw_fd()),
            (c.as_raw_fd(), d.as_raw_fd()),
        ] {
            assert_eq!(send(x, &msg, 0), o.size as isize);
            assert!(recv(y, &mut buf, 0) > 0);
        }
    }
    // Nothing here is TCP/UDP; the truth stays all zero.
    let _ = t;
    Ok(())
}
