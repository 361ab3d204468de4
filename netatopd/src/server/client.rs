//! One client connection: gathering its requests (framing) and writing its
//! responses without ever blocking.
//!
//! Request bytes are gathered until a whole request is there (atop's: 96
//! bytes; the control protocol's: a length, then at most `MAX_REQUEST`
//! bytes), so a client never sizes an allocation. Responses are written in
//! chunks of whole records that the kernel queues all-or-nothing, so a
//! reader never finds a partial record at the end of the queue.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

use log::debug;
use mio::net::UnixStream;
use netatop_protocol::control;
use netatop_protocol::{NetPerTask, RECORD_SIZE};

use crate::collect::Snapshot;
use crate::exits::Cursor;

/// An output buffer larger than this is given back as soon as it has been
/// written, rather than kept for the next response.
pub(super) const RELEASE_ABOVE: usize = 64 * 1024;

/// Returns the allocator's free memory to the system now: a large buffer
/// may have come from the heap (glibc takes requests from free heap space
/// before mapping new memory), where freeing it alone keeps it resident.
pub(super) fn give_back() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
}

/// Largest write: whole records within one unix-socket buffer (32 KiB).
const MAX_CHUNK: usize = 32 * 1024 / RECORD_SIZE * RECORD_SIZE;

/// Bytes per write for a client: whole records, and small enough that the
/// kernel takes each write into one buffer (`sk_sndbuf / 2 - 64` caps
/// one unix stream buffer), so a write is queued whole or not at all.
pub(super) fn chunk_for(stream: &UnixStream) -> usize {
    let sndbuf = socket2::SockRef::from(stream)
        .send_buffer_size()
        .unwrap_or(0);
    let per_buf = (sndbuf / 2).saturating_sub(64);
    (per_buf.min(MAX_CHUNK) / RECORD_SIZE * RECORD_SIZE).max(RECORD_SIZE)
}

/// What a client needs after its turn.
pub(super) enum State {
    /// Waiting for events.
    Idle,
    /// More requests may be waiting: give it another turn.
    Busy,
    Closed,
}

/// Which protocol a client speaks, and the request being gathered.
pub(super) enum Input {
    /// atop's protocol: 96 bytes.
    Atop { buf: [u8; RECORD_SIZE], len: usize },
    /// The control protocol: a 4-byte length, then at most MAX_REQUEST bytes.
    Control {
        header: [u8; 4],
        body: Vec<u8>,
        in_body: bool,
        len: usize,
    },
}

impl Input {
    pub(super) fn atop() -> Self {
        Input::Atop {
            buf: [0; RECORD_SIZE],
            len: 0,
        }
    }

    pub(super) fn control() -> Self {
        Input::Control {
            header: [0; 4],
            body: Vec::new(),
            in_body: false,
            len: 0,
        }
    }
}

/// A whole request.
pub(super) enum Incoming {
    /// An atop request; `threads` when it opts in to thread records.
    Atop {
        threads: bool,
    },
    Control(control::Request),
    /// A control request that cannot be served; the text says why.
    Refused(String),
}

