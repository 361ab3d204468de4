//! Traffic generator for netatopd's tests: makes known socket traffic and
//! prints its own ground truth, counted from the return value of every call.
//!
//! Usage: netatop-gen SCENARIO [--wait-go] [--linger] [--count N] [--size N] [--threads N]
//!        [--pace-us N] [--name NAME] [--rename NAME] [--carry C1,...,C8]
//!        [--peer-netns PATH --peer-addr IPV4] [--gso N]
//!
//! With --wait-go it reads one line from stdin before any traffic. It then
//! prints one JSON object on stdout (pid, the eight counters, failed calls,
//! and scenario details) and, with --linger, stays alive until stdin closes.
//! Only pipes talk to the test, so the generator's own sockets are all that
//! netatopd sees of it.

use std::ffi::c_void;
use std::io::{self, BufRead, Read};
use std::mem::zeroed;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::ExitCode;

use netatop_protocol::Counters;
use serde::Serialize;

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Truth {
    /// What netatopd must report: successful calls and their bytes.
    #[serde(flatten)]
    c: Counters,
    /// Calls that failed or moved nothing (not to be counted).
    failed_calls: u64,
    /// Successful MSG_PEEK receives (not to be counted).
    peeked_calls: u64,
    /// Successful calls that move no TCP/UDP traffic of the process (raw
    /// sockets, error-queue reads): not to be counted.
    ignored_calls: u64,
    /// Of the TCP receives, those made with splice() (socket to pipe):
    /// counted only where the kernel runs the hook for them.
    spliced_recv_calls: u64,
    spliced_recv_bytes: u64,
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Tcp,
    Udp,
}

impl Truth {
    /// Records the result of one send or receive call.
    fn call(&mut self, proto: Proto, send: bool, ret: isize) {
        if ret <= 0 {
            self.failed_calls += 1;
            return;
        }
        let n = ret as u64;
        let c = &mut self.c;
        let (p, b) = match (proto, send) {
            (Proto::Tcp, true) => (&mut c.tcpsndpacks, &mut c.tcpsndbytes),
            (Proto::Tcp, false) => (&mut c.tcprcvpacks, &mut c.tcprcvbytes),
            (Proto::Udp, true) => (&mut c.udpsndpacks, &mut c.udpsndbytes),
            (Proto::Udp, false) => (&mut c.udprcvpacks, &mut c.udprcvbytes),
        };
        *p += 1;
        *b += n;
    }

    /// Records a call that must not be counted even when it succeeds.
    fn ignored(&mut self, ret: isize) {
        if ret > 0 {
            self.ignored_calls += 1;
        } else {
            self.failed_calls += 1;
        }
    }

    fn add(&mut self, o: &Truth) {
        self.c.add(&o.c);
        self.failed_calls += o.failed_calls;
        self.peeked_calls += o.peeked_calls;
        self.ignored_calls += o.ignored_calls;
        self.spliced_recv_calls += o.spliced_recv_calls;
        self.spliced_recv_bytes += o.spliced_recv_bytes;
    }
}

#[derive(Serialize)]
struct Report {
    pid: u32,
    #[serde(flatten)]
    truth: Truth,
    /// Thread ids of the threads scenario (all exited).
    tids: Vec<i32>,
    /// Pids of the fork scenario's children (each sent one datagram).
    children: Vec<i32>,
    /// The live-threads scenario's threads, still alive.
    threads: Vec<ThreadReport>,
}

#[derive(Serialize)]
struct ThreadReport {
    tid: i32,
    name: String,
    #[serde(flatten)]
    truth: Truth,
}

struct Opts {
    count: usize,
    size: usize,
    threads: usize,
    /// Pause between the UDP round trips (steady traffic over time).
    pace: std::time::Duration,
}

fn send(fd: RawFd, buf: &[u8], flags: i32) -> isize {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) }
}

fn recv(fd: RawFd, buf: &mut [u8], flags: i32) -> isize {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the call.
    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }
}

