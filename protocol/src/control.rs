//! netatopd's control protocol, for what atop's protocol cannot carry:
//! per-thread records, exited processes marked as such, and daemon
//! statistics. netatopctl speaks it; so can any other client.
//!
//! Each message is a frame: a 4-byte little-endian length, then that many
//! bytes of bincode 2 (standard configuration: variable-length integers,
//! little-endian). A frame's content is the protocol version (u32) followed
//! by a [`Request`] or a [`Response`]. The version comes first in every
//! frame, and [`Response::Error`] is variant 0, in every version to come:
//! a server refuses a request of another version with an error response
//! in its own version, which any client can decode.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Counters;

/// The version this crate speaks (2: `Stats` gained `kretprobe_missed`;
/// 3: the connections per uid, the refusals and idle closes; 4: the
/// counting mode and the unattributed traffic; 5: the cgroups; 6: the
/// packets the receive program did not see; 7: the kernel's counts as one
/// list of names and values; 8: the exited records no client had).
pub const VERSION: u32 = 10;
/// Where netatopd serves the control protocol unless told otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/netatopd/control.sock";
/// Largest request frame a server accepts (bytes after the length).
pub const MAX_REQUEST: usize = 4096;
/// Largest response frame a client accepts: room for about 300,000
/// processes with their threads.
pub const MAX_RESPONSE: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Every live process; with `exited`, also the processes that exited
    /// since this connection's previous request (on its first request:
    /// within the daemon's exit grace period); with `threads`, each live
    /// process's threads.
    Processes { threads: bool, exited: bool },
    /// The daemon's statistics.
    Stats,
    /// Every cgroup v2 with counted traffic: its processes that exited and
    /// its live ones; with `removed`, also the cgroups removed since this
    /// connection's previous request (on its first request: within the
    /// daemon's exit grace period), with their final totals.
    Cgroups { removed: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The request was refused; the text says why.
    Error(String),
    Processes(Vec<Process>),
    /// Boxed: far larger than the other variants (serde encodes it the same).
    Stats(Box<Stats>),
    Cgroups(Vec<Cgroup>),
}

/// A cgroup v2 and what its processes sent and received, monotonic for as
/// long as it exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cgroup {
    /// Its id (the inode number of its directory on cgroup2).
    pub id: u64,
    /// Its path from the root of the hierarchy ("/system.slice/x.service"),
    /// or empty where it cannot be found (no cgroup2 mounted).
    pub path: String,
    pub counters: Counters,
    /// The cgroup was removed; these are its final totals.
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: i32,
    /// Start time, seconds since the epoch, as atop computes it.
    pub btime: u64,
    pub command: String,
    pub counters: Counters,
    /// The process has exited; these are its final totals.
    pub exited: bool,
    /// Live threads with traffic (only when asked for).
    pub threads: Vec<Thread>,
}

