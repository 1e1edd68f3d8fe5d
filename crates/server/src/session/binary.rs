//! The binary protocol: one request taken from the input, judged, run by
//! `crate::cmd`, answered with memcached 1.6's status codes and words.
//!
//! ```text
//!  avail ─► Header::parse ─► lengths_ok? ─► SASL login? ─► binary::check
//!      (refusals answered from the header alone: nothing is buffered
//!       for them, a value past -I is swallowed, never held)
//!      ─► wait for extras + key ─► binary::decode ─► cmd::store::admit
//!      ─► wait for the value ─► cmd::* ─► Response::write ─► Output
//! ```
//!
//! Quiet variants: a get's miss and every other command's success are not
//! answered; errors always are. The transport sends each batch's replies
//! at its end, so a NoOp or a loud command after quiet ones finds them all
//! sent in order, as memcached's pipeline flush promises.

use memcrab_proto::binary::{
    self, check, decode, Command, FrameError, Header, Opcode, Refusal, Request, Response, Status,
    HEADER_LEN, MAX_SASL_MECH_LEN,
};
use memcrab_proto::StoreMode;
use memcrab_store::{Create, DeleteOutcome, DeleteReq, DeltaOutcome, StoreOutcome};

use super::{Cx, Step};
use crate::auth::{self, Users};
use crate::cmd::{self, admin, arith, flush, stats, store, Ctx, Proto};
use crate::latency::Cmd;
use crate::stats::Counter;

/// A SASL payload longer than this is refused without being buffered
/// (PLAIN carries a user and a password; memcached's file lines are at
/// most 256 bytes).
const MAX_SASL_DATA: usize = 64 * 1024;

/// A binary connection's state: its SASL login (`-S`).
#[derive(Debug, Default)]
pub struct Binary {
    authed: bool,
    /// An empty SaslAuth asked for the credentials in a SaslStep.
    sasl_started: bool,
}

fn skip(avail: &[u8], total: u64) -> Step {
    let used = (avail.len() as u64).min(total);
    Step::Done {
        used: used as usize,
        swallow: total - used,
        close: false,
    }
}

fn closing(avail: &[u8]) -> Step {
    // Every caller has queued an error that memcached writes out.
    Step::close(avail.len())
}

fn message(status: Status) -> &'static str {
    match status {
        Status::KeyNotFound => "Not found",
        Status::KeyExists => "Data exists for key.",
        Status::TooLarge => "Too large.",
        Status::InvalidArguments => "Invalid arguments",
        Status::NotStored => "Not stored.",
        Status::NonNumeric => "Non-numeric server-side value for incr or decr",
        Status::AuthError => "Auth failure.",
        Status::UnknownCommand => "Unknown command",
        Status::OutOfMemory => "Out of memory",
        Status::NotSupported => "Not supported",
        Status::NoError
        | Status::AuthContinue
        | Status::InternalError
        | Status::Busy
        | Status::TemporaryFailure => "",
    }
}

/// `-vv`: a header as memcached dumps it, four bytes a line.
fn dump(fd: i32, dir: char, indent: &str, title: &str, header: &[u8]) {
    let mut text = format!("{dir}{fd} {title}\n");
    for row in header[..HEADER_LEN].chunks(4) {
        text.push_str(&format!("{dir}{fd}{indent}"));
        for b in row {
            text.push_str(&format!(" 0x{b:02x}"));
        }
        text.push('\n');
    }
    eprint!("{text}");
}

/// A response with a body of extras, key and `value`.
#[allow(clippy::too_many_arguments)]
fn respond(
    cx: &mut Cx<'_>,
    opcode: u8,
    opaque: u32,
    status: Status,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let verbose = cx.sh.verbose() > 1;
    let fd = cx.fd;
    cx.out.with_buf(|b| {
        let start = b.len();
        Response {
            opcode,
            status,
            opaque,
            cas,
            extras,
            key,
            value_len: value.len(),
        }
        .write(b);
        if verbose {
            dump(fd, '>', "  ", "Writing bin response:", &b[start..]);
        }
        b.extend_from_slice(value);
    });
}

/// A success answer carrying only `value` (NoOp, Version, SASL).
fn answer(cx: &mut Cx<'_>, opcode: u8, opaque: u32, value: &[u8]) {
    respond(cx, opcode, opaque, Status::NoError, 0, &[], &[], value);
}

