//! The binary protocol on a connection: one request taken from the read
//! buffer, judged, run against the store, answered.
//!
//! ```text
//!  rbuf ─► Header::parse ─► lengths_ok? ─► SASL login? ─► binary::check
//!      (refusals answered from the header alone: nothing is buffered
//!       for them, a value past -I is swallowed, never held)
//!      ─► wait for extras + key (+ value) ─► binary::decode ─► run ─► Output
//! ```
//!
//! Quiet variants: a get's miss and every other command's success are not
//! answered; errors always are. memcrab sends each batch's replies at its
//! end, so a NoOp or a loud command after quiet ones finds them all sent
//! in order, as memcached's pipeline flush promises.

use memcrab_proto::binary::{
    check, decode, Command, FrameError, Header, Opcode, Refusal, Request, Response, Status,
    StoreOp, HEADER_LEN, MAX_SASL_MECH_LEN,
};
use memcrab_proto::num::safe_strtoull;
use memcrab_store::{DeltaOutcome, Mode, StoreOutcome};

use crate::auth;
use crate::config::MEMCACHED_VERSION;
use crate::exec::{self, Cx};
use crate::stats::{self, Counter};

/// A SASL payload longer than this is refused without being buffered
/// (PLAIN carries a user and a password; memcached's file lines are at
/// most 256 bytes).
const MAX_SASL_DATA: usize = 64 * 1024;

/// A connection's login state (SASL, `-S`).
#[derive(Debug, Default)]
pub struct Session {
    pub authed: bool,
    /// An empty SaslAuth asked for the credentials in a SaslStep.
    sasl_started: bool,
}

/// What happened to the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The request needs this many bytes in all before it can run.
    Need(usize),
    /// `used` bytes handled; `swallow` more to discard as they arrive;
    /// `close`: hang up once the replies are sent.
    Done {
        used: usize,
        swallow: u64,
        close: bool,
    },
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
    Step::Done {
        used: avail.len(),
        swallow: 0,
        close: true,
    }
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

