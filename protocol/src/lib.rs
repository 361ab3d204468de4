//! The protocol atop (>= 2.9, `-K`) speaks with a netatop-bpf service.
//!
//! The client sends one 96-byte request (its content means nothing) and
//! reads `struct netpertask` records, one `recv(fd, buf, 96, 0)` each, until
//! a record with `id == 0`. atop does not handle short reads, so a service
//! must make every record arrive whole.

use std::io::{self, Read, Write};
use std::mem::{offset_of, size_of};

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

pub mod cgroup;
pub mod control;
mod counters;

pub use counters::{Counters, Field, FIELDS};

/// Where atop looks for the service.
pub const DEFAULT_SOCKET: &str = "/run/netatop-bpf-socket";

/// Size of one record, and of one request.
pub const RECORD_SIZE: usize = 96;

/// `struct netpertask` as atop declares it on 64-bit Linux, native endian.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
#[repr(C)]
pub struct NetPerTask {
    /// Process id (tgid); 0 terminates a response.
    pub id: i32,
    /// Padding before `btime`; always zero.
    pub pad: u32,
    /// Process start, seconds since the epoch.
    pub btime: u64,
    /// Process name, NUL padded.
    pub command: [u8; 16],
    pub counters: Counters,
}

const _: () = {
    assert!(size_of::<NetPerTask>() == RECORD_SIZE);
    assert!(offset_of!(NetPerTask, id) == 0);
    assert!(offset_of!(NetPerTask, btime) == 8);
    assert!(offset_of!(NetPerTask, command) == 16);
    assert!(offset_of!(NetPerTask, counters) == 32);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, tcpsndpacks) == 32);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, tcpsndbytes) == 40);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, tcprcvpacks) == 48);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, tcprcvbytes) == 56);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, udpsndpacks) == 64);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, udpsndbytes) == 72);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, udprcvpacks) == 80);
    assert!(offset_of!(NetPerTask, counters) + offset_of!(Counters, udprcvbytes) == 88);
};

impl NetPerTask {
    /// The record that ends a response.
    pub const TERMINATOR: NetPerTask = NetPerTask {
        id: 0,
        pad: 0,
        btime: 0,
        command: [0; 16],
        counters: Counters {
            tcpsndpacks: 0,
            tcpsndbytes: 0,
            tcprcvpacks: 0,
            tcprcvbytes: 0,
            udpsndpacks: 0,
            udpsndbytes: 0,
            udprcvpacks: 0,
            udprcvbytes: 0,
        },
    };

    /// The request by which a client opts in to thread records
    /// (netatop-protocol(5), "Thread records"). Only these exact 96 bytes
    /// opt in: the id is negative, which no record is (so a client that
    /// sends back the last record it received never opts in), and 28 more
    /// bytes of magic make uninitialized memory opting in implausible. Any
    /// other request, of any content, gets the baseline stream.
    pub const THREADS_REQUEST: NetPerTask = NetPerTask {
        id: THREADS_REQUEST_ID,
        pad: THREADS_VERSION,
        btime: THREADS_MAGIC,
        command: *b"netatopd:threads",
        ..Self::TERMINATOR
    };

    /// Whether a request opts in to thread records.
    pub fn is_threads_request(request: &[u8; RECORD_SIZE]) -> bool {
        request == Self::THREADS_REQUEST.as_bytes()
    }

    /// A thread record: `id` is the thread id, `pad` its process's id
    /// (never 0, which marks process records), `btime` and `command` its
    /// process's, and the counters the thread's own.
    pub fn thread(tid: u32, process: &NetPerTask, counters: Counters) -> NetPerTask {
        NetPerTask {
            id: tid as i32,
            pad: process.id as u32,
            counters,
            ..*process
        }
    }

    /// For a thread record, its process's id.
    pub fn thread_of(&self) -> Option<i32> {
        (self.pad != 0).then_some(self.pad as i32)
    }

    /// The name up to its first NUL.
    pub fn command_str(&self) -> String {
        let end = self.command.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.command[..end]).into_owned()
    }

    /// Sets the name, truncated to 15 bytes and NUL padded.
    pub fn set_command(&mut self, name: &[u8]) {
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        let n = name.len().min(15);
        self.command = [0; 16];
        self.command[..n].copy_from_slice(&name[..n]);
    }
}

/// `id` of the thread opt-in request: negative, unlike every record.
pub const THREADS_REQUEST_ID: i32 = -0x4e54_5448;
/// `pad` of the opt-in request: the version of the thread extension.
pub const THREADS_VERSION: u32 = 1;
/// `btime` of the opt-in request.
pub const THREADS_MAGIC: u64 = 0x7468_7265_6164_7321;

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the service closed the connection before the end of the response")]
    Closed,
    #[error("a record arrived split: a read returned {0} of {RECORD_SIZE} bytes")]
    Split(usize),
}

