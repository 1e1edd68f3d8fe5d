//! The text protocol: a command line, and for store commands a data
//! block, taken from the input; decoded by `memcrab_proto::text`, run by
//! `crate::cmd`, answered in memcached 1.6's words.
//!
//! ```text
//!  avail ─► -Y login pending? ─► auth::ascii_token ─► STORED / CLIENT_ERROR
//!        ─► find '\n' (a line over 2048 bytes without one: only a get
//!           may grow, to 2 MB; else hang up) ─► trim_line ─► parse
//!        ─► Store: cmd::store::admit (-I: refused before the block is
//!                  read, the block swallowed) ─► wait for the block (or,
//!                  past the buffer, receive it into its item: finish)
//!                  ─► cmd::store::{store | bad_block} ─► reply line
//!        ─► Get:   per key cmd::get ─► VALUE line + data (copied or held)
//!        ─► the rest: cmd::* ─► one reply line
//! ```
//!
//! memcached writes a get's answer out before it reads on, and culls what
//! it has not written when a get meets a key over 250 bytes or it hangs up
//! on an HTTP request or an over-long line: [`Output::commit`] marks what
//! it would have written.

use memcrab_proto::meta::Kind as MetaKind;
use memcrab_proto::num::write_u64;
use memcrab_proto::text::{
    may_be_long_get, parse, parse_store_line, trim_line, BAD_EXPTIME, BAD_FORMAT,
    MAX_LINE_WITHOUT_NEWLINE,
};
use memcrab_proto::{Keys, Request, StoreCommand, StoreMode, KEY_MAX_LENGTH};
use memcrab_store::{DeleteOutcome, DeleteReq, DeltaOutcome, Found, ReassignError, StoreOutcome};

use super::{meta, Block, Cx, Step};
use crate::auth::{self, AsciiAuth};
use crate::cmd::{self, admin, arith, flush, stats, store, Ctx, Proto};
use crate::latency::Cmd;
use crate::output::Output;
use crate::stats::Counter;

/// The longest `get` line accepted without a newline; memcached grows its
/// buffer without limit here, memcrab closes the connection.
pub const MAX_GET_LINE: usize = 2 * 1024 * 1024;

/// A text connection's state: its `-Y` login.
#[derive(Debug, Default)]
pub struct Text {
    /// Past its ASCII auth token (`-Y`).
    authed: bool,
    /// An auth reply is queued in this batch: memcached writes the next
    /// one over it (only the last is sent).
    auth_reply_queued: bool,
}

/// Where memcached's `-vv` reply lines go: `>fd line` for each
/// single-line reply (`>fd NOREPLY line` when it is not sent), and a get's
/// `>fd sending key k` and `>fd END`; meta and stats listings are not
/// logged, as memcached logs only its single-line replies and gets.
#[derive(Clone, Copy)]
struct Vv(Option<i32>);

impl Vv {
    fn of(cx: &Cx<'_>) -> Vv {
        Vv((cx.sh.verbose() > 1).then_some(cx.fd))
    }

    #[cold]
    fn sending(self, key: &[u8]) {
        if let Some(fd) = self.0 {
            eprintln!(">{fd} sending key {}", String::from_utf8_lossy(key));
        }
    }

    #[inline]
    fn log(self, line: &str, noreply: bool) {
        if self.0.is_some() {
            self.log_line(line, noreply);
        }
    }

    #[cold]
    fn log_line(self, line: &str, noreply: bool) {
        if let Some(fd) = self.0 {
            let skipped = if noreply { "NOREPLY " } else { "" };
            eprintln!(">{fd} {skipped}{line}");
        }
    }
}

fn reply(vv: Vv, out: &mut Output, line: &str, noreply: bool) {
    vv.log(line, noreply);
    if !noreply {
        out.line(line);
    }
}

/// A reply line that is always sent.
fn say(vv: Vv, out: &mut Output, line: &str) {
    reply(vv, out, line, false);
}

impl Text {
    /// A new batch of input: replies to the auth attempts of the last
    /// batch are written out by now.
    pub fn begin_batch(&mut self, cx: &mut Cx<'_>) {
        if cx.sh.settings.auth_file.is_some() && !self.authed {
            cx.out.commit();
            self.auth_reply_queued = false;
        }
    }

