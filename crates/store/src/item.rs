//! The item layout inside a chunk, and its size arithmetic.
//!
//! ```text
//!  0      8         12     16       20     21       22       24
//!  | cas  | exptime | time | nbytes | nkey | iflags | refcnt |
//!  then: [client flags, 4 bytes, only when non-zero] key
//!        [chain: (nchunks - 1) chunk ids, only for chained items]
//!        value with its "\r\n" (nbytes bytes)
//! ```
//!
//! 24 bytes with the CAS (memcached's header is 56). Times are relative
//! seconds (the store clock). No links: the hash chain lives in the index
//! and the eviction order in the policy's rings of chunk ids (policy.rs),
//! both outside the item. The class is its page's (`Mem::class_of_chunk`).
//! A free chunk keeps the next free chunk's id in its first four bytes
//! (`link`). An item larger than the largest chunk takes several chunks of
//! the largest class: its head chunk lists the others, and each
//! continuation chunk starts with a header whose `nkey` is [`CONT_NKEY`]
//! (no key is that long) and whose `link` names the head (so the page
//! mover can find the item a chunk belongs to); its bytes after the header
//! continue the value.
//!
//! `iflags` and `time` are read and written atomically (relaxed): a hit
//! under the shard's shared lock sets the `VISITED` and `FETCHED` bits and
//! the access time, each only when it changes, while other readers read
//! them.
//!
//! Who may touch an item: the thread holding the lock of the shard that
//! indexes it, or (for an item no longer linked) the one thread that
//! brought its reference word to zero. The reference word alone is
//! atomic: readers drop their reference without the shard lock, and the
//! expiry wheel reads it to learn whether a chunk is still its shard's.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};

/// Header bytes of every item (and of every continuation chunk).
pub const HDR: usize = 24;

/// `nkey` of a continuation chunk (keys are at most 250 bytes).
pub const CONT_NKEY: u8 = u8::MAX;

/// A chunk id: page number in the high bits, slot within the page low.
pub type ChunkId = u32;
/// Ends a list.
pub const NIL: ChunkId = u32::MAX;
/// Slot bits of a chunk id: a page holds at most 2^14 chunks, so 2^18
/// pages (256 GB of 1 MB pages) fit in 32 bits.
pub const SLOT_BITS: u32 = 14;
pub const MAX_PER_PAGE: u32 = 1 << SLOT_BITS;
/// Pages a chunk id can name.
pub const MAX_PAGES: u32 = 1 << (32 - SLOT_BITS);

pub fn chunk_id(page: u32, slot: u32) -> ChunkId {
    (page << SLOT_BITS) | slot
}
pub fn page_of(id: ChunkId) -> u32 {
    id >> SLOT_BITS
}
pub fn slot_of(id: ChunkId) -> u32 {
    id & (MAX_PER_PAGE - 1)
}

/// The reference word, the header's last two bytes: who holds the item.
///
/// ```text
///  15      11 10          0
///  | link   |  readers    |
/// ```
/// `link` is the linking shard's number plus one (0: not linked): the
/// link's reference, and the one fact about a chunk that any thread may
/// read, atomically. `readers` counts `ItemRef`s in flight. The item is
/// freed by whoever brings the word to 0.
pub mod rf {
    pub const LINK_SHIFT: u32 = 11;
    pub const READERS: u16 = (1 << LINK_SHIFT) - 1;
    /// Shards the link field can name.
    pub const MAX_SHARDS: usize = (1 << (16 - LINK_SHIFT)) - 1;
}

/// `iflags` bits.
pub mod fl {
    /// Its key came base64-encoded (meta `b`): responses re-encode it.
    /// (Whether an item is linked is the reference word's link field,
    /// `It::is_linked`, not a flag.)
    pub const KEY_BINARY: u8 = 1;
    /// Read by a client since it was stored.
    pub const FETCHED: u8 = 2;
    /// Client flags are stored (they are non-zero).
    pub const HAS_FLAGS: u8 = 4;
    /// The value continues in further chunks, listed after the key.
    pub const CHAINED: u8 = 8;
    /// In its class's main queue (else its small queue; policy.rs).
    pub const MAIN: u8 = 16;
    /// Marked stale (meta `md I`, `ms I`): served, flagged `X`.
    pub const STALE: u8 = 32;
    /// A client has been told it won the right to recache it (meta `W`;
    /// memcached's ITEM_TOKEN_SENT).
    pub const WON: u8 = 64;
    /// Hit since it entered (or was kept in) its queue: the eviction
    /// policy's one bit (policy.rs).
    pub const VISITED: u8 = 128;
}

