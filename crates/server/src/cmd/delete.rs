//! `delete <key>` and binary Delete (which may carry a CAS value).

use memcrab_store::DeleteOutcome;

use super::hook::{self, Event, Op};
use super::Ctx;
use crate::stats::Counter;

/// Deletes `key` if it is live and, when `cas` is not 0, its CAS value is
/// `cas`. A miss is counted (`delete_misses`); the store counts hits per
/// class.
pub fn delete(cx: &Ctx<'_>, key: &[u8], cas: u64) -> DeleteOutcome {
    let outcome = cx.sh.store.delete(key, cas);
    if outcome == DeleteOutcome::NotFound {
        cx.stats.incr(Counter::DeleteMisses);
    }
    hook::record(cx, || Event {
        op: Op::Delete,
        key,
        hit: outcome == DeleteOutcome::Deleted,
    });
    outcome
}