/// An error response: the status and memcached's words for it.
fn error_reply(cx: &mut Cx<'_>, opcode: u8, opaque: u32, status: Status) {
    let words = message(status).as_bytes();
    if cx.sh.verbose() > 1 {
        eprintln!(">{} Writing an error: {}", cx.fd, message(status));
    }
    respond(cx, opcode, opaque, status, 0, &[], &[], words);
}

/// An error that memcached writes out at once (see `flush_point`).
fn error(cx: &mut Cx<'_>, opcode: u8, opaque: u32, status: Status) {
    error_reply(cx, opcode, opaque, status);
    flush_point(cx);
}

/// An error, then the request's remaining `total` bytes discarded
/// (whatever of them has not arrived is swallowed as it comes).
fn refuse(cx: &mut Cx<'_>, h: &Header, status: Status, avail: &[u8], total: u64) -> Step {
    error_reply(cx, h.opcode, h.opaque, status);
    let read = (HEADER_LEN + h.ext_key_len()) as u64;
    // memcached counts the bytes to swallow in an int: past 2^31 it
    // swallows nothing, and what follows is read as the next request.
    let total = if total - read > i32::MAX as u64 {
        read
    } else {
        total
    };
    if total == read {
        flush_point(cx);
    }
    skip(avail, total)
}

/// memcached writes its queued replies out after an error that swallows
/// nothing and after a NoOp; other replies wait until the input is used
/// up. Only the difference shows: a later bad magic drops what waits.
fn flush_point(cx: &mut Cx<'_>) {
    cx.out.commit();
}