/// Reads into `buf[*len..]`; true when it is full, false when nothing more
/// can be read now (or the peer shut down: `eof`).
fn fill(
    stream: &mut UnixStream,
    buf: &mut [u8],
    len: &mut usize,
    eof: &mut bool,
) -> io::Result<bool> {
    while *len < buf.len() {
        match stream.read(&mut buf[*len..]) {
            Ok(0) => {
                *eof = true;
                return Ok(false);
            }
            Ok(n) => *len += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

pub(super) struct Client {
    pub stream: UnixStream,
    pub input: Input,
    /// Exited processes count on this client to get them: every atop
    /// client, and a control client once it has asked for them.
    pub follows_exits: bool,
    /// The last removed cgroup this client was given (a sequence number).
    pub cgroups_seen: u64,
    pub out: Vec<u8>,
    pub sent: usize,
    pub chunk: usize,
    pub cursor: Cursor,
    /// The client shut down its sending side: close once its output is out.
    pub eof: bool,
    /// Since when pending output has not moved (None: nothing is stuck).
    pub stalled_since: Option<Instant>,
    /// An atop response being streamed from the kernel's snapshot, a chunk
    /// at a time as the client takes it; its exits and terminator follow.
    pub streaming: Option<Snapshot>,
    /// Who connected (SO_PEERCRED).
    pub uid: u32,
    /// Since when it has neither asked nor had anything to take, as far as
    /// netatopd has seen (from its connection; unknown after a request).
    pub idle_since: Option<Instant>,
}

impl Client {
    pub(super) fn new(stream: UnixStream, input: Input, cursor: Cursor, uid: u32) -> Self {
        let follows_exits = matches!(input, Input::Atop { .. });
        Self {
            chunk: chunk_for(&stream),
            stream,
            input,
            follows_exits,
            cgroups_seen: 0,
            out: Vec::new(),
            sent: 0,
            cursor,
            eof: false,
            stalled_since: None,
            streaming: None,
            uid,
            idle_since: Some(Instant::now()),
        }
    }

    /// Whether it has been idle for `limit`: since it was first seen with
    /// nothing of a response left to take (here or unread in its socket)
    /// and no whole request after that. Looked at once a second, so the
    /// connection is closed between `limit` and a second later.
    pub(super) fn idle_for(&mut self, limit: std::time::Duration) -> bool {
        if self.pending() > 0 || self.streaming.is_some() || self.unread() > 0 {
            self.idle_since = None;
            return false;
        }
        self.idle_since.get_or_insert_with(Instant::now).elapsed() >= limit
    }

    /// Bytes sent to it that it has not read yet (SIOCOUTQ, the same
    /// request as TIOCOUTQ); 0 if the kernel cannot say.
    fn unread(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ on a socket we own writes one c_int through
        // the pointer, which points at `n`.
        let rc = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc == 0 {
            n.max(0) as usize
        } else {
            0
        }
    }

    pub(super) fn is_control(&self) -> bool {
        matches!(self.input, Input::Control { .. })
    }

    /// Bytes of output not yet written.
    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Drops what was written, so the buffer holds only what is pending.
    pub(super) fn compact(&mut self) {
        self.out.drain(..self.sent);
        self.sent = 0;
    }

    /// Writes pending output; true when all of it is out.
    pub(super) fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.out.len() {
            let end = (self.sent + self.chunk).min(self.out.len());
            match self.stream.write(&self.out[self.sent..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if n != end - self.sent {
                        debug!("short write of {n} bytes to a client");
                    }
                    self.sent += n;
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stalled_since.get_or_insert_with(Instant::now);
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > RELEASE_ABOVE {
            self.out = Vec::new();
            give_back();
        } else {
            self.out.clear();
        }
        self.sent = 0;
        self.stalled_since = None;
        Ok(true)
    }

    /// Reads toward the next request; None while it is not whole (or the
    /// client shut down).
    pub(super) fn read_request(&mut self) -> io::Result<Option<Incoming>> {
        let Client {
            stream, input, eof, ..
        } = self;
        match input {
            Input::Atop { buf, len } => {
                if !fill(stream, buf, len, eof)? {
                    return Ok(None);
                }
                // The request asks for everything; only the exact opt-in
                // request asks for thread records too.
                *len = 0;
                let threads = NetPerTask::is_threads_request(buf);
                Ok(Some(Incoming::Atop { threads }))
            }
            Input::Control {
                header,
                body,
                in_body,
                len,
            } => {
                if !*in_body {
                    if !fill(stream, header, len, eof)? {
                        return Ok(None);
                    }
                    *len = 0;
                    match control::frame_len(*header, control::MAX_REQUEST) {
                        Ok(n) => {
                            body.clear();
                            body.resize(n, 0);
                            *in_body = true;
                        }
                        Err(e) => return Ok(Some(Incoming::Refused(e.to_string()))),
                    }
                }
                if !fill(stream, body, len, eof)? {
                    return Ok(None);
                }
                *len = 0;
                *in_body = false;
                Ok(Some(match control::decode(body) {
                    Ok(req) => Incoming::Control(req),
                    Err(e) => Incoming::Refused(e.to_string()),
                }))
            }
        }
    }
}