fn write(fd: RawFd, buf: &[u8]) -> isize {
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call.
    unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) }
}

fn read(fd: RawFd, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes for the call.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    }
}

/// A pair of connected UDP sockets on loopback.
fn udp_pair(v6: bool) -> io::Result<(UdpSocket, UdpSocket)> {
    let a = UdpSocket::bind(loopback(v6))?;
    let b = UdpSocket::bind(loopback(v6))?;
    a.connect(b.local_addr()?)?;
    b.connect(a.local_addr()?)?;
    Ok((a, b))
}

/// A connected TCP pair on loopback.
fn tcp_pair(v6: bool) -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind(loopback(v6))?;
    let c = TcpStream::connect(l.local_addr()?)?;
    let (s, _) = l.accept()?;
    Ok((c, s))
}

/// UDP datagrams a -> b, each received; `rw` uses write()/read().
fn udp(t: &mut Truth, v6: bool, rw: bool, o: &Opts) -> io::Result<()> {
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

/// TCP both ways on one loopback connection.
fn tcp(t: &mut Truth, v6: bool, rw: bool, o: &Opts) -> io::Result<()> {
    let (c, s) = tcp_pair(v6)?;
    tcp_stream(t, &c, &s, rw, o);
    tcp_stream(t, &s, &c, rw, o);
    Ok(())
}

/// Where the wire scenarios' server runs: a thread that has entered the
/// network namespace `netns` (a path such as /run/netns/NAME) and listens
/// on `addr`; the client is the main thread, in the generator's own
/// namespace.
struct Peer {
    netns: String,
    addr: Ipv4Addr,
}

/// Runs `f` on a new thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<io::Result<T>> {
    let path = path.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        // SAFETY: `ns` is an open namespace file; setns changes only this
        // thread's network namespace.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
}

