//! `incr`/`decr` and binary Increment/Decrement: a 64-bit counter kept as
//! decimal text. Incr wraps at 2^64, decr stops at 0; the number is read
//! with memcached's `strtoull` rules.

use memcrab_proto::num::safe_strtoull;
use memcrab_store::{ArithReq, ArithResult, Create, DeltaOutcome, Found};

use super::hook::{self, Event, Op};
use super::Ctx;
use crate::stats::Counter;

/// An incr or decr as every protocol states it.
#[derive(Debug, Clone, Copy)]
pub struct ArithOp<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    /// A CAS value the item must have (0: any).
    pub cas: u64,
    /// Binary and meta `N`: on a miss, create the key with this initial
    /// value and exptime instead.
    pub create: Option<Create>,
    /// Meta `E`: the CAS value the changed item gets.
    pub new_cas: Option<u64>,
}

/// Runs an incr/decr. A miss is counted (`incr_misses`, `decr_misses`)
/// unless it created the key, as memcached counts; the store counts hits
/// per class.
pub fn arith(cx: &Ctx<'_>, op: &ArithOp<'_>) -> ArithResult {
    arith_with(cx, op, |_| ()).0
}

/// [`arith`], then `f` on the changed or created item under the store's
/// lock (meta `ma` reads and sets its TTL and CAS value there).
pub fn arith_with<R>(
    cx: &Ctx<'_>,
    op: &ArithOp<'_>,
    f: impl FnOnce(&mut Found<'_>) -> R,
) -> (ArithResult, Option<R>) {
    let (r, out) = cx.sh.store.arith_with(
        &ArithReq {
            key: op.key,
            incr: op.incr,
            delta: op.delta,
            cas: op.cas,
            parse: safe_strtoull,
            create: op.create,
            new_cas: op.new_cas,
        },
        f,
    );
    super::get::log_seen(cx, op.key, r.seen);
    if r.outcome == DeltaOutcome::NotFound {
        cx.stats.incr(if op.incr {
            Counter::IncrMisses
        } else {
            Counter::DecrMisses
        });
    }
    hook::record(cx, || Event {
        op: if op.incr { Op::Incr } else { Op::Decr },
        key: op.key,
        hit: matches!(r.outcome, DeltaOutcome::Value(_)),
    });
    (r, out)
}