impl Binary {
    /// Takes one request from `avail` (the unhandled input) and runs it.
    pub fn step(&mut self, avail: &[u8], cx: &mut Cx<'_>) -> Step {
        let h = match Header::parse(avail) {
            Ok(h) => h,
            Err(FrameError::Short) => return Step::Need(HEADER_LEN),
            Err(FrameError::BadMagic(m)) => {
                if cx.sh.verbose() > 0 {
                    eprintln!("Invalid magic:  {m:x}");
                }
                // memcached hangs up at once: replies it had not written
                // yet (see `flush_point`) are lost.
                cx.out.discard_unsent();
                return closing(avail);
            }
        };
        if cx.sh.verbose() > 1 {
            dump(cx.fd, '<', "   ", "Read binary protocol data:", avail);
        }
        if !h.lengths_ok() {
            error(cx, h.opcode, h.opaque, Status::UnknownCommand);
            return closing(avail);
        }
        let sasl = cx.sh.settings.sasl.as_deref();
        let sasl_op = matches!(
            Opcode::from_u8(h.opcode),
            Some(Opcode::SaslListMechs | Opcode::SaslAuth | Opcode::SaslStep)
        );
        if sasl.is_some() && !self.authed && !sasl_op && h.opcode != Opcode::Version.code() {
            error(cx, h.opcode, h.opaque, Status::AuthError);
            return closing(avail);
        }
        let op = match check(&h) {
            Ok(op) => op,
            Err(Refusal::Invalid) => {
                if cx.sh.verbose() > 0 {
                    eprintln!("Protocol error (opcode {:02x}), close connection", h.opcode);
                }
                error(cx, h.opcode, h.opaque, Status::InvalidArguments);
                return closing(avail);
            }
            Err(Refusal::Unknown) => {
                // memcached reads extras and key, then discards body_len more.
                let total = (HEADER_LEN + h.ext_key_len()) as u64 + u64::from(h.body_len);
                return refuse(cx, &h, Status::UnknownCommand, avail, total);
            }
        };
        let need = HEADER_LEN + h.ext_key_len();
        if avail.len() < need {
            return Step::Need(need);
        }
        let req = decode(op, &h, &avail[HEADER_LEN..need]);
        cx.cmd = match req.cmd {
            Command::Get { .. } => Cmd::Get,
            Command::Gat { .. } => Cmd::Gat,
            Command::Touch { .. } => Cmd::Touch,
            Command::Store(_) => Cmd::Set,
            Command::Delete { .. } => Cmd::Delete,
            Command::Arith { .. } => Cmd::IncrDecr,
            Command::Flush { .. } => Cmd::Flush,
            _ => Cmd::Other,
        };
        let total = if req.cmd.has_value() {
            HEADER_LEN as u64 + u64::from(h.body_len)
        } else {
            need as u64
        };
        let c = cx.cmd(Proto::Binary);
        // Refusals that depend on the value's length come before it is read.
        if let Command::Store(sc) = req.cmd {
            let op = store_op(&sc, req.cas);
            let refused = |cx: &mut Cx<'_>, why| {
                let status = match why {
                    store::Refused::TooLarge => Status::TooLarge,
                    store::Refused::OutOfMemory => Status::OutOfMemory,
                };
                refuse(cx, &h, status, avail, total)
            };
            if let Err(why) = store::admit(&c, &op, h.value_len()) {
                return refused(cx, why);
            }
            if (avail.len() as u64) < total {
                return super::await_block(&c, &op, avail, need, h.value_len(), false)
                    .unwrap_or_else(|why| refused(cx, why));
            }
        }
        match req.cmd {
            Command::SaslListMechs | Command::SaslAuth { .. } if sasl.is_none() => {
                return refuse(cx, &h, Status::UnknownCommand, avail, total);
            }
            Command::SaslAuth { mech, .. } => {
                if mech.len() > MAX_SASL_MECH_LEN {
                    return refuse(cx, &h, Status::InvalidArguments, avail, total);
                }
                if h.value_len() > MAX_SASL_DATA {
                    return refuse(cx, &h, Status::OutOfMemory, avail, total);
                }
            }
            _ => {}
        }
        if (avail.len() as u64) < total {
            return Step::Need(total as usize);
        }
        let value = &avail[need..total as usize];
        let close = self.run(&req, value, &c, cx);
        if matches!(req.cmd, Command::NoOp) {
            flush_point(cx);
        }
        Step::Done {
            used: total as usize,
            swallow: 0,
            close,
        }
    }

    /// Runs a request whose bytes have all arrived; true: close afterwards.
    /// (Inlined into `step`: as a call it cost a pipelined GetK about 20
    /// of its ~1,600 instructions, callgrind.)
    #[inline(always)]
    fn run(&mut self, req: &Request<'_>, value: &[u8], c: &Ctx<'_>, cx: &mut Cx<'_>) -> bool {
        let (opcode, opaque, quiet) = (req.opcode.code(), req.opaque, req.quiet());
        let ok = |cx: &mut Cx<'_>, cas: u64, body: &[u8]| {
            if !quiet {
                respond(cx, opcode, opaque, Status::NoError, cas, &[], &[], body);
            }
        };
        match req.cmd {
            Command::Get { key, with_key } => get(req, key, None, with_key, true, c, cx),
            Command::Gat {
                key,
                exptime: t,
                with_key,
            } => get(req, key, Some(exptime(t)), with_key, true, c, cx),
            Command::Touch { key, exptime: t } => {
                get(req, key, Some(exptime(t)), false, false, c, cx)
            }
            Command::Store(sc) => store_reply(req, &sc, store::Data::Bytes(value), c, cx),
            Command::Delete { key } => match cmd::delete::delete(
                c,
                &DeleteReq {
                    key,
                    cas: (req.cas != 0).then_some(req.cas),
                    ..DeleteReq::default()
                },
            ) {
                DeleteOutcome::Deleted => ok(cx, 0, &[]),
                DeleteOutcome::Exists => error(cx, opcode, opaque, Status::KeyExists),
                DeleteOutcome::NotFound => error(cx, opcode, opaque, Status::KeyNotFound),
                // Only meta asks for these.
                DeleteOutcome::Invalidated => ok(cx, 0, &[]),
                DeleteOutcome::OutOfMemory => error(cx, opcode, opaque, Status::OutOfMemory),
            },
            Command::Arith {
                incr,
                key,
                delta,
                initial,
                exptime: t,
            } => {
                let op = arith::ArithOp {
                    key,
                    incr,
                    delta,
                    cas: req.cas,
                    // An exptime of 0xffffffff: do not create.
                    create: (t != u32::MAX).then(|| Create {
                        initial,
                        exptime: exptime(t),
                    }),
                    new_cas: None,
                };
                let r = arith::arith(c, &op);
                let status = match r.outcome {
                    DeltaOutcome::Value(v) => {
                        ok(cx, r.cas, &v.to_be_bytes());
                        return false;
                    }
                    DeltaOutcome::NotFound => Status::KeyNotFound,
                    DeltaOutcome::NonNumeric => Status::NonNumeric,
                    DeltaOutcome::OutOfMemory => Status::OutOfMemory,
                    DeltaOutcome::Exists => Status::KeyExists,
                };
                error(cx, opcode, opaque, status);
            }
            Command::Quit => {
                ok(cx, 0, &[]);
                cx.quit = true;
                return true;
            }
            Command::Flush { delay } => match flush::flush(c, Some(exptime(delay))) {
                Ok(()) => ok(cx, 0, &[]),
                Err(flush::Refused::Disabled) => error(cx, opcode, opaque, Status::AuthError),
                // A binary delay always reads.
                Err(flush::Refused::BadDelay) => {
                    error(cx, opcode, opaque, Status::InvalidArguments)
                }
            },
            Command::NoOp => answer(cx, opcode, opaque, &[]),
            Command::Version => answer(cx, opcode, opaque, admin::version().as_bytes()),
            Command::Stat { group } => stat(opcode, opaque, stats::stats(c, group), cx),
            Command::SaslListMechs => answer(cx, opcode, opaque, b"PLAIN"),
            Command::SaslAuth { mech, step } => {
                if let Some(users) = cx.sh.settings.sasl.as_deref() {
                    self.sasl_auth(req, users, mech, step, value, cx);
                }
            }
        }
        false
    }

    fn sasl_auth(
        &mut self,
        req: &Request<'_>,
        users: &Users,
        mech: &[u8],
        step: bool,
        data: &[u8],
        cx: &mut Cx<'_>,
    ) {
        let (opcode, opaque) = (req.opcode.code(), req.opaque);
        // A new exchange starts logged out, as in memcached.
        self.authed = false;
        let started = std::mem::take(&mut self.sasl_started);
        cx.stats.incr(Counter::AuthCmds);
        let plain = mech.eq_ignore_ascii_case(b"PLAIN");
        if plain && !step && data.is_empty() {
            // PLAIN sends everything at once; an empty start asks for it.
            self.sasl_started = true;
            respond(cx, opcode, opaque, Status::AuthContinue, 0, &[], &[], &[]);
            return;
        }
        let granted = plain
            && (!step || started)
            && auth::plain(data).is_some_and(|(user, pass)| users.check(user, pass));
        if granted {
            self.authed = true;
            answer(cx, opcode, opaque, b"Authenticated");
        } else {
            cx.stats.incr(Counter::AuthErrors);
            error(cx, opcode, opaque, Status::AuthError);
        }
    }
}