impl Process {
    /// A process as an atop record describes it (no threads).
    pub fn from_record(r: &crate::NetPerTask, exited: bool) -> Self {
        Self {
            pid: r.id,
            btime: r.btime,
            command: r.command_str(),
            counters: r.counters,
            exited,
            threads: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub tid: i32,
    pub tgid: i32,
    /// The thread's own name (its comm), empty if it could not be read.
    pub name: String,
    pub counters: Counters,
}

/// What netatopd reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// netatopd's version.
    pub version: String,
    /// Seconds since this netatopd started.
    pub uptime_secs: f64,
    /// Seconds since counting started (earlier than uptime when pinned
    /// state was adopted).
    pub counting_secs: f64,
    /// When counting started, in Unix seconds (whole: the same in every
    /// answer while the clock is not set).
    pub counting_since_unix: u64,
    /// Kernel release.
    pub kernel: String,
    /// How the programs are attached.
    pub attach_mode: String,
    /// Where the programs and maps are pinned.
    pub pin_dir: String,
    /// What the start found pinned: "nothing", "adopted",
    /// "programs replaced" or "discarded: <why>".
    pub pinned: String,
    /// Processes and threads in the kernel maps now.
    pub processes: u64,
    pub threads: u64,
    /// Sizes of the kernel maps (entries; `max_threads` 0: threads'
    /// counters are in task-local storage, which has no size).
    pub max_threads: u64,
    pub max_processes: u64,
    pub max_pending_exits: u64,
    /// Socket calls counted since counting started.
    pub events: u64,
    /// Exited-process records kept for clients now, and dropped because
    /// there were more than --max-exited.
    pub exited_kept: u64,
    pub exited_dropped: u64,
    /// Exited-process records that expired (--exit-grace) before any
    /// client had them: no client was connected when the process exited.
    pub exited_undelivered: u64,
    /// Clients connected now, on the atop socket and the control socket.
    pub atop_clients: u64,
    pub control_clients: u64,
    /// Snapshots served (atop requests and control process requests).
    pub queries: u64,
    /// Time to take the last snapshot, and the median of recent ones (µs).
    pub last_query_us: u64,
    pub median_query_us: u64,
    /// Kernel memory charged to the maps (bytes), as the kernel reports it.
    pub map_memory_bytes: u64,
    /// Connections open now per uid (both sockets), by uid.
    pub clients_by_uid: Vec<(u32, u64)>,
    /// Connections refused: --max-clients reached; the uid's
    /// --max-clients-per-user reached; the slots left kept for root.
    pub refused_max_clients: u64,
    pub refused_per_user: u64,
    pub refused_reserved: u64,
    /// Connections of users other than root closed after --idle-timeout.
    pub closed_idle: u64,
    /// Kernel memory of the threads' task-local storage (bytes), which the
    /// kernel does not report: the live threads times the size of one
    /// thread's storage, from the kernel's types. 0 with a hash map.
    pub thread_storage_bytes: u64,
    /// What the counters count: "calls" (socket calls and their payload)
    /// or "wire" (IP packets and their bytes, headers included).
    pub count: String,
    /// Wire counting: per network namespace (its inode number, as in
    /// /proc/PID/ns/net), the TCP and UDP packets and bytes its interfaces
    /// carried that no process is counted for, sent (the send fields) and
    /// received (the receive fields). Empty when counting calls.
    pub unattributed: Vec<(u32, Counters)>,
    /// Cgroups whose exited processes' totals the kernel keeps now, and
    /// the sizes of its cgroup maps (--max-cgroups, --max-removed-cgroups).
    pub cgroups: u64,
    pub max_cgroups: u64,
    pub max_removed_cgroups: u64,
    /// The most processes one user other than root has counted at once
    /// (--max-processes-per-user; as large as max_processes: no limit).
    pub max_processes_per_user: u64,
    /// Removed cgroups' final totals kept for clients now.
    pub removed_cgroups_kept: u64,
    /// The kernel's counts of rare events since counting started (lost
    /// updates, exits, cgroups removed...), each by its name, in the order
    /// netatopd lists them (its `struct netatop_stats`).
    pub kernel_counts: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the connection closed before a whole frame arrived")]
    Closed,
    #[error("a frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the peer speaks control protocol version {theirs}; this one speaks {VERSION}")]
    Version { theirs: u32 },
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Decoding: the same format, and no length inside a frame may claim more
/// than a whole response may hold, so a lying length allocates nothing
/// beyond that (without a limit, bincode allocates a claimed string up
/// front).
fn decoding() -> impl bincode::config::Config {
    config().with_limit::<MAX_RESPONSE>()
}

/// A whole frame (length and content) for `msg`.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    bincode::serde::encode_into_std_write(VERSION, &mut out, config())
        .and_then(|_| bincode::serde::encode_into_std_write(msg, &mut out, config()))
        .expect("writing to a Vec cannot fail");
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// The content of a frame (after its length): its version, checked, and
/// the message.
pub fn decode<T: DeserializeOwned>(content: &[u8]) -> Result<T, ControlError> {
    let malformed = |e: bincode::error::DecodeError| {
        ControlError::Malformed(match e {
            bincode::error::DecodeError::LimitExceeded => {
                format!("a length in it claims more than the {MAX_RESPONSE} bytes a frame may hold")
            }
            e => e.to_string(),
        })
    };
    let (version, used): (u32, usize) =
        bincode::serde::decode_from_slice(content, decoding()).map_err(malformed)?;
    if version != VERSION {
        return Err(ControlError::Version { theirs: version });
    }
    let (msg, n): (T, usize) =
        bincode::serde::decode_from_slice(&content[used..], decoding()).map_err(malformed)?;
    if used + n != content.len() {
        return Err(ControlError::Malformed(format!(
            "{} bytes after the message",
            content.len() - used - n
        )));
    }
    Ok(msg)
}

/// The length in a frame's 4-byte header, checked against `max`.
pub fn frame_len(header: [u8; 4], max: usize) -> Result<usize, ControlError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(ControlError::TooLarge { len, max });
    }
    Ok(len)
}

/// Reads one frame's content (at most `max` bytes) from a blocking stream.
pub fn read_frame<R: Read>(r: &mut R, max: usize) -> Result<Vec<u8>, ControlError> {
    let mut header = [0u8; 4];
    read_all(r, &mut header)?;
    let len = frame_len(header, max)?;
    // Grown as bytes arrive, so a lying length costs nothing up front.
    let mut content = Vec::new();
    r.take(len as u64).read_to_end(&mut content)?;
    if content.len() != len {
        return Err(ControlError::Closed);
    }
    Ok(content)
}

fn read_all<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), ControlError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ControlError::Closed,
        _ => ControlError::Io(e),
    })
}

