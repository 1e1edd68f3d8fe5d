//! One client connection: read buffer, command framing, output queue.
//!
//! ```text
//!  socket ─read─► rbuf[rpos..rend] ─find '\n'─► proto::text::parse
//!     ─► exec::{execute, store_head, store_data} ─► Output ─writev─► socket
//! ```
//!
//! A store command's line stays in the buffer until its whole data block
//! has arrived, then line and data are handled together; nothing is copied
//! on the way but the value into the store. Input is not read further
//! while replies are waiting for the socket, so a client that does not
//! read cannot make the server buffer without bound.

use std::io::{self, Read};
use std::sync::Arc;

use memcrab_proto::binary::REQ_MAGIC;
use memcrab_proto::text::{may_be_long_get, parse, trim_line, MAX_LINE_WITHOUT_NEWLINE};
use memcrab_proto::Request;

use crate::auth::{self, AsciiAuth};
use crate::binconn::{self, Session, Step};
use crate::config::Protocol;
use crate::exec::{self, Cx, Flow};
use crate::output::Output;
use crate::shared::{ConnInfo, ConnState, Shared};
use crate::stats::{Counter, WorkerStats};
use crate::stream::Stream;

/// Size of the pooled read buffers.
pub const READ_BUF: usize = 16 * 1024;
/// Unparsed input beyond this is not read until some of it is handled
/// (unless one command needs more: a data block or a long multiget).
const READ_LIMIT: usize = 64 * 1024;
/// The longest `get` line accepted without a newline; memcached grows its
/// buffer without limit here, memcrab closes the connection.
pub const MAX_GET_LINE: usize = 2 * 1024 * 1024;
/// Replies queued past this end the batch early so they can be sent.
const OUT_HIGH: usize = 1024 * 1024;

/// Per-worker resources a connection borrows while it runs.
pub struct WorkerCx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    /// Free read buffers of `READ_BUF` bytes.
    pub pool: &'a mut Vec<Vec<u8>>,
}

