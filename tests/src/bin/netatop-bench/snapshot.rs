//! Section 3: snapshot latency, atop's way, beside its floors: the
//! kernel's part of a snapshot alone, and atop's reading alone.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use netatopd_bpf::{MapSizes, Tracer};
use netatopd_tests::Daemon;

use crate::load::{spawn_processes, time_queries, PidMax};
use crate::measure::median;
use crate::programs::{forced, NetatopdPrograms};
use crate::Scale;

/// atop's reading alone: `n` records and a terminator, one recv of 96
/// bytes each, from a socket pair filled by another thread. The floor of
/// any service's snapshot time, ms.
fn client_floor(n: usize) -> f64 {
    let (mut w, mut r) = UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let rec = [1u8; 96];
        let chunk: Vec<u8> = rec.iter().copied().cycle().take(96 * 256).collect();
        let mut left = n;
        while left > 0 {
            let k = left.min(256);
            w.write_all(&chunk[..k * 96]).unwrap();
            left -= k;
        }
        w.write_all(&[0u8; 96]).unwrap();
    });
    let mut buf = [0u8; 96];
    let t = Instant::now();
    loop {
        assert_eq!(r.read(&mut buf).unwrap(), 96);
        if buf[0] == 0 {
            break;
        }
    }
    let ms = t.elapsed().as_secs_f64() * 1e3;
    writer.join().unwrap();
    ms
}

/// Median ms of the kernel's part of a snapshot alone: reading the whole
/// snapshot iterator (one record per process, threads summed in the kernel).
fn kernel_reads(tracer: &Tracer, times: usize) -> f64 {
    let mut buf = Vec::new();
    let mut ms: Vec<f64> = (0..times)
        .map(|_| {
            buf.clear();
            let t = Instant::now();
            tracer.snapshot().unwrap().read_to_end(&mut buf).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&mut ms)
}

/// Section 3: snapshot latency, atop's way, beside the kernel's part of a
/// snapshot alone and atop's reading alone.
pub fn snapshot(s: &Scale) {
    println!("## 3. Snapshot latency, atop's way\n");
    println!(
        "One connection, {} queries (send 96 bytes, read 96-byte records to the terminator). \
         netatopd --max-processes 65536 --max-threads 65536 for every size.\n",
        s.queries
    );
    println!("| live processes | records | median ms | max ms | µs per process (median) | kernel's snapshot alone, ms | atop's reading alone, ms |\n|---|---|---|---|---|---|---|");
    for &n in &s.snapshot_sizes {
        let _pid_max = PidMax::room_for(n);
        let d = Daemon::start(&["--max-processes", "65536", "--max-threads", "65536"]);
        // The same programs and map sizes in this process, to time the
        // kernel's part of a snapshot alone.
        let programs = NetatopdPrograms::load_opts(forced(MapSizes {
            threads: 65536,
            procs: 65536,
            ..Default::default()
        }));
        let g = spawn_processes(n);
        let (med, max, recs) = time_queries(&d, s.queries);
        let mut floor: Vec<f64> = (0..s.queries).map(|_| client_floor(recs)).collect();
        let reads = kernel_reads(programs.tracer(), s.queries);
        drop(programs);
        println!(
            "| {n} | {recs} | {med:.2} | {max:.2} | {:.2} | {reads:.2} | {:.2} |",
            med * 1e3 / recs as f64,
            median(&mut floor)
        );
        g.finish();
        drop(d);
    }
    println!();
}
