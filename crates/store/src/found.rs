//! A found item's data: its value chunk by chunk ([`Parts`]), and holds
//! on it that outlive the shard lock ([`Found::pin`]).

use std::sync::Arc;

use crate::hits::Kind;
use crate::item::{fl, ChunkId, It, HDR};
use crate::mem::{ItemRef, Mem};
use crate::shard::Shard;
use crate::{HitCount, Missed, Store};

/// A live item, seen under its shard's lock by [`Store::get_with`] (and
/// after an incr/decr by [`Store::arith_with`]). Its reader may send its
/// value, and may change what meta commands change: its exptime, its CAS
/// value, its recache-win mark.
pub struct Found<'a> {
    pub(crate) store: &'a Store,
    /// The shard, when its lock is held exclusively (else shared: what
    /// the reader changes is deferred, `pending`).
    pub(crate) shard: Option<&'a mut Shard>,
    pub(crate) mem: &'a Arc<Mem>,
    pub(crate) head: ChunkId,
    pub(crate) it: It,
    pub(crate) now: u32,
    pub flags: u32,
    pub cas: u64,
    /// Value bytes, without the `\r\n`.
    pub value_len: usize,
    /// What the item was like when the lookup found it.
    pub meta: ItemMeta,
    /// The lookup (or incr/decr) missed, for this reason, and created the
    /// item ([`GetOpts::vivify`](crate::GetOpts::vivify),
    /// [`ArithReq::create`](crate::ArithReq::create)).
    pub created: Option<Missed>,
    /// Whether the lookup marks the item used once the reader is done.
    pub(crate) bump: bool,
    /// The reader gave up ([`abandon`](Self::abandon)).
    pub(crate) abandoned: bool,
    /// An incr/decr replaced the item with a new one: memcached hands its
    /// meta command the old one, so an exptime set now reaches only this
    /// copy (and what the command reports), not the stored item.
    pub(crate) detached_exptime: Option<Option<u32>>,
    /// Under a shared lock: an exptime and a CAS value the reader set,
    /// written once the exclusive lock is had.
    pending: (Option<u32>, Option<u64>),
}

/// An item's metadata as a lookup found it, before the lookup changed
/// anything (what meta commands report: `t`, `l`, `h`, `me`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemMeta {
    /// Seconds until it expires, after the lookup's touch (`None`: never).
    pub ttl: Option<u32>,
    /// Seconds since it was last used, before this lookup.
    pub idle: u32,
    /// Whether a client had read it before this lookup.
    pub fetched: bool,
    /// Its slab class.
    pub class: usize,
    /// Bytes it takes: header, flags, key and value with `\r\n`.
    pub size: usize,
}

impl ItemMeta {
    pub(crate) fn of(store: &Store, it: It, now: u32) -> ItemMeta {
        let exptime = it.exptime();
        ItemMeta {
            ttl: (exptime != 0).then(|| exptime.saturating_sub(now)),
            idle: now.saturating_sub(it.time()),
            fetched: it.has(fl::FETCHED),
            class: store.class_of(it),
            size: store.size_of(it),
        }
    }
}

impl<'a> Found<'a> {
    pub(crate) fn new(
        store: &'a Store,
        shard: Option<&'a mut Shard>,
        head: ChunkId,
        now: u32,
        created: Option<Missed>,
    ) -> Self {
        let it = store.mem.item(head);
        Found {
            store,
            shard,
            mem: &store.mem,
            head,
            it,
            now,
            flags: it.flags(),
            cas: it.cas(),
            value_len: it.nbytes() as usize - 2,
            meta: ItemMeta::of(store, it, now),
            created,
            bump: false,
            abandoned: false,
            detached_exptime: None,
            pending: (None, None),
        }
    }

    /// After the reader: the hit counted and the item marked used (after
    /// the reader has seen it as it was: memcached's delayed bump), unless
    /// the reader gave up (then memcached does neither). Returns what a
    /// reader under the shared lock left to write.
    pub(crate) fn finish(&mut self, count: HitCount) -> Option<(Option<u32>, Option<u64>)> {
        if self.bump {
            self.it.mark_hit(self.now);
        }
        if !self.abandoned {
            let kind = match count {
                HitCount::Get if self.it.has(fl::MAIN) => Some(Kind::GetMain),
                HitCount::Get => Some(Kind::GetSmall),
                HitCount::Touch => Some(Kind::Touch),
                HitCount::None => None,
            };
            if let Some(k) = kind {
                self.store.hits.count(self.meta.class, k);
            }
        }
        (self.pending != (None, None)).then_some(self.pending)
    }
}

