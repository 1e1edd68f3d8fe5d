//! The one point every key command passes after it has run: what it did
//! to which key. Observers attach here (memcached's per-prefix stats,
//! `stats detail`, and its `watch` log are the two it has); with none
//! attached a command pays one branch.

use memcrab_proto::StoreMode;

use super::{Ctx, Proto};

/// What a command did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A lookup (get, gat, touch): whether it found a live item.
    Fetch {
        key: &'a [u8],
        hit: bool,
        touch: bool,
    },
    /// A store command, and whether it stored.
    Store {
        key: &'a [u8],
        mode: StoreMode,
        stored: bool,
    },
    Delete {
        key: &'a [u8],
        hit: bool,
    },
    /// incr/decr: whether the key held a number it changed (or created).
    Arith {
        key: &'a [u8],
        incr: bool,
        hit: bool,
    },
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
    if observers.is_empty() {
        return;
    }
    let e = event();
    for o in observers {
        o.observe(cx.proto, &e);
    }
}