/// Takes one request from `avail` (the unhandled input) and runs it.
pub fn step(avail: &[u8], ses: &mut Session, cx: &mut Cx<'_>) -> Step {
    let h = match Header::parse(avail) {
        Ok(h) => h,
        Err(FrameError::Short) => return Step::Need(HEADER_LEN),
        Err(FrameError::BadMagic(m)) => {
            if cx.sh.verbose() > 0 {
                eprintln!("Invalid magic:  {m:x}");
            }
            // memcached hangs up at once: replies it had not written yet
            // (see `flush_point`) are lost.
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
    let sasl = cx.sh.settings.sasl.is_some();
    let sasl_op = matches!(
        Opcode::from_u8(h.opcode),
        Some(Opcode::SaslListMechs | Opcode::SaslAuth | Opcode::SaslStep)
    );
    if sasl && !ses.authed && !sasl_op && h.opcode != Opcode::Version.code() {
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
    let total = if req.cmd.has_value() {
        HEADER_LEN as u64 + u64::from(h.body_len)
    } else {
        need as u64
    };
    // Refusals that depend on the value's length come before it is read.
    match req.cmd {
        Command::Store { op, key, flags, .. }
            if !cx.sh.store.item_size_ok(key.len(), flags, h.value_len()) =>
        {
            cx.stats.incr(Counter::StoreTooLarge);
            if op == StoreOp::Set {
                // memcached drops the old value rather than leave it stale.
                cx.sh.store.unlink_key(key);
            }
            return refuse(cx, &h, Status::TooLarge, avail, total);
        }
        Command::SaslListMechs | Command::SaslAuth { .. } if !sasl => {
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
    let close = run(&req, value, ses, cx);
    if matches!(req.cmd, Command::NoOp) {
        flush_point(cx);
    }
    Step::Done {
        used: total as usize,
        swallow: 0,
        close,
    }
}

/// A binary exptime as the store takes it (memcached reads it unsigned;
/// anything past `i32::MAX` is decades away either way).
fn exptime(t: u32) -> i32 {
    t.min(i32::MAX as u32) as i32
}

/// Runs a request whose bytes have all arrived; true: close afterwards.
fn run(req: &Request<'_>, value: &[u8], ses: &mut Session, cx: &mut Cx<'_>) -> bool {
    let (opcode, opaque, quiet) = (req.opcode.code(), req.opaque, req.quiet());
    let ok = |cx: &mut Cx<'_>, cas: u64, body: &[u8]| {
        if !quiet {
            respond(cx, opcode, opaque, Status::NoError, cas, &[], &[], body);
        }
    };
    match req.cmd {
        Command::Get { key, with_key } => get(req, key, None, with_key, true, cx),
        Command::Gat {
            key,
            exptime: t,
            with_key,
        } => get(req, key, Some(exptime(t)), with_key, true, cx),
        Command::Touch { key, exptime: t } => get(req, key, Some(exptime(t)), false, false, cx),
        Command::Store {
            op,
            key,
            flags,
            exptime: t,
        } => {
            // Under -C memcached keeps no CAS values, and a store's is
            // ignored (delete and incr/decr still compare theirs with 0).
            let cas = if cx.sh.settings.use_cas { req.cas } else { 0 };
            let (mode, cas_check) = match op {
                _ if cas != 0 && matches!(op, StoreOp::Set | StoreOp::Add | StoreOp::Replace) => {
                    (Mode::Cas, req.cas)
                }
                StoreOp::Set => (Mode::Set, 0),
                StoreOp::Add => (Mode::Add, 0),
                StoreOp::Replace => (Mode::Replace, 0),
                StoreOp::Append => (Mode::Append, cas),
                StoreOp::Prepend => (Mode::Prepend, cas),
            };
            let (outcome, cas) =
                cx.sh
                    .store
                    .store_cas(mode, key, flags, exptime(t), value, cas_check);
            let status = match outcome {
                StoreOutcome::Stored => {
                    ok(cx, cas, &[]);
                    return false;
                }
                StoreOutcome::Exists => Status::KeyExists,
                StoreOutcome::NotFound => {
                    cx.stats.incr(Counter::CasMisses);
                    Status::KeyNotFound
                }
                StoreOutcome::NotStored | StoreOutcome::TooLarge | StoreOutcome::OutOfMemory => {
                    if outcome == StoreOutcome::TooLarge {
                        cx.stats.incr(Counter::StoreTooLarge);
                    } else if outcome == StoreOutcome::OutOfMemory {
                        cx.stats.incr(Counter::StoreNoMemory);
                    }
                    // memcached words a failed store by the command.
                    match mode {
                        Mode::Add => Status::KeyExists,
                        Mode::Replace => Status::KeyNotFound,
                        _ => Status::NotStored,
                    }
                }
            };
            error(cx, opcode, opaque, status);
        }
        Command::Delete { key } => match cx.sh.store.delete_cas(key, req.cas) {
            StoreOutcome::Stored => ok(cx, 0, &[]),
            StoreOutcome::Exists => error(cx, opcode, opaque, Status::KeyExists),
            _ => {
                cx.stats.incr(Counter::DeleteMisses);
                error(cx, opcode, opaque, Status::KeyNotFound);
            }
        },
        Command::Arith {
            incr,
            key,
            delta,
            initial,
            exptime: t,
        } => arith(req, incr, key, delta, initial, t, cx),
        Command::Quit => {
            ok(cx, 0, &[]);
            return true;
        }
        Command::Flush { delay } => {
            if !cx.sh.settings.flush_enabled {
                error(cx, opcode, opaque, Status::AuthError);
            } else {
                cx.stats.incr(Counter::FlushCmds);
                cx.sh.store.flush_all(exptime(delay));
                ok(cx, 0, &[]);
            }
        }
        Command::NoOp => answer(cx, opcode, opaque, &[]),
        Command::Version => answer(cx, opcode, opaque, MEMCACHED_VERSION.as_bytes()),
        Command::Stat { key } => stat(opcode, opaque, key, cx),
        Command::SaslListMechs => answer(cx, opcode, opaque, b"PLAIN"),
        Command::SaslAuth { mech, step } => sasl_auth(req, mech, step, value, ses, cx),
    }
    false
}

/// Get, GetK, Gat, GatK and Touch (and their quiet forms).
fn get(
    req: &Request<'_>,
    key: &[u8],
    touch: Option<i32>,
    with_key: bool,
    with_value: bool,
    cx: &mut Cx<'_>,
) {
    let (opcode, opaque) = (req.opcode.code(), req.opaque);
    if touch.is_some() {
        cx.stats.incr(Counter::TouchCmds);
    } else {
        cx.stats.incr(Counter::GetCmds);
    }
    let out = &mut *cx.out;
    // Kept only for the -vv dump, after the shard lock is let go.
    let verbose = cx.sh.verbose() > 1;
    let mut header = [0u8; HEADER_LEN];
    let found = cx.sh.store.get_with(key, touch, |f| {
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
    let Err(missed) = found else {
        if verbose {
            // memcached logs a hit's header before it writes the CAS in.
            header[16..].fill(0);
            dump(cx.fd, '>', "  ", "Writing bin response:", &header);
        }
        return;
    };
    exec::count_miss(cx.stats, touch.is_some(), missed);
    if req.quiet() {
        return;
    }
    if with_key {
        respond(cx, opcode, opaque, Status::KeyNotFound, 0, &[], key, &[]);
    } else {
        error(cx, opcode, opaque, Status::KeyNotFound);
    }
}

fn arith(
    req: &Request<'_>,
    incr: bool,
    key: &[u8],
    delta: u64,
    initial: u64,
    t: u32,
    cx: &mut Cx<'_>,
) {
    let (opcode, opaque) = (req.opcode.code(), req.opaque);
    let reply = |cx: &mut Cx<'_>, v: u64, cas: u64| {
        if !req.quiet() {
            respond(
                cx,
                opcode,
                opaque,
                Status::NoError,
                cas,
                &[],
                &[],
                &v.to_be_bytes(),
            );
        }
    };
    let store = &cx.sh.store;
    match store.arith_cas(key, incr, delta, req.cas, safe_strtoull) {
        (DeltaOutcome::Value(v), cas) => reply(cx, v, cas),
        (DeltaOutcome::NonNumeric, _) => error(cx, opcode, opaque, Status::NonNumeric),
        (DeltaOutcome::OutOfMemory, _) => error(cx, opcode, opaque, Status::OutOfMemory),
        (DeltaOutcome::Exists, _) => error(cx, opcode, opaque, Status::KeyExists),
        (DeltaOutcome::NotFound, _) => {
            cx.stats.incr(if incr {
                Counter::IncrMisses
            } else {
                Counter::DecrMisses
            });
            if t == u32::MAX {
                error(cx, opcode, opaque, Status::KeyNotFound);
                return;
            }
            let mut digits = Vec::with_capacity(20);
            memcrab_proto::num::write_u64(&mut digits, initial);
            match store.store_cas(Mode::Add, key, 0, exptime(t), &digits, 0) {
                (StoreOutcome::Stored, cas) => reply(cx, initial, cas),
                (StoreOutcome::OutOfMemory | StoreOutcome::TooLarge, _) => {
                    error(cx, opcode, opaque, Status::OutOfMemory)
                }
                _ => error(cx, opcode, opaque, Status::NotStored),
            }
        }
    }
}

/// Stat: each `STAT name value` line of the text form becomes a response
/// with key and value; an empty response ends the list.
fn stat(opcode: u8, opaque: u32, key: &[u8], cx: &mut Cx<'_>) {
    let sh = cx.sh;
    let mut text = Vec::new();
    // memcached matches these by prefix, the groups below exactly.
    if key.is_empty() {
        stats::general(sh, &mut text);
    } else if key.starts_with(b"reset") {
        sh.reset_stats();
    } else if key.starts_with(b"settings") {
        stats::settings(sh, &mut text);
    } else if key.starts_with(b"detail") {
        // Per-prefix stats are not kept (`-D` is refused).
        error(cx, opcode, opaque, Status::NotSupported);
        return;
    } else {
        match key {
            b"items" => stats::items(sh, &mut text),
            b"slabs" => stats::slabs(sh, &mut text),
            b"sizes" => stats::sizes(&mut text),
            _ => {
                error(cx, opcode, opaque, Status::KeyNotFound);
                return;
            }
        }
    }
    for line in text.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"STAT ") else {
            continue;
        };
        let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
        let sp = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        let (name, val) = (&rest[..sp], rest.get(sp + 1..).unwrap_or_default());
        respond(cx, opcode, opaque, Status::NoError, 0, &[], name, val);
    }
    respond(cx, opcode, opaque, Status::NoError, 0, &[], &[], &[]);
}

fn sasl_auth(
    req: &Request<'_>,
    mech: &[u8],
    step: bool,
    data: &[u8],
    ses: &mut Session,
    cx: &mut Cx<'_>,
) {
    let (opcode, opaque) = (req.opcode.code(), req.opaque);
    let users = cx.sh.settings.sasl.as_deref().expect("checked by step");
    // A new exchange starts logged out, as in memcached.
    ses.authed = false;
    let started = std::mem::take(&mut ses.sasl_started);
    cx.stats.incr(Counter::AuthCmds);
    let plain = mech.eq_ignore_ascii_case(b"PLAIN");
    if plain && !step && data.is_empty() {
        // PLAIN sends everything at once; an empty start asks for it.
        ses.sasl_started = true;
        respond(cx, opcode, opaque, Status::AuthContinue, 0, &[], &[], &[]);
        return;
    }
    let granted = plain
        && (!step || started)
        && auth::plain(data).is_some_and(|(user, pass)| users.check(user, pass));
    if granted {
        ses.authed = true;
        answer(cx, opcode, opaque, b"Authenticated");
    } else {
        cx.stats.incr(Counter::AuthErrors);
        error(cx, opcode, opaque, Status::AuthError);
    }
}
