//! The meta commands, on a text connection: `mg`, `ms`, `md`, `ma`, `me`
//! (`mn` is one line, answered by the text session). Parsed by
//! `memcrab_proto::meta`, run by `crate::cmd` with `Proto::Meta`, answered
//! in memcached 1.6's words.
//!
//! ```text
//!  line ─► meta::parse ─► refused: the error line (+ the ms block swallowed)
//!       ─► mg: cmd::get::lookup ─┐  under the item's lock, the flags in
//!          ma: cmd::arith::arith_with ┘  the order sent: T, N act; t, c, s,
//!                                  f, l, h, k, O report; then Z, X, W
//!       ─► ms: cmd::store::{admit, store} (data block as text's; past the
//!          buffer received into its item, then `finish`)
//!       ─► md: cmd::delete::delete     me: cmd::get::peek
//! ```
//!
//! Order matters because memcached builds the reply as it walks the
//! flags: in `mg k t T30` the `t` reports the TTL before `T` changes it.
//! `q` leaves out only the nominal reply (`mg`'s EN, the others' HD;
//! `ma`'s whole reply when it changed an item); errors are always sent.

use memcrab_proto::meta::{self, base64_encode, Kind, Meta, OPAQUE_TOO_LONG};
use memcrab_proto::num::write_u64;
use memcrab_proto::StoreMode;
use memcrab_store::{
    Create, DeleteOutcome, DeleteReq, DeltaOutcome, Found, GetOpts, HitCount, StoreOutcome,
};

use super::Step;
use crate::cmd::{self, arith, store, Ctx};
use crate::output::Output;

/// Runs the meta command whose line is `avail[..line_len]` (`line`,
/// trimmed).
pub fn run(
    kind: Kind,
    line: &[u8],
    avail: &[u8],
    line_len: usize,
    c: &Ctx<'_>,
    out: &mut Output,
) -> Step {
    let mut scratch = meta::Scratch::default();
    let m = match meta::parse(kind, line, &mut scratch) {
        Ok(m) => m,
        Err(refused) => {
            out.line(refused.line);
            return Step::Done {
                used: line_len,
                swallow: refused.swallow,
                close: false,
            };
        }
    };
    match kind {
        Kind::Get => get(&m, c, out),
        Kind::Set => return set(&m, avail, line_len, c, out),
        Kind::Delete => delete(&m, c, out),
        Kind::Arith => arith(&m, c, out),
        Kind::Debug => debug(&m, c, out),
    }
    Step::used(line_len)
}

/// ` k<key>`, base64-encoded and followed by ` b` when it came so.
fn key_token(b: &mut Vec<u8>, key: &[u8], binary: bool) {
    b.extend_from_slice(b" k");
    if binary {
        base64_encode(key, b);
        b.extend_from_slice(b" b");
    } else {
        b.extend_from_slice(key);
    }
}

/// ` <letter><number>`.
fn number(b: &mut Vec<u8>, letter: u8, n: u64) {
    b.push(b' ');
    b.push(letter);
    write_u64(b, n);
}

/// ` O<opaque>`, or the error for one too long.
fn opaque(b: &mut Vec<u8>, tok: &[u8]) -> Result<(), &'static str> {
    if tok.len() > meta::MAX_OPAQUE_LENGTH {
        return Err(OPAQUE_TOO_LONG);
    }
    b.push(b' ');
    b.extend_from_slice(tok);
    Ok(())
}

/// A TTL as meta reports it: -1 for none, else the seconds left (as
/// memcached's unsigned subtraction gives them).
fn ttl(b: &mut Vec<u8>, item: &Found<'_>) {
    b.extend_from_slice(b" t");
    if item.exptime() == 0 {
        b.extend_from_slice(b"-1");
    } else {
        write_u64(b, u64::from(item.exptime().wrapping_sub(item.now())));
    }
}

/// Writes a reply line with `f`, all or nothing: an error in the middle
/// leaves nothing of it queued.
fn reply_line(
    out: &mut Output,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), &'static str>,
) -> Result<(), &'static str> {
    let mut result = Ok(());
    out.with_buf(|b| {
        let start = b.len();
        result = f(b);
        if result.is_err() {
            b.truncate(start);
        }
    });
    result
}

