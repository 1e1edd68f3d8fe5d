//! The one point every key command passes after it has run: what it did
//! to which key. Observers attach here (memcached's per-prefix stats,
//! `stats detail`, and its `watch` log are the two it has; memcrab's hot
//! keys count here too); with none attached, per-prefix stats off and no
//! hot keys kept a command pays three branches.

use memcrab_proto::StoreMode;

use super::{Ctx, Proto};

/// A key command, as observers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A plain lookup (get, gets, binary Get, meta mg).
    Get,
    /// A lookup that sets a new exptime (gat, gats, binary Gat, Touch).
    Gat,
    /// Text `touch`: a new exptime, no value (memcached's per-prefix
    /// stats do not count it, where they count a gat and binary Touch).
    Touch,
    Store(StoreMode),
    Delete,
    Incr,
    Decr,
}

/// What a command did to a key: `hit` when it found a live item (a
/// lookup, delete, incr/decr; an incr/decr that created the key counts)
/// or stored (a store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub op: Op,
    pub key: &'a [u8],
    pub hit: bool,
}

/// Something that wants to see every key command, from every protocol.
pub trait Observer: Send + Sync {
    fn observe(&self, proto: Proto, event: &Event<'_>);
}

/// Tells every observer what a command did. `event` is built only when
/// someone listens.
#[inline]
pub fn record<'k>(cx: &Ctx<'_>, event: impl FnOnce() -> Event<'k>) {
    let observers = &cx.sh.observers;
    let prefix = &cx.sh.prefix;
    let hot = cx.stats.hot.as_ref();
    if observers.is_empty() && !prefix.is_on() && hot.is_none() {
        return;
    }
    let e = event();
    if let Some(h) = hot {
        h.count(e.key, || cx.sh.store.clock().now());
    }
    if prefix.is_on() {
        prefix.observe(cx.proto, &e);
    }
    for o in observers {
        o.observe(cx.proto, &e);
    }
}
