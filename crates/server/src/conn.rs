//! One client connection, the transport's part: read buffer, `-R`
//! fairness, bytes to swallow, the output queue and the socket. What the
//! bytes mean is the session's business (`crate::session`); this file
//! names no command.
//!
//! ```text
//!  socket ─read─► rbuf[rpos..rend] ─► Session::step ─► Step
//!     (Need: read more; Done: advance, swallow, maybe close)
//!  Output (replies the session queued) ─writev─► socket
//! ```
//!
//! A request stays in the buffer until all of it has arrived (a line and
//! its data block, a header and its body), then is handled in place; nothing
//! is copied on the way but the value into the store. Input is not read
//! further while replies are waiting for the socket, so a client that does
//! not read cannot make the server buffer without bound.

use std::cell::Cell;
use std::io::{self, Read};
use std::sync::Arc;

use crate::output::{Output, Spare};
use crate::session::{self, Session, Step};
use crate::shared::{ConnInfo, ConnState, Shared};
use crate::stats::{Counter, WorkerStats};
use crate::stream::Stream;

/// Size of the pooled read buffers.
pub const READ_BUF: usize = 16 * 1024;
/// Unparsed input beyond this is not read until some of it is handled
/// (unless one command needs more: a data block or a long multiget).
pub const READ_LIMIT: usize = 64 * 1024;
/// Replies queued past this end the batch early so they can be sent.
const OUT_HIGH: usize = 1024 * 1024;

/// Whether queued replies must go out before the next command: past
/// `OUT_HIGH` bytes, once they are all committed (memcached writes a get's
/// answer before it reads on, but holds other replies, which a hang-up
/// drops), or once the uncommitted ones alone pass it (a bound on memory
/// whatever the client sends: about 2 × `OUT_HIGH` and one command's
/// replies at most).
fn must_send(out: &Output) -> bool {
    let held = out.uncommitted();
    out.pending() > OUT_HIGH && (held == 0 || held > OUT_HIGH)
}

/// Per-worker resources a connection borrows while it runs.
pub struct WorkerCx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    /// Free read buffers of `READ_BUF` bytes.
    pub pool: &'a mut Vec<Vec<u8>>,
    /// Free reply buffers (at most `KEEP_CAPACITY` bytes each).
    pub out_pool: &'a mut Vec<Spare>,
}

const POOL_MAX: usize = 256;
/// Unparsed bytes at most that an idle connection keeps in a buffer of
/// their own size, giving its pooled buffer back.
const KEEP_PARTIAL: usize = 2048;

/// What the worker does with the connection next.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// Wait for the socket.
    Wait,
    /// Run again soon: it stopped after `-R` requests with input left.
    Yield,
    Close,
}

enum Progress {
    /// All complete commands handled; `usize` more bytes are needed in
    /// the buffer for the next one (0: unknown, just read more).
    NeedMore(usize),
    Yield,
    Close,
}

pub struct Conn {
    pub stream: Stream,
    /// Whether the worker watches this socket for writability (only while
    /// replies wait for room in the socket).
    pub watching_writes: bool,
    pub info: Arc<ConnInfo>,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Incoming bytes still to discard (a refused data block).
    swallow: u64,
    out: Output,
    close_after_flush: bool,
    eof: bool,
    /// The protocol spoken, its framing and login state.
    session: Session,
    /// Set when a batch stopped at `-R`; memcached handles `-R`+1 commands
    /// in the first batch after a read and `-R` in each later one.
    yielded: bool,
    /// Whether the socket may hold unread bytes. A read that returns less
    /// than it asked for drained it; the next readable edge (the worker's
    /// poll is edge-triggered) says more came. Reading again before then
    /// would only return EAGAIN: a system call per request for nothing.
    may_read: bool,
    /// The peer shut its side (EPOLLRDHUP came): read on to end-of-file
    /// instead of stopping at a short read, so the close is seen at once.
    peer_closed: bool,
    /// Bytes of `Shared::budget` this connection holds: its read buffer
    /// past `READ_BUF`, or the room reserved for a value on its way.
    held: Cell<usize>,
    /// Bytes the request at the head of the buffer needs in all, as the
    /// session last said (0: not known). Kept across readiness events, so
    /// that a large request's buffer and reservation stay while it
    /// arrives.
    need: usize,
}