/// Reads exactly `buf.len()` bytes from a TCP socket, counting each call.
fn tcp_read_exact(t: &mut Truth, fd: RawFd, buf: &mut [u8]) -> io::Result<()> {
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
fn tcp_write_all(t: &mut Truth, fd: RawFd, buf: &[u8]) -> io::Result<()> {
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

/// A TCP server on a thread inside the peer's namespace, listening on
/// its address: `serve` gets the listener and counts its calls into the
/// thread's truth. Returns the port (once it listens) and the thread.
fn tcp_server(
    peer: &Peer,
    serve: impl FnOnce(&mut Truth, TcpListener) -> io::Result<()> + Send + 'static,
) -> io::Result<(u16, std::thread::JoinHandle<io::Result<Truth>>)> {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let addr = peer.addr;
    let server = in_netns(&peer.netns, move || {
        let mut st = Truth::default();
        let l = TcpListener::bind((addr, 0))?;
        port_tx
            .send(l.local_addr()?.port())
            .expect("the client waits for the port");
        serve(&mut st, l)?;
        Ok(st)
    });
    match port_rx.recv() {
        Ok(port) => Ok((port, server)),
        Err(_) => Err(server
            .join()
            .expect("server thread panicked")
            .err()
            .unwrap_or_else(|| io::Error::other("the server thread ended before listening"))),
    }
}

/// Runs `client` against a server of [`tcp_server`] and adds the
/// server's truth to `t` once both are done.
fn with_tcp_server(
    t: &mut Truth,
    peer: &Peer,
    serve: impl FnOnce(&mut Truth, TcpListener) -> io::Result<()> + Send + 'static,
    client: impl FnOnce(&mut Truth, u16) -> io::Result<()>,
) -> io::Result<()> {
    let (port, server) = tcp_server(peer, serve)?;
    let done = client(t, port);
    let served = server.join().expect("server thread panicked");
    done?;
    t.add(&served?);
    Ok(())
}

/// `conns` TCP connections to the peer, one after the other, each with
/// `exchanges` request/response pairs of `size` bytes; the client closes
/// first. Both ends are this process's.
fn tcp_exchanges(
    t: &mut Truth,
    peer: &Peer,
    conns: usize,
    exchanges: usize,
    size: usize,
) -> io::Result<()> {
    let addr = peer.addr;
    let serve = move |st: &mut Truth, l: TcpListener| {
        let mut buf = vec![0u8; size];
        for _ in 0..conns {
            let (s, _) = l.accept()?;
            for _ in 0..exchanges {
                tcp_read_exact(st, s.as_raw_fd(), &mut buf)?;
                tcp_write_all(st, s.as_raw_fd(), &buf)?;
            }
            // The client's close: a read that returns 0 (not counted).
            let n = recv(s.as_raw_fd(), &mut buf, 0);
            st.call(Proto::Tcp, false, n);
        }
        Ok(())
    };
    with_tcp_server(t, peer, serve, |t, port| {
        let msg = vec![0x3cu8; size];
        let mut buf = vec![0u8; size];
        for _ in 0..conns {
            let c = TcpStream::connect((addr, port))?;
            for _ in 0..exchanges {
                tcp_write_all(t, c.as_raw_fd(), &msg)?;
                tcp_read_exact(t, c.as_raw_fd(), &mut buf)?;
            }
        }
        Ok(())
    })
}

/// `count` sends of `size` bytes to the peer on one connection, one way;
/// the server reads until the client closes. Both ends are this
/// process's.
fn tcp_bulk(t: &mut Truth, peer: &Peer, count: usize, size: usize) -> io::Result<()> {
    let addr = peer.addr;
    let serve = |st: &mut Truth, l: TcpListener| {
        let (s, _) = l.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = recv(s.as_raw_fd(), &mut buf, 0);
            st.call(Proto::Tcp, false, n);
            if n <= 0 {
                return Ok(());
            }
        }
    };
    with_tcp_server(t, peer, serve, |t, port| {
        let c = TcpStream::connect((addr, port))?;
        let msg = vec![0x42u8; size];
        for _ in 0..count {
            tcp_write_all(t, c.as_raw_fd(), &msg)?;
        }
        Ok(())
    })
}

/// An echo server on a thread in the peer's namespace: one connection,
/// echoed until the client closes. Returns the port and the thread.
fn echo_server(
    peer: &Peer,
    size: usize,
) -> io::Result<(u16, std::thread::JoinHandle<io::Result<Truth>>)> {
    tcp_server(peer, move |st, l| {
        let (s, _) = l.accept()?;
        let mut buf = vec![0u8; size];
        loop {
            let n = recv(s.as_raw_fd(), &mut buf, 0);
            st.call(Proto::Tcp, false, n);
            if n <= 0 {
                return Ok(());
            }
            tcp_write_all(st, s.as_raw_fd(), &buf[..n as usize])?;
        }
    })
}

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

fn write_byte(fd: RawFd) -> bool {
    write(fd, b"x") == 1
}

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
fn handover(children: &mut Vec<i32>, peer: &Peer, o: &Opts, scm: bool) -> io::Result<()> {
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
    // SAFETY: all-zero is a valid sockaddr_in; the fields are set below.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(peer.addr).to_be();
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
                    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    if fd < 0
                        || libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), len) != 0
                    {
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
    let first = Report {
        pid: std::process::id(),
        truth: Truth::default(),
        tids: Vec::new(),
        children: children.clone(),
        threads: Vec::new(),
    };
    println!(
        "{}",
        serde_json::to_string(&first).expect("serialising the report")
    );
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

/// `count` UDP exchanges with the peer: the client sends `size` bytes (in
/// one datagram, fragmented by IP when it is larger than the path's MTU;
/// or with `gso` > 0 in one call that the kernel cuts into datagrams of
/// `gso` bytes, UDP_SEGMENT), the server reads them all and sends `size`
/// bytes back in one datagram. Both ends are this process's.
fn udp_exchanges(
    t: &mut Truth,
    peer: &Peer,
    count: usize,
    size: usize,
    gso: usize,
) -> io::Result<()> {
    let addr = peer.addr;
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (client_tx, client_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let server = in_netns(&peer.netns, move || {
        let mut st = Truth::default();
        let s = UdpSocket::bind((addr, 0))?;
        port_tx
            .send(s.local_addr()?.port())
            .expect("the client waits for the port");
        let client = client_rx
            .recv()
            .map_err(|_| io::Error::other("the client never said where it is"))?;
        s.connect(client)?;
        let mut buf = vec![0u8; size.max(1) + 1];
        for _ in 0..count {
            let mut got = 0;
            while got < size {
                let n = recv(s.as_raw_fd(), &mut buf, 0);
                st.call(Proto::Udp, false, n);
                if n <= 0 {
                    return Err(io::Error::last_os_error());
                }
                got += n as usize;
            }
            let n = send(s.as_raw_fd(), &buf[..size], 0);
            st.call(Proto::Udp, true, n);
            if n <= 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(st)
    });
    let client = port_rx
        .recv()
        .map_err(|_| io::Error::other("the server thread ended before binding"))
        .and_then(|port| {
            let c = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            c.connect((addr, port))?;
            client_tx
                .send(c.local_addr()?)
                .map_err(|_| io::Error::other("the server thread ended"))?;
            if gso > 0 {
                let seg = gso as libc::c_int;
                // SAFETY: `seg` is a valid int option value for the call.
                let r = unsafe {
                    libc::setsockopt(
                        c.as_raw_fd(),
                        libc::SOL_UDP,
                        UDP_SEGMENT,
                        (&seg as *const libc::c_int).cast(),
                        size_of_val(&seg) as libc::socklen_t,
                    )
                };
                if r != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            let msg = vec![0x77u8; size];
            let mut buf = vec![0u8; size + 1];
            for _ in 0..count {
                let n = send(c.as_raw_fd(), &msg, 0);
                t.call(Proto::Udp, true, n);
                if n <= 0 {
                    return Err(io::Error::last_os_error());
                }
                let n = recv(c.as_raw_fd(), &mut buf, 0);
                t.call(Proto::Udp, false, n);
                if n as usize != size {
                    return Err(io::Error::other(format!(
                        "a reply of {n} bytes, not {size}"
                    )));
                }
            }
            Ok(())
        });
    // A failed client leaves the server waiting: it is not joined then
    // (the process exits with the error).
    client?;
    t.add(&server.join().expect("server thread panicked")?);
    Ok(())
}

/// UDP_SEGMENT (linux/udp.h): the size of the datagrams a send is cut into.
const UDP_SEGMENT: libc::c_int = 103;

/// sendmmsg/recvmmsg in batches of 8 datagrams.
fn mmsg(t: &mut Truth, o: &Opts) -> io::Result<()> {
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

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Calls that fail: EAGAIN, ECONNREFUSED, and sends on a reset TCP connection.
fn fail(t: &mut Truth, o: &Opts) -> io::Result<()> {
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
    let closed = UdpSocket::bind(loopback(false))?;
    let dead = closed.local_addr()?;
    drop(closed);
    let u = UdpSocket::bind(loopback(false))?;
    u.connect(dead)?;
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
fn zero(t: &mut Truth, o: &Opts) -> io::Result<()> {
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
fn peek(t: &mut Truth, o: &Opts) -> io::Result<()> {
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

/// The calling thread's UDP round trips (for the thread scenarios), with
/// its thread id.
fn thread_udp(count: usize, size: usize) -> io::Result<(Truth, i32)> {
    let mut t = Truth::default();
    let one = Opts {
        count,
        size,
        threads: 1,
        pace: std::time::Duration::ZERO,
    };
    udp(&mut t, false, false, &one)?;
    // SAFETY: gettid has no preconditions.
    Ok((t, unsafe { libc::gettid() }))
}

/// Threads that each send and receive, then exit before the report.
fn threads(t: &mut Truth, tids: &mut Vec<i32>, o: &Opts) -> io::Result<()> {
    let handles: Vec<_> = (0..o.threads)
        .map(|_| {
            let (count, size) = (o.count, o.size);
            // Named threads: the process record must carry the leader's name.
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || thread_udp(count, size))
                .expect("spawning a thread")
        })
        .collect();
    for h in handles {
        let (tt, tid) = h.join().expect("thread panicked")?;
        t.add(&tt);
        tids.push(tid);
    }
    Ok(())
}

/// Thread i (named worker-i) makes count * (i + 1) UDP round trips, then
/// stays alive (parked) until the process exits.
fn live_threads(out: &mut Vec<ThreadReport>, o: &Opts) -> io::Result<()> {
    parked_threads(out, o, "worker", |i| o.count * (i + 1), None)
}

/// Many live threads, as large servers have: thread i (named farm-i)
/// makes count + i % 3 UDP round trips, one thread at a time (each with
/// its own two sockets, so descriptors stay few), then stays alive
/// (parked, on a 64 KiB stack) until the process exits.
fn thread_farm(out: &mut Vec<ThreadReport>, o: &Opts) -> io::Result<()> {
    let turn = std::sync::Arc::new(std::sync::Mutex::new(()));
    parked_threads(out, o, "farm", |i| o.count + i % 3, Some((turn, 64 * 1024)))
}

/// `o.threads` threads, thread i named PREFIX-i making `count(i)` UDP
/// round trips (holding `serial`'s lock, on its stack size, where given),
/// then parked until the process exits; their reports in `out`.
fn parked_threads(
    out: &mut Vec<ThreadReport>,
    o: &Opts,
    prefix: &str,
    count: impl Fn(usize) -> usize,
    serial: Option<(std::sync::Arc<std::sync::Mutex<()>>, usize)>,
) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..o.threads {
        let (count, size, tx, serial) = (count(i), o.size, tx.clone(), serial.clone());
        let name = format!("{prefix}-{i}");
        let mut b = std::thread::Builder::new().name(name.clone());
        if let Some((_, stack)) = &serial {
            b = b.stack_size(*stack);
        }
        b.spawn(move || {
            let report = {
                let _turn = serial
                    .as_ref()
                    .map(|(turn, _)| turn.lock().unwrap_or_else(|e| e.into_inner()));
                thread_udp(count, size).map(|(truth, tid)| ThreadReport { tid, name, truth })
            };
            let _ = tx.send(report);
            loop {
                std::thread::park();
            }
        })?;
    }
    // Each thread keeps its sender while parked: take one message from each.
    for _ in 0..o.threads {
        out.push(rx.recv().map_err(io::Error::other)??);
    }
    out.sort_by_key(|t| t.tid);
    Ok(())
}

/// `threads` client threads (named client-i) in the generator's own
/// namespace, each with its own echo server thread in the peer's (named
/// server-i), each client making `count` exchanges of `size` bytes on its
/// connection and closing it; then every thread stays alive (parked) until
/// the process exits. Reports each thread.
fn tcp_threads(out: &mut Vec<ThreadReport>, peer: &Peer, o: &Opts) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel::<io::Result<ThreadReport>>();
    let park = || loop {
        std::thread::park();
    };
    for i in 0..o.threads {
        let (count, size, addr) = (o.count, o.size, peer.addr);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let server_tx = tx.clone();
        let netns = peer.netns.clone();
        let name = format!("server-{i}");
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let served = (|| {
                    let ns = std::fs::File::open(&netns)?;
                    // SAFETY: `ns` is an open namespace file; setns changes only
                    // this thread's network namespace.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let l = TcpListener::bind((addr, 0))?;
                    let _ = port_tx.send(l.local_addr()?.port());
                    let (s, _) = l.accept()?;
                    let mut truth = Truth::default();
                    let mut buf = vec![0u8; size];
                    loop {
                        let n = recv(s.as_raw_fd(), &mut buf, 0);
                        truth.call(Proto::Tcp, false, n);
                        if n <= 0 {
                            break;
                        }
                        tcp_write_all(&mut truth, s.as_raw_fd(), &buf[..n as usize])?;
                    }
                    // SAFETY: gettid has no preconditions.
                    Ok(ThreadReport {
                        tid: unsafe { libc::gettid() },
                        name,
                        truth,
                    })
                })();
                let _ = server_tx.send(served);
                park()
            })?;
        let port = port_rx
            .recv()
            .map_err(|_| io::Error::other("a server thread ended before listening"))?;
        let client_tx = tx.clone();
        let name = format!("client-{i}");
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let done = (|| {
                    let mut truth = Truth::default();
                    let c = TcpStream::connect((addr, port))?;
                    let msg = vec![0x61u8; size];
                    let mut buf = vec![0u8; size];
                    for _ in 0..count {
                        tcp_write_all(&mut truth, c.as_raw_fd(), &msg)?;
                        tcp_read_exact(&mut truth, c.as_raw_fd(), &mut buf)?;
                    }
                    drop(c);
                    // SAFETY: gettid has no preconditions.
                    Ok(ThreadReport {
                        tid: unsafe { libc::gettid() },
                        name,
                        truth,
                    })
                })();
                let _ = client_tx.send(done);
                park()
            })?;
    }
    drop(tx);
    // Each thread keeps its sender while parked: one message from each.
    for _ in 0..2 * o.threads {
        out.push(rx.recv().map_err(io::Error::other)??);
    }
    out.sort_by_key(|t| t.tid);
    Ok(())
}

/// exec by a thread that is not the leader: the leader makes `count` UDP
/// round trips, then a second thread makes as many and execs this program
/// again (it takes over the process's pid), which makes `count` more as
/// `udp4` and reports all three, carried over in --carry. Never returns.
fn exec_thread(t: &mut Truth, o: &Opts, linger: bool) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    udp(t, false, false, o)?;
    let (count, size, leader) = (o.count, o.size, *t);
    let exec = std::thread::spawn(move || -> io::Error {
        let mut t = leader;
        if let Err(e) = udp(
            &mut t,
            false,
            false,
            &Opts {
                count,
                size,
                threads: 1,
                pace: std::time::Duration::ZERO,
            },
        ) {
            return e;
        }
        let carry = t.c.fields().map(|v| v.to_string()).join(",");
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return e,
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "udp4",
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
        ])
        .args(["--carry", &carry]);
        if linger {
            cmd.arg("--linger");
        }
        cmd.exec()
    });
    Err(exec.join().expect("the exec thread panicked"))
}