/// `mg`.
fn get(m: &Meta<'_>, c: &Ctx<'_>, out: &mut Output) {
    let f = &m.flags;
    let opts = GetOpts {
        touch: None,
        bump: !f.no_update,
        count: if f.ttl.is_some() {
            HitCount::Touch
        } else {
            HitCount::Get
        },
        vivify: f.vivify.is_some(),
        vivify_cas: f.new_cas,
        // Its flags change the item and decide who wins a recache.
        exclusive: true,
    };
    // memcached delays the bump past the reply only for these flags; a
    // reply that then fails leaves the item unbumped only with them.
    let delayed_bump = f.vivify.is_some()
        || f.ttl.is_some()
        || f.recache.is_some()
        || m.flag_tokens().any(|t| matches!(t[0], b'l' | b'h'));
    let found = cmd::get::lookup(c, m.key, opts, |item| {
        // 1.6.45: with C and v, the value is sent only if it changed.
        let value = f.value && f.cas != Some(item.cas);
        let mut won = false;
        let line = reply_line(out, |b| {
            if value {
                b.extend_from_slice(b"VA ");
                write_u64(b, item.value_len as u64);
            } else {
                b.extend_from_slice(b"HD");
            }
            for tok in m.flag_tokens() {
                match tok[0] {
                    b'T' => item.set_exptime(f.ttl.unwrap_or(0)),
                    b'N' if item.created.is_some() => {
                        item.set_exptime(f.vivify.unwrap_or(0));
                        won = true;
                    }
                    b'R' => {
                        let recache = item.realtime(f.recache.unwrap_or(0));
                        if !item.win_sent()
                            && item.created.is_none()
                            && item.exptime() != 0
                            && item.exptime() < recache
                        {
                            won = true;
                        }
                    }
                    b's' => number(b, b's', item.value_len as u64),
                    b't' => ttl(b, item),
                    b'c' => number(b, b'c', item.cas),
                    b'f' => number(b, b'f', u64::from(item.flags)),
                    b'l' => number(b, b'l', u64::from(item.meta.idle)),
                    b'h' => number(b, b'h', u64::from(item.meta.fetched)),
                    b'O' => opaque(b, tok)?,
                    b'k' => key_token(b, item.key(), item.key_binary()),
                    _ => {}
                }
            }
            // Z before W: a client is not told it won what was won.
            if item.win_sent() {
                b.extend_from_slice(b" Z");
            }
            if item.stale() {
                b.extend_from_slice(b" X");
                won |= !item.win_sent();
            }
            if won {
                b.extend_from_slice(b" W");
                item.mark_win_sent();
            }
            b.extend_from_slice(b"\r\n");
            Ok(())
        });
        if line.is_err() {
            item.abandon(!delayed_bump);
            return line;
        }
        if value {
            out.data_block(item);
        }
        Ok(())
    });
    match found {
        Ok(Ok(())) => {}
        Ok(Err(e)) => out.line(e),
        Err(_) => {
            // EN, with the opaque and key echoed; `q` leaves it out, but
            // an opaque too long is still an error.
            let mut en = Vec::new();
            en.extend_from_slice(b"EN");
            for tok in m.flag_tokens() {
                let r = match tok[0] {
                    b'O' => opaque(&mut en, tok),
                    b'k' => {
                        key_token(&mut en, m.key, m.key_binary);
                        Ok(())
                    }
                    _ => Ok(()),
                };
                if let Err(e) = r {
                    out.line(e);
                    return;
                }
            }
            if !f.quiet {
                en.extend_from_slice(b"\r\n");
                out.bytes(&en);
            }
        }
    }
}

/// `ms`: refused at once if the value is too large (the block is
/// swallowed), else run once its data block has arrived (in the buffer,
/// or received into its item: [`finish`]).
fn set(m: &Meta<'_>, avail: &[u8], line_len: usize, c: &Ctx<'_>, out: &mut Output) -> Step {
    let op = set_op(m);
    match super::text_block(c, &op, avail, line_len, m.datalen as usize) {
        super::Block::Here(data, used) => {
            set_reply(m, &op, data, c, out);
            Step::used(used)
        }
        super::Block::Step(step) => step,
        super::Block::Refused(why) => {
            out.line(super::text::refusal_line(why));
            Step::Done {
                used: line_len,
                swallow: u64::from(m.datalen) + 2,
                close: false,
            }
        }
    }
}

