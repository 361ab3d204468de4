//! One client connection: gathering its requests (framing), its output
//! buffer and the snapshot streamed into it, its places in the exit and
//! removed-cgroup logs, and writing its responses without ever blocking.
//!
//! Request bytes are gathered until a whole request is there (atop's: 96
//! bytes; the control protocol's: a length, then at most `MAX_REQUEST`
//! bytes), so a client never sizes an allocation. Responses are written in
//! chunks of whole records that the kernel queues all-or-nothing, so a
//! reader never finds a partial record at the end of the queue.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use log::debug;
use mio::net::UnixStream;
use mio::Token;
use netatop_protocol::control::{self, Cgroup};
use netatop_protocol::{NetPerTask, RECORD_SIZE};

use super::removed::RemovedCgroups;
use crate::collect::{Collector, Snapshot, CHUNK};
use crate::exits::{Cursor, ExitLog};

/// The clients being served, by their token in the poll.
pub(super) type Clients = HashMap<Token, Client>;

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

/// Room made for a whole response before it is read: above the mapping
/// threshold set in main.rs.
const WHOLE_RESERVE: usize = 256 * 1024;

/// Bytes per write for a client: whole records, at most [`CHUNK`], and
/// small enough that the kernel takes each write into one buffer
/// (`sk_sndbuf / 2 - 64` caps one unix stream buffer), so a write is
/// queued whole or not at all.
fn chunk_for(stream: &UnixStream) -> usize {
    let sndbuf = socket2::SockRef::from(stream)
        .send_buffer_size()
        .unwrap_or(0);
    let per_buf = (sndbuf / 2).saturating_sub(64);
    (per_buf.min(CHUNK) / RECORD_SIZE * RECORD_SIZE).max(RECORD_SIZE)
}

/// Which protocol a client speaks, and the request being gathered.
enum Input {
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
    fn atop() -> Self {
        Input::Atop {
            buf: [0; RECORD_SIZE],
            len: 0,
        }
    }

    fn control() -> Self {
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
    stream: UnixStream,
    input: Input,
    /// Who connected (SO_PEERCRED).
    uid: u32,
    /// Exited processes count on this client to get them: every atop
    /// client, and a control client once it has asked for them.
    follows_exits: bool,
    /// Where it is in the exit log.
    exits: Cursor,
    /// Where it is in the removed-cgroup log.
    removed_cgroups: Cursor,
    out: Vec<u8>,
    sent: usize,
    /// Bytes per write.
    chunk: usize,
    /// The client shut down its sending side (or its requests cannot be
    /// trusted any more): close once its output is out.
    eof: bool,
    /// Bytes of output written to it so far.
    written: u64,
    /// Marks of (bytes that had entered its output by then, when), oldest
    /// first, taken once a second while output is pending: each must be
    /// written within the client timeout, however slowly it reads.
    marks: VecDeque<(u64, Instant)>,
    /// An atop response being streamed from the kernel's snapshot, a chunk
    /// at a time as the client takes it; its exits and terminator follow.
    streaming: Option<Snapshot>,
    /// Since when it has neither asked nor had anything to take, as far as
    /// netatopd has seen (from its connection; unknown after a request).
    idle_since: Option<Instant>,
}

impl Client {
    /// A client of the control socket (`control`) or of atop's, connected
    /// at `connected_ns` (CLOCK_BOOTTIME).
    pub(super) fn new(stream: UnixStream, control: bool, uid: u32, connected_ns: u64) -> Self {
        Self {
            chunk: chunk_for(&stream),
            stream,
            input: if control {
                Input::control()
            } else {
                Input::atop()
            },
            uid,
            follows_exits: !control,
            exits: Cursor::new(connected_ns),
            removed_cgroups: Cursor::new(connected_ns),
            out: Vec::new(),
            sent: 0,
            eof: false,
            written: 0,
            marks: VecDeque::new(),
            streaming: None,
            idle_since: Some(Instant::now()),
        }
    }

    pub(super) fn uid(&self) -> u32 {
        self.uid
    }

    pub(super) fn is_control(&self) -> bool {
        matches!(self.input, Input::Control { .. })
    }

    /// Bytes per write.
    pub(super) fn chunk(&self) -> usize {
        self.chunk
    }

    /// Whether it has been idle for `limit`: since it was first seen with
    /// nothing of a response left to take (here or unread in its socket)
    /// and no whole request after that. Looked at once a second, so the
    /// connection is closed between `limit` and a second later.
    pub(super) fn idle_for(&mut self, limit: Duration) -> bool {
        if self.pending() > 0 || self.streaming.is_some() || self.unread() > 0 {
            self.idle_since = None;
            return false;
        }
        self.idle_since.get_or_insert_with(Instant::now).elapsed() >= limit
    }