impl Found<'_> {
    /// The stored data block (value and its `\r\n`) in one slice per
    /// chunk: one for every item up to `slab_chunk_max`.
    pub fn parts(&self) -> Parts<'_> {
        Parts::new(self.mem, self.it)
    }

    /// A hold on `part` (a slice from [`parts`](Self::parts), or a piece
    /// of one) that outlives the lock: the item's memory is kept until it
    /// is dropped. `None` when the item has too many readers already (copy
    /// instead), or when `part` is not a piece of this item's data: a
    /// check made in every build, so no slice of other memory can be held
    /// past its life this way.
    pub fn pin(&self, part: &[u8]) -> Option<ItemRef> {
        let (p, n) = (part.as_ptr() as usize, part.len());
        let inside = self.parts().any(|q| {
            let s = q.as_ptr() as usize;
            p >= s && p + n <= s + q.len()
        });
        if !inside {
            return None;
        }
        self.mem.pin(self.head, part)
    }

    pub fn key(&self) -> &[u8] {
        self.it.key()
    }

    /// Whether the key came base64-encoded (meta `b`).
    pub fn key_binary(&self) -> bool {
        self.it.has(fl::KEY_BINARY)
    }

    /// Marked stale (meta `I`).
    pub fn stale(&self) -> bool {
        self.it.has(fl::STALE)
    }

    /// Whether a client has been told it won the right to recache it.
    pub fn win_sent(&self) -> bool {
        self.it.has(fl::WON)
    }

    /// Notes that a client has now been told it won.
    pub fn mark_win_sent(&mut self) {
        self.it.set(fl::WON);
    }

    /// The store clock's now (relative seconds).
    pub fn now(&self) -> u32 {
        self.now
    }

    /// Its exptime in the store clock's seconds (0: never).
    pub fn exptime(&self) -> u32 {
        match self.detached_exptime {
            Some(Some(t)) => t,
            _ => self.it.exptime(),
        }
    }

    /// Gives it a new exptime, as a client sends one.
    pub fn set_exptime(&mut self, exptime: i32) {
        let t = self.store.clock.realtime(exptime);
        match (&mut self.detached_exptime, &mut self.shard) {
            (Some(shadow), _) => *shadow = Some(t),
            (None, Some(shard)) => shard.set_exptime(self.store, self.head, t),
            (None, None) => {
                self.pending.0 = Some(t);
                self.detached_exptime = Some(Some(t));
            }
        }
    }

    /// The request failed after the lookup: the hit is not counted, and
    /// the item is bumped only if `still_bump` (memcached's meta get
    /// bumps at the lookup unless a flag made it delay the bump).
    pub fn abandon(&mut self, still_bump: bool) {
        self.bump &= still_bump;
        self.abandoned = true;
    }

    /// The store clock's second for an exptime as a client sends it.
    pub fn realtime(&self, exptime: i32) -> u32 {
        self.store.clock.realtime(exptime)
    }

    /// Gives it a new CAS value (none is kept under `-C`).
    pub fn set_cas(&mut self, cas: u64) {
        let cas = if self.store.cfg.use_cas { cas } else { 0 };
        if self.shard.is_some() {
            self.it.set_cas(cas);
        } else {
            self.pending.1 = Some(cas);
        }
        self.cas = cas;
    }
}

/// The data block of an item, chunk by chunk.
pub struct Parts<'a> {
    mem: &'a Mem,
    it: It,
    n: usize,
    idx: usize,
    left: usize,
}

impl<'a> Parts<'a> {
    pub(crate) fn new(mem: &'a Mem, it: It) -> Self {
        let n = if it.has(fl::CHAINED) {
            mem.chain_len(it)
        } else {
            1
        };
        Parts {
            mem,
            it,
            n,
            idx: 0,
            left: it.nbytes() as usize,
        }
    }

    /// Where the next part lies, and how long it is.
    pub(crate) fn next_span(&mut self) -> Option<(*mut u8, usize)> {
        if self.left == 0 {
            return None;
        }
        let (ptr, room) = if self.idx == 0 {
            let off = self.it.value_off(self.n);
            let room = if self.n == 1 {
                self.left
            } else {
                self.mem.chunk_of_class(self.mem.table.largest()) - off
            };
            (self.mem.value_ptr(self.it, off), room)
        } else {
            let id = self
                .it
                .chain(self.n)
                .nth(self.idx - 1)
                .expect("chain entry");
            let cont = self.mem.item(id);
            (self.mem.value_ptr(cont, HDR), self.mem.chunk_size(id) - HDR)
        };
        let len = room.min(self.left);
        self.left -= len;
        self.idx += 1;
        Some((ptr.cast_mut(), len))
    }
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (ptr, len) = self.next_span()?;
        debug_assert!(
            self.mem.span_in_chunk(ptr, len),
            "a value part outside its chunk"
        );
        // SAFETY: the span lies inside the item's chunks, which the
        // caller's shard lock (or reference) keeps from being freed.
        Some(unsafe { std::slice::from_raw_parts(ptr, len) })
    }
}
