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
//! is copied on the way but the value into the store. A store longer than
//! the buffer has its item's first chunk taken when its header is read,
//! and its value is read from the socket straight into the item's chunks
//! (`Step::Receive`), each taken as the bytes reach it, as memcached reads
//! it: a value in flight is item memory, bounded by `-m`, freed if the
//! client goes. Input is not read further while replies are
//! waiting for the socket, so a client that does not read cannot make the
//! server buffer without bound.

use std::cell::Cell;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::Instant;

use crate::latency::Cmd;
use crate::output::{Output, Spare, KEEP_CAPACITY};
use crate::session::{self, Receiving, Session, Step, Takeover};
use crate::shared::{ConnInfo, ConnState, Shared};
use crate::stats::{Counter, WorkerStats};
use crate::stream::Stream;

/// Size of the pooled read buffers: a request longer than this is a
/// store whose value is received into its item.
pub const READ_BUF: usize = session::RECEIVE_PAST;
/// Unparsed input beyond this is not read until some of it is handled
/// (unless one command needs more: a data block or a long multiget). As
/// memcached, no read-ahead past the pooled buffer: with 64 KB, 1,000
/// clients pipelining requests they never read replies to took 64 MB
/// more (the whole budget) for input the server could not act on yet.
pub const READ_LIMIT: usize = READ_BUF;
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

/// Charges the connection budget for a reply buffer grown past its
/// pooled size (replies are copied out of item memory: a client that does
/// not read could otherwise make the server hold up to `OUT_HIGH` for
/// every connection). False when the budget has no room: the connection
/// then sends before it handles more, as fast as its client reads, and
/// its buffer shrinks back once sent. No reply is refused.
fn reply_room(sh: &Shared, out: &Output, held: &Cell<usize>) -> bool {
    let over = out.capacity().saturating_sub(KEEP_CAPACITY);
    over == 0 || sh.budget.hold(held, over)
}

/// Per-worker resources a connection borrows while it runs.
pub struct WorkerCx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    /// Free read buffers of `READ_BUF` bytes.
    pub pool: &'a mut Vec<Vec<u8>>,
    /// Free reply buffers (at most `KEEP_CAPACITY` bytes each).
    pub out_pool: &'a mut Vec<Spare>,
    /// Free `Io`s (no buffers in them), boxed as connections hold them.
    #[allow(clippy::vec_box)]
    pub io_pool: &'a mut Vec<Box<Io>>,
    /// What the worker's connections hold: [`Io::holding`] summed.
    pub mem: &'a mut [i64; HOLDING],
    /// The worker's waker (for watchers).
    pub waker: &'a std::sync::Arc<mio::Waker>,
    /// Requests handled since the last read, by command, while latency
    /// is kept (`-o metrics_port`); `None` otherwise.
    pub pending: Option<&'a mut crate::latency::Pending>,
}

/// Why a connection closed, as memcached's `watch connevents` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Error,
    Normal,
    IdleTimeout,
    Shutdown,
}

impl CloseReason {
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::Error => "error",
            CloseReason::Normal => "normal",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// How many figures [`Io::holding`] gives.
pub const HOLDING: usize = 5;

/// The response objects a connection may hold under `-o
/// read_buf_mem_limit`, as memcached's per-thread cache would lend them:
/// of the worker's `bufs` buffers, this connection reads into one, and
/// the other connections' response objects are taken. Their read buffers
/// are not counted (memcached's are, from the same cache): memcrab bounds
/// those with its byte budget, which slows the connection that holds them
/// rather than refusing the others.
fn resp_cap(bufs: u32, mem: &[i64; HOLDING], mine: &[i64; HOLDING]) -> u32 {
    let per = i64::from(crate::output::RESPS_PER_BUFFER);
    let other_resps = (mem[4] - mine[4]).max(0);
    let free = (i64::from(bufs) - 1).max(0) * per - other_resps;
    free.clamp(0, i64::from(u32::MAX)) as u32
}

pub const POOL_MAX: usize = 256;
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
    /// Stopped at `-R` requests (memcached's `conn_yields`).
    Yield,
    /// Stopped to send the replies queued first: there are many, or the
    /// connection budget has no room for more.
    Send,
    Close,
}

