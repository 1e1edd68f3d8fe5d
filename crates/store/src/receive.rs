//! A store whose value is still arriving: its item is taken when the
//! request's header is read (evicting as any store does, or refused out
//! of memory where memcached refuses it) and the value's bytes are read
//! straight into its chunks, so a value in flight counts against `-m`
//! like any item, and is freed if its client goes away.
//!
//! ```text
//!  header ──► Store::reserve ──► Incoming (chunks taken, key laid out,
//!                                  not linked: no lookup sees it)
//!  bytes  ──► Incoming::room / advance, or fill   (the transport's reads)
//!  whole  ──► Store::store_incoming ──► linked in place (set, add, replace,
//!                                       cas), or joined (append, prepend)
//!  gone   ──► drop: the chunks go back
//! ```
//!
//! While it arrives no one else can reach its chunks: they are on no free
//! list, in no index or queue, and the page mover passes over an item that
//! is not linked (a page holding one finishes moving once it is freed; if
//! it is linked while its page is moving, the value is copied to chunks
//! elsewhere instead).

use std::sync::Arc;

use crate::item::{page_of, ChunkId, HDR};
use crate::mem::{Chunks, Mem};
use crate::{Store, StoreOutcome};

/// An item being received: chunks taken for a data block of
/// `nbytes` (value and `\r\n`), filled in order.
pub struct Incoming {
    mem: Arc<Mem>,
    chunks: Chunks,
    pub(crate) hash: u64,
    pub(crate) flags: u32,
    nkey: usize,
    /// The data block's length, `\r\n` included.
    nbytes: usize,
    /// Bytes the client sends: `nbytes`, or `nbytes - 2` when the store
    /// writes the `\r\n` itself (the binary protocol sends none).
    wire: usize,
    /// Bytes written so far.
    filled: usize,
    /// Still holds its chunks (not linked, not freed).
    armed: bool,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("nbytes", &self.nbytes)
            .field("filled", &self.filled)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl Incoming {
    /// The value's length (without `\r\n`).
    pub fn value_len(&self) -> usize {
        self.nbytes - 2
    }

    /// Bytes still to come from the client.
    pub fn remaining(&self) -> usize {
        self.wire - self.filled
    }

    /// Where data-block byte `pos` lies: its chunk's part and the room
    /// left in that part from there.
    fn span_at(&self, pos: usize) -> (*mut u8, usize) {
        let head = self.mem.item(self.chunks[0]);
        let n = self.chunks.len();
        let first = if n == 1 {
            self.nbytes
        } else {
            self.mem.chunk_size(self.chunks[0]) - head.value_off(n)
        };
        if pos < first {
            let p = self.mem.value_ptr(head, head.value_off(n) + pos);
            return (p.cast_mut(), first - pos);
        }
        // Every continuation chunk but the last is of the largest class;
        // they hold the same number of bytes each.
        let per = self.mem.chunk_size(self.chunks[1]) - HDR;
        let k = (pos - first) / per;
        let off = (pos - first) % per;
        let id = self.chunks[1 + k];
        let cont = self.mem.item(id);
        let end = (self.nbytes - first - k * per).min(self.mem.chunk_size(id) - HDR);
        (self.mem.value_ptr(cont, HDR + off).cast_mut(), end - off)
    }

    /// The room at the write position: where the next bytes the client
    /// sends go. Empty once the block is whole.
    pub fn room(&mut self) -> &mut [u8] {
        if self.remaining() == 0 {
            return &mut [];
        }
        let (ptr, len) = self.span_at(self.filled);
        let len = len.min(self.remaining());
        debug_assert!(
            self.mem.span_in_chunk(ptr, len),
            "a receive span outside its chunk"
        );
        // SAFETY: the span lies inside chunks this `Incoming` took and owns
        // alone until it is linked or dropped (no index, queue or free
        // list holds them; the mover skips items that are not linked), and
        // the `&mut self` borrow keeps any other slice of them from living
        // at the same time.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    /// Counts `n` bytes written into [`room`](Self::room).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.remaining(), "advanced past the data block");
        self.filled += n;
    }

    /// Copies as much of `src` as the block still takes; how much it took.
    pub fn fill(&mut self, mut src: &[u8]) -> usize {
        let mut took = 0;
        while !src.is_empty() {
            let room = self.room();
            if room.is_empty() {
                break;
            }
            let k = room.len().min(src.len());
            room[..k].copy_from_slice(&src[..k]);
            self.advance(k);
            src = &src[k..];
            took += k;
        }
        took
    }

    fn byte(&self, pos: usize) -> u8 {
        let (ptr, len) = self.span_at(pos);
        debug_assert!(len > 0 && self.mem.span_in_chunk(ptr, 1));
        // SAFETY: `pos` lies in the data block, inside this item's chunks.
        unsafe { ptr.read() }
    }

    /// Whether the whole block ends in `\r\n` (a text data block must).
    pub fn ends_in_crlf(&self) -> bool {
        self.remaining() == 0
            && self.byte(self.nbytes - 2) == b'\r'
            && self.byte(self.nbytes - 1) == b'\n'
    }

    pub(crate) fn head(&self) -> ChunkId {
        self.chunks[0]
    }

    /// Whether a chunk of it lies in the page being moved.
    fn in_moving_page(&self) -> bool {
        let s = self.mem.slabs.lock();
        s.moving
            .is_some_and(|m| self.chunks.iter().any(|&c| page_of(c) == m.page))
    }

    /// Linked: the chunks are the item's now.
    pub(crate) fn disarm(mut self) -> ChunkId {
        self.armed = false;
        self.head()
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.armed {
            self.mem.free_chunks(&self.chunks);
        }
    }
}

impl Store {
    /// Takes the item for a store of `value_len` bytes under `key`, before
    /// any byte of the value has come: `TooLarge` past `-I`, `OutOfMemory`
    /// when no memory can be had (evictions off, or every candidate busy).
    /// `client_crlf`: the client sends the `\r\n` (text, meta); else it is
    /// written here (binary).
    pub fn reserve(
        &self,
        key: &[u8],
        flags: u32,
        value_len: usize,
        client_crlf: bool,
    ) -> Result<Incoming, StoreOutcome> {
        if !self.item_size_ok(key.len(), flags, value_len) {
            return Err(StoreOutcome::TooLarge);
        }
        let hash = self.hash(key);
        let now = self.clock.now();
        let nbytes = value_len + 2;
        let chunks = {
            let mut g = self.shard(hash).write();
            self.alloc_item(&mut g, key.len(), flags, nbytes, None, now)
        }
        .ok_or(StoreOutcome::OutOfMemory)?;
        self.lay_item(&chunks, key, flags, nbytes);
        let mut inc = Incoming {
            mem: Arc::clone(&self.mem),
            chunks,
            hash,
            flags,
            nkey: key.len(),
            nbytes,
            wire: nbytes,
            filled: 0,
            armed: true,
        };
        if !client_crlf {
            inc.filled = value_len;
            inc.fill(b"\r\n");
            inc.filled = 0;
            inc.wire = value_len;
        }
        Ok(inc)
    }

