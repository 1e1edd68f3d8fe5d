//! Sessions: a protocol's framing and login state, apart from any socket.
//! A session takes the unhandled input bytes, finds one request in them,
//! decodes it (`memcrab_proto`), runs it (`crate::cmd`) and encodes the
//! reply into an [`Output`]; it tells the transport how many bytes it
//! used, how many more to swallow, and whether to hang up. It never reads
//! or writes a socket, so the same step runs over a TCP stream, a unix
//! socket, and (in the issues to come) a UDP datagram, a TLS stream and
//! an io_uring loop.
//!
//! ```text
//!  conn (transport) ── avail bytes ──► Session::step ──► Step
//!                                        │ first byte picks (-B auto)
//!                                        ├─► text::Text     line, data block, -Y token
//!                                        └─► binary::Binary header, extras+key, value, SASL
//!                                              decode ─► cmd::* ─► encode ─► Output
//!
//!  a store whose value is longer than the transport's pooled buffer and
//!  has not all arrived ──► Step::Receive: its first chunk taken now
//!  (cmd::store::receive), the transport reads the value into it (the next
//!  chunks taken as it goes), then Session::finish ──► the store run and
//!  answered as if it had been whole; or, no memory for a chunk on the
//!  way, Session::fail ──► memcached's "Out of memory during read", the
//!  rest swallowed
//! ```

pub mod binary;
pub mod meta;
pub mod text;

use memcrab_proto::binary::REQ_MAGIC;

use crate::cmd::{Ctx, Proto};
use crate::config::Protocol;
use crate::latency::Cmd;
use crate::output::Output;
use crate::shared::Shared;
use crate::stats::WorkerStats;

/// What a session borrows for a step: the shared state and this worker's
/// counters (for its commands), the connection's output, and its
/// descriptor (only for `-vv` logs).
pub struct Cx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    pub out: &'a mut Output,
    pub fd: i32,
    /// A value that has not all arrived may be received into its item
    /// (`Step::Receive`): a stream may, a datagram may not.
    pub receive: bool,
    /// Where a `lru_crawler metadump` puts its listing, or `watch` its
    /// watcher, for the transport to stream (`None` over UDP, which has no
    /// stream to put it on).
    pub takeover: Option<&'a mut Option<Takeover>>,
    /// The worker's waker (a watcher wakes it when lines come).
    pub waker: Option<&'a std::sync::Arc<mio::Waker>>,
    /// Set by `quit`: the close that follows is a normal one.
    pub quit: bool,
    /// What the request just handled was, for its latency histogram (the
    /// session names it; `Other` unless it does).
    pub cmd: Cmd,
}

/// What takes a connection over after its command: it handles no more
/// requests until this ends (memcached's `conn_watch`).
pub enum Takeover {
    Listing(Box<crate::cmd::crawler::Listing>),
    Watch(crate::watch::WatchGuard),
}

impl<'a> Cx<'a> {
    /// The command layer's context for a request of `proto`.
    pub fn cmd(&self, proto: Proto) -> Ctx<'a> {
        Ctx {
            sh: self.sh,
            stats: self.stats,
            proto,
            receive: self.receive,
            fd: self.fd,
        }
    }
}

/// A request whose data block is longer than this and has not all
/// arrived has its value received into item memory as it comes (the
/// transport's pooled read buffer holds anything shorter).
pub const RECEIVE_PAST: usize = 16 * 1024;

/// What a step did with the input.
#[derive(Debug)]
pub enum Step {
    /// No whole request yet: this many bytes in all are needed before the
    /// next step can run (0: unknown, read what comes).
    Need(usize),
    /// One request handled: `used` bytes consumed, `swallow` more to
    /// discard as they arrive (a refused value), `close`: hang up once the
    /// replies are sent.
    Done {
        used: usize,
        swallow: u64,
        close: bool,
    },
    /// A store's header (`used` bytes) was read and its item taken: the
    /// transport fills it with the next bytes it reads
    /// ([`Receiving::fill`]), then hands it to [`Session::finish`].
    Receive { used: usize, value: Box<Receiving> },
}

/// A store's value arriving into its item, and the header it came with
/// (read again when the value is whole: the session keeps no state
/// between requests).
#[derive(Debug)]
pub struct Receiving {
    data: memcrab_store::Incoming,
    head: Vec<u8>,
    /// No memory could be had for the next of its chunks: the store is
    /// refused ([`Session::fail`]) and the rest swallowed.
    failed: bool,
}