    /// Takes one command from `avail` and runs it.
    pub fn step(&mut self, avail: &[u8], cx: &mut Cx<'_>) -> Step {
        if let (false, Some(users)) = (self.authed, cx.sh.settings.auth_file.as_deref()) {
            return self.login(avail, users, cx);
        }
        let Some(nl) = memchr::memchr(b'\n', avail) else {
            if avail.len() > MAX_LINE_WITHOUT_NEWLINE
                && (!may_be_long_get(avail) || avail.len() > MAX_GET_LINE)
            {
                // memcached drops the connection and its unsent replies.
                cx.out.discard_unsent();
                return Step::close(avail.len());
            }
            return Step::Need(if avail.len() > MAX_LINE_WITHOUT_NEWLINE {
                MAX_GET_LINE + 1
            } else {
                0
            });
        };
        let line = trim_line(&avail[..nl]);
        if cx.sh.verbose() > 1 {
            eprintln!("<{} {}", cx.fd, String::from_utf8_lossy(line));
        }
        run(parse(line), avail, nl + 1, cx)
    }

    /// `-Y`: the first command must be a `set` whose data block is
    /// `user password`.
    fn login(&mut self, avail: &[u8], users: &auth::Users, cx: &mut Cx<'_>) -> Step {
        let mut swallow = 0;
        let (used, line) = match auth::ascii_token(avail) {
            AsciiAuth::Need(n) => return Step::Need(n),
            AsciiAuth::Close => return Step::close(avail.len()),
            AsciiAuth::NotAuth { used } => (used, "CLIENT_ERROR unauthenticated"),
            AsciiAuth::TooLong { used, swallow: s } => {
                swallow = s;
                cx.stats.incr(Counter::AuthCmds);
                cx.stats.incr(Counter::AuthErrors);
                (used, "CLIENT_ERROR authentication failure")
            }
            AsciiAuth::Token { used, token } => match token {
                Ok((user, pass)) => {
                    cx.stats.incr(Counter::AuthCmds);
                    if users.check(user, pass) {
                        self.authed = true;
                        (used, "STORED")
                    } else {
                        cx.stats.incr(Counter::AuthErrors);
                        (used, "CLIENT_ERROR authentication failure")
                    }
                }
                Err(line) => (used, line),
            },
        };
        if self.auth_reply_queued {
            cx.out.discard_unsent();
        }
        self.auth_reply_queued = !self.authed;
        cx.out.line(line);
        if self.authed {
            cx.out.commit();
        }
        Step::Done {
            used,
            swallow,
            close: false,
        }
    }
}

/// A store command whose line is `avail[..line_len]`: refused at once if
/// its value is too large (the block is swallowed), else run once its
/// data block has arrived (in the buffer, or received into its item).
fn store_command(
    head: &StoreCommand<'_>,
    avail: &[u8],
    line_len: usize,
    c: &Ctx<'_>,
    out: &mut Output,
    vv: Vv,
) -> Step {
    let op = store_op(head);
    match super::text_block(c, &op, avail, line_len, head.data_len as usize) {
        Block::Here(data, used) => {
            store_reply(head, &op, data, c, out, vv);
            Step::used(used)
        }
        Block::Step(step) => step,
        Block::Refused(why) => {
            reply(vv, out, refusal_line(why), head.noreply);
            Step::Done {
                used: line_len,
                swallow: u64::from(head.data_len) + 2,
                close: false,
            }
        }
    }
}

fn store_op<'a>(head: &StoreCommand<'a>) -> store::StoreOp<'a> {
    store::StoreOp {
        mode: head.mode,
        key: head.key,
        flags: head.flags,
        exptime: head.exptime,
        cas: (head.mode == StoreMode::Cas).then_some(head.cas_unique),
        ..store::StoreOp::default()
    }
}

/// Runs a store whose data block has arrived (`None`: it did not end in
/// `\r\n`) and answers it.
fn store_reply(
    head: &StoreCommand<'_>,
    op: &store::StoreOp<'_>,
    data: Option<store::Data<'_>>,
    c: &Ctx<'_>,
    out: &mut Output,
    vv: Vv,
) {
    let line = match data {
        None => {
            store::bad_block(c, op, head.data_len as usize);
            "CLIENT_ERROR bad data chunk"
        }
        Some(data) => match store::store(c, op, data).outcome {
            StoreOutcome::Stored => "STORED",
            StoreOutcome::NotStored => "NOT_STORED",
            StoreOutcome::Exists => "EXISTS",
            StoreOutcome::NotFound => "NOT_FOUND",
            StoreOutcome::TooLarge => "SERVER_ERROR object too large for cache",
            StoreOutcome::OutOfMemory => "SERVER_ERROR out of memory storing object",
        },
    };
    reply(vv, out, line, head.noreply);
}

