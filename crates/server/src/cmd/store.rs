//! Store commands: `set add replace append prepend cas` and binary Set,
//! Add, Replace (a compare-and-swap when they carry a CAS value), Append,
//! Prepend, quiet or not.
//!
//! ```text
//!  header arrives ──► admit (-I, before a byte of the value is read)
//!                       refused: counted, an old value of a set dropped,
//!                       the session swallows the value
//!                 ──► receive (a value longer than the transport's buffer:
//!                       its first chunk taken now, the rest as its bytes
//!                       come, as memcached takes them; refused out of
//!                       memory as admit refuses)
//!  value arrives  ──► store (CAS rule, -C, counters) ──► Done
//!                 or  bad_block (text: the block did not end in \r\n)
//! ```

use memcrab_proto::StoreMode;
use memcrab_store::{Incoming, Mode, StoreOutcome, StoreReq, StoreResult};

use super::hook::{self, Event, Op};
use super::{Ctx, Proto};
use crate::stats::Counter;

/// A store request as every protocol states it; the value comes apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreOp<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    /// As the client sent it.
    pub exptime: i32,
    /// A CAS value to compare: text `cas` always carries one; binary
    /// sends one when not 0, meta with `C` (0 too).
    pub cas: Option<u64>,
    /// Meta `I`: an older CAS value stores anyway, as a stale value.
    pub stale_ok: bool,
    /// Meta `E`: the CAS value the stored item gets.
    pub new_cas: Option<u64>,
    /// Meta `b`: the key came base64-encoded.
    pub key_binary: bool,
    /// Meta `N` (1.6.45): an append or prepend that misses creates the
    /// item with this exptime.
    pub vivify: Option<i32>,
}

/// What a store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub outcome: StoreOutcome,
    /// The stored item's CAS value (0 unless stored, and under `-C`).
    pub cas: u64,
    /// Whether it ran as a compare-and-swap.
    pub compared: bool,
    /// The stored value's length (after an append, the whole value).
    pub value_len: usize,
}

/// Why a store was refused before its value was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over `-I`.
    TooLarge,
    /// No item memory for the value (evictions off, or nothing to evict).
    OutOfMemory,
}

/// A store's value: in the input buffer, or received into its item.
pub enum Data<'a> {
    Bytes(&'a [u8]),
    Received(Incoming),
}

impl Data<'_> {
    fn len(&self) -> usize {
        match self {
            Data::Bytes(b) => b.len(),
            Data::Received(r) => r.value_len(),
        }
    }
}

/// Counts a store refused for its size or for memory. memcached counts
/// these (`store_too_large`, `store_no_memory`) in its text protocol
/// (meta included) only.
fn count_refusal(cx: &Ctx<'_>, c: Counter) {
    if cx.proto != Proto::Binary {
        cx.stats.incr(c);
    }
}

/// Whether a store refused for its size or memory drops the key's old
/// value rather than leave it stale: a `set` does; a meta set does in
/// every mode (memcached 1.6's `ms`).
fn drops_old(cx: &Ctx<'_>, op: &StoreOp<'_>) -> bool {
    op.mode == StoreMode::Set || cx.proto == Proto::Meta
}

/// memcached's `-I` check, made when the header arrives, before the
/// value is read: a refused value is counted (`store_too_large`) and the
/// key's old value may be dropped ([`drops_old`]).
pub fn admit(cx: &Ctx<'_>, op: &StoreOp<'_>, value_len: usize) -> Result<(), Refused> {
    if cx.sh.store.item_size_ok(op.key.len(), op.flags, value_len) {
        return Ok(());
    }
    Err(refuse(cx, op, Refused::TooLarge))
}

/// Takes the item a value of `value_len` bytes will be read into as it
/// arrives (after [`admit`]): its first chunk now, as memcached allocates
/// at the header, evicting as any store does (the others as the bytes
/// come, `session::Receiving`). Refused out of memory as memcached refuses
/// it there (`store_no_memory`, a set's old value dropped). `client_crlf`:
/// the client sends the block's `\r\n` (text, meta).
pub fn receive(
    cx: &Ctx<'_>,
    op: &StoreOp<'_>,
    value_len: usize,
    client_crlf: bool,
) -> Result<Incoming, Refused> {
    match cx
        .sh
        .store
        .reserve(op.key, op.flags, value_len, client_crlf)
    {
        Ok(inc) => Ok(inc),
        Err(StoreOutcome::TooLarge) => Err(refuse(cx, op, Refused::TooLarge)),
        Err(_) => Err(refuse(cx, op, Refused::OutOfMemory)),
    }
}