    /// Whether `inc` was reserved for this key and is whole: only then may
    /// it be linked as the key's item.
    pub(crate) fn fits(&self, inc: &Incoming, key: &[u8], flags: u32) -> bool {
        inc.remaining() == 0
            && inc.nkey == key.len()
            && inc.flags == flags
            && inc.hash == self.hash(key)
            && Arc::ptr_eq(&inc.mem, &self.mem)
            && self.mem.item(inc.head()).key() == key
    }

    /// Links a received item in place of `new.old` (its chunks are the
    /// item's from now on); when a chunk of it lies in a page being moved,
    /// copies it to new chunks instead (`None`: no memory for them).
    pub(crate) fn link_incoming(
        &self,
        shard: &mut crate::shard::Shard,
        inc: Incoming,
        new: &crate::write::NewItem<'_>,
    ) -> Option<crate::write::Put> {
        if inc.in_moving_page() {
            let value = self.value_of(self.mem.item(inc.head()));
            let pieces: [&[u8]; 2] = [&value, b"\r\n"];
            let copy = crate::write::NewItem {
                pieces: &pieces,
                ..*new
            };
            return self.put(shard, &copy);
        }
        let head = inc.disarm();
        Some(self.link_new(shard, head, new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, Config, GetOutcome, Mode, ReassignError, StoreReq};

    fn store_mb(mb: u64, item_max: u32, evictions: bool) -> Store {
        Store::new(
            Config {
                mem_limit: mb << 20,
                item_size_max: item_max,
                evictions,
                ..Config::default()
            },
            Arc::new(Clock::new()),
        )
    }

    fn used(s: &Store) -> u32 {
        s.stats().classes.iter().map(|c| c.used_chunks).sum()
    }

    fn value(s: &Store, k: &[u8]) -> Option<Vec<u8>> {
        match s.get(k, None) {
            GetOutcome::Hit(h) => Some(h.value().to_vec()),
            _ => None,
        }
    }

    fn req<'a>(mode: Mode, key: &'a [u8], flags: u32) -> StoreReq<'a> {
        StoreReq {
            mode,
            key,
            flags,
            ..StoreReq::default()
        }
    }

