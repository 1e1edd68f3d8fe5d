//! `delete <key>`, binary Delete (which may carry a CAS value) and meta
//! `md` (CAS, invalidate, remove the value).

use memcrab_store::{DeleteOutcome, DeleteReq};

use super::hook::{self, Event, Op};
use super::{Ctx, Proto};
use crate::stats::Counter;

/// Runs a delete. A miss counts in `delete_misses`, and for meta a CAS
/// value that differs does too (memcached's `md`; its binary Delete does
/// not count it); the store counts hits per class (not for an
/// invalidation).
pub fn delete(cx: &Ctx<'_>, req: &DeleteReq<'_>) -> DeleteOutcome {
    let (outcome, seen) = cx.sh.store.delete_seen(req);
    super::get::log_seen(cx, req.key, seen);
    match outcome {
        DeleteOutcome::NotFound => cx.stats.incr(Counter::DeleteMisses),
        DeleteOutcome::Exists if cx.proto == Proto::Meta => cx.stats.incr(Counter::DeleteMisses),
        _ => {}
    }
    hook::record(cx, || Event {
        op: Op::Delete,
        key: req.key,
        hit: matches!(outcome, DeleteOutcome::Deleted | DeleteOutcome::Invalidated),
    });
    outcome
}
