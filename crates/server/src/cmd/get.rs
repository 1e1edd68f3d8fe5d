//! A lookup: `get`, `gets`, `gat`, `gats` (per key), binary Get, GetK,
//! Gat, GatK (and quiet forms), meta `mg` and `me`. The found item is
//! handed to the caller's closure under the store's lock: the session
//! encodes it there, copying a small value or holding a large one
//! (`Output::value`), never copying it here.

use std::convert::Infallible;

use memcrab_store::{Found, GetOpts, HitCount, Missed};

use super::hook::{self, Event, Op};
use super::Ctx;
use crate::stats::Counter;

/// Looks `key` up (with `touch`, also giving it that exptime) and runs
/// `hit` on it when it is live.
#[inline]
pub fn get<R>(
    cx: &Ctx<'_>,
    key: &[u8],
    touch: Option<i32>,
    hit: impl FnOnce(&mut Found<'_>) -> R,
) -> Result<R, Missed> {
    get_as(cx, key, touch, None, hit)
}

/// [`get`], told which operation observers see (`None`: a get, or a gat
/// with `touch`).
pub(super) fn get_as<R>(
    cx: &Ctx<'_>,
    key: &[u8],
    touch: Option<i32>,
    op: Option<Op>,
    hit: impl FnOnce(&mut Found<'_>) -> R,
) -> Result<R, Missed> {
    let found = lookup_as(cx, key, touch.into(), op, |f| Ok::<R, Infallible>(hit(f)));
    found.map(|r| match r {
        Ok(r) => r,
        Err(never) => match never {},
    })
}

/// A lookup with every option the store has (`mg`: vivify, no bump,
/// a TTL set by the caller). `f` may fail after the lookup (`mg` with an
/// opaque too long): then it calls [`Found::abandon`], and nothing is
/// counted here either, as in memcached.
///
/// Counts as memcached 1.6 does: a hit in `cmd_touch`/`touch_hits` or
/// `cmd_get`/`get_hits` as `opts.count` says; a miss in
/// `cmd_touch`/`touch_misses` when `opts.touch` was asked for, else in
/// `cmd_get`/`get_misses` (an `mg` miss counts as a get even with `T`);
/// an expired or flushed miss also in `get_expired`/`get_flushed`, also
/// when `vivify` then created the item. (Hits are the store's per-class
/// counters.)
#[inline]
pub fn lookup<R, E>(
    cx: &Ctx<'_>,
    key: &[u8],
    opts: GetOpts,
    f: impl FnOnce(&mut Found<'_>) -> Result<R, E>,
) -> Result<Result<R, E>, Missed> {
    lookup_as(cx, key, opts, None, f)
}

#[inline]
fn lookup_as<R, E>(
    cx: &Ctx<'_>,
    key: &[u8],
    opts: GetOpts,
    op: Option<Op>,
    f: impl FnOnce(&mut Found<'_>) -> Result<R, E>,
) -> Result<Result<R, E>, Missed> {
    let mut missed_before = None;
    let mut seen = (0, 0);
    let found = cx.sh.store.get_with(key, opts, |found| {
        seen = (found.meta.class, found.value_len);
        let r = f(found);
        missed_before = found.created;
        r
    });
    let st = cx.stats;
    let touch_hit = opts.count == HitCount::Touch;
    let missed = match &found {
        Ok(Err(_)) => return found,
        Ok(Ok(_)) => {
            st.incr(if touch_hit {
                Counter::TouchCmds
            } else {
                Counter::GetCmds
            });
            missed_before
        }
        Err(m) => {
            if opts.touch.is_some() {
                st.incr(Counter::TouchCmds);
                st.incr(Counter::TouchMisses);
            } else {
                st.incr(Counter::GetCmds);
                st.incr(Counter::GetMisses);
            }
            Some(*m)
        }
    };
    count_why(cx, missed);
    let status = match missed {
        None if found.is_ok() => "found",
        Some(Missed::Expired) => "expired",
        Some(Missed::Flushed) => "flushed",
        _ => "not_found",
    };
    let (class, size) = if found.is_ok() { seen } else { (0, 0) };
    log_get(cx, key, status, class, size);
    hook::record(cx, || Event {
        op: op.unwrap_or(if touch_hit || opts.touch.is_some() {
            Op::Gat
        } else {
            Op::Get
        }),
        key,
        hit: found.is_ok(),
    });
    found
}

/// `me`: a look at an item that changes nothing, counted in `cmd_meta`
/// only (and an expired or flushed miss, as any lookup).
pub fn peek<R>(cx: &Ctx<'_>, key: &[u8], f: impl FnOnce(&mut Found<'_>) -> R) -> Result<R, Missed> {
    let opts = GetOpts {
        bump: false,
        count: HitCount::None,
        ..GetOpts::default()
    };
    let found = cx.sh.store.get_with(key, opts, f);
    cx.stats.incr(Counter::MetaCmds);
    count_why(cx, found.as_ref().err().copied());
    found
}

/// Counts why a lookup missed, when it was expired or flushed.
fn count_why(cx: &Ctx<'_>, missed: Option<Missed>) {
    match missed {
        Some(Missed::Expired) => cx.stats.incr(Counter::GetExpired),
        Some(Missed::Flushed) => cx.stats.incr(Counter::GetFlushed),
        Some(Missed::Miss) | None => {}
    }
}

/// The `watch fetchers` line for the lookup a delete or an incr/decr
/// made (memcached logs every internal fetch).
pub(super) fn log_seen(cx: &Ctx<'_>, key: &[u8], seen: memcrab_store::Seen) {
    if !cx.sh.watch.wants(crate::watch::FETCHERS) && cx.sh.verbose() < 3 {
        return;
    }
    match seen {
        Ok((class, len)) => log_get(cx, key, "found", class, len),
        Err(Missed::Expired) => log_get(cx, key, "expired", 0, 0),
        Err(Missed::Flushed) => log_get(cx, key, "flushed", 0, 0),
        Err(Missed::Miss) => log_get(cx, key, "not_found", 0, 0),
    }
}

/// memcached's -vvv line for every internal fetch.
#[cold]
fn log_fetch_vvv(key: &[u8], status: &str) {
    let k = String::from_utf8_lossy(key);
    match status {
        "found" => eprintln!("> FOUND KEY {k}"),
        "expired" => eprintln!("> FOUND KEY {k} -nuked by expire"),
        "flushed" => eprintln!("> FOUND KEY {k} -nuked by flush"),
        _ => eprintln!("> NOT FOUND {k}"),
    }
}

/// memcached's `watch fetchers` line for a lookup (`status` found,
/// not_found, expired or flushed; a miss shows class and size 0).
#[inline]
pub(super) fn log_get(cx: &Ctx<'_>, key: &[u8], status: &str, class: usize, size: usize) {
    if cx.sh.verbose() > 2 {
        log_fetch_vvv(key, status);
    }
    cx.sh.watch.log(crate::watch::FETCHERS, |b| {
        b.extend_from_slice(b"type=item_get key=");
        crate::watch::uri_encode(key, b);
        b.extend(format!(" status={status} clsid={class} cfd={} size={size}\n", cx.fd).bytes());
    });
}