/// A binary exptime as the store takes it (memcached reads it unsigned;
/// anything past `i32::MAX` is decades away either way).
fn exptime(t: u32) -> i32 {
    t.min(i32::MAX as u32) as i32
}

/// A Set/Add/Replace/Append/Prepend as the command layer takes it.
/// Runs a store whose value has arrived and answers it.
fn store_reply(
    req: &Request<'_>,
    sc: &binary::Store<'_>,
    data: store::Data<'_>,
    c: &Ctx<'_>,
    cx: &mut Cx<'_>,
) {
    let (opcode, opaque) = (req.opcode.code(), req.opaque);
    let done = store::store(c, &store_op(sc, req.cas), data);
    let status = match done.outcome {
        StoreOutcome::Stored => {
            if !req.quiet() {
                respond(cx, opcode, opaque, Status::NoError, done.cas, &[], &[], &[]);
            }
            return;
        }
        StoreOutcome::Exists => Status::KeyExists,
        StoreOutcome::NotFound => Status::KeyNotFound,
        // memcached words a failed store by the command.
        StoreOutcome::NotStored | StoreOutcome::TooLarge | StoreOutcome::OutOfMemory => {
            match (done.compared, sc.mode) {
                (false, StoreMode::Add) => Status::KeyExists,
                (false, StoreMode::Replace) => Status::KeyNotFound,
                _ => Status::NotStored,
            }
        }
    };
    error(cx, opcode, opaque, status);
}

/// Answers a store whose value ran out of memory on its way (`head`: its
/// header, extras and key): memcached's out-of-memory status with its
/// words for it.
pub(super) fn fail(head: &[u8], cx: &mut Cx<'_>) {
    if let Ok(h) = Header::parse(head) {
        let words = "Out of memory during read";
        if cx.sh.verbose() > 1 {
            eprintln!(">{} Writing an error: {words}", cx.fd);
        }
        respond(
            cx,
            h.opcode,
            h.opaque,
            Status::OutOfMemory,
            0,
            &[],
            &[],
            words.as_bytes(),
        );
    }
}