/// An `ms` whose value was received into its item: `line` is its command
/// line (trimmed), parsed again.
pub(super) fn finish(line: &[u8], data: memcrab_store::Incoming, c: &Ctx<'_>, out: &mut Output) {
    let mut scratch = meta::Scratch::default();
    // It parsed when it came; the same bytes parse the same way.
    if let Ok(m) = meta::parse(Kind::Set, line, &mut scratch) {
        let whole = data.ends_in_crlf();
        set_reply(
            &m,
            &set_op(&m),
            whole.then_some(store::Data::Received(data)),
            c,
            out,
        );
    }
}

/// Whether an `ms` line asks for quiet mode (`q`).
pub(super) fn quiet_set(line: &[u8]) -> bool {
    let mut scratch = meta::Scratch::default();
    meta::parse(Kind::Set, line, &mut scratch).is_ok_and(|m| m.flags.quiet)
}

fn set_op<'a>(m: &Meta<'a>) -> store::StoreOp<'a> {
    let f = &m.flags;
    let mode = match f.mode {
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        _ => StoreMode::Set,
    };
    let concat = matches!(mode, StoreMode::Append | StoreMode::Prepend);
    store::StoreOp {
        mode,
        key: m.key,
        flags: f.client_flags,
        exptime: f.ttl.unwrap_or(0),
        cas: f.cas,
        stale_ok: f.invalidate,
        new_cas: f.new_cas,
        key_binary: m.key_binary,
        vivify: f.vivify.filter(|_| concat),
    }
}

/// Runs an `ms` whose data block has arrived (`None`: it did not end in
/// `\r\n`) and answers it.
fn set_reply(
    m: &Meta<'_>,
    op: &store::StoreOp<'_>,
    data: Option<store::Data<'_>>,
    c: &Ctx<'_>,
    out: &mut Output,
) {
    let f = &m.flags;
    let len = m.datalen as usize;
    let Some(data) = data else {
        store::bad_block(c, op, len);
        out.line("CLIENT_ERROR bad data chunk");
        return;
    };
    let done = store::store(c, op, data);
    let code: &[u8] = match done.outcome {
        StoreOutcome::Stored if f.quiet => return,
        StoreOutcome::Stored => b"HD",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::TooLarge => {
            out.line("SERVER_ERROR object too large for cache");
            return;
        }
        StoreOutcome::OutOfMemory => {
            out.line("SERVER_ERROR out of memory storing object");
            return;
        }
    };
    let size = if done.outcome == StoreOutcome::Stored {
        done.value_len
    } else {
        len
    };
    out.with_buf(|b| {
        b.extend_from_slice(code);
        for tok in m.flag_tokens() {
            match tok[0] {
                // Lengths were checked before the value was read.
                b'O' => {
                    b.push(b' ');
                    b.extend_from_slice(tok);
                }
                b'k' => key_token(b, m.key, m.key_binary),
                b'c' => number(b, b'c', done.cas),
                // 1.6.45: the stored size (after an append, the whole).
                b's' => number(b, b's', size as u64),
                _ => {}
            }
        }
        b.extend_from_slice(b"\r\n");
    });
}

/// `md`.
fn delete(m: &Meta<'_>, c: &Ctx<'_>, out: &mut Output) {
    let f = &m.flags;
    let req = DeleteReq {
        key: m.key,
        cas: f.cas,
        remove_value: f.remove_value,
        invalidate: f.invalidate,
        ttl: f.ttl,
        flags: f.client_flags,
        new_cas: f.new_cas,
    };
    let code: &[u8] = match cmd::delete::delete(c, &req) {
        DeleteOutcome::Deleted | DeleteOutcome::Invalidated if f.quiet => return,
        DeleteOutcome::Deleted | DeleteOutcome::Invalidated => b"HD",
        DeleteOutcome::NotFound => b"NF",
        DeleteOutcome::Exists => b"EX",
        DeleteOutcome::OutOfMemory => {
            out.line("SERVER_ERROR out of memory");
            return;
        }
    };
    out.with_buf(|b| {
        b.extend_from_slice(code);
        for tok in m.flag_tokens() {
            match tok[0] {
                // Lengths were checked before the lookup.
                b'O' => {
                    b.push(b' ');
                    b.extend_from_slice(tok);
                }
                b'k' => key_token(b, m.key, m.key_binary),
                _ => {}
            }
        }
        b.extend_from_slice(b"\r\n");
    });
}