/// Unix-socket traffic only: nothing to count.
fn unix(t: &mut Truth, o: &Opts) -> io::Result<()> {
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

fn pipe() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// `count` child processes, each sending one datagram of `size` bytes, that
/// stay alive until the generator's stdin closes. Returns once every child
/// has sent.
fn fork(children: &mut Vec<i32>, o: &Opts) -> io::Result<(RawFd, UdpSocket)> {
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
fn churn(children: &mut Vec<i32>, o: &Opts) -> io::Result<()> {
    let sink = UdpSocket::bind(loopback(false))?;
    let out = UdpSocket::bind(loopback(false))?;
    out.connect(sink.local_addr()?)?;
    let msg = vec![7u8; o.size];
    let mut running = 0;
    let mut failed = 0;
    let mut reap = |running: &mut usize| {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer.
        if unsafe { libc::wait(&mut status) } < 0
            || !libc::WIFEXITED(status)
            || libc::WEXITSTATUS(status) != 0
        {
            failed += 1;
        }
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

/// A new socket, or the error.
fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory arguments.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An integer socket option.
fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
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
fn send_to(fd: RawFd, buf: &[u8], addr: &SocketAddr) -> isize {
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
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, u32) {
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
fn raw(t: &mut Truth, o: &Opts) -> io::Result<()> {
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
fn mptcp(t: &mut Truth, v6: bool, o: &Opts) -> io::Result<()> {
    let (c, s) = mptcp_pair(v6)?;
    tcp_stream(t, &c, &s, false, o);
    tcp_stream(t, &s, &c, false, o);
    Ok(())
}

fn splice(from: RawFd, to: RawFd, len: usize) -> isize {
    // SAFETY: splice between two valid descriptors, no offsets.
    unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, 0) }
}

/// TCP with splice(): `count` pieces of `size` bytes received by splicing
/// the socket into a pipe, and `count` pieces sent by splicing a pipe into
/// the socket (`size` at most a page, so each splice is one send).
fn tcp_splice(t: &mut Truth, v6: bool, o: &Opts) -> io::Result<()> {
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
        let mut got = 0;
        while got < o.size {
            let r = recv(c.as_raw_fd(), &mut buf[got..], 0);
            t.call(Proto::Tcp, false, r);
            if r <= 0 {
                return Err(io::Error::last_os_error());
            }
            got += r as usize;
        }
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
fn tcp_sendfile(t: &mut Truth, v6: bool, o: &Opts) -> io::Result<()> {
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
        let mut got = 0;
        while got < o.size {
            let r = recv(s.as_raw_fd(), &mut buf[got..], 0);
            t.call(Proto::Tcp, false, r);
            if r <= 0 {
                return Err(io::Error::last_os_error());
            }
            got += r as usize;
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
fn errqueue(t: &mut Truth, o: &Opts) -> io::Result<()> {
    let msg = vec![0x2eu8; o.size];
    let mut buf = vec![0u8; o.size + 512];
    // ICMP port unreachable, queued as an error with IP_RECVERR.
    let closed = UdpSocket::bind(loopback(false))?;
    let dead = closed.local_addr()?;
    drop(closed);
    let u = UdpSocket::bind(loopback(false))?;
    u.connect(dead)?;
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

/// Sets the calling thread's name (the process's, from the main thread).
fn set_name(name: &str) {
    let c = std::ffi::CString::new(name).expect("a name without NUL");
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 15 bytes).
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(scenario) = args.get(1).cloned() else {
        eprintln!("usage: netatop-gen SCENARIO [--wait-go] [--linger] [--count N] [--size N] [--threads N] [--pace-us N] [--name NAME] [--rename NAME]");
        return ExitCode::from(2);
    };
    let flag = |f: &str| args.iter().any(|a| a == f);
    let num = |f: &str, d: usize| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .map_or(d, |v| v.parse().expect("numeric option"))
    };
    let o = Opts {
        count: num("--count", 100),
        size: num("--size", 100),
        threads: num("--threads", 4),
        pace: std::time::Duration::from_micros(num("--pace-us", 0) as u64),
    };
    // --name NAME: the process's comm, set before any traffic.
    if let Some(name) = args
        .iter()
        .position(|a| a == "--name")
        .and_then(|i| args.get(i + 1))
    {
        set_name(name);
    }
    let stdin = io::stdin();
    if flag("--wait-go") {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).expect("reading stdin");
    }
    let mut t = Truth::default();
    // --carry: counters of an image before an exec (exec-thread), still
    // the process's.
    if let Some(carry) = args
        .iter()
        .position(|a| a == "--carry")
        .and_then(|i| args.get(i + 1))
    {
        let v: Vec<u64> = carry
            .split(',')
            .map(|x| x.parse().expect("numeric --carry"))
            .collect();
        t.c = Counters::from_fields(v.try_into().expect("--carry takes the eight counters"));
    }
    let mut tids = Vec::new();
    let mut children = Vec::new();
    let mut fork_state = None;
    let mut live = Vec::new();
    let res = match scenario.as_str() {
        "udp4" => udp(&mut t, false, false, &o),
        "udp6" => udp(&mut t, true, false, &o),
        "tcp4" => tcp(&mut t, false, false, &o),
        "tcp6" => tcp(&mut t, true, false, &o),
        "rw" => udp(&mut t, false, true, &o).and_then(|()| tcp(&mut t, true, true, &o)),
        "mmsg" => mmsg(&mut t, &o),
        "fail" => fail(&mut t, &o),
        "zero" => zero(&mut t, &o),
        "peek" => peek(&mut t, &o),
        "threads" => threads(&mut t, &mut tids, &o),
        "live-threads" => live_threads(&mut live, &o),
        "thread-farm" => thread_farm(&mut live, &o),
        "exec-thread" => exec_thread(&mut t, &o, flag("--linger")),
        "unix" => unix(&mut t, &o),
        "raw" => raw(&mut t, &o),
        "mptcp4" => mptcp(&mut t, false, &o),
        "mptcp6" => mptcp(&mut t, true, &o),
        "splice4" => tcp_splice(&mut t, false, &o),
        "splice6" => tcp_splice(&mut t, true, &o),
        "errqueue" => errqueue(&mut t, &o),
        "sendfile4" => tcp_sendfile(&mut t, false, &o),
        "sendfile6" => tcp_sendfile(&mut t, true, &o),
        "fork" => fork(&mut children, &o).map(|s| fork_state = Some(s)),
        "churn" => churn(&mut children, &o),
        // Across the namespaces of a test's wire: --peer-netns PATH
        // --peer-addr IPV4 (where the server listens).
        "tcp-rr" | "tcp-conns" | "tcp-bulk" | "tcp-fork" | "tcp-scm" | "tcp-threads" | "udp-rr" => {
            let text = |f: &str| {
                args.iter()
                    .position(|a| a == f)
                    .and_then(|i| args.get(i + 1))
                    .unwrap_or_else(|| panic!("{scenario} needs {f}"))
                    .clone()
            };
            let peer = Peer {
                netns: text("--peer-netns"),
                addr: text("--peer-addr").parse().expect("an IPv4 --peer-addr"),
            };
            match scenario.as_str() {
                "tcp-rr" => tcp_exchanges(&mut t, &peer, 1, o.count, o.size),
                "tcp-conns" => tcp_exchanges(&mut t, &peer, o.count, 1, o.size),
                "tcp-bulk" => tcp_bulk(&mut t, &peer, o.count, o.size),
                "tcp-fork" => handover(&mut children, &peer, &o, false),
                "tcp-scm" => handover(&mut children, &peer, &o, true),
                "tcp-threads" => tcp_threads(&mut live, &peer, &o),
                _ => udp_exchanges(&mut t, &peer, o.count, o.size, num("--gso", 0)),
            }
        }
        other => {
            eprintln!("netatop-gen: unknown scenario {other}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = res {
        eprintln!("netatop-gen: {scenario}: {e}");
        return ExitCode::FAILURE;
    }
    // --rename NAME: the process's comm, changed after the traffic.
    if let Some(name) = args
        .iter()
        .position(|a| a == "--rename")
        .and_then(|i| args.get(i + 1))
    {
        set_name(name);
    }
    let report = Report {
        pid: std::process::id(),
        truth: t,
        tids,
        children,
        threads: live,
    };
    println!(
        "{}",
        serde_json::to_string(&report).expect("serialising the report")
    );
    if flag("--linger") || fork_state.is_some() {
        let mut sink = Vec::new();
        let _ = stdin.lock().read_to_end(&mut sink);
    }
    if let Some((wfd, _sink)) = fork_state {
        // SAFETY: closing the write end releases the children; then reap them.
        unsafe { libc::close(wfd) };
        let mut failed = 0;
        for _ in 0..report.children.len() {
            let mut status = 0;
            // SAFETY: `status` is a valid out-pointer.
            if unsafe { libc::wait(&mut status) } < 0
                || !libc::WIFEXITED(status)
                || libc::WEXITSTATUS(status) != 0
            {
                failed += 1;
            }
        }
        if failed > 0 {
            eprintln!("netatop-gen: {failed} children failed to send");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