const POOL_MAX: usize = 256;

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
    seen_first_byte: bool,
    /// Speaks the binary protocol (decided by the first byte under `-B auto`).
    binary: bool,
    /// SASL login state (binary, `-S`).
    session: Session,
    /// Past its ASCII auth token (`-Y`).
    ascii_authed: bool,
    /// An auth reply is queued in this batch: memcached writes the next
    /// one over it (only the last is sent).
    auth_reply_queued: bool,
    /// Set when a batch stopped at `-R`; memcached handles `-R`+1 commands
    /// in the first batch after a read and `-R` in each later one.
    yielded: bool,
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
            seen_first_byte: false,
            binary: false,
            session: Session::default(),
            ascii_authed: false,
            auth_reply_queued: false,
            yielded: false,
        }
    }

    /// Whether replies are waiting for room in the socket.
    pub fn blocked_on_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Handles readiness: sends what is queued, reads, executes, sends.
    pub fn run(&mut self, cx: &mut WorkerCx<'_>) -> Status {
        let mut need = 0;
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
            let drained = match self.fill(cx, need.max(READ_LIMIT)) {
                Ok(d) => d,
                Err(_) => return Status::Close,
            };
            let progress = self.process(cx);
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
                Progress::NeedMore(n) => {
                    if self.eof {
                        return Status::Close;
                    }
                    if drained && self.out.is_empty() {
                        self.idle(cx);
                        return Status::Wait;
                    }
                    need = n;
                }
            }
        }
    }

    /// Reads until the socket is empty or `limit` unparsed bytes are held.
    /// Returns whether the socket was drained.
    fn fill(&mut self, cx: &mut WorkerCx<'_>, limit: usize) -> io::Result<bool> {
        if self.rbuf.is_empty() {
            self.rbuf = cx.pool.pop().unwrap_or_else(|| vec![0; READ_BUF]);
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
                let grown = (self.rbuf.len() * 2).min(limit.max(READ_BUF));
                self.rbuf.resize(grown.max(self.rend + 1), 0);
            }
            let cap = self.rbuf.len().min(limit);
            match self.stream.read(&mut self.rbuf[self.rend..cap]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.rend += n;
                    cx.stats.add(Counter::BytesRead, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
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
        }
        self.out.release();
    }

    /// Handles complete commands in the buffer, at most `-R` of them.
    fn process(&mut self, cx: &mut WorkerCx<'_>) -> Progress {
        let sh = cx.sh;
        let max_reqs = sh.settings.reqs_per_event + usize::from(!self.yielded);
        let now = sh.store.clock().now();
        let Conn {
            rbuf,
            rpos,
            rend,
            swallow,
            out,
            info,
            seen_first_byte,
            binary,
            session,
            ascii_authed,
            auth_reply_queued,
            yielded,
            ..
        } = self;
        let mut ecx = Cx {
            sh,
            stats: cx.stats,
            out,
            fd: info.fd,
        };
        let auth_file = sh.settings.auth_file.as_deref();
        if auth_file.is_some() && !*ascii_authed {
            ecx.out.commit();
            *auth_reply_queued = false;
        }
        let mut handled = 0;
        loop {
            if *swallow > 0 {
                let k = (*swallow).min((*rend - *rpos) as u64);
                *rpos += k as usize;
                *swallow -= k;
                if *swallow > 0 {
                    info.set_state(ConnState::Swallow);
                    return Progress::NeedMore(0);
                }
            }
            let avail = &rbuf[*rpos..*rend];
            if avail.is_empty() {
                *yielded = false;
                return Progress::NeedMore(0);
            }
            if handled >= max_reqs || ecx.out.pending() > OUT_HIGH {
                *yielded = true;
                return Progress::Yield;
            }
            if !*seen_first_byte {
                *seen_first_byte = true;
                *binary = match sh.settings.protocol {
                    Protocol::Binary => true,
                    Protocol::Ascii => false,
                    Protocol::Auto => {
                        let b = avail[0] == REQ_MAGIC;
                        if sh.verbose() > 1 {
                            let name = if b { "binary" } else { "ascii" };
                            eprintln!("{}: Client using the {name} protocol", info.fd);
                        }
                        b
                    }
                };
            }
            if *binary {
                info.touch(now);
                info.set_state(ConnState::ParseCmd);
                match binconn::step(avail, session, &mut ecx) {
                    Step::Need(n) => {
                        info.set_state(ConnState::Nread);
                        return Progress::NeedMore(n);
                    }
                    Step::Done {
                        used,
                        swallow: s,
                        close,
                    } => {
                        *rpos += used;
                        *swallow = s;
                        if close {
                            return Progress::Close;
                        }
                    }
                }
                handled += 1;
                continue;
            }
            if let (Some(users), false) = (auth_file, *ascii_authed) {
                let (used, reply) = match auth::ascii_token(avail) {
                    AsciiAuth::Need(n) => return Progress::NeedMore(n),
                    AsciiAuth::Close => return Progress::Close,
                    AsciiAuth::NotAuth { used } => (used, "CLIENT_ERROR unauthenticated"),
                    AsciiAuth::TooLong { used, swallow: s } => {
                        *swallow = s;
                        ecx.stats.incr(Counter::AuthCmds);
                        ecx.stats.incr(Counter::AuthErrors);
                        (used, "CLIENT_ERROR authentication failure")
                    }
                    AsciiAuth::Token { used, token } => match token {
                        Ok((user, pass)) => {
                            ecx.stats.incr(Counter::AuthCmds);
                            if users.check(user, pass) {
                                *ascii_authed = true;
                                (used, "STORED")
                            } else {
                                ecx.stats.incr(Counter::AuthErrors);
                                (used, "CLIENT_ERROR authentication failure")
                            }
                        }
                        Err(line) => (used, line),
                    },
                };
                if *auth_reply_queued {
                    ecx.out.discard_unsent();
                }
                *auth_reply_queued = !*ascii_authed;
                ecx.out.line(reply);
                if *ascii_authed {
                    ecx.out.commit();
                }
                *rpos += used;
                handled += 1;
                continue;
            }
            let Some(nl) = memchr::memchr(b'\n', avail) else {
                if avail.len() > MAX_LINE_WITHOUT_NEWLINE
                    && (!may_be_long_get(avail) || avail.len() > MAX_GET_LINE)
                {
                    // memcached drops the connection and its unsent replies.
                    ecx.out.discard_unsent();
                    return Progress::Close;
                }
                return Progress::NeedMore(if avail.len() > MAX_LINE_WITHOUT_NEWLINE {
                    MAX_GET_LINE + 1
                } else {
                    0
                });
            };
            info.touch(now);
            info.set_state(ConnState::ParseCmd);
            let line = trim_line(&avail[..nl]);
            if sh.verbose() > 1 {
                eprintln!("<{} {}", info.fd, String::from_utf8_lossy(line));
            }
            match parse(line) {
                Request::Store(head) => {
                    if let Some(n) = exec::store_head(&head, &mut ecx) {
                        *rpos += nl + 1;
                        *swallow = n;
                    } else {
                        let total = nl + 1 + head.data_len as usize + 2;
                        if avail.len() < total {
                            info.set_state(ConnState::Nread);
                            return Progress::NeedMore(total);
                        }
                        exec::store_data(&head, &avail[nl + 1..total], &mut ecx);
                        *rpos += total;
                    }
                }
                req => {
                    let flow = exec::execute(req, &mut ecx);
                    *rpos += nl + 1;
                    if flow == Flow::Close {
                        return Progress::Close;
                    }
                }
            }
            handled += 1;
        }
    }
}