impl Receiving {
    fn new(data: memcrab_store::Incoming, head: &[u8]) -> Box<Receiving> {
        Box::new(Receiving {
            data,
            head: head.to_vec(),
            failed: false,
        })
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> usize {
        self.data.remaining()
    }

    /// Whether it ran out of memory on the way.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Copies what it still takes of `src`; how much it took (0 once it
    /// has failed).
    pub fn fill(&mut self, store: &memcrab_store::Store, src: &[u8]) -> usize {
        if self.failed {
            return 0;
        }
        match self.data.fill(store, src) {
            Some(k) => k,
            None => {
                self.failed = true;
                0
            }
        }
    }

    /// Where the next bytes go, to read into (empty once whole); `None`
    /// once out of memory.
    pub fn room(&mut self, store: &memcrab_store::Store) -> Option<&mut [u8]> {
        // Asked twice: the first takes the chunk if need be (or fails), the
        // second only finds it (a borrow returned from one arm of a match
        // could not be set aside in the other).
        if self.failed || self.data.room(store).is_none() {
            self.failed = true;
            return None;
        }
        self.data.room(store)
    }

    /// Counts `n` bytes read into [`room`](Self::room).
    pub fn advance(&mut self, n: usize) {
        self.data.advance(n)
    }
}

/// Where a text or meta store's data block stands.
pub(crate) enum Block<'a> {
    /// In the buffer: its value (`None`: the block did not end in
    /// `\r\n`) and the request's length, line and block.
    Here(Option<crate::cmd::store::Data<'a>>, usize),
    /// Not all here: wait for it, or receive it into its item.
    Step(Step),
    /// Refused before its value is read (`-I`, or no memory for it).
    Refused(crate::cmd::store::Refused),
}

/// A text or meta store whose line is `avail[..line_len]` and whose value
/// is `value_len` bytes: the rules every such store goes through before
/// it runs (`-I`, then the block in the buffer, waited for or received).
#[inline(always)]
pub(crate) fn text_block<'a>(
    c: &Ctx<'_>,
    op: &crate::cmd::store::StoreOp<'_>,
    avail: &'a [u8],
    line_len: usize,
    value_len: usize,
) -> Block<'a> {
    if let Err(why) = crate::cmd::store::admit(c, op, value_len) {
        return Block::Refused(why);
    }
    let total = line_len + value_len + 2;
    if avail.len() < total {
        return match await_block(c, op, avail, line_len, value_len, true) {
            Ok(step) => Block::Step(step),
            Err(why) => Block::Refused(why),
        };
    }
    let (value, end) = avail[line_len..total].split_at(value_len);
    let data = (end == b"\r\n").then_some(crate::cmd::store::Data::Bytes(value));
    Block::Here(data, total)
}

/// The step for a store whose data block (`block` bytes after a header of
/// `head_len`) has not all arrived in `avail`: wait for it while the
/// whole request fits the transport's buffer, else take its item and
/// receive it. `Err`: no memory for the item (the caller refuses the
/// store and swallows the block).
pub(crate) fn await_block(
    c: &Ctx<'_>,
    op: &crate::cmd::store::StoreOp<'_>,
    avail: &[u8],
    head_len: usize,
    value_len: usize,
    client_crlf: bool,
) -> Result<Step, crate::cmd::store::Refused> {
    let total = head_len + value_len + if client_crlf { 2 } else { 0 };
    if !c.receive || total <= RECEIVE_PAST {
        return Ok(Step::Need(total));
    }
    let data = crate::cmd::store::receive(c, op, value_len, client_crlf)?;
    Ok(Step::Receive {
        used: head_len,
        value: Receiving::new(data, &avail[..head_len]),
    })
}

impl Step {
    /// A request handled that used `used` bytes.
    pub fn used(used: usize) -> Step {
        Step::Done {
            used,
            swallow: 0,
            close: false,
        }
    }

    /// Hang up after what is queued is sent (the rest of the input is
    /// dropped).
    pub fn close(used: usize) -> Step {
        Step::Done {
            used,
            swallow: 0,
            close: true,
        }
    }
}

/// A connection's protocol: chosen by `-B`, or by the first byte under
/// `-B auto` (0x80 is binary).
#[derive(Debug, Default)]
pub enum Session {
    #[default]
    Undecided,
    Text(text::Text),
    Binary(binary::Binary),
}

impl Session {
    pub fn new() -> Self {
        Session::Undecided
    }

    /// A batch of steps begins (after a read).
    pub fn begin_batch(&mut self, cx: &mut Cx<'_>) {
        if let Session::Text(t) = self {
            t.begin_batch(cx);
        }
    }

    /// Takes one request from `avail` (non-empty) and runs it. Inlined
    /// into the transport's loop: a call per request cost about 20
    /// instructions of a pipelined get's ~2,100 (callgrind).
    #[inline(always)]
    pub fn step(&mut self, avail: &[u8], cx: &mut Cx<'_>) -> Step {
        match self {
            Session::Text(t) => t.step(avail, cx),
            Session::Binary(b) => b.step(avail, cx),
            Session::Undecided => self.choose(avail, cx),
        }
    }

