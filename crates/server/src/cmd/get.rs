//! A lookup: `get`, `gets`, `gat`, `gats` (per key), binary Get, GetK,
//! Gat, GatK (and quiet forms). The found item is handed to the caller's
//! closure under the store's lock: the session encodes it there, copying
//! a small value or holding a large one (`Output::value`), never
//! copying it here.

use memcrab_store::{Found, GetOpts, Missed};

use super::hook::{self, Event, Op};
use super::Ctx;
use crate::stats::Counter;

/// Looks `key` up (with `touch`, also giving it that exptime) and runs
/// `hit` on it when it is live. Counts as memcached 1.6 does: a lookup
/// with a touch in `cmd_touch` and `touch_hits`/`touch_misses`, a plain
/// one in `cmd_get` and `get_hits`/`get_misses`; an expired or flushed
/// miss in `get_expired`/`get_flushed` either way. (The hits are the
/// store's per-class counters.)
#[inline]
pub fn get<R>(
    cx: &Ctx<'_>,
    key: &[u8],
    touch: Option<i32>,
    hit: impl FnOnce(&Found<'_>) -> R,
) -> Result<R, Missed> {
    let found = cx.sh.store.get_with(
        key,
        GetOpts {
            touch,
            ..GetOpts::default()
        },
        hit,
    );
    let st = cx.stats;
    st.incr(if touch.is_some() {
        Counter::TouchCmds
    } else {
        Counter::GetCmds
    });
    if let Err(missed) = found {
        st.incr(if touch.is_some() {
            Counter::TouchMisses
        } else {
            Counter::GetMisses
        });
        match missed {
            Missed::Expired => st.incr(Counter::GetExpired),
            Missed::Flushed => st.incr(Counter::GetFlushed),
            Missed::Miss => {}
        }
    }
    hook::record(cx, || Event {
        op: if touch.is_some() { Op::Touch } else { Op::Get },
        key,
        hit: found.is_ok(),
    });
    found
}
