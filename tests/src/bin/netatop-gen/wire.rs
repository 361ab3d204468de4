//! Scenarios across a test's two network namespaces: the client on the
//! main thread in the generator's own namespace, the server on a thread
//! in the peer's; both ends are the generator's.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

use netatopd_tests::{Proto, ThreadReport, Truth};

use crate::loopback::{tcp_read_exact, tcp_write_all};
use crate::sys::{recv, send, setsockopt_int};
use crate::Opts;

/// Where the wire scenarios' server runs: a thread that has entered the
/// network namespace `netns` (a path such as /run/netns/NAME) and listens
/// on `addr`; the client is the main thread, in the generator's own
/// namespace.
pub struct Peer {
    pub netns: String,
    pub addr: Ipv4Addr,
}

/// Moves the calling thread into the network namespace at `path`.
fn enter_netns(path: &str) -> io::Result<()> {
    let ns = std::fs::File::open(path)?;
    // SAFETY: `ns` is an open namespace file; setns changes only this
    // thread's network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside the network namespace at `path`.
fn in_netns<T: Send + 'static>(
    path: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<io::Result<T>> {
    let path = path.to_string();
    std::thread::spawn(move || {
        enter_netns(&path)?;
        f()
    })
}

/// The report of the calling thread, named `name`, that did `truth`.
fn this_thread(name: String, truth: Truth) -> ThreadReport {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    ThreadReport { tid, name, truth }
}

/// A server on a thread inside the peer's namespace: `bind` makes its
/// socket on the peer's address and says its port, then `serve` gets the
/// socket and counts its calls into the thread's truth. Returns the port
/// (once bound) and the thread.
fn server<S>(
    peer: &Peer,
    bind: impl FnOnce(Ipv4Addr) -> io::Result<(S, u16)> + Send + 'static,
    serve: impl FnOnce(&mut Truth, S) -> io::Result<()> + Send + 'static,
) -> io::Result<(u16, JoinHandle<io::Result<Truth>>)> {
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let addr = peer.addr;
    let server = in_netns(&peer.netns, move || {
        let mut st = Truth::default();
        let (socket, port) = bind(addr)?;
        port_tx.send(port).expect("the client waits for the port");
        serve(&mut st, socket)?;
        Ok(st)
    });
    match port_rx.recv() {
        Ok(port) => Ok((port, server)),
        Err(_) => Err(server
            .join()
            .expect("server thread panicked")
            .err()
            .unwrap_or_else(|| io::Error::other("the server thread ended before binding"))),
    }
}

/// A TCP server of [`server`], listening.
fn tcp_server(
    peer: &Peer,
    serve: impl FnOnce(&mut Truth, TcpListener) -> io::Result<()> + Send + 'static,
) -> io::Result<(u16, JoinHandle<io::Result<Truth>>)> {
    let bind = |addr| {
        let l = TcpListener::bind((addr, 0))?;
        let port = l.local_addr()?.port();
        Ok((l, port))
    };
    server(peer, bind, serve)
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
pub fn tcp_exchanges(
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
pub fn tcp_bulk(t: &mut Truth, peer: &Peer, count: usize, size: usize) -> io::Result<()> {
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
pub fn echo_server(peer: &Peer, size: usize) -> io::Result<(u16, JoinHandle<io::Result<Truth>>)> {
    tcp_server(peer, move |st, l| echo(st, &l, size))
}

/// Accepts one connection on `l` and echoes it, `size` bytes at most at a
/// time, until the client closes.
fn echo(st: &mut Truth, l: &TcpListener, size: usize) -> io::Result<()> {
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
}

/// `count` UDP exchanges with the peer: the client sends `size` bytes (in
/// one datagram, fragmented by IP when it is larger than the path's MTU;
/// or with `gso` > 0 in one call that the kernel cuts into datagrams of
/// `gso` bytes, UDP_SEGMENT), the server reads them all and sends `size`
/// bytes back in one datagram. Both ends are this process's.
pub fn udp_exchanges(
    t: &mut Truth,
    peer: &Peer,
    count: usize,
    size: usize,
    gso: usize,
) -> io::Result<()> {
    let addr = peer.addr;
    let (client_tx, client_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let bind = |addr| {
        let s = UdpSocket::bind((addr, 0))?;
        let port = s.local_addr()?.port();
        Ok((s, port))
    };
    let serve = move |st: &mut Truth, s: UdpSocket| {
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
        Ok(())
    };
    let (port, server) = server(peer, bind, serve)?;
    // The client. Where it fails, it leaves the server waiting: the server
    // is not joined then (the process exits with the error).
    let c = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    c.connect((addr, port))?;
    client_tx
        .send(c.local_addr()?)
        .map_err(|_| io::Error::other("the server thread ended"))?;
    if gso > 0 {
        setsockopt_int(c.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, gso as i32)?;
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
    t.add(&server.join().expect("server thread panicked")?);
    Ok(())
}

/// UDP_SEGMENT (linux/udp.h): the size of the datagrams a send is cut into.
const UDP_SEGMENT: libc::c_int = 103;

/// `threads` client threads (named client-i) in the generator's own
/// namespace, each with its own echo server thread in the peer's (named
/// server-i), each client making `count` exchanges of `size` bytes on its
/// connection and closing it; then every thread stays alive (parked) until
/// the process exits. Reports each thread.
pub fn tcp_threads(out: &mut Vec<ThreadReport>, peer: &Peer, o: &Opts) -> io::Result<()> {
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
                    enter_netns(&netns)?;
                    let l = TcpListener::bind((addr, 0))?;
                    let _ = port_tx.send(l.local_addr()?.port());
                    let mut truth = Truth::default();
                    echo(&mut truth, &l, size)?;
                    Ok(this_thread(name, truth))
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
                    Ok(this_thread(name, truth))
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