const O_CAS: usize = 0;
/// A free chunk's next free chunk, a continuation chunk's head: the CAS
/// field's first four bytes, unused in chunks that hold no item head.
const O_LINK: usize = 0;
const O_EXP: usize = 8;
const O_TIME: usize = 12;
const O_NBYTES: usize = 16;
const O_NKEY: usize = 20;
const O_IFLAGS: usize = 21;
const O_REF: usize = 22;
const _: () = assert!(O_REF + 2 == HDR);

/// A pointer to the first byte of a chunk. Copyable; every accessor reads
/// or writes the header in place. Made only by `Mem::item` for a chunk of
/// the arena, so the 24 header bytes are always in bounds and 8-aligned
/// (pages are page-aligned and chunk sizes multiples of 8).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct It(pub(crate) *mut u8);

macro_rules! field {
    ($get:ident, $set:ident, $t:ty, $off:expr) => {
        pub fn $get(self) -> $t {
            // SAFETY: in-bounds, aligned header field (see `It`); the caller
            // holds the right to touch this item (module docs).
            unsafe { self.0.add($off).cast::<$t>().read() }
        }
        pub fn $set(self, v: $t) {
            // SAFETY: as in the getter.
            unsafe { self.0.add($off).cast::<$t>().write(v) }
        }
    };
}

impl It {
    field!(cas, set_cas, u64, O_CAS);
    field!(link, set_link, u32, O_LINK);
    field!(exptime, set_exptime, u32, O_EXP);
    field!(nbytes, set_nbytes, u32, O_NBYTES);
    field!(nkey, set_nkey, u8, O_NKEY);