/// A store refused before its value: counted, logged, the old value of a
/// set (any meta set) dropped.
fn refuse(cx: &Ctx<'_>, op: &StoreOp<'_>, refused: Refused) -> Refused {
    let (counter, status) = match refused {
        Refused::TooLarge => (Counter::StoreTooLarge, "too_large"),
        Refused::OutOfMemory => (Counter::StoreNoMemory, "no_memory"),
    };
    count_refusal(cx, counter);
    // memcached logs the refusal with no item: ttl, class and size 0
    // (1.6.18 prints the descriptor where the class goes), then the lookup
    // that drops a set's old value.
    log_store(cx, op, status, cmd_name(op.mode), None);
    if drops_old(cx, op) {
        match cx.sh.store.unlink_key(op.key) {
            Some((class, len)) => super::get::log_get(cx, op.key, "found", class, len),
            None => super::get::log_get(cx, op.key, "not_found", 0, 0),
        }
    }
    hook::record(cx, || Event {
        op: Op::Store(op.mode),
        key: op.key,
        hit: false,
    });
    refused
}

/// memcached's name of a store command in `watch mutations` lines.
fn cmd_name(mode: StoreMode) -> &'static str {
    match mode {
        StoreMode::Add => "add",
        StoreMode::Set => "set",
        StoreMode::Replace => "replace",
        StoreMode::Append => "append",
        StoreMode::Prepend => "prepend",
        StoreMode::Cas => "cas",
    }
}