/// memcached's answer to a store whose next chunk could not be had while
/// its value was read.
pub(crate) const OUT_OF_MEMORY_READING: &str = "SERVER_ERROR Out of memory during read";

/// Answers a text or meta store whose value ran out of memory on its way
/// (`head`: its command line): text keeps `noreply`, and meta `q` as
/// memcached keeps it here (an error it otherwise always sends).
pub(super) fn fail(head: &[u8], cx: &mut Cx<'_>) {
    let nl = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let vv = Vv::of(cx);
    match parse_store_line(trim_line(&head[..nl])) {
        Request::Store(h) => reply(vv, cx.out, OUT_OF_MEMORY_READING, h.noreply),
        Request::Meta { line, .. } => {
            let quiet = meta::quiet_set(line);
            reply(vv, cx.out, OUT_OF_MEMORY_READING, quiet)
        }
        _ => say(vv, cx.out, OUT_OF_MEMORY_READING),
    }
}

/// Runs and answers a text or meta store whose value was received into
/// its item (`Step::Receive`): `head` is its command line as it came.
pub(super) fn finish(head: &[u8], data: memcrab_store::Incoming, cx: &mut Cx<'_>) -> Step {
    let nl = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let line = trim_line(&head[..nl]);
    let c = cx.cmd(Proto::Text);
    let vv = Vv::of(cx);
    let whole = data.ends_in_crlf();
    match parse_store_line(line) {
        Request::Store(h) => {
            cx.cmd = Cmd::Set;
            let block = whole.then_some(store::Data::Received(data));
            store_reply(&h, &store_op(&h), block, &c, cx.out, vv);
        }
        Request::Meta {
            kind: MetaKind::Set,
            line,
        } => {
            cx.cmd = Cmd::Set;
            let mc = Ctx {
                proto: Proto::Meta,
                ..c
            };
            meta::finish(line, data, &mc, cx.out);
        }
        // Only a store's line leads here.
        _ => {}
    }
    Step::used(0)
}

