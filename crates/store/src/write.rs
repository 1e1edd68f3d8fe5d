//! The write path: a new item's chunks taken (evicting if need be), its
//! header, flags, key, chain and data written, and the item linked in
//! place of the one it replaces. The only place item memory is written
//! whole; in-place incr is in `ops.rs`.

use std::borrow::Cow;

use crate::found::Parts;
use crate::item::{self, fl, ChunkId, It, HDR};
use crate::mem::Chunks;
use crate::shard::Shard;
use crate::{Mode, Store, StoreOutcome};

/// An item about to be written: its data block in `pieces` (value and
/// `\r\n`, in one or more pieces), replacing `old` if any.
#[derive(Clone, Copy)]
pub(crate) struct NewItem<'a> {
    pub hash: u64,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: u32,
    pub pieces: &'a [&'a [u8]],
    pub old: Option<ChunkId>,
    pub now: u32,
    /// The CAS value to give it (meta `E`); else the next one.
    pub cas: Option<u64>,
    /// `fl::KEY_BINARY`, `fl::STALE`, `fl::WON` bits it starts with.
    pub marks: u8,
}

/// A written and linked item: its first chunk and its CAS value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Put {
    pub head: ChunkId,
    pub cas: u64,
}

impl Store {
    pub(crate) fn finish_store(
        &self,
        shard: &mut Shard,
        new: &NewItem<'_>,
        mode: Mode,
    ) -> (StoreOutcome, u64) {
        if let Some(p) = self.put(shard, new) {
            (StoreOutcome::Stored, p.cas)
        } else {
            self.refuse_store(shard, new, mode)
        }
    }

    /// No memory for the new item: a set drops the old one.
    pub(crate) fn refuse_store(
        &self,
        shard: &mut Shard,
        new: &NewItem<'_>,
        mode: Mode,
    ) -> (StoreOutcome, u64) {
        if mode == Mode::Set {
            if let Some(o) = new.old {
                shard.unlink_free(self, o, new.hash);
            }
        }
        (StoreOutcome::OutOfMemory, 0)
    }