    /// A data block of `len` bytes and its `\r\n`, in pieces of `piece`.
    fn receive(s: &Store, key: &[u8], flags: u32, v: &[u8], piece: usize) -> Incoming {
        let mut inc = s.reserve(key, flags, v.len(), true).unwrap();
        let mut block = v.to_vec();
        block.extend_from_slice(b"\r\n");
        for p in block.chunks(piece) {
            assert_eq!(inc.fill(p), p.len());
        }
        assert_eq!(inc.remaining(), 0);
        assert_eq!(inc.fill(b"more"), 0, "a whole block takes nothing more");
        inc
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_received_value_is_linked_whole_small_and_chained() {
        let s = store_mb(64, 8 << 20, true);
        for (key, len, piece) in [
            (&b"small"[..], 100, 7),
            (b"chunk", 600 << 10, 4096),
            (b"large", (3 << 20) + 5, 65_536),
        ] {
            let v = pattern(len);
            let inc = receive(&s, key, 9, &v, piece);
            assert!(inc.ends_in_crlf());
            assert_eq!(value(&s, key), None, "not visible before it is whole");
            let r = s.store_incoming(&req(Mode::Set, key, 9), inc);
            assert_eq!(r.outcome, StoreOutcome::Stored);
            assert_eq!(r.value_len, len);
            assert_eq!(value(&s, key).as_deref(), Some(&v[..]));
        }
        assert_eq!(s.stats().curr_items, 3);
    }

    #[test]
    fn room_and_advance_fill_as_reads_would() {
        let s = store_mb(64, 4 << 20, true);
        let v = pattern(2 << 20);
        let mut inc = s.reserve(b"k", 0, v.len(), false).unwrap();
        let mut at = 0;
        while inc.remaining() > 0 {
            let room = inc.room();
            let k = room.len().min(1000);
            room[..k].copy_from_slice(&v[at..at + k]);
            inc.advance(k);
            at += k;
        }
        assert!(inc.room().is_empty());
        assert!(
            inc.ends_in_crlf(),
            "the binary protocol's \\r\\n is written"
        );
        let r = s.store_incoming(&req(Mode::Set, b"k", 0), inc);
        assert_eq!(r.outcome, StoreOutcome::Stored);
        assert_eq!(value(&s, b"k").as_deref(), Some(&v[..]));
    }

    #[test]
    fn a_value_abandoned_midway_gives_its_memory_back() {
        let s = store_mb(64, 8 << 20, true);
        assert_eq!(used(&s), 0);
        let mut inc = s.reserve(b"k", 0, 5 << 20, true).unwrap();
        inc.fill(&[1; 1000]);
        assert!(used(&s) >= 10, "a 5 MB value takes its chunks at once");
        drop(inc);
        assert_eq!(used(&s), 0);
        // Nor is a block that did not end in \r\n stored.
        let mut inc = s.reserve(b"k", 0, 3, true).unwrap();
        inc.fill(b"abcde");
        assert!(!inc.ends_in_crlf());
        drop(inc);
        assert_eq!(used(&s), 0);
        assert_eq!(s.stats().curr_items, 0);
    }

    #[test]
    fn a_value_not_whole_or_for_another_key_is_not_linked_as_it() {
        let s = store_mb(64, 1 << 20, true);
        let mut inc = s.reserve(b"k", 0, 10, true).unwrap();
        inc.fill(b"12345");
        let r = s.store_incoming(&req(Mode::Set, b"k", 0), inc);
        assert_eq!(r.outcome, StoreOutcome::NotStored);
        let inc = receive(&s, b"k", 0, b"0123456789", 3);
        let r = s.store_incoming(&req(Mode::Set, b"other", 0), inc);
        assert_eq!(r.outcome, StoreOutcome::Stored, "stored as a copy");
        assert_eq!(value(&s, b"other").as_deref(), Some(&b"0123456789"[..]));
        assert_eq!(value(&s, b"k"), None);
        assert_eq!(used(&s), 1);
    }

    #[test]
    fn modes_rule_a_received_value_as_any_other() {
        let s = store_mb(64, 4 << 20, true);
        let big = pattern(1 << 20);
        // add on a miss stores; on a hit frees what it received.
        let inc = receive(&s, b"k", 0, &big, 10_000);
        assert_eq!(
            s.store_incoming(&req(Mode::Add, b"k", 0), inc).outcome,
            StoreOutcome::Stored
        );
        let before = used(&s);
        let inc = receive(&s, b"k", 0, b"x", 1);
        assert_eq!(
            s.store_incoming(&req(Mode::Add, b"k", 0), inc).outcome,
            StoreOutcome::NotStored
        );
        assert_eq!(used(&s), before);
        // append joins the old value and the received one.
        let inc = receive(&s, b"k", 0, b"tail", 2);
        assert_eq!(
            s.store_incoming(&req(Mode::Append, b"k", 0), inc).outcome,
            StoreOutcome::Stored
        );
        let mut want = big.clone();
        want.extend_from_slice(b"tail");
        assert_eq!(value(&s, b"k").as_deref(), Some(&want[..]));
        assert_eq!(used(&s), before, "the joined item replaced the old one");
        // cas with a wrong value leaves the item.
        let inc = receive(&s, b"k", 0, b"new", 1);
        let mut r = req(Mode::Cas, b"k", 0);
        r.cas = 12345;
        assert_eq!(s.store_incoming(&r, inc).outcome, StoreOutcome::Exists);
        assert_eq!(value(&s, b"k").as_deref(), Some(&want[..]));
        assert_eq!(used(&s), before);
    }

    #[test]
    fn values_in_flight_count_against_the_limit() {
        // -M: once values in flight hold the memory, the next one is
        // refused at its header, as memcached refuses it.
        let s = store_mb(8, 2 << 20, false);
        let mut held = Vec::new();
        loop {
            match s.reserve(format!("k{}", held.len()).as_bytes(), 0, 1 << 20, true) {
                Ok(inc) => held.push(inc),
                Err(e) => {
                    assert_eq!(e, StoreOutcome::OutOfMemory);
                    break;
                }
            }
            assert!(held.len() < 100, "never refused");
        }
        assert!((6..=9).contains(&held.len()), "{} held", held.len());
        drop(held);
        assert_eq!(used(&s), 0);
        assert!(s.reserve(b"k", 0, 1 << 20, true).is_ok());
        // With evictions, stored items make room for a value in flight.
        let s = store_mb(8, 2 << 20, true);
        for i in 0..20 {
            let inc = receive(
                &s,
                format!("k{i}").as_bytes(),
                0,
                &pattern(1 << 20),
                1 << 16,
            );
            let k = format!("k{i}");
            let r = s.store_incoming(&req(Mode::Set, k.as_bytes(), 0), inc);
            assert_eq!(r.outcome, StoreOutcome::Stored);
        }
        assert!(s.stats().evictions > 0);
        assert_eq!(
            s.reserve(b"big", 0, 3 << 20, true).unwrap_err(),
            StoreOutcome::TooLarge
        );
    }

    #[test]
    fn a_page_move_waits_for_a_value_in_flight_and_never_takes_it() {
        let s = store_mb(16, 1 << 20, true);
        let v = pattern(40);
        // Two pages of a small class, then a value in flight in it.
        let mut i = 0u32;
        while s.pages_taken() < 2 {
            let k = format!("s{i}");
            let r = s.store(&StoreReq {
                value: &v,
                ..req(Mode::Set, k.as_bytes(), 0)
            });
            assert_eq!(r.outcome, StoreOutcome::Stored);
            i += 1;
        }
        let class = s.classes().class_for(HDR + 4 + 42).unwrap();
        // The value's chunk is in the emptier page: the one the mover picks.
        let inc = receive(&s, b"in", 0, &v[..38], 5);
        assert_eq!(s.reassign(class as i32, 20), Ok(()));
        assert!(
            s.stats().slab_reassign_running,
            "the page holding the value waits for it"
        );
        assert_eq!(s.reassign(class as i32, 20), Err(ReassignError::Busy));
        // Linked while its page moves: copied elsewhere.
        let r = s.store_incoming(&req(Mode::Set, b"in", 0), inc);
        assert_eq!(r.outcome, StoreOutcome::Stored);
        let st = s.stats();
        assert!(!st.slab_reassign_running);
        assert_eq!(st.slabs_moved, 1);
        assert_eq!(value(&s, b"in").as_deref(), Some(&v[..38]));
    }
}
