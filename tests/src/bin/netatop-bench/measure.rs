//! How the benchmarks measure: the UDP ping-pong whose calls they time
//! (and TCP's request/response and bulk transfer),
//! medians of interleaved rounds, and the table of what each variant adds
//! to a call.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Instant;

use crate::Scale;

/// The median of `v` (which it sorts).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of `rounds` rounds of `N` variants, `run(i)` measuring variant
/// `i`; the order rotates from round to round.
pub fn interleaved<const N: usize>(rounds: usize, run: impl FnMut(usize) -> f64) -> [f64; N] {
    interleaved_n(rounds, N, run)
        .try_into()
        .expect("a median per variant")
}

/// [`interleaved`], of `n` variants.
pub fn interleaved_n(rounds: usize, n: usize, run: impl FnMut(usize) -> f64) -> Vec<f64> {
    interleaved_rounds(rounds, n, run)
        .into_iter()
        .map(|mut v| median(&mut v))
        .collect()
}

/// Every measurement of `rounds` rounds of `n` variants, by variant and
/// round, `run(i)` measuring variant `i`; the order rotates from round to
/// round.
pub fn interleaved_rounds(
    rounds: usize,
    n: usize,
    mut run: impl FnMut(usize) -> f64,
) -> Vec<Vec<f64>> {
    let mut got: Vec<Vec<f64>> = vec![Vec::new(); n];
    for r in 0..rounds {
        for k in 0..n {
            let which = (r + k) % n;
            got[which].push(run(which));
        }
    }
    got
}

/// One UDP socket sending 64-byte datagrams to itself and reading each
/// back, on `cpu`: nanoseconds per socket call.
pub fn ping_pong(n: u64, cpu: usize) -> f64 {
    let _cpu = netatopd_tests::Affinity::only(cpu);
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.connect(s.local_addr().unwrap()).expect("connect");
    let msg = [0x42u8; 64];
    let mut buf = [0u8; 128];
    let run = |n: u64| {
        for _ in 0..n {
            s.send(&msg).expect("send");
            s.recv(&mut buf).expect("recv");
        }
    };
    timed(n, 2, run)
}

/// `run(n / 10)` to warm up, then `run(n)` timed: nanoseconds per call,
/// each of the `n` making `calls` calls.
fn timed(n: u64, calls: u64, mut run: impl FnMut(u64)) -> f64 {
    run(n / 10);
    let t = Instant::now();
    run(n);
    t.elapsed().as_nanos() as f64 / (calls * n) as f64
}

/// `threads` ping-pongs at once, thread i on CPU i: mean ns per call.
pub fn ping_pong_threads(n: u64, threads: usize) -> f64 {
    let handles: Vec<_> = (0..threads)
        .map(|cpu| std::thread::spawn(move || ping_pong(n, cpu)))
        .collect();
    let per: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    per.iter().sum::<f64>() / per.len() as f64
}

/// Prints what each of `rows` (what ran, its ns per call, the first with
/// nothing attached) adds to a call, measured in `s.rounds` rounds of
/// `s.round_trips` round trips (of `each` each); `column` heads the rows.
pub fn cost_table<S: AsRef<str>>(s: &Scale, each: &str, column: &str, rows: &[(S, f64)]) {
    println!(
        "{} rounds of {} round trips ({each} each), interleaved, medians:\n",
        s.rounds, s.round_trips
    );
    println!("| {column} | ns per call | added ns | ratio |\n|---|---|---|---|");
    let off = rows[0].1;
    for (what, v) in rows {
        let what = what.as_ref();
        println!("| {what} | {v:.1} | {:.1} | {:.3} |", v - off, v / off);
    }
}

/// A TCP connection over loopback, both ends in this thread on `cpu`:
/// `size` bytes one way and back, `n` times: nanoseconds per socket call
/// (four a round trip).
pub fn tcp_ping_pong(n: u64, size: usize, cpu: usize) -> f64 {
    let _cpu = netatopd_tests::Affinity::only(cpu);
    let (mut a, mut b) = tcp_pair();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let msg = vec![0x42u8; size];
    let mut buf = vec![0u8; size];
    let run = |n: u64| {
        for _ in 0..n {
            a.write_all(&msg).expect("write");
            b.read_exact(&mut buf).expect("read");
            b.write_all(&buf).expect("write");
            a.read_exact(&mut buf).expect("read");
        }
    };
    timed(n, 4, run)
}

/// `n` writes of `size` bytes over a loopback TCP connection, read by a
/// second thread, both on `cpu`: nanoseconds per write.
pub fn tcp_bulk(n: u64, size: usize, cpu: usize) -> f64 {
    let _cpu = netatopd_tests::Affinity::only(cpu);
    let (mut a, mut b) = tcp_pair();
    let total = (n + n / 10) * size as u64;
    let reader = std::thread::spawn(move || {
        let _cpu = netatopd_tests::Affinity::only(cpu);
        let mut buf = vec![0u8; size];
        let mut got = 0u64;
        while got < total {
            got += b.read(&mut buf).expect("read") as u64;
        }
    });
    let msg = vec![0x42u8; size];
    for _ in 0..n / 10 {
        a.write_all(&msg).expect("write"); // warm-up
    }
    let t = Instant::now();
    for _ in 0..n {
        a.write_all(&msg).expect("write");
    }
    reader.join().expect("the reader");
    t.elapsed().as_nanos() as f64 / n as f64
}

/// A service-like mix over loopback, both ends in this thread on `cpu`:
/// keep-alive connections carrying requests of 200 B and responses of
/// 8 KiB, the client opening a new connection every 10 exchanges (and
/// closing the old one first): nanoseconds per exchange.
pub fn service_mix(n: u64, cpu: usize) -> f64 {
    let _cpu = netatopd_tests::Affinity::only(cpu);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let to = l.local_addr().unwrap();
    let request = [0x42u8; 200];
    let response = vec![0x43u8; 8192];
    let (mut req, mut resp) = ([0u8; 200], vec![0u8; 8192]);
    let run = |n: u64| {
        let mut conn = None;
        for i in 0..n {
            if i % 10 == 0 {
                drop(conn.take());
                let a = TcpStream::connect(to).expect("connect");
                let (b, _) = l.accept().expect("accept");
                a.set_nodelay(true).unwrap();
                b.set_nodelay(true).unwrap();
                conn = Some((a, b));
            }
            let (a, b) = conn.as_mut().expect("a connection");
            a.write_all(&request).expect("write");
            b.read_exact(&mut req).expect("read");
            b.write_all(&response).expect("write");
            a.read_exact(&mut resp).expect("read");
        }
    };
    timed(n, 1, run)
}

/// Both ends of a new TCP connection over loopback.
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (b, _) = l.accept().expect("accept");
    (a, b)
}