/// How records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// One read per record, as atop does: a short read is an error.
    AsAtop,
    /// Reassembles records from short reads.
    Reassemble,
}

/// Sends one request and reads one whole response (without its terminator).
pub fn query<S: Read + Write>(
    stream: &mut S,
    mode: ReadMode,
) -> Result<Vec<NetPerTask>, QueryError> {
    query_with(stream, &[0u8; RECORD_SIZE], mode)
}

/// Sends `request` and reads one whole response (without its terminator).
pub fn query_with<S: Read + Write>(
    stream: &mut S,
    request: &[u8; RECORD_SIZE],
    mode: ReadMode,
) -> Result<Vec<NetPerTask>, QueryError> {
    stream.write_all(request)?;
    read_response(stream, mode)
}

/// Reads records until the terminator.
pub fn read_response<S: Read>(
    stream: &mut S,
    mode: ReadMode,
) -> Result<Vec<NetPerTask>, QueryError> {
    let mut out = Vec::new();
    loop {
        let mut rec = NetPerTask::new_zeroed();
        let buf = rec.as_mut_bytes();
        match mode {
            ReadMode::AsAtop => match stream.read(buf)? {
                0 => return Err(QueryError::Closed),
                RECORD_SIZE => {}
                n => return Err(QueryError::Split(n)),
            },
            ReadMode::Reassemble => stream.read_exact(buf).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => QueryError::Closed,
                _ => QueryError::Io(e),
            })?,
        }
        if rec.id == 0 {
            return Ok(out);
        }
        out.push(rec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_truncated_and_padded() {
        let mut r = NetPerTask::default();
        r.set_command(b"a-very-long-process-name");
        assert_eq!(r.command_str(), "a-very-long-pro");
        assert_eq!(r.command[15], 0);
        r.set_command(b"ab\0cd");
        assert_eq!(r.command_str(), "ab");
        assert_eq!(&r.command[2..], &[0u8; 14]);
    }

    #[test]
    fn reads_whole_records_and_rejects_split_ones() {
        let mut rec = NetPerTask {
            id: 42,
            btime: 7,
            ..Default::default()
        };
        rec.counters.udpsndbytes = 1234;
        let mut wire = rec.as_bytes().to_vec();
        wire.extend_from_slice(NetPerTask::TERMINATOR.as_bytes());
        let got = read_response(&mut &wire[..], ReadMode::AsAtop).unwrap();
        assert_eq!(got, vec![rec]);

        // A reader that hands out 50 bytes at a time, like a split record.
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(50).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        assert!(matches!(
            read_response(&mut Dribble(&wire), ReadMode::AsAtop),
            Err(QueryError::Split(50))
        ));
        assert_eq!(
            read_response(&mut Dribble(&wire), ReadMode::Reassemble).unwrap(),
            vec![rec]
        );
        assert!(matches!(
            read_response(&mut &wire[..96], ReadMode::Reassemble),
            Err(QueryError::Closed)
        ));
    }

    /// Random streams handed out in random pieces: the decoder returns the
    /// records before the first zero id, or says the stream ended; it
    /// never panics and never reads past the terminator.
    #[test]
    fn random_streams_decode_as_whole_records_or_fail_cleanly() {
        struct Pieces<'a> {
            data: &'a [u8],
            state: u64,
        }
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let n = (1 + (self.state >> 33) as usize % 200)
                    .min(buf.len())
                    .min(self.data.len());
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let records = (next() % 6) as usize;
            let mut data = Vec::new();
            for _ in 0..records {
                // Half the records get a zero id, ending the response there.
                let zero_id = next() % 2 == 0;
                for i in 0..RECORD_SIZE / 8 {
                    let w = if i == 0 && zero_id { 0 } else { next() | 1 };
                    data.extend_from_slice(&w.to_ne_bytes());
                }
            }
            let cut = (next() % 2) as usize * (next() % 96) as usize;
            data.truncate(data.len().saturating_sub(cut));
            let expect_len = data
                .chunks_exact(RECORD_SIZE)
                .position(|c| c[..4] == [0; 4]);
            let mut src = Pieces {
                data: &data,
                state: next(),
            };
            match (read_response(&mut src, ReadMode::Reassemble), expect_len) {
                (Ok(recs), Some(n)) => {
                    assert_eq!(recs.len(), n);
                    assert!(recs.iter().all(|r| r.id != 0));
                    assert_eq!(src.data.len(), data.len() - (n + 1) * RECORD_SIZE);
                }
                (Err(QueryError::Closed), None) => {}
                (got, want) => panic!("{got:?} for a stream whose terminator is at {want:?}"),
            }
        }
    }
}