/// One request and its response on a blocking stream (the client side).
pub fn call<S: Read + Write>(stream: &mut S, req: &Request) -> Result<Response, ControlError> {
    stream.write_all(&encode(req))?;
    let content = read_frame(stream, MAX_RESPONSE)?;
    decode(&content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Response {
        Response::Processes(vec![Process {
            pid: 42,
            btime: 1_700_000_000,
            command: "curl".into(),
            counters: Counters {
                tcpsndbytes: u64::MAX,
                udprcvpacks: 3,
                ..Default::default()
            },
            exited: true,
            threads: vec![Thread {
                tid: 43,
                tgid: 42,
                name: "worker".into(),
                counters: Counters::default(),
            }],
        }])
    }

    /// The byte-level examples of netatop-protocol(5).
    #[test]
    fn documented_encoding() {
        assert_eq!(encode(&Request::Stats), [2, 0, 0, 0, 10, 1]);
        assert_eq!(
            encode(&Request::Processes {
                threads: true,
                exited: false
            }),
            [4, 0, 0, 0, 10, 0, 1, 0]
        );
        assert_eq!(
            encode(&Request::Cgroups { removed: true }),
            [3, 0, 0, 0, 10, 2, 1]
        );
        // Zigzag signed integers, 251-prefixed u16, length-prefixed strings.
        let frame = encode(&Thread {
            tid: -1,
            tgid: 300,
            name: "ab".into(),
            counters: Counters::default(),
        });
        assert_eq!(&frame[4..12], [10, 1, 251, 88, 2, 2, b'a', b'b']);
    }

    #[test]
    fn frames_round_trip() {
        for req in [
            Request::Stats,
            Request::Processes {
                threads: true,
                exited: false,
            },
        ] {
            let frame = encode(&req);
            let content = read_frame(&mut &frame[..], MAX_REQUEST).unwrap();
            assert_eq!(decode::<Request>(&content).unwrap(), req);
        }
        let frame = encode(&sample());
        let content = read_frame(&mut &frame[..], MAX_RESPONSE).unwrap();
        assert_eq!(decode::<Response>(&content).unwrap(), sample());
    }

    #[test]
    fn another_version_is_named() {
        let mut content = Vec::new();
        bincode::serde::encode_into_std_write(VERSION + 1, &mut content, config()).unwrap();
        bincode::serde::encode_into_std_write(Request::Stats, &mut content, config()).unwrap();
        let err = decode::<Request>(&content).unwrap_err();
        assert!(matches!(err, ControlError::Version { theirs } if theirs == VERSION + 1));
        assert_eq!(
            err.to_string(),
            format!(
                "the peer speaks control protocol version {}; this one speaks {VERSION}",
                VERSION + 1
            )
        );
    }

    #[test]
    fn an_error_response_decodes_in_any_version() {
        // Variant 0 with a string: what every version's refusal looks like.
        let frame = encode(&Response::Error("no".into()));
        assert_eq!(&frame[4..], &[VERSION as u8, 0, 2, b'n', b'o']);
    }

    #[test]
    fn oversized_and_truncated_frames_are_refused_without_allocating() {
        let mut frame = (u32::MAX).to_le_bytes().to_vec();
        frame.extend_from_slice(&[0; 10]);
        assert!(matches!(
            read_frame(&mut &frame[..], MAX_RESPONSE),
            Err(ControlError::TooLarge { len, .. }) if len == u32::MAX as usize
        ));
        let frame = encode(&Request::Stats);
        assert!(matches!(
            read_frame(&mut &frame[..frame.len() - 1], MAX_REQUEST),
            Err(ControlError::Closed)
        ));
        // Trailing bytes and garbage are malformed, not a panic.
        let mut content = read_frame(&mut &frame[..], MAX_REQUEST).unwrap();
        content.push(0);
        assert!(matches!(
            decode::<Request>(&content),
            Err(ControlError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Request>(&[VERSION as u8, 99]),
            Err(ControlError::Malformed(_))
        ));
    }

    #[test]
    fn a_lying_length_inside_a_frame_allocates_nothing_beyond_the_frame() {
        // A refusal whose text claims 2^40 bytes, then a list of processes
        // claiming 2^40 entries: refused by the limit, not allocated.
        let mut huge = vec![VERSION as u8, 0];
        huge.extend_from_slice(&[253, 0, 0, 0, 0, 0, 1, 0, 0]); // varint u64 2^40
        let Err(ControlError::Malformed(why)) = decode::<Response>(&huge) else {
            panic!("a 2^40-byte string was accepted")
        };
        assert!(why.contains("a length in it claims more than"), "{why}");
        huge[1] = 1;
        assert!(matches!(
            decode::<Response>(&huge),
            Err(ControlError::Malformed(_))
        ));
    }
}