/// `ma`.
fn arith(m: &Meta<'_>, c: &Ctx<'_>, out: &mut Output) {
    let f = &m.flags;
    let op = arith::ArithOp {
        key: m.key,
        incr: !matches!(f.mode, Some(b'D' | b'-')),
        delta: f.delta.unwrap_or(1),
        cas: f.cas.unwrap_or(0),
        // Created with no exptime: `N` gives it one in its place.
        create: f.vivify.map(|_| Create {
            initial: f.initial,
            exptime: 0,
        }),
        new_cas: f.new_cas,
    };
    // The reply for a changed or created item is built under its lock.
    let mut line = Vec::new();
    let (r, built) = arith::arith_with(c, &op, |item| {
        let digits = number_of(item);
        if f.value {
            line.extend_from_slice(b"VA ");
            write_u64(&mut line, digits.len() as u64);
        } else {
            line.extend_from_slice(b"HD");
        }
        for tok in m.flag_tokens() {
            match tok[0] {
                b'c' => number(&mut line, b'c', item.cas),
                b't' => ttl(&mut line, item),
                b'T' => item.set_exptime(f.ttl.unwrap_or(0)),
                b'N' if item.created.is_some() => item.set_exptime(f.vivify.unwrap_or(0)),
                b'O' => opaque(&mut line, tok)?,
                b'k' => key_token(&mut line, m.key, m.key_binary),
                _ => {}
            }
        }
        if f.value {
            line.extend_from_slice(b"\r\n");
            line.extend_from_slice(&digits);
        }
        line.extend_from_slice(b"\r\n");
        Ok::<(), &'static str>(())
    });
    match built {
        Some(Err(e)) => {
            out.line(e);
            return;
        }
        Some(Ok(())) => {
            // `q` hides a change, not a creation.
            if !f.quiet || r.created {
                out.bytes(&line);
            }
            return;
        }
        None => {}
    }
    let code: &[u8] = match r.outcome {
        DeltaOutcome::NonNumeric => {
            out.line("CLIENT_ERROR cannot increment or decrement non-numeric value");
            return;
        }
        DeltaOutcome::OutOfMemory => {
            out.line(if r.missed {
                "SERVER_ERROR Out of memory allocating new item"
            } else {
                "SERVER_ERROR out of memory"
            });
            return;
        }
        DeltaOutcome::Exists => b"EX",
        // (A value always comes with its item, answered above.)
        DeltaOutcome::NotFound | DeltaOutcome::Value(_) => b"NF",
    };
    let mut b = Vec::new();
    b.extend_from_slice(code);
    for tok in m.flag_tokens() {
        let r = match tok[0] {
            b'O' => opaque(&mut b, tok),
            b'k' => {
                key_token(&mut b, m.key, m.key_binary);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            out.line(e);
            return;
        }
    }
    b.extend_from_slice(b"\r\n");
    out.bytes(&b);
}

/// The number an incr/decr left in `item`: its value without the spaces
/// an in-place change pads it with.
fn number_of(item: &Found<'_>) -> Vec<u8> {
    let mut v: Vec<u8> = item.parts().flatten().copied().collect();
    v.truncate(item.value_len);
    while v.last() == Some(&b' ') {
        v.pop();
    }
    v
}

/// `me`: `ME <key> exp=… la=… cas=… fetch=… cls=… size=…`, or `EN`.
fn debug(m: &Meta<'_>, c: &Ctx<'_>, out: &mut Output) {
    let found = cmd::get::peek(c, m.key, |item| {
        out.with_buf(|b| {
            b.extend_from_slice(b"ME ");
            if item.key_binary() {
                base64_encode(item.key(), b);
            } else {
                b.extend_from_slice(item.key());
            }
            // memcached prints `now - exptime` as a signed number.
            let exp = if item.exptime() == 0 {
                -1
            } else {
                i64::from(item.now().wrapping_sub(item.exptime()) as i32)
            };
            let fetch = if item.meta.fetched { "yes" } else { "no" };
            b.extend_from_slice(
                format!(
                    " exp={exp} la={} cas={} fetch={fetch} cls={} size={}\r\n",
                    item.meta.idle, item.cas, item.meta.class, item.meta.size
                )
                .as_bytes(),
            );
        });
    });
    if found.is_err() {
        out.line("EN");
    }
}