    /// An item's value without its `\r\n`: borrowed from item memory when
    /// it is in one chunk, copied when chained.
    pub(crate) fn value_of(&self, it: It) -> Cow<'_, [u8]> {
        let len = it.nbytes() as usize - 2;
        let mut parts = Parts::new(&self.mem, it);
        if !it.has(fl::CHAINED) {
            let p = parts.next().expect("one part");
            return Cow::Borrowed(&p[..len]);
        }
        let mut v = Vec::with_capacity(len + 2);
        for p in parts {
            v.extend_from_slice(p);
        }
        v.truncate(len);
        Cow::Owned(v)
    }

    /// Allocates, writes and links a new item, replacing `new.old`;
    /// `None` when out of memory.
    pub(crate) fn put(&self, shard: &mut Shard, new: &NewItem<'_>) -> Option<Put> {
        let nbytes: usize = new.pieces.iter().map(|p| p.len()).sum();
        let chunks = self.alloc_item(shard, new.key.len(), new.flags, nbytes, new.old, new.now)?;
        self.lay_item(&chunks, new.key, new.flags, nbytes);
        let it = self.mem.item(chunks[0]);
        let mut dst = Parts::new(&self.mem, it);
        let (mut span, mut room) = dst.next_span().expect("at least one part");
        for piece in new.pieces {
            let mut src = *piece;
            while !src.is_empty() {
                if room == 0 {
                    (span, room) = dst.next_span().expect("room for the data");
                }
                let k = room.min(src.len());
                debug_assert!(
                    self.mem.span_in_chunk(span, k),
                    "a value write outside its chunk"
                );
                // SAFETY: `span` points at `room` bytes of this item's
                // chunks, not overlapping any source piece (those are the
                // client's buffer or another item's chunks).
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), span, k);
                    span = span.add(k);
                }
                room -= k;
                src = &src[k..];
            }
        }
        Some(self.link_new(shard, chunks[0], new))
    }

    /// Takes the chunks for an item of this shape (evicting if need be;
    /// `protect` is never evicted): one chunk, or a chain of the largest
    /// chunks whose last one comes from the smallest class that holds
    /// what is left (as memcached 1.6 does). `None` when out of memory.
    pub(crate) fn alloc_item(
        &self,
        shard: &mut Shard,
        nkey: usize,
        flags: u32,
        nbytes: usize,
        protect: Option<ChunkId>,
        now: u32,
    ) -> Option<Chunks> {
        let size = Self::size_for(nkey, flags, nbytes);
        let class = self.class_for_size(size);
        let largest = self.mem.table.largest();
        let chunk_max = self.mem.chunk_of_class(largest);
        let n = if size > chunk_max {
            item::chained_chunks(chunk_max, nkey, flags, nbytes)
        } else {
            1
        };
        let mut chunks = Chunks::new();
        if n == 1 {
            if !shard.alloc(self, class, 1, protect, now, &mut chunks) {
                return None;
            }
        } else {
            let fixed = HDR + if flags == 0 { 0 } else { 4 } + nkey + 4 * (n - 1);
            let before_last = (chunk_max - fixed) + (n - 2) * (chunk_max - HDR);
            let last = self.class_for_size(HDR + nbytes - before_last);
            if !shard.alloc(self, largest, n - 1, protect, now, &mut chunks) {
                return None;
            }
            let mut tail = Chunks::new();
            if !shard.alloc(self, last, 1, protect, now, &mut tail) {
                self.mem.free_chunks(&chunks);
                return None;
            }
            chunks.push(tail[0]);
        }
        Some(chunks)
    }

    /// Writes what an item's shape says into chunks just taken for it
    /// (`alloc_item`): its length, key, flags, chain list and the marks of
    /// its continuation chunks. Not linked, no CAS value or times yet.
    pub(crate) fn lay_item(&self, chunks: &[ChunkId], key: &[u8], flags: u32, nbytes: usize) {
        self.lay_head(chunks[0], chunks.len(), key, flags, nbytes);
        for (i, &c) in chunks.iter().enumerate().skip(1) {
            self.lay_cont(chunks[0], key.len(), flags, i, c);
        }
    }

    /// The head chunk of an item of `n` chunks: length, key, flags (the
    /// chain list is written as its chunks come, `lay_cont`).
    pub(crate) fn lay_head(&self, head: ChunkId, n: usize, key: &[u8], flags: u32, nbytes: usize) {
        let it = self.mem.item(head);
        it.set_nbytes(nbytes as u32);
        it.set_nkey(key.len() as u8);
        let mut iflags = 0;
        if flags != 0 {
            iflags |= fl::HAS_FLAGS;
        }
        if n > 1 {
            iflags |= fl::CHAINED;
        }
        it.set_iflags(iflags);
        debug_assert!(self.mem.span_in_chunk(it.0, HDR));
        debug_assert!(self.mem.span_in_chunk(
            self.mem.value_ptr(it, HDR),
            if flags == 0 { 0 } else { 4 } + key.len() + 4 * (n - 1)
        ));
        // SAFETY: the chunk was just taken for this item and no one else
        // can see it; the writes stay inside it (its class was chosen
        // for these lengths).
        unsafe {
            let mut p = self.mem.value_ptr(it, HDR).cast_mut();
            if flags != 0 {
                p.cast::<u32>().write(flags);
                p = p.add(4);
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), p, key.len());
        }
    }

    /// Continuation chunk `i` (1-based) of the item whose head is `head`:
    /// its entry in the head's chain list, and its marks.
    pub(crate) fn lay_cont(&self, head: ChunkId, nkey: usize, flags: u32, i: usize, c: ChunkId) {
        let it = self.mem.item(head);
        let off = HDR + if flags == 0 { 0 } else { 4 } + nkey + 4 * (i - 1);
        debug_assert!(self.mem.span_in_chunk(self.mem.value_ptr(it, off), 4));
        // SAFETY: the entry lies in the head's chain list, inside the head
        // chunk (sized for every entry), which no one else reads until
        // the item is linked.
        unsafe {
            self.mem
                .value_ptr(it, off)
                .cast_mut()
                .cast::<u32>()
                .write_unaligned(c);
        }
        let cont = self.mem.item(c);
        cont.set_iflags(0);
        cont.set_nkey(item::CONT_NKEY);
        cont.clear_ref();
        cont.set_link(head);
    }

    /// Gives a laid-out, written item its CAS value, times and marks and
    /// links it in place of `new.old`.
    #[inline(always)]
    pub(crate) fn link_new(&self, shard: &mut Shard, head: ChunkId, new: &NewItem<'_>) -> Put {
        let it = self.mem.item(head);
        // Under -C no CAS value is kept, a given one neither.
        let cas = match (self.cfg.use_cas, new.cas) {
            (false, _) => 0,
            (true, Some(c)) => c,
            (true, None) => self.next_cas(),
        };
        it.set_cas(cas);
        it.set_exptime(new.exptime);
        it.set_time(new.now);
        let marks = new.marks & (fl::KEY_BINARY | fl::STALE | fl::WON);
        if marks != 0 {
            it.set(marks);
        }
        if let Some(o) = new.old {
            shard.unlink_free(self, o, new.hash);
        }
        shard.link(self, new.hash, head);
        Put { head, cas }
    }
}