impl Conn {
    pub fn new(stream: Stream, info: Arc<ConnInfo>) -> Self {
        Conn {
            stream,
            watching_writes: false,
            info,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            swallow: 0,
            out: Output::default(),
            close_after_flush: false,
            eof: false,
            session: Session::new(),
            yielded: false,
            may_read: true,
            peer_closed: false,
            held: Cell::new(0),
            need: 0,
        }
    }

    /// Gives back what the connection holds of the input budget (it is
    /// closing).
    pub fn release(&mut self, sh: &Shared) {
        sh.budget.release(&self.held);
    }

    /// The poll reported the socket readable (`closed`: with read-hangup
    /// or an error, which a read to the end surfaces).
    pub fn readable(&mut self, closed: bool) {
        self.may_read = true;
        self.peer_closed |= closed;
    }

    /// Whether replies are waiting for room in the socket.
    pub fn blocked_on_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Handles readiness: sends what is queued, reads, executes, sends.
    pub fn run(&mut self, cx: &mut WorkerCx<'_>) -> Status {
        loop {
            if !self.flush(cx) {
                return Status::Close;
            }
            if !self.out.is_empty() {
                self.info.set_state(ConnState::Mwrite);
                // memcached resumes a blocked write in a new round that
                // counts -R (not -R + 1) commands.
                self.yielded = true;
                return Status::Wait;
            }
            if self.close_after_flush {
                return Status::Close;
            }
            let drained = match self.fill(cx) {
                Ok(d) => d,
                Err(_) => return Status::Close,
            };
            let progress = self.process(cx);
            self.need = match progress {
                Progress::NeedMore(n) => n,
                _ => 0,
            };
            if !self.flush(cx) {
                return Status::Close;
            }
            match progress {
                Progress::Close => {
                    self.close_after_flush = true;
                    if self.out.is_empty() {
                        return Status::Close;
                    }
                }
                Progress::Yield => {
                    cx.stats.incr(Counter::ConnYields);
                    if self.out.is_empty() {
                        return Status::Yield;
                    }
                    // The writable event resumes the connection.
                    return Status::Wait;
                }
                Progress::NeedMore(_) if !self.out.is_empty() => {
                    // Replies wait for room: a new round once it comes.
                    self.yielded = true;
                    return Status::Wait;
                }
                Progress::NeedMore(_) => {
                    if self.eof {
                        return Status::Close;
                    }
                    if drained && self.out.is_empty() {
                        self.idle(cx);
                        return Status::Wait;
                    }
                }
            }
        }
    }