/// memcached's `watch mutations` line for a store: `item` is the item
/// logged (its value length and exptime on the store clock, 0: none),
/// `None` for a refusal before any item was made.
fn log_store(cx: &Ctx<'_>, op: &StoreOp<'_>, status: &str, cmd: &str, item: Option<(usize, u32)>) {
    cx.sh.watch.log(crate::watch::MUTATIONS, |b| {
        let store = &cx.sh.store;
        let (ttl, class, size) = match item {
            Some((len, t)) => {
                let ttl = if t == 0 {
                    0
                } else {
                    t.wrapping_sub(store.clock().now())
                };
                (ttl, store.class_for_item(op.key.len(), op.flags, len), len)
            }
            None => (0, 0, 0),
        };
        b.extend_from_slice(b"type=item_store key=");
        crate::watch::uri_encode(op.key, b);
        b.extend(
            format!(
                " status={status} cmd={cmd} ttl={ttl} clsid={class} cfd={} size={size}\n",
                cx.fd
            )
            .bytes(),
        );
    });
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

/// The store mode to run, and the CAS value to compare. A Set or Replace
/// carrying a CAS value is a compare-and-swap, a binary Add too (a meta
/// Add ignores its value); under `-C` memcached keeps no CAS values, and
/// a binary store's is ignored while text `cas` and meta `C` still
/// compare (and find none equal). Append and prepend compare theirs
/// unless it is 0 or `-C` is on.
fn mode_and_cas(op: &StoreOp<'_>, use_cas: bool, proto: Proto) -> (Mode, u64) {
    let cas = op.cas.unwrap_or(0);
    let compares = match proto {
        Proto::Binary => use_cas && cas != 0,
        Proto::Text | Proto::Meta => op.cas.is_some(),
    };
    match op.mode {
        StoreMode::Cas => (Mode::Cas, cas),
        StoreMode::Set | StoreMode::Replace if compares => (Mode::Cas, cas),
        StoreMode::Add if compares && proto == Proto::Binary => (Mode::Cas, cas),
        StoreMode::Set => (Mode::Set, 0),
        StoreMode::Add => (Mode::Add, 0),
        StoreMode::Replace => (Mode::Replace, 0),
        StoreMode::Append => (Mode::Append, if use_cas { cas } else { 0 }),
        StoreMode::Prepend => (Mode::Prepend, if use_cas { cas } else { 0 }),
    }
}

/// Runs a store whose value has arrived. Counts a compare-and-swap on a
/// missing key (`cas_misses`), a value too large or memory too short
/// (`store_too_large`, `store_no_memory`: text only, as memcached); the
/// store counts the rest per class (`cmd_set`, `cas_hits`, `cas_badval`).
pub fn store(cx: &Ctx<'_>, op: &StoreOp<'_>, data: Data<'_>) -> Done {
    let (mode, cas) = mode_and_cas(op, cx.sh.settings.use_cas, cx.proto);
    let len = data.len();
    let req = StoreReq {
        mode,
        key: op.key,
        flags: op.flags,
        exptime: op.exptime,
        value: &[],
        cas,
        stale_ok: op.stale_ok && mode == Mode::Cas,
        new_cas: op.new_cas,
        key_binary: op.key_binary,
        vivify: op.vivify,
    };
    let r = match data {
        Data::Bytes(value) => cx.sh.store.store(&StoreReq { value, ..req }),
        Data::Received(inc) => cx.sh.store.store_incoming(&req, inc),
    };
    log_outcome(cx, op, mode, len, &r);
    match r.outcome {
        StoreOutcome::NotFound => cx.stats.incr(Counter::CasMisses),
        StoreOutcome::TooLarge => count_refusal(cx, Counter::StoreTooLarge),
        StoreOutcome::OutOfMemory => {
            count_refusal(cx, Counter::StoreNoMemory);
            if drops_old(cx, op) {
                cx.sh.store.unlink_key(op.key);
            }
        }
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
        value_len: r.value_len,
    }
}

/// memcached's `watch` lines for a store that ran: the lookup before it
/// (fetchers), then the store (mutations). Nothing is worked out unless a
/// watcher wants them.
fn log_outcome(cx: &Ctx<'_>, op: &StoreOp<'_>, mode: Mode, value_len: usize, r: &StoreResult) {
    use crate::watch::{FETCHERS, MUTATIONS};
    let vvv = cx.sh.verbose() > 2;
    if !vvv && !cx.sh.watch.wants(FETCHERS | MUTATIONS) {
        return;
    }
    if vvv || cx.sh.watch.wants(FETCHERS) {
        match r.old {
            Some((flags, len)) => {
                let class = cx.sh.store.class_for_item(op.key.len(), flags, len);
                super::get::log_get(cx, op.key, "found", class, len)
            }
            None => super::get::log_get(cx, op.key, "not_found", 0, 0),
        }
    }
    let status = match r.outcome {
        StoreOutcome::Stored => "stored",
        StoreOutcome::NotStored => "not_stored",
        StoreOutcome::Exists => "exists",
        StoreOutcome::NotFound => "not_found",
        StoreOutcome::TooLarge => "too_large",
        StoreOutcome::OutOfMemory => "no_memory",
    };
    let cmd = if mode == Mode::Cas {
        "cas"
    } else {
        cmd_name(op.mode)
    };
    // A stored append or prepend is logged as the joined item (its whole
    // value, the old exptime), anything else as the request's.
    let item = if r.outcome == StoreOutcome::Stored {
        (r.value_len, r.exptime)
    } else {
        (value_len, cx.sh.store.clock().realtime(op.exptime))
    };
    log_store(cx, op, status, cmd, Some(item));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(mode: StoreMode, cas: Option<u64>) -> StoreOp<'static> {
        StoreOp {
            mode,
            key: b"k",
            cas,
            ..StoreOp::default()
        }
    }

    #[test]
    fn a_cas_value_makes_a_store_compare_as_each_protocol_says() {
        use Proto::{Binary as B, Meta as M, Text as T};
        use StoreMode as S;
        for (m, cas, use_cas, proto, want) in [
            (S::Set, None, true, B, (Mode::Set, 0)),
            (S::Set, Some(7), true, B, (Mode::Cas, 7)),
            (S::Add, Some(7), true, B, (Mode::Cas, 7)),
            (S::Replace, Some(7), true, B, (Mode::Cas, 7)),
            (S::Set, Some(7), false, B, (Mode::Set, 0)),
            (S::Add, Some(7), false, B, (Mode::Add, 0)),
            (S::Append, Some(7), true, B, (Mode::Append, 7)),
            (S::Prepend, Some(7), false, B, (Mode::Prepend, 0)),
            (S::Cas, Some(7), true, T, (Mode::Cas, 7)),
            (S::Cas, Some(7), false, T, (Mode::Cas, 7)),
            (S::Cas, Some(0), true, T, (Mode::Cas, 0)),
            (S::Set, Some(0), true, M, (Mode::Cas, 0)),
            (S::Set, Some(7), false, M, (Mode::Cas, 7)),
            (S::Replace, Some(7), true, M, (Mode::Cas, 7)),
            (S::Add, Some(7), true, M, (Mode::Add, 0)),
            (S::Append, Some(7), true, M, (Mode::Append, 7)),
            (S::Append, Some(7), false, M, (Mode::Append, 0)),
            (S::Set, None, true, M, (Mode::Set, 0)),
        ] {
            let got = mode_and_cas(&op(m, cas), use_cas, proto);
            assert_eq!(got, want, "{m:?} {cas:?} {use_cas} {proto:?}");
        }
    }
}