    /// Runs the store whose value [`Step::Receive`] received (whole now):
    /// stores and answers it. The step uses no input.
    pub fn finish(&mut self, value: Receiving, cx: &mut Cx<'_>) -> Step {
        let Receiving { data, head, .. } = value;
        match self {
            Session::Text(_) => text::finish(&head, data, cx),
            Session::Binary(_) => binary::finish(&head, data, cx),
            Session::Undecided => Step::used(0),
        }
    }

    /// Answers a store whose value ran out of memory on its way
    /// ([`Receiving::failed`]) as memcached does (`SERVER_ERROR Out of
    /// memory during read`, binary status 0x82) and swallows the rest.
    pub fn fail(&mut self, value: Receiving, cx: &mut Cx<'_>) -> Step {
        let swallow = value.remaining() as u64;
        match self {
            Session::Text(_) => text::fail(&value.head, cx),
            Session::Binary(_) => binary::fail(&value.head, cx),
            Session::Undecided => {}
        }
        drop(value);
        Step::Done {
            used: 0,
            swallow,
            close: false,
        }
    }

    /// The first step: picks the protocol, then takes the request.
    #[cold]
    fn choose(&mut self, avail: &[u8], cx: &mut Cx<'_>) -> Step {
        let binary = match cx.sh.settings.protocol {
            Protocol::Binary => true,
            Protocol::Ascii => false,
            Protocol::Auto => {
                let b = avail.first() == Some(&REQ_MAGIC);
                if cx.sh.verbose() > 1 {
                    let name = if b { "binary" } else { "ascii" };
                    eprintln!("{}: Client using the {name} protocol", cx.fd);
                }
                b
            }
        };
        if binary {
            let mut b = binary::Binary::default();
            let step = b.step(avail, cx);
            *self = Session::Binary(b);
            step
        } else {
            let mut t = text::Text::default();
            t.begin_batch(cx);
            let step = t.step(avail, cx);
            *self = Session::Text(t);
            step
        }
    }
}

/// A session fed bytes as a connection feeds it, without a socket:
/// what a step leaves unused is kept for the next piece, what it says to
/// discard is swallowed, replies are flushed into a byte vector. The
/// session tests and the fuzz targets drive sessions with it.
#[derive(Default)]
pub struct Feeder {
    session: Session,
    out: Output,
    buf: Vec<u8>,
    pos: usize,
    swallow: u64,
    receiving: Option<Box<Receiving>>,
    takeover: Option<Takeover>,
}

impl Feeder {
    /// Adds `piece`, runs every request now complete and appends the
    /// replies to `sent`. False once the session closed the connection.
    pub fn push(
        &mut self,
        sh: &Shared,
        stats: &WorkerStats,
        piece: &[u8],
        sent: &mut Vec<u8>,
    ) -> bool {
        self.buf.extend_from_slice(piece);
        let open = loop {
            let k = self.swallow.min((self.buf.len() - self.pos) as u64);
            self.pos += k as usize;
            self.swallow -= k;
            if let Some(r) = &mut self.receiving {
                self.pos += r.fill(&sh.store, &self.buf[self.pos..]);
            }
            let whole = self
                .receiving
                .as_ref()
                .map(|r| r.remaining() == 0 || r.failed());
            if whole == Some(false) || (whole.is_none() && self.pos == self.buf.len()) {
                break true;
            }
            let mut cx = Cx {
                sh,
                stats,
                out: &mut self.out,
                fd: 0,
                receive: true,
                takeover: Some(&mut self.takeover),
                waker: None,
                quit: false,
                cmd: Cmd::Other,
            };
            let step = match self.receiving.take() {
                Some(r) if r.failed() => self.session.fail(*r, &mut cx),
                Some(r) => self.session.finish(*r, &mut cx),
                None => self.session.step(&self.buf[self.pos..], &mut cx),
            };
            // A listing goes out whole before the next request.
            if let Some(Takeover::Listing(mut l)) = self.takeover.take() {
                while !l.fill(sh, &mut self.out) {}
            }
            match step {
                Step::Need(_) => break true,
                Step::Receive { used, value } => {
                    self.pos += used;
                    self.receiving = Some(value);
                }
                Step::Done {
                    used,
                    swallow,
                    close,
                } => {
                    assert!(self.pos + used <= self.buf.len(), "used {used}");
                    self.pos += used;
                    self.swallow = swallow;
                    if close {
                        break false;
                    }
                }
            }
        };
        self.out
            .flush(sent)
            .expect("a Vec takes every byte written to it");
        open
    }
}

#[cfg(test)]
mod tests;