/// Runs and answers a store whose value was received into its item
/// (`Step::Receive`): `head` is its header, extras and key as they came.
pub(super) fn finish(head: &[u8], data: memcrab_store::Incoming, cx: &mut Cx<'_>) -> Step {
    // They were checked when they came; the same bytes check the same way.
    if let Ok(h) = Header::parse(head) {
        if let Ok(op) = check(&h) {
            let need = HEADER_LEN + h.ext_key_len();
            if head.len() >= need {
                let req = decode(op, &h, &head[HEADER_LEN..need]);
                if let Command::Store(sc) = req.cmd {
                    cx.cmd = Cmd::Set;
                    let c = cx.cmd(Proto::Binary);
                    store_reply(&req, &sc, store::Data::Received(data), &c, cx);
                }
            }
        }
    }
    Step::used(0)
}

fn store_op<'a>(sc: &binary::Store<'a>, cas: u64) -> store::StoreOp<'a> {
    store::StoreOp {
        mode: sc.mode,
        key: sc.key,
        flags: sc.flags,
        exptime: exptime(sc.exptime),
        cas: (cas != 0).then_some(cas),
        ..store::StoreOp::default()
    }
}

/// Get, GetK, Gat, GatK and Touch (and their quiet forms).
#[inline(always)]
fn get(
    req: &Request<'_>,
    key: &[u8],
    touch: Option<i32>,
    with_key: bool,
    with_value: bool,
    c: &Ctx<'_>,
    cx: &mut Cx<'_>,
) {
    let (opcode, opaque) = (req.opcode.code(), req.opaque);
    let out = &mut *cx.out;
    // Kept only for the -vv dump, after the shard lock is let go.
    let verbose = cx.sh.verbose() > 1;
    let mut header = [0u8; HEADER_LEN];
    let found = cmd::get::get(c, key, touch, |f| {
        let flags = f.flags.to_be_bytes();
        let k: &[u8] = if with_key { key } else { &[] };
        out.with_buf(|b| {
            let start = b.len();
            Response {
                opcode,
                status: Status::NoError,
                opaque,
                cas: f.cas,
                extras: &flags,
                key: k,
                value_len: if with_value { f.value_len } else { 0 },
            }
            .write(b);
            if verbose {
                header.copy_from_slice(&b[start..start + HEADER_LEN]);
            }
        });
        if with_value {
            out.value(f);
        }
    });
    if found.is_ok() {
        if verbose {
            // memcached logs a hit's header before it writes the CAS in.
            header[16..].fill(0);
            dump(cx.fd, '>', "  ", "Writing bin response:", &header);
        }
        return;
    }
    if req.quiet() {
        return;
    }
    if with_key {
        respond(cx, opcode, opaque, Status::KeyNotFound, 0, &[], key, &[]);
    } else {
        error(cx, opcode, opaque, Status::KeyNotFound);
    }
}

/// One statistic of a Stat reply: its name as the key, its value as the
/// value.
fn stat_response(cx: &mut Cx<'_>, opcode: u8, opaque: u32, name: &[u8], value: &[u8]) {
    respond(cx, opcode, opaque, Status::NoError, 0, &[], name, value);
}

/// Stat: a response per statistic, its name as the key and its value as
/// the value; an empty response ends the list.
fn stat(opcode: u8, opaque: u32, reply: stats::Reply, cx: &mut Cx<'_>) {
    let pairs = match reply {
        stats::Reply::Pairs(p) => p,
        stats::Reply::Reset => Vec::new(),
        stats::Reply::DetailSet => Vec::new(),
        // memcached sends the text dump as one stat named "detailed".
        stats::Reply::DetailDump(text) => {
            stat_response(cx, opcode, opaque, b"detailed", &text);
            Vec::new()
        }
        stats::Reply::DetailUsage
        | stats::Reply::Unknown
        | stats::Reply::Dump(_)
        | stats::Reply::DumpDisabled => {
            error(cx, opcode, opaque, Status::KeyNotFound);
            return;
        }
    };
    let mut value = Vec::new();
    for s in &pairs {
        value.clear();
        s.value.write(&mut value);
        stat_response(cx, opcode, opaque, s.name.as_bytes(), &value);
    }
    respond(cx, opcode, opaque, Status::NoError, 0, &[], &[], &[]);
}