pub struct Conn {
    pub stream: Stream,
    pub info: Arc<ConnInfo>,
    /// Buffers and queues while the connection has something in flight;
    /// none while it is idle, which then costs this struct, its
    /// `ConnInfo` and a slot in the registry.
    io: Option<Box<Io>>,
    /// The protocol spoken, its framing and login state.
    session: Session,
    /// Whether the worker watches this socket for writability (only while
    /// replies wait for room in the socket).
    pub watching_writes: bool,
    close_after_flush: bool,
    eof: bool,
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
    /// Why it closes, if it does (the end of the stream or `quit` is a
    /// normal close, anything else an error, as memcached counts).
    pub close_reason: CloseReason,
}

/// The most a connection sends in one turn: one owed megabytes of replies
/// (a slow reader's multigets) sends this much, then the worker serves
/// the other ready connections before it sends more, so that they do not
/// wait behind its copying.
pub const WRITE_TURN: usize = 512 * 1024;

/// The most of a value a connection reads in one turn; then the worker
/// serves the other ready connections before it reads more.
const READ_TURN: usize = 1024 * 1024;

/// What a busy connection holds; back to its worker's pool when the
/// connection goes idle with nothing buffered, queued or reserved.
#[derive(Default)]
pub struct Io {
    /// The last send stopped because the socket was full (not at
    /// `WRITE_TURN`): the writable edge resumes the connection.
    out_full: bool,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Incoming bytes still to discard (a refused data block).
    swallow: u64,
    /// A store's value being read into its item.
    receiving: Option<Box<Receiving>>,
    out: Output,
    /// Bytes of `Shared::budget` this connection holds: its read buffer
    /// past `READ_BUF` (a long multiget line).
    held: Cell<usize>,
    /// Bytes the request at the head of the buffer needs in all, as the
    /// session last said (0: not known). Kept across readiness events, so
    /// that a large request's buffer and reservation stay while it
    /// arrives.
    need: usize,
    /// Bytes of `Shared::budget` held for replies past `KEEP_CAPACITY`.
    out_held: Cell<usize>,
    /// A metadump being streamed or a `watch`: the connection handles no
    /// request while it lasts (memcached's `conn_watch`).
    takeover: Option<Takeover>,
}

impl Io {
    /// With replies still queued: wait for the writable edge when the
    /// socket is full, else come back after the other ready connections
    /// (the turn's `WRITE_TURN` ran out).
    fn waiting(&self) -> Status {
        if self.out_full {
            Status::Wait
        } else {
            Status::Yield
        }
    }

    /// Read buffers, their bytes, reply buffers and their bytes, as the
    /// worker's gauges count them (a short partial request an idle
    /// connection keeps is not a buffer), and response objects held.
    fn holding(&self) -> [i64; HOLDING] {
        let rbuf = if self.rbuf.len() >= READ_BUF {
            self.rbuf.len()
        } else {
            0
        };
        [
            i64::from(rbuf > 0),
            rbuf as i64,
            i64::from(!self.out.released()),
            self.out.capacity() as i64,
            i64::from(self.out.resps()),
        ]
    }

    /// Holds nothing a later batch needs.
    fn is_clear(&self) -> bool {
        self.rbuf.is_empty()
            && self.swallow == 0
            && self.receiving.is_none()
            && self.out.is_empty()
            && self.out.released()
            && self.held.get() == 0
            && self.out_held.get() == 0
            && self.need == 0
            && self.takeover.is_none()
    }
}

impl Conn {
    pub fn new(stream: Stream, info: Arc<ConnInfo>) -> Self {
        Conn {
            stream,
            info,
            io: None,
            session: Session::new(),
            watching_writes: false,
            close_after_flush: false,
            eof: false,
            yielded: false,
            may_read: true,
            peer_closed: false,
            close_reason: CloseReason::Error,
        }
    }

    /// What it holds, as [`Io::holding`] counts it.
    pub fn holding(&self) -> [i64; HOLDING] {
        self.io.as_ref().map_or([0; HOLDING], |io| io.holding())
    }

    /// Gives back what the connection holds of the input budget (it is
    /// closing).
    pub fn release(&mut self, sh: &Shared) {
        if let Some(io) = &self.io {
            sh.budget.release(&io.held);
            sh.budget.release(&io.out_held);
        }
    }

