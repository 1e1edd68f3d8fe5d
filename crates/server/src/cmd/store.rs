//! Store commands: `set add replace append prepend cas` and binary Set,
//! Add, Replace (a compare-and-swap when they carry a CAS value), Append,
//! Prepend, quiet or not.
//!
//! ```text
//!  header arrives ──► admit (-I, before a byte of the value is read)
//!                       refused: counted, an old value of a set dropped,
//!                       the session swallows the value
//!  value arrives  ──► store (CAS rule, -C, counters) ──► Done
//!                 or  bad_block (text: the block did not end in \r\n)
//! ```

use memcrab_proto::StoreMode;
use memcrab_store::{Mode, StoreOutcome, StoreReq};

use super::hook::{self, Event, Op};
use super::{Ctx, Proto};
use crate::stats::Counter;

/// A store request as every protocol states it; the value comes apart.
#[derive(Debug, Clone, Copy)]
pub struct StoreOp<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    /// As the client sent it.
    pub exptime: i32,
    /// A CAS value to compare (0: none): text `cas` always carries one;
    /// binary Set/Add/Replace become a compare-and-swap with one, binary
    /// Append/Prepend check theirs.
    pub cas: u64,
}

/// What a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub outcome: StoreOutcome,
    /// The stored item's CAS value (0 unless stored, and under `-C`).
    pub cas: u64,
    /// Whether it ran as a compare-and-swap.
    pub compared: bool,
}

/// The value is over `-I`: refused before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Counts a store refused for its size or for memory. memcached counts
/// these (`store_too_large`, `store_no_memory`) in its text protocol only.
fn count_refusal(cx: &Ctx<'_>, c: Counter) {
    if cx.proto == Proto::Text {
        cx.stats.incr(c);
    }
}

/// memcached's `-I` check, made when the header arrives, before the
/// value is read: a refused value is counted (`store_too_large`) and, for
/// a `set`, the key's old value is dropped rather than left stale.
pub fn admit(cx: &Ctx<'_>, op: &StoreOp<'_>, value_len: usize) -> Result<(), TooLarge> {
    let store = &cx.sh.store;
    if store.item_size_ok(op.key.len(), op.flags, value_len) {
        return Ok(());
    }
    count_refusal(cx, Counter::StoreTooLarge);
    if op.mode == StoreMode::Set {
        store.unlink_key(op.key);
    }
    hook::record(cx, || Event {
        op: Op::Store(op.mode),
        key: op.key,
        hit: false,
    });
    Err(TooLarge)
}

/// A text data block that did not end in `\r\n`: memcached has counted
/// the `set` in the item's class by then, and stores nothing.
pub fn bad_block(cx: &Ctx<'_>, op: &StoreOp<'_>, value_len: usize) {
    cx.sh.store.note_set_attempt(op.key, op.flags, value_len);
    hook::record(cx, || Event {
        op: Op::Store(op.mode),
        key: op.key,
        hit: false,
    });
}

/// The store mode to run, and the CAS value to compare. A Set, Add or
/// Replace carrying a CAS value is a compare-and-swap; under `-C`
/// memcached keeps no CAS values and ignores a store's (text `cas` still
/// compares, and finds none equal).
fn mode_and_cas(op: &StoreOp<'_>, use_cas: bool) -> (Mode, u64) {
    match op.mode {
        StoreMode::Cas => (Mode::Cas, op.cas),
        StoreMode::Set | StoreMode::Add | StoreMode::Replace if use_cas && op.cas != 0 => {
            (Mode::Cas, op.cas)
        }
        StoreMode::Set => (Mode::Set, 0),
        StoreMode::Add => (Mode::Add, 0),
        StoreMode::Replace => (Mode::Replace, 0),
        StoreMode::Append => (Mode::Append, if use_cas { op.cas } else { 0 }),
        StoreMode::Prepend => (Mode::Prepend, if use_cas { op.cas } else { 0 }),
    }
}

/// Runs a store whose value has arrived. Counts a compare-and-swap on a
/// missing key (`cas_misses`), a value too large or memory too short
/// (`store_too_large`, `store_no_memory`: text only, as memcached); the
/// store counts the rest per class (`cmd_set`, `cas_hits`, `cas_badval`).
pub fn store(cx: &Ctx<'_>, op: &StoreOp<'_>, value: &[u8]) -> Done {
    let (mode, cas) = mode_and_cas(op, cx.sh.settings.use_cas);
    let r = cx.sh.store.store(&StoreReq {
        mode,
        key: op.key,
        flags: op.flags,
        exptime: op.exptime,
        value,
        cas,
    });
    match r.outcome {
        StoreOutcome::NotFound => cx.stats.incr(Counter::CasMisses),
        StoreOutcome::TooLarge => count_refusal(cx, Counter::StoreTooLarge),
        StoreOutcome::OutOfMemory => count_refusal(cx, Counter::StoreNoMemory),
        StoreOutcome::Stored | StoreOutcome::NotStored | StoreOutcome::Exists => {}
    }
    hook::record(cx, || Event {
        op: Op::Store(op.mode),
        key: op.key,
        hit: r.outcome == StoreOutcome::Stored,
    });
    Done {
        outcome: r.outcome,
        cas: r.cas,
        compared: mode == Mode::Cas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: StoreMode, cas: u64) -> StoreOp<'static> {
        StoreOp {
            mode,
            key: b"k",
            flags: 0,
            exptime: 0,
            cas,
        }
    }

    #[test]
    fn a_cas_value_makes_a_store_compare_unless_cas_is_off() {
        use StoreMode as S;
        for (m, cas, use_cas, want) in [
            (S::Set, 0, true, (Mode::Set, 0)),
            (S::Set, 7, true, (Mode::Cas, 7)),
            (S::Add, 7, true, (Mode::Cas, 7)),
            (S::Replace, 7, true, (Mode::Cas, 7)),
            (S::Set, 7, false, (Mode::Set, 0)),
            (S::Add, 7, false, (Mode::Add, 0)),
            (S::Append, 7, true, (Mode::Append, 7)),
            (S::Prepend, 7, false, (Mode::Prepend, 0)),
            (S::Cas, 7, true, (Mode::Cas, 7)),
            (S::Cas, 7, false, (Mode::Cas, 7)),
            (S::Cas, 0, true, (Mode::Cas, 0)),
        ] {
            assert_eq!(
                mode_and_cas(&op(m, cas), use_cas),
                want,
                "{m:?} {cas} {use_cas}"
            );
        }
    }
}
