//! A found item's data: its value chunk by chunk ([`Parts`]), and holds
//! on it that outlive the shard lock ([`Found::pin`]).

use std::sync::Arc;

use crate::item::{fl, ChunkId, It, HDR};
use crate::mem::{ItemRef, Mem};

/// A live item, seen under its shard's lock by [`Store::get_with`].
pub struct Found<'a> {
    pub(crate) mem: &'a Arc<Mem>,
    pub(crate) head: ChunkId,
    pub(crate) it: It,
    pub flags: u32,
    pub cas: u64,
    /// Value bytes, without the `\r\n`.
    pub value_len: usize,
    /// What the item was like when the lookup found it.
    pub meta: ItemMeta,
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

impl Found<'_> {
    /// The stored data block (value and its `\r\n`) in one slice per
    /// chunk: one for every item up to `slab_chunk_max`.
    pub fn parts(&self) -> Parts<'_> {
        Parts::new(self.mem, self.it)
    }

    /// A hold on `part` (a slice from [`parts`](Self::parts)) that outlives
    /// the lock: the item's memory is kept until it is dropped. `None` when
    /// the item has too many readers already (copy instead).
    pub fn pin(&self, part: &[u8]) -> Option<ItemRef> {
        self.mem.pin(self.head, part)
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
        // SAFETY: the span lies inside the item's chunks, which the
        // caller's shard lock (or reference) keeps from being freed.
        Some(unsafe { std::slice::from_raw_parts(ptr, len) })
    }
}