    /// Reads until the socket is empty or `limit` unparsed bytes are held.
    /// Returns whether the socket was drained. A short read counts as
    /// draining it, unless the peer has shut its side.
    fn fill(&mut self, cx: &mut WorkerCx<'_>) -> io::Result<bool> {
        if !self.may_read {
            return Ok(true);
        }
        let need = self.need;
        let limit = need.max(READ_LIMIT);
        if self.rbuf.len() < READ_BUF {
            // None, or the few bytes an idle connection kept: a pooled
            // buffer again.
            let mut buf = cx.pool.pop().unwrap_or_else(|| vec![0; READ_BUF]);
            let kept = self.rend - self.rpos;
            buf[..kept].copy_from_slice(&self.rbuf[self.rpos..self.rend]);
            self.rbuf = buf;
            self.rpos = 0;
            self.rend = kept;
        }
        if self.rbuf.len() > READ_BUF && need <= READ_BUF && self.rend - self.rpos <= READ_BUF {
            // The large request is done: back to a pooled buffer, and the
            // budget back to the others.
            let mut small = cx.pool.pop().unwrap_or_else(|| vec![0; READ_BUF]);
            small[..self.rend - self.rpos].copy_from_slice(&self.rbuf[self.rpos..self.rend]);
            self.rend -= self.rpos;
            self.rpos = 0;
            self.rbuf = small;
            cx.sh.budget.release(&self.held);
        }
        if self.rpos > 0 {
            self.rbuf.copy_within(self.rpos..self.rend, 0);
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        loop {
            if self.rend >= limit {
                return Ok(false);
            }
            if self.rend == self.rbuf.len() {
                let grown = (self.rbuf.len() * 2)
                    .min(limit.max(READ_BUF))
                    .max(self.rend + 1);
                if !cx.sh.budget.hold(&self.held, grown - READ_BUF) {
                    if need > self.rend {
                        // The next request cannot be held: memcached
                        // closes a connection it has no read buffer for.
                        cx.stats.incr(Counter::ReadBufOom);
                        return Err(io::ErrorKind::OutOfMemory.into());
                    }
                    // Only read-ahead: handle what is here first.
                    return Ok(false);
                }
                self.rbuf.resize(grown, 0);
            }
            let cap = self.rbuf.len().min(limit);
            let asked = cap - self.rend;
            match self.stream.read(&mut self.rbuf[self.rend..cap]) {
                Ok(0) => {
                    self.eof = true;
                    self.may_read = false;
                    return Ok(true);
                }
                Ok(n) => {
                    self.rend += n;
                    cx.stats.add(Counter::BytesRead, n as u64);
                    if n < asked && !self.peer_closed {
                        self.may_read = false;
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.may_read = false;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends queued output; false when the connection broke.
    fn flush(&mut self, cx: &mut WorkerCx<'_>) -> bool {
        if self.out.is_empty() {
            return true;
        }
        match self.out.flush(&mut self.stream) {
            Ok(n) => {
                cx.stats.add(Counter::BytesWritten, n as u64);
                true
            }
            Err(_) => false,
        }
    }

    /// Gives the read buffer back to the pool when nothing is buffered, so
    /// that an idle connection holds no buffers.
    fn idle(&mut self, cx: &mut WorkerCx<'_>) {
        self.info.set_state(ConnState::Waiting);
        if self.rpos == self.rend && !self.rbuf.is_empty() {
            let buf = std::mem::take(&mut self.rbuf);
            if buf.len() == READ_BUF && cx.pool.len() < POOL_MAX {
                cx.pool.push(buf);
            }
            self.rpos = 0;
            self.rend = 0;
            cx.sh.budget.release(&self.held);
        } else if self.rbuf.len() == READ_BUF && self.rend - self.rpos <= KEEP_PARTIAL {
            // A connection waiting for the rest of a short request (a
            // slow client, or one that stalls on purpose) keeps only its
            // bytes, not a whole buffer.
            let kept = self.rbuf[self.rpos..self.rend].to_vec();
            let buf = std::mem::replace(&mut self.rbuf, kept);
            if cx.pool.len() < POOL_MAX {
                cx.pool.push(buf);
            }
            self.rend -= self.rpos;
            self.rpos = 0;
        }
        if let Some(spare) = self.out.release() {
            if cx.out_pool.len() < POOL_MAX {
                cx.out_pool.push(spare);
            }
        }
    }

    /// Hands complete requests in the buffer to the session, at most
    /// `-R` of them, swallowing what a refused request left to discard.
    fn process(&mut self, cx: &mut WorkerCx<'_>) -> Progress {
        let sh = cx.sh;
        let max_reqs = sh.settings.reqs_per_event + usize::from(!self.yielded);
        let now = sh.store.clock().now();
        if self.out.released() {
            self.out.adopt(cx.out_pool.pop());
        }
        let mut scx = session::Cx {
            sh,
            stats: cx.stats,
            out: &mut self.out,
            fd: self.info.fd,
            held: Some(&self.held),
        };
        self.session.begin_batch(&mut scx);
        let mut handled = 0;
        loop {
            if self.swallow > 0 {
                let k = self.swallow.min((self.rend - self.rpos) as u64);
                self.rpos += k as usize;
                self.swallow -= k;
                if self.swallow > 0 {
                    self.info.set_state(ConnState::Swallow);
                    return Progress::NeedMore(0);
                }
            }
            let avail = &self.rbuf[self.rpos..self.rend];
            if avail.is_empty() {
                self.yielded = false;
                return Progress::NeedMore(0);
            }
            if handled >= max_reqs || must_send(scx.out) {
                self.yielded = true;
                return Progress::Yield;
            }
            self.info.set_state(ConnState::ParseCmd);
            match self.session.step(avail, &mut scx) {
                Step::Need(n) => {
                    if n > 0 {
                        self.info.set_state(ConnState::Nread);
                    }
                    return Progress::NeedMore(n);
                }
                Step::Done {
                    used,
                    swallow,
                    close,
                } => {
                    self.info.touch(now);
                    self.rpos += used;
                    self.swallow = swallow;
                    if close {
                        return Progress::Close;
                    }
                }
            }
            handled += 1;
        }
    }
}