    fn iflags_atomic(self) -> &'static AtomicU8 {
        // SAFETY: an in-bounds byte of the header; AtomicU8 has u8's
        // layout. As with `refword`, the reference is used at once and
        // never stored; this byte is only ever accessed atomically.
        unsafe { &*(self.0.add(O_IFLAGS).cast::<AtomicU8>()) }
    }

    fn time_atomic(self) -> &'static AtomicU32 {
        // SAFETY: an aligned, in-bounds u32 of the header (offset 12 of an
        // 8-aligned chunk); only ever accessed atomically.
        unsafe { &*(self.0.add(O_TIME).cast::<AtomicU32>()) }
    }

    pub fn iflags(self) -> u8 {
        self.iflags_atomic().load(Ordering::Relaxed)
    }
    pub fn set_iflags(self, v: u8) {
        self.iflags_atomic().store(v, Ordering::Relaxed);
    }
    /// Last access, in store-clock seconds.
    pub fn time(self) -> u32 {
        self.time_atomic().load(Ordering::Relaxed)
    }
    pub fn set_time(self, v: u32) {
        self.time_atomic().store(v, Ordering::Relaxed);
    }

    pub fn has(self, f: u8) -> bool {
        self.iflags() & f != 0
    }
    /// Sets bits `f` (an atomic or, so readers under a shared lock may
    /// set bits at the same time).
    pub fn set(self, f: u8) {
        self.iflags_atomic().fetch_or(f, Ordering::Relaxed);
    }
    pub fn clear(self, f: u8) {
        self.iflags_atomic().fetch_and(!f, Ordering::Relaxed);
    }

    /// A hit: `VISITED` and `FETCHED` set and the access time moved to
    /// `now`, each written only when it changes, so a hot item's cache
    /// line is written at most once a second.
    pub fn mark_hit(self, now: u32) {
        self.mark(fl::VISITED | fl::FETCHED, now);
    }

    /// A use that is not a fetch (add finding the item, incr): `VISITED`
    /// and the access time.
    pub fn mark_used(self, now: u32) {
        self.mark(fl::VISITED, now);
    }

    fn mark(self, bits: u8, now: u32) {
        if self.iflags() & bits != bits {
            self.set(bits);
        }
        if self.time() != now {
            self.set_time(now);
        }
    }

    /// A continuation chunk of a chained item (its `link` is the head).
    pub fn is_cont(self) -> bool {
        self.nkey() == CONT_NKEY
    }

    /// The reference word (see [`rf`]).
    fn refword(self) -> &'static AtomicU16 {
        // SAFETY: an aligned, in-bounds u16 of the header; AtomicU16 has
        // u16's layout. 'static is a lie bounded by the arena's life: the
        // reference is used at once and never stored. These two bytes of a
        // chunk's start are only ever accessed atomically.
        unsafe { &*(self.0.add(O_REF).cast::<AtomicU16>()) }
    }

    /// Readers holding the item (the link not counted).
    pub fn readers(self) -> u16 {
        self.refword().load(Ordering::Acquire) & rf::READERS
    }

    /// Whether the index of shard `shard` links this item. Atomic, so it
    /// may be asked of any chunk of a laid-out page: the expiry wheel asks
    /// it of chunks that may since belong to another shard's item.
    pub fn linked_in(self, shard: usize) -> bool {
        usize::from(self.refword().load(Ordering::Acquire) >> rf::LINK_SHIFT) == shard + 1
    }

    /// Whether some shard's index links this item (in its index and an
    /// eviction queue; the link holds one reference).
    pub fn is_linked(self) -> bool {
        self.refword().load(Ordering::Acquire) >> rf::LINK_SHIFT != 0
    }

    /// A fresh item becomes linked in `shard` (no reader can hold it yet).
    pub fn link_ref(self, shard: usize) {
        debug_assert!(shard < rf::MAX_SHARDS);
        self.refword()
            .store(((shard + 1) as u16) << rf::LINK_SHIFT, Ordering::Release);
    }

    /// Drops the link's reference. True when no reader holds the item: the
    /// caller frees it.
    pub fn unlink_ref(self) -> bool {
        let w = self.refword();
        let tag = w.load(Ordering::Relaxed) & !rf::READERS;
        debug_assert!(tag != 0, "unlinking an item that is not linked");
        w.fetch_sub(tag, Ordering::AcqRel) == tag
    }

    /// Takes a reader's reference; false when there are too many readers.
    pub fn pin_ref(self) -> bool {
        let w = self.refword();
        if w.load(Ordering::Relaxed) & rf::READERS >= rf::READERS - 1 {
            return false;
        }
        w.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drops a reader's reference. True when it was the last reference of
    /// an unlinked item: the caller frees it.
    pub fn release_ref(self) -> bool {
        self.refword().fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Marks a chunk as holding no item anyone references (a chunk laid
    /// out anew, a continuation chunk).
    pub fn clear_ref(self) {
        self.refword().store(0, Ordering::Release);
    }

    fn flags_len(self) -> usize {
        if self.has(fl::HAS_FLAGS) {
            4
        } else {
            0
        }
    }

    pub fn flags(self) -> u32 {
        if self.has(fl::HAS_FLAGS) {
            // SAFETY: the flags follow the header inside the chunk.
            unsafe { self.0.add(HDR).cast::<u32>().read() }
        } else {
            0
        }
    }

    pub fn key<'a>(self) -> &'a [u8] {
        let off = HDR + self.flags_len();
        // SAFETY: the key was written at this offset when the item was made
        // and stays until the chunk is freed; the caller's lock or
        // reference keeps it from being freed while the slice is used.
        unsafe { std::slice::from_raw_parts(self.0.add(off), self.nkey() as usize) }
    }

    /// Offset of the chain list (chained items) or of the value.
    fn after_key(self) -> usize {
        HDR + self.flags_len() + self.nkey() as usize
    }

    /// The continuation chunk ids of a chained item.
    pub fn chain(self, nchunks: usize) -> impl Iterator<Item = ChunkId> {
        let base = self.0;
        let off = self.after_key();
        (0..nchunks.saturating_sub(1)).map(move |i| {
            // SAFETY: the list was written here for chained items.
            unsafe { base.add(off + 4 * i).cast::<u32>().read_unaligned() }
        })
    }

    /// Offset of the first value byte in the head chunk.
    pub fn value_off(self, nchunks: usize) -> usize {
        self.after_key() + 4 * nchunks.saturating_sub(1)
    }
}

/// Bytes an item needs in one chunk: header, flags when non-zero, key and
/// the value with its `\r\n`.
pub fn single_size(nkey: usize, flags: u32, nbytes: usize) -> usize {
    HDR + if flags == 0 { 0 } else { 4 } + nkey + nbytes
}

/// How many chunks of `chunk` bytes a chained item needs: the head holds
/// header, flags, key and the chain list, each continuation a header.
pub fn chained_chunks(chunk: usize, nkey: usize, flags: u32, nbytes: usize) -> usize {
    let fixed = HDR + if flags == 0 { 0 } else { 4 } + nkey;
    let mut n = 2;
    loop {
        let cap = n * (chunk - HDR) + HDR - fixed - 4 * (n - 1);
        if cap >= nbytes {
            return n;
        }
        n += 1;
    }
}

/// memcached's `ITEM_ntotal` (its 48-byte header, the key's NUL, the CAS):
/// what memcached checks against `-I`. memcrab refuses exactly the items
/// memcached refuses, though it stores them in less.
pub fn memcached_ntotal(nkey: usize, flags: u32, value_len: usize, use_cas: bool) -> usize {
    48 + nkey + 1 + if flags == 0 { 0 } else { 4 } + value_len + 2 + if use_cas { 8 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntotal_matches_memcached_mem_requested() {
        // memcached 1.6 reports mem_requested 61 for key "a", value "x".
        assert_eq!(memcached_ntotal(1, 0, 1, true), 61);
        assert_eq!(memcached_ntotal(1, 5, 1, true), 65);
        assert_eq!(memcached_ntotal(1, 0, 1, false), 53);
    }

    #[test]
    fn header_fields_round_trip() {
        let mut buf = [0u64; 16];
        let it = It(buf.as_mut_ptr().cast());
        it.set_cas(0x0102_0304_0506_0708);
        it.set_exptime(7);
        it.set_time(9);
        it.set_nbytes(1 << 30);
        it.set_nkey(250);
        it.set_iflags(fl::CHAINED | fl::HAS_FLAGS);
        assert!(!it.is_linked());
        it.link_ref(3);
        assert!(it.is_linked());
        assert_eq!(it.cas(), 0x0102_0304_0506_0708);
        assert_eq!((it.exptime(), it.time()), (7, 9));
        assert_eq!((it.nbytes(), it.nkey()), (1 << 30, 250));
        assert!(it.has(fl::CHAINED) && !it.has(fl::FETCHED));
        it.set(fl::FETCHED);
        it.clear(fl::CHAINED);
        assert_eq!(it.iflags(), fl::FETCHED | fl::HAS_FLAGS);
        assert!(it.linked_in(3) && !it.linked_in(2) && !it.linked_in(4));
        assert!(it.pin_ref() && it.pin_ref());
        assert_eq!(it.readers(), 2);
        assert!(!it.unlink_ref(), "readers still hold it");
        assert!(!it.linked_in(3) && !it.is_linked());
        assert!(!it.release_ref());
        assert!(it.release_ref(), "the last reader frees it");
        it.link_ref(rf::MAX_SHARDS - 1);
        assert!(it.linked_in(rf::MAX_SHARDS - 1));
        assert!(it.unlink_ref());
    }

    #[test]
    fn chunk_ids() {
        let id = chunk_id(262_143, 16_383);
        assert_eq!(id, u32::MAX);
        assert_eq!((page_of(id), slot_of(id)), (262_143, 16_383));
        assert_eq!(MAX_PAGES as u64 * (1 << 20), 256 << 30);
    }

    #[test]
    fn chained_sizes() {
        let chunk = 1 << 19;
        // A value that just overflows one chunk takes two.
        assert_eq!(chained_chunks(chunk, 10, 0, chunk - HDR - 10 + 1), 2);
        // 1 MB of value: two chunks hold 2 * (chunk - HDR) - 10 - 4 bytes.
        assert_eq!(chained_chunks(chunk, 10, 0, 2 * (chunk - HDR) - 14), 2);
        assert_eq!(chained_chunks(chunk, 10, 0, 2 * (chunk - HDR) - 13), 3);
    }
}