/// Runs the command whose line is `avail[..used]`.
fn run(req: Request<'_>, avail: &[u8], used: usize, cx: &mut Cx<'_>) -> Step {
    let c = cx.cmd(Proto::Text);
    let vv = Vv::of(cx);
    let out = &mut *cx.out;
    match req {
        // Each arm names its request for the latency histograms: a store
        // of a constant (a match of its own cost 13 instructions).
        Request::Get { keys, cas, touch } => {
            cx.cmd = if touch.is_some() { Cmd::Gat } else { Cmd::Get };
            get(&c, keys, cas, touch, out, vv)
        }
        Request::Store(head) => {
            cx.cmd = Cmd::Set;
            return store_command(&head, avail, used, &c, out, vv);
        }
        Request::Delete { key, noreply } => {
            cx.cmd = Cmd::Delete;
            let req = DeleteReq {
                key,
                ..DeleteReq::default()
            };
            let line = match cmd::delete::delete(&c, &req) {
                DeleteOutcome::Deleted | DeleteOutcome::Invalidated => "DELETED",
                DeleteOutcome::NotFound | DeleteOutcome::Exists => "NOT_FOUND",
                DeleteOutcome::OutOfMemory => "SERVER_ERROR out of memory",
            };
            reply(vv, out, line, noreply);
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            cx.cmd = Cmd::IncrDecr;
            let op = arith::ArithOp {
                key,
                incr,
                delta,
                cas: 0,
                create: None,
                new_cas: None,
            };
            let line = match arith::arith(&c, &op).outcome {
                DeltaOutcome::Value(v) => {
                    if vv.0.is_some() {
                        vv.log_line(&v.to_string(), noreply);
                    }
                    if !noreply {
                        out.with_buf(|b| {
                            write_u64(b, v);
                            b.extend_from_slice(b"\r\n");
                        });
                    }
                    return Step::used(used);
                }
                DeltaOutcome::NotFound => "NOT_FOUND",
                DeltaOutcome::NonNumeric => {
                    "CLIENT_ERROR cannot increment or decrement non-numeric value"
                }
                DeltaOutcome::OutOfMemory => "SERVER_ERROR out of memory",
                // Only a CAS check (binary protocol) gives this.
                DeltaOutcome::Exists => "EXISTS",
            };
            reply(vv, out, line, noreply);
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            cx.cmd = Cmd::Touch;
            let line = match cmd::touch::touch(&c, key, exptime) {
                Ok(()) => "TOUCHED",
                Err(_) => "NOT_FOUND",
            };
            reply(vv, out, line, noreply);
        }
        Request::FlushAll { delay, noreply } => {
            cx.cmd = Cmd::Flush;
            let line = match flush::flush(&c, delay) {
                Ok(()) => "OK",
                Err(flush::Refused::Disabled) => "CLIENT_ERROR flush_all not allowed",
                Err(flush::Refused::BadDelay) => BAD_EXPTIME,
            };
            reply(vv, out, line, noreply);
        }
        Request::Version => {
            if vv.0.is_some() {
                vv.log_line(&format!("VERSION {}", admin::version()), false);
            }
            out.with_buf(|b| {
                b.extend_from_slice(b"VERSION ");
                b.extend_from_slice(admin::version().as_bytes());
                b.extend_from_slice(b"\r\n");
            })
        }
        Request::Verbosity { level, noreply } => {
            admin::verbosity(&c, level);
            reply(vv, out, "OK", noreply);
        }
        Request::SlabsReassign { src, dst } => {
            use admin::ReassignRefused as R;
            say(
                vv,
                out,
                match admin::slabs_reassign(&c, src, dst) {
                    Ok(()) => "OK",
                    Err(R::Disabled) => "CLIENT_ERROR slab reassignment disabled",
                    Err(R::Store(ReassignError::Busy)) => {
                        "BUSY currently processing reassign request"
                    }
                    Err(R::Store(ReassignError::BadClass)) => {
                        "BADCLASS invalid src or dst class id"
                    }
                    Err(R::Store(ReassignError::NoSpare)) => {
                        "NOSPARE source class has no spare pages"
                    }
                    Err(R::Store(ReassignError::Same)) => "SAME src and dst class are identical",
                },
            );
        }
        Request::SlabsAutomove { mode, noreply } => {
            admin::slabs_automove(&c, mode);
            reply(vv, out, "OK", noreply);
        }
        Request::Quit => {
            cx.quit = true;
            return Step::close(used);
        }
        Request::Shutdown { graceful } => match admin::shutdown(&c, graceful) {
            Ok(()) => return Step::close(used),
            Err(admin::ShutdownDisabled) => say(vv, out, "ERROR: shutdown not enabled"),
        },
        Request::ShutdownInvalid => say(
            vv,
            out,
            if admin::shutdown_enabled(&c) {
                "CLIENT_ERROR invalid shutdown mode"
            } else {
                "ERROR: shutdown not enabled"
            },
        ),
        Request::Watch { line } => {
            let w = &c.sh.watch;
            let words = line.split(|&b| b == b' ').filter(|w| !w.is_empty()).skip(1);
            if !w.allowed {
                say(vv, out, "CLIENT_ERROR watch commands not allowed");
            } else if out.uncommitted() > 0 {
                say(vv, out, "ERROR cannot pipeline other commands before watch");
            } else {
                match crate::watch::parse_types(words) {
                    None => say(vv, out, "ERROR"),
                    Some(flags) => match (cx.takeover.as_deref_mut(), cx.waker) {
                        (Some(slot), Some(waker)) => match w.add(flags, waker) {
                            // Its OK comes first in the watcher's lines.
                            Ok(g) => *slot = Some(super::Takeover::Watch(g)),
                            Err(line) => say(vv, out, line),
                        },
                        _ => say(vv, out, "SERVER_ERROR watch needs a TCP or unix connection"),
                    },
                }
            }
        }
        Request::CacheMemlimit { mb, noreply } => {
            reply(vv, out, admin::cache_memlimit(&c, mb), noreply)
        }
        Request::LruCrawler(req) => {
            let stacked = out.uncommitted() > 0;
            match cmd::crawler::lru_crawler(&c, &req, stacked) {
                cmd::crawler::Reply::Line(line) => say(vv, out, line),
                cmd::crawler::Reply::Listing(l) => match cx.takeover.as_deref_mut() {
                    Some(slot) => *slot = Some(super::Takeover::Listing(l)),
                    // Over UDP there is no stream to list onto.
                    None => say(
                        vv,
                        out,
                        "SERVER_ERROR metadump needs a TCP or unix connection",
                    ),
                },
            }
        }
        Request::RefreshCerts { noreply } => match admin::refresh_certs(&c) {
            Ok(()) => reply(vv, out, "OK", noreply),
            // memcached sends its error even with noreply.
            Err(msg) => say(vv, out, &msg),
        },
        Request::Stats(group) => stats_reply(stats::stats(&c, Some(group)), out, vv),
        Request::MetaNoop => {
            vv.log("MN", false);
            out.line("MN");
            out.commit();
        }
        Request::Meta { kind, line } => {
            cx.cmd = match kind {
                MetaKind::Get => Cmd::Get,
                MetaKind::Set => Cmd::Set,
                MetaKind::Delete => Cmd::Delete,
                MetaKind::Arith => Cmd::IncrDecr,
                MetaKind::Debug => Cmd::Other,
            };
            let mc = Ctx {
                proto: Proto::Meta,
                ..c
            };
            return meta::run(kind, line, avail, used, &mc, out);
        }
        Request::Error {
            reply: line,
            noreply,
        } => reply(vv, out, line, noreply),
        Request::Close => {
            // An HTTP request: memcached hangs up without its pending replies.
            out.discard_unsent();
            return Step::close(used);
        }
    }
    Step::used(used)
}