    /// Whether it has left output unwritten for `limit`: a byte is late
    /// when it was pending at a mark `limit` ago, whether the client took
    /// nothing since or a trickle. Looked at once a second; a mark is
    /// taken at most every `limit / 16`, so a client is closed between
    /// `limit` and `limit` plus a sixteenth and a second after its output
    /// fell behind.
    pub(super) fn late_for(&mut self, limit: Duration) -> bool {
        while self.marks.front().is_some_and(|&(m, _)| m <= self.written) {
            self.marks.pop_front();
        }
        let due = match self.marks.back() {
            Some(&(_, t)) => t.elapsed() >= limit / 16,
            None => true,
        };
        if self.pending() > 0 && due {
            let entered = self.written + self.pending() as u64;
            self.marks.push_back((entered, Instant::now()));
        }
        self.marks
            .front()
            .is_some_and(|&(_, t)| t.elapsed() >= limit)
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

    /// Bytes of output not yet written.
    pub(super) fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Whether its next request may be read: it has not shut down and
    /// less than `cap` bytes of its output are pending.
    pub(super) fn takes_requests(&self, cap: usize) -> bool {
        !self.eof && self.pending() < cap
    }

    /// Whether it shut down and has taken all of its output.
    pub(super) fn finished(&self) -> bool {
        self.eof && self.pending() == 0
    }

    /// Its requests wait for other users' clients to take their output:
    /// it is not idle meanwhile (its idleness starts again after).
    pub(super) fn hold(&mut self) {
        self.idle_since = None;
    }

    /// Reads no more of its requests: it is closed once its output is out.
    pub(super) fn hang_up(&mut self) {
        self.eof = true;
    }

    /// Appends to its output.
    pub(super) fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Drops what was written, so the buffer holds only what is pending.
    pub(super) fn compact(&mut self) {
        self.out.drain(..self.sent);
        self.sent = 0;
    }

    /// Gives its output buffer back if nothing of it is pending.
    pub(super) fn release_output(&mut self) {
        if self.pending() == 0 {
            self.out = Vec::new();
        }
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
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
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
        Ok(true)
    }

    /// Whether an atop response is being streamed to it.
    pub(super) fn is_streaming(&self) -> bool {
        self.streaming.is_some()
    }

    /// Streams `snap` to it, a chunk at a time: see [`Client::read_stream`].
    pub(super) fn start_stream(&mut self, snap: Snapshot) {
        self.streaming = Some(snap);
    }

    /// Appends the next write's worth of its streamed snapshot to its
    /// output; false at the end of the snapshot (or with none streamed).
    pub(super) fn read_stream(&mut self, collector: &Collector) -> io::Result<bool> {
        let Some(snap) = self.streaming.as_mut() else {
            return Ok(false);
        };
        Ok(collector.read_into(snap, &mut self.out, self.chunk)? > 0)
    }

    /// Ends the streamed response; the snapshot, for how long it took.
    pub(super) fn end_stream(&mut self) -> Option<Snapshot> {
        self.streaming.take()
    }

    /// Appends all of `snap` to its output at once.
    pub(super) fn read_whole(
        &mut self,
        collector: &Collector,
        snap: &mut Snapshot,
    ) -> io::Result<()> {
        // Mapped from the start (see main.rs), so the whole response is
        // given back to the system when it is out, never left in the heap.
        self.out.reserve(WHOLE_RESERVE);
        collector.read_to_end(snap, &mut self.out)
    }

    /// From now on it counts on getting every exited process.
    pub(super) fn follow_exits(&mut self) {
        self.follows_exits = true;
    }

    /// Its place in the exit log, if it counts on getting the exits.
    pub(super) fn exits_owed(&self) -> Option<&Cursor> {
        self.follows_exits.then_some(&self.exits)
    }

    /// Appends the exited processes it has not had and is due.
    pub(super) fn take_exits(&mut self, log: &ExitLog, out: &mut Vec<NetPerTask>) {
        log.take_for(&mut self.exits, out);
    }

    /// Appends the removed cgroups it has not had and is due.
    pub(super) fn take_removed_cgroups(&mut self, log: &RemovedCgroups, out: &mut Vec<Cgroup>) {
        log.take_for(&mut self.removed_cgroups, out);
    }

    /// Reads toward the next request; None while it is not whole (or the
    /// client shut down). A whole request ends its idleness.
    pub(super) fn read_request(&mut self) -> io::Result<Option<Incoming>> {
        let incoming = self.gather()?;
        if incoming.is_some() {
            self.idle_since = None;
        }
        Ok(incoming)
    }

    fn gather(&mut self) -> io::Result<Option<Incoming>> {
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