    /// The poll reported the socket readable (`closed`: with read-hangup
    /// or an error, which a read to the end surfaces).
    pub fn readable(&mut self, closed: bool) {
        self.may_read = true;
        self.peer_closed |= closed;
    }

    /// Whether it is a watcher (`watch`).
    pub fn is_watching(&self) -> bool {
        matches!(
            self.io.as_ref().and_then(|io| io.takeover.as_ref()),
            Some(Takeover::Watch(_))
        )
    }

    /// Reads and drops what a watcher's client sends; false at its end
    /// (or an error).
    fn drain_input(&mut self) -> bool {
        let mut sink = [0u8; 1024];
        while self.may_read {
            match self.stream.read(&mut sink) {
                Ok(0) => {
                    self.close_reason = CloseReason::Normal;
                    return false;
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.may_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Whether replies are waiting for room in the socket.
    pub fn blocked_on_write(&self) -> bool {
        self.io
            .as_ref()
            .is_some_and(|io| self.unsent(io) && io.out_full)
    }

    /// Replies queued, or taken by the stream but not yet in the socket
    /// (TLS records).
    fn unsent(&self, io: &Io) -> bool {
        !io.out.is_empty() || self.stream.has_pending()
    }

    /// Handles readiness: sends what is queued, reads, executes, sends.
    #[inline(always)]
    pub fn run(&mut self, cx: &mut WorkerCx<'_>) -> Status {
        let mut io = self
            .io
            .take()
            .unwrap_or_else(|| cx.io_pool.pop().unwrap_or_default());
        let before = io.holding();
        if let Some(bufs) = cx.sh.resp_buffers {
            io.out.set_resp_cap(Some(resp_cap(bufs, cx.mem, &before)));
        }
        let status = self.run_io(&mut io, cx);
        for (m, (a, b)) in cx.mem.iter_mut().zip(io.holding().iter().zip(before)) {
            *m += a - b;
        }
        if status != Status::Close && io.is_clear() && !self.stream.has_pending() {
            if cx.io_pool.len() < POOL_MAX {
                cx.io_pool.push(io);
            }
        } else {
            self.io = Some(io);
        }
        status
    }

    fn run_io(&mut self, io: &mut Io, cx: &mut WorkerCx<'_>) -> Status {
        loop {
            if !self.flush(io, cx) {
                return Status::Close;
            }
            if self.unsent(io) {
                self.info.set_state(ConnState::Mwrite);
                // memcached resumes a blocked write in a new round that
                // counts -R (not -R + 1) commands.
                self.yielded = true;
                return Self::wait_to_send(io, cx);
            }
            if self.close_after_flush {
                return Status::Close;
            }
            match &mut io.takeover {
                None => {}
                Some(Takeover::Listing(l)) => {
                    // The next piece of the listing, once the last one is out.
                    if io.out.released() {
                        io.out.adopt(cx.out_pool.pop());
                    }
                    if l.fill(cx.sh, &mut io.out) {
                        io.takeover = None;
                    }
                    continue;
                }
                Some(Takeover::Watch(w)) => {
                    // A watcher's input is read and dropped (memcached reads
                    // none); its end closes the watcher.
                    if !self.drain_input() {
                        return Status::Close;
                    }
                    if io.out.released() {
                        io.out.adopt(cx.out_pool.pop());
                    }
                    if w.take(WRITE_TURN, |b| io.out.bytes(b)) == 0 {
                        self.info.set_state(ConnState::Watch);
                        return Status::Wait;
                    }
                    continue;
                }
            }
            let read = if io.receiving.is_some() {
                self.receive(io, cx)
            } else {
                self.fill(io, cx)
            };
            let drained = match read {
                Ok(d) => d,
                Err(_) => return Status::Close,
            };
            // A request arrives with the read that completes it.
            let arrived = cx.pending.is_some().then(Instant::now);
            let progress = self.process(io, cx);
            io.need = match progress {
                Progress::NeedMore(n) => n,
                _ => 0,
            };
            if !self.flush(io, cx) {
                return Status::Close;
            }
            if let (Some(t0), Some(p)) = (arrived, cx.pending.as_deref_mut()) {
                if !p.is_empty() {
                    cx.stats.lat.record(p, t0.elapsed());
                }
            }
            match progress {
                Progress::Close => {
                    self.close_after_flush = true;
                    if !self.unsent(io) {
                        return Status::Close;
                    }
                }
                Progress::Yield | Progress::Send => {
                    if matches!(progress, Progress::Yield) {
                        cx.stats.incr(Counter::ConnYields);
                    }
                    if !self.unsent(io) {
                        return Status::Yield;
                    }
                    // The writable event resumes the connection.
                    return Self::wait_to_send(io, cx);
                }
                Progress::NeedMore(_) if self.unsent(io) => {
                    // Replies wait for room: a new round once it comes.
                    self.yielded = true;
                    return Self::wait_to_send(io, cx);
                }
                Progress::NeedMore(_) => {
                    if self.eof {
                        return Status::Close;
                    }
                    if drained && !self.unsent(io) {
                        self.idle(io, cx);
                        return Status::Wait;
                    }
                    if !drained && io.receiving.is_some() {
                        // The value's turn is up: the others go first.
                        return Status::Yield;
                    }
                }
            }
        }
    }

    /// Reads until the socket is empty or `limit` unparsed bytes are held.
    /// Returns whether the socket was drained. A short read counts as
    /// draining it, unless the peer has shut its side.
    fn fill(&mut self, io: &mut Io, cx: &mut WorkerCx<'_>) -> io::Result<bool> {
        if !self.may_read {
            return Ok(true);
        }
        let need = io.need;
        let limit = need.max(READ_LIMIT);
        if io.rbuf.len() < READ_BUF {
            // None, or the few bytes an idle connection kept: a pooled
            // buffer again.
            let mut buf = cx.pool.pop().unwrap_or_else(|| vec![0; READ_BUF]);
            let kept = io.rend - io.rpos;
            buf[..kept].copy_from_slice(&io.rbuf[io.rpos..io.rend]);
            io.rbuf = buf;
            io.rpos = 0;
            io.rend = kept;
        }
        if io.rbuf.len() > READ_BUF && need <= READ_BUF && io.rend - io.rpos <= READ_BUF {
            // The large request is done: back to a pooled buffer, and the
            // budget back to the others.
            let mut small = cx.pool.pop().unwrap_or_else(|| vec![0; READ_BUF]);
            small[..io.rend - io.rpos].copy_from_slice(&io.rbuf[io.rpos..io.rend]);
            io.rend -= io.rpos;
            io.rpos = 0;
            io.rbuf = small;
            cx.sh.budget.release(&io.held);
        }
        if io.rpos > 0 {
            io.rbuf.copy_within(io.rpos..io.rend, 0);
            io.rend -= io.rpos;
            io.rpos = 0;
        }
        self.stream.lend(cx.pool);
        loop {
            if io.rend >= limit {
                return Ok(false);
            }
            if io.rend == io.rbuf.len() {
                let grown = (io.rbuf.len() * 2)
                    .min(limit.max(READ_BUF))
                    .max(io.rend + 1);
                if !cx.sh.budget.hold(&io.held, grown - READ_BUF) {
                    if need > io.rend {
                        // The next request cannot be held: memcached
                        // closes a connection it has no read buffer for.
                        cx.stats.incr(Counter::ReadBufOom);
                        return Err(io::ErrorKind::OutOfMemory.into());
                    }
                    // Only read-ahead: handle what is here first.
                    return Ok(false);
                }
                io.rbuf.resize(grown, 0);
            }
            let cap = io.rbuf.len().min(limit);
            match self.read_into(&mut io.rbuf[io.rend..cap], cx.stats)? {
                Some(n) => io.rend += n,
                None => return Ok(true),
            }
            if !self.may_read {
                return Ok(true);
            }
        }
    }

    /// One read from the socket into `buf`: the bytes read, or `None`
    /// when it would block or the stream ended. Either way, and after a
    /// short read, `may_read` says whether the socket may hold more (the
    /// edge-triggered poll says when more comes).
    #[inline(always)]
    fn read_into(&mut self, buf: &mut [u8], stats: &WorkerStats) -> io::Result<Option<usize>> {
        let asked = buf.len();
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.eof = true;
                    self.may_read = false;
                    self.close_reason = CloseReason::Normal;
                    return Ok(None);
                }
                Ok(n) => {
                    stats.add(Counter::BytesRead, n as u64);
                    if n < asked && !self.peer_closed {
                        self.may_read = false;
                    }
                    return Ok(Some(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.may_read = false;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A value arriving: what the buffer holds is the next of it. False
    /// while more is to come (out of the request path: cold).
    #[cold]
    #[inline(never)]
    fn take_value_bytes(
        info: &ConnInfo,
        r: &mut Receiving,
        rpos: &mut usize,
        buf: &[u8],
        sh: &Shared,
    ) -> bool {
        *rpos += r.fill(&sh.store, &buf[*rpos..]);
        if r.remaining() > 0 && !r.failed() {
            info.set_state(ConnState::Nread);
            return false;
        }
        true
    }

    /// A received value is whole (or ran out of memory): the session
    /// stores and answers it.
    #[cold]
    #[inline(never)]
    fn value_done(session: &mut Session, r: Receiving, scx: &mut session::Cx<'_>) -> Step {
        if r.failed() {
            session.fail(r, scx)
        } else {
            session.finish(r, scx)
        }
    }

    /// Reads the value being received straight into its item, until it is
    /// whole, the socket is drained or `READ_TURN` is read. Returns whether
    /// the socket was drained (as [`fill`](Self::fill)).
    #[cold]
    #[inline(never)]
    fn receive(&mut self, io: &mut Io, cx: &mut WorkerCx<'_>) -> io::Result<bool> {
        let Some(r) = io.receiving.as_mut() else {
            return Ok(true);
        };
        if !self.may_read {
            return Ok(true);
        }
        self.stream.lend(cx.pool);
        let mut turn = 0;
        loop {
            // Out of memory for the next chunk: `process` answers it.
            let Some(room) = r.room(&cx.sh.store) else {
                return Ok(false);
            };
            if room.is_empty() || turn >= READ_TURN {
                return Ok(false);
            }
            match self.read_into(room, cx.stats)? {
                Some(n) => {
                    r.advance(n);
                    turn += n;
                }
                None => return Ok(true),
            }
            if !self.may_read {
                return Ok(true);
            }
        }
    }

    /// Sends queued output; false when the connection broke.
    fn flush(&mut self, io: &mut Io, cx: &mut WorkerCx<'_>) -> bool {
        if !io.out.is_empty() {
            match io.out.flush_some(&mut self.stream, WRITE_TURN) {
                Ok((n, full)) => {
                    io.out_full = full;
                    cx.stats.add(Counter::BytesWritten, n as u64);
                    if io.out.is_empty() {
                        // All sent: the buffer is back to its pooled size.
                        cx.sh.budget.release(&io.out_held);
                    }
                }
                Err(_) => return false,
            }
        }
        if io.out.is_empty() && self.stream.has_pending() {
            // TLS records the last write left: they go before anything
            // else, and the writable edge brings the connection back.
            match self.stream.send_pending() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.out_full = true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Gives the read buffer back to the pool when nothing is buffered, so
    /// that an idle connection holds no buffers.
    fn idle(&mut self, io: &mut Io, cx: &mut WorkerCx<'_>) {
        self.info.set_waiting();
        self.stream.release(cx.pool);
        if io.rpos == io.rend && !io.rbuf.is_empty() {
            Self::release_read_buf(io, cx);
        } else if io.rbuf.len() == READ_BUF && io.rend - io.rpos <= KEEP_PARTIAL {
            // A connection waiting for the rest of a short request (a
            // slow client, or one that stalls on purpose) keeps only its
            // bytes, not a whole buffer.
            let kept = io.rbuf[io.rpos..io.rend].to_vec();
            let buf = std::mem::replace(&mut io.rbuf, kept);
            if cx.pool.len() < POOL_MAX {
                cx.pool.push(buf);
            }
            io.rend -= io.rpos;
            io.rpos = 0;
        }
        if let Some(spare) = io.out.release() {
            if cx.out_pool.len() < POOL_MAX {
                cx.out_pool.push(spare);
            }
        }
    }

    /// Gives back a read buffer that holds nothing unread.
    fn release_read_buf(io: &mut Io, cx: &mut WorkerCx<'_>) {
        if io.rpos == io.rend && !io.rbuf.is_empty() {
            let buf = std::mem::take(&mut io.rbuf);
            if buf.len() == READ_BUF && cx.pool.len() < POOL_MAX {
                cx.pool.push(buf);
            }
            io.rpos = 0;
            io.rend = 0;
            cx.sh.budget.release(&io.held);
        }
    }

    /// With replies still queued, the connection waits for room in the
    /// socket (or, when its turn's `WRITE_TURN` ran out, for its next
    /// turn) without a read buffer that holds nothing: many slow readers
    /// then cost their replies, not 16 KB each more.
    fn wait_to_send(io: &mut Io, cx: &mut WorkerCx<'_>) -> Status {
        Self::release_read_buf(io, cx);
        io.waiting()
    }

    /// Hands complete requests in the buffer to the session, at most
    /// `-R` of them, swallowing what a refused request left to discard.
    fn process(&mut self, io: &mut Io, cx: &mut WorkerCx<'_>) -> Progress {
        let sh = cx.sh;
        let max_reqs = sh.settings.reqs_per_event + usize::from(!self.yielded);
        let now = sh.store.clock().now();
        if io.out.released() {
            io.out.adopt(cx.out_pool.pop());
        }
        let mut scx = session::Cx {
            sh,
            stats: cx.stats,
            out: &mut io.out,
            fd: self.info.fd,
            receive: true,
            takeover: Some(&mut io.takeover),
            waker: Some(cx.waker),
            quit: false,
            cmd: Cmd::Other,
        };
        self.session.begin_batch(&mut scx);
        let mut handled = 0;
        loop {
            if io.swallow > 0 {
                let k = io.swallow.min((io.rend - io.rpos) as u64);
                io.rpos += k as usize;
                io.swallow -= k;
                if io.swallow > 0 {
                    self.info.set_state(ConnState::Swallow);
                    return Progress::NeedMore(0);
                }
            }
            if let Some(r) = &mut io.receiving {
                if !Self::take_value_bytes(&self.info, r, &mut io.rpos, &io.rbuf[..io.rend], sh) {
                    return Progress::NeedMore(0);
                }
            }
            let avail = &io.rbuf[io.rpos..io.rend];
            if avail.is_empty() && io.receiving.is_none() {
                if handled >= max_reqs {
                    // memcached counts a yield once its -R requests are
                    // done, before it looks for more input (6 pipelined
                    // sets under -R 1: 5 yields).
                    cx.stats.incr(Counter::ConnYields);
                }
                self.yielded = false;
                return Progress::NeedMore(0);
            }
            if handled >= max_reqs {
                self.yielded = true;
                return Progress::Yield;
            }
            if must_send(scx.out) || !reply_room(sh, scx.out, &io.out_held) {
                self.yielded = true;
                return Progress::Send;
            }
            self.info.set_state(ConnState::ParseCmd);
            if !scx.out.resp_start() {
                // memcached hangs up on a client it has no response object
                // for, without the replies it had not written.
                cx.stats.incr(Counter::ResponseObjOom);
                scx.out.discard_unsent();
                return Progress::Close;
            }
            scx.cmd = Cmd::Other;
            let step = match io.receiving.take() {
                Some(r) => Self::value_done(&mut self.session, *r, &mut scx),
                None => self.session.step(avail, &mut scx),
            };
            match step {
                Step::Need(n) => {
                    scx.out.resp_unstart();
                    if n > 0 {
                        self.info.set_state(ConnState::Nread);
                    }
                    return Progress::NeedMore(n);
                }
                Step::Receive { used, value } => {
                    scx.out.resp_unstart();
                    io.rpos += used;
                    io.receiving = Some(value);
                    continue;
                }
                Step::Done {
                    used,
                    swallow,
                    close,
                } => {
                    self.info.touch(now);
                    if let Some(p) = cx.pending.as_deref_mut() {
                        p.add(scx.cmd);
                    }
                    io.rpos += used;
                    io.swallow = swallow;
                    if close {
                        if scx.quit {
                            self.close_reason = CloseReason::Normal;
                        }
                        return Progress::Close;
                    }
                    if scx.takeover.as_deref().is_some_and(Option::is_some) {
                        // A metadump streams before anything else runs.
                        self.yielded = true;
                        return Progress::Send;
                    }
                }
            }
            handled += 1;
        }
    }
}