/// `get`, `gets`, `gat`, `gats`: a VALUE line and data block per key
/// found, then END.
fn get(c: &Ctx<'_>, keys: Keys<'_>, cas: bool, touch: Option<i32>, out: &mut Output, vv: Vv) {
    for (i, key) in keys.enumerate() {
        // memcached answers each key in a response object of its own (a
        // UDP reply shows it: a datagram sequence per key); with none left
        // under `-o read_buf_mem_limit` it culls the unsent ones.
        if i > 0 && !out.resp_break() {
            out.discard_unsent();
            c.stats.incr(Counter::ResponseObjOom);
            say(vv, out, "SERVER_ERROR out of memory writing get response");
            return;
        }
        if key.len() > KEY_MAX_LENGTH {
            // memcached culls every unsent response, then reports the key.
            out.discard_unsent();
            say(vv, out, BAD_FORMAT);
            return;
        }
        let hit = cmd::get::get(c, key, touch, |f| value(out, key, cas, f)).is_ok();
        if vv.0.is_some() && hit {
            vv.sending(key);
        }
    }
    if vv.0.is_some() {
        vv.log("END", false);
    }
    out.bytes(b"END\r\n");
    // memcached writes a get's answer out before the next command.
    out.commit();
}

/// `VALUE <key> <flags> <bytes> [<cas>]` and the data block. Runs under
/// the store's lock: no I/O.
fn value(out: &mut Output, key: &[u8], cas: bool, f: &Found<'_>) {
    out.with_buf(|b| {
        b.extend_from_slice(b"VALUE ");
        b.extend_from_slice(key);
        b.push(b' ');
        write_u64(b, u64::from(f.flags));
        b.push(b' ');
        write_u64(b, f.value_len as u64);
        if cas {
            b.push(b' ');
            write_u64(b, f.cas);
        }
        b.extend_from_slice(b"\r\n");
    });
    out.data_block(f);
}

/// A stats reply in text: `STAT name value` lines and END, or a line.
fn stats_reply(r: stats::Reply, out: &mut Output, vv: Vv) {
    match r {
        stats::Reply::Pairs(pairs) => out.with_buf(|b| {
            for s in &pairs {
                b.extend_from_slice(b"STAT ");
                b.extend_from_slice(s.name.as_bytes());
                b.push(b' ');
                s.value.write(b);
                b.extend_from_slice(b"\r\n");
            }
            b.extend_from_slice(b"END\r\n");
        }),
        stats::Reply::Reset => say(vv, out, "RESET"),
        stats::Reply::Dump(entries) => out.with_buf(|b| {
            for e in entries {
                b.extend_from_slice(b"ITEM ");
                b.extend_from_slice(&e.key);
                b.extend_from_slice(b" [");
                write_u64(b, e.value_len as u64);
                b.extend_from_slice(b" b; ");
                write_u64(b, e.exptime);
                b.extend_from_slice(b" s]\r\n");
            }
            b.extend_from_slice(b"END\r\n");
        }),
        stats::Reply::DumpDisabled => say(vv, out, "CLIENT_ERROR stats cachedump not allowed"),
        stats::Reply::DetailUsage => say(vv, out, "CLIENT_ERROR usage: stats detail on|off|dump"),
        stats::Reply::DetailSet => say(vv, out, "OK"),
        stats::Reply::DetailDump(text) => out.bytes(&text),
        // Text `stats` with an unknown group is a parse error (ERROR).
        stats::Reply::Unknown => say(vv, out, "ERROR"),
    }
}

/// The line memcached answers a store refused before its value is read.
pub(crate) fn refusal_line(why: store::Refused) -> &'static str {
    match why {
        store::Refused::TooLarge => "SERVER_ERROR object too large for cache",
        store::Refused::OutOfMemory => "SERVER_ERROR out of memory storing object",
    }
}
