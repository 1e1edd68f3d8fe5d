//! A store whose value is still arriving: its item's first chunk is
//! taken when the request's header is read, the rest as the value comes
//! (as memcached 1.6 takes a large item's chunks), each evicting as any
//! store does; the value's bytes are read straight into them, so a value
//! in flight counts against `-m` like any item and is freed if its client
//! goes away.
//!
//! ```text
//!  header ──► Store::reserve ──► Incoming (first chunk taken, key laid
//!                                  out, not linked: no lookup sees it;
//!                                  OutOfMemory: memcached's refusal at
//!                                  the header, for a value of one chunk;
//!                                  a chain's head is tried again with
//!                                  its first bytes, as memcached fails
//!                                  a chain's data chunks during the read)
//!  bytes  ──► Incoming::room(store) / advance, or fill: the next chunk
//!             taken when the last is full (None: out of memory during
//!             the read, as memcached answers it)
//!  whole  ──► Store::store_incoming ──► linked in place (set, add, replace,
//!                                       cas), or joined (append, prepend)
//!  gone   ──► drop: its chunks go back
//! ```
//!
//! While it arrives no one else can reach its chunks: they are on no free
//! list, in no index or queue, and the page mover passes over an item that
//! is not linked (a page holding one finishes moving once it is freed; if
//! it is linked while its page is moving, the value is copied to chunks
//! elsewhere instead; chunks taken after a move began are never in its
//! page, whose free chunks the move took).

use std::sync::Arc;

use crate::item::{self, page_of, ChunkId, HDR};
use crate::mem::{Chunks, Mem};
use crate::{Store, StoreOutcome};

/// An item being received: chunks taken for a data block of `nbytes`
/// (value and `\r\n`) as it is filled, in order.
pub struct Incoming {
    mem: Arc<Mem>,
    /// The chunks taken so far (the head first).
    chunks: Chunks,
    /// Chunks the whole item takes.
    n: usize,
    /// The class of the last chunk of a chain.
    last_class: usize,
    pub(crate) hash: u64,
    pub(crate) flags: u32,
    /// The key, for a head chunk taken late (see `reserve`).
    key: Box<[u8]>,
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

    /// Data bytes the head chunk holds.
    fn first(&self) -> usize {
        if self.n == 1 {
            return self.nbytes;
        }
        let fixed = HDR + if self.flags == 0 { 0 } else { 4 } + self.nkey + 4 * (self.n - 1);
        self.mem.chunk_of_class(self.mem.table.largest()) - fixed
    }

    /// Which chunk holds data-block byte `pos`, and where in its data.
    fn locate(&self, pos: usize) -> (usize, usize) {
        let first = self.first();
        if pos < first {
            return (0, pos);
        }
        // Every continuation chunk but the last is of the largest class.
        let per = self.mem.chunk_of_class(self.mem.table.largest()) - HDR;
        (1 + (pos - first) / per, (pos - first) % per)
    }

    /// Where data-block byte `pos` lies (its chunk taken), and the room
    /// left in that chunk's part from there.
    fn span_at(&self, pos: usize) -> (*mut u8, usize) {
        let (k, off) = self.locate(pos);
        let first = self.first();
        if k == 0 {
            let head = self.mem.item(self.chunks[0]);
            let p = self.mem.value_ptr(head, head.value_off(self.n) + off);
            return (p.cast_mut(), first - off);
        }
        let per = self.mem.chunk_of_class(self.mem.table.largest()) - HDR;
        let id = self.chunks[k];
        let cont = self.mem.item(id);
        let end = (self.nbytes - first - (k - 1) * per).min(self.mem.chunk_size(id) - HDR);
        (self.mem.value_ptr(cont, HDR + off).cast_mut(), end - off)
    }

    /// Takes the next chunk of the chain: from its class, else (the last
    /// chunk, its class full) a largest one, as memcached falls back.
    /// False when no memory can be had.
    fn grow(&mut self, store: &Store) -> bool {
        let i = self.chunks.len();
        debug_assert!(i < self.n);
        let largest = self.mem.table.largest();
        let class = if i + 1 == self.n {
            self.last_class
        } else {
            largest
        };
        if i == 0 {
            // The head of a chain that could not be had at the header.
            let mut got = Chunks::new();
            let ok = {
                let mut g = store.shard(self.hash).write();
                g.alloc(store, largest, 1, None, store.clock.now(), &mut got)
            };
            if ok {
                store.lay_head(got[0], self.n, &self.key, self.flags, self.nbytes);
                self.chunks.push(got[0]);
            }
            return ok;
        }
        let now = store.clock.now();
        let mut got = Chunks::new();
        let ok = {
            let mut g = store.shard(self.hash).write();
            g.alloc(store, class, 1, None, now, &mut got)
                || (class != largest && g.alloc(store, largest, 1, None, now, &mut got))
        };
        if !ok {
            return false;
        }
        store.lay_cont(self.chunks[0], self.nkey, self.flags, i, got[0]);
        self.chunks.push(got[0]);
        true
    }

    /// The room at the write position: where the next bytes the client
    /// sends go, its chunk taken now if need be. Empty once the block is
    /// whole; `None` when no memory can be had for the next chunk
    /// (memcached: `SERVER_ERROR Out of memory during read`).
    pub fn room(&mut self, store: &Store) -> Option<&mut [u8]> {
        if self.remaining() == 0 {
            return Some(&mut []);
        }
        assert!(
            Arc::ptr_eq(&self.mem, &store.mem),
            "an Incoming filled through another store"
        );
        let (k, _) = self.locate(self.filled);
        while self.chunks.len() <= k {
            if !self.grow(store) {
                return None;
            }
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
        Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    /// Counts `n` bytes written into [`room`](Self::room).
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.remaining(), "advanced past the data block");
        self.filled += n;
    }

    /// Copies as much of `src` as the block still takes; how much it took
    /// (`None`: no memory for the next chunk).
    pub fn fill(&mut self, store: &Store, mut src: &[u8]) -> Option<usize> {
        let mut took = 0;
        while !src.is_empty() {
            let room = self.room(store)?;
            if room.is_empty() {
                break;
            }
            let k = room.len().min(src.len());
            room[..k].copy_from_slice(&src[..k]);
            self.advance(k);
            src = &src[k..];
            took += k;
        }
        Some(took)
    }

    /// Writes the `\r\n` the client does not send (binary), once its
    /// bytes are all in; false when no memory can be had for it.
    pub(crate) fn close_block(&mut self, store: &Store) -> bool {
        if self.wire == self.nbytes || self.filled < self.wire {
            return true;
        }
        // The last two bytes are the store's to send now.
        self.wire = self.nbytes;
        self.fill(store, b"\r\n") == Some(2)
    }

    fn byte(&self, pos: usize) -> u8 {
        let (ptr, len) = self.span_at(pos);
        debug_assert!(len > 0 && self.mem.span_in_chunk(ptr, 1));
        // SAFETY: `pos` lies in the data block, inside this item's chunks
        // (taken: the block is whole).
        unsafe { ptr.read() }
    }

    /// Whether the whole block ends in `\r\n` (a text data block must).
    pub fn ends_in_crlf(&self) -> bool {
        self.filled == self.nbytes
            && self.byte(self.nbytes - 2) == b'\r'
            && self.byte(self.nbytes - 1) == b'\n'
    }

    /// Whether `store` took it.
    pub(crate) fn taken_from(&self, store: &Store) -> bool {
        Arc::ptr_eq(&self.mem, &store.mem)
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
    /// Takes the first chunk of the item for a store of `value_len` bytes
    /// under `key`, before any byte of the value has come: `TooLarge` past
    /// `-I`, `OutOfMemory` when no memory can be had (evictions off, or
    /// every candidate busy). `client_crlf`: the client sends the `\r\n`
    /// (text, meta); else it is written here (binary).
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
        let size = Self::size_for(key.len(), flags, nbytes);
        let largest = self.mem.table.largest();
        let chunk_max = self.mem.chunk_of_class(largest);
        let (n, first_class, last_class) = if size > chunk_max {
            let n = item::chained_chunks(chunk_max, key.len(), flags, nbytes);
            let fixed = HDR + if flags == 0 { 0 } else { 4 } + key.len() + 4 * (n - 1);
            let before_last = (chunk_max - fixed) + (n - 2) * (chunk_max - HDR);
            (n, largest, self.class_for_size(HDR + nbytes - before_last))
        } else {
            let c = self.class_for_size(size);
            (1, c, c)
        };
        let mut chunks = Chunks::new();
        let ok = {
            let mut g = self.shard(hash).write();
            g.alloc(self, first_class, 1, None, now, &mut chunks)
        };
        if ok {
            self.lay_head(chunks[0], n, key, flags, nbytes);
        } else if n == 1 {
            return Err(StoreOutcome::OutOfMemory);
        } else {
            // memcached takes a chained item's header in a small chunk of
            // its own, and fails its data chunks during the read: so does
            // this one, whose head (the first data chunk) it tries again
            // when the bytes come.
            chunks.clear();
        }
        Ok(Incoming {
            mem: Arc::clone(&self.mem),
            chunks,
            n,
            last_class,
            hash,
            flags,
            key: key.into(),
            nkey: key.len(),
            nbytes,
            wire: if client_crlf { nbytes } else { value_len },
            filled: 0,
            armed: true,
        })
    }

    /// Whether `inc` was reserved for this key and is whole: only then may
    /// it be linked as the key's item.
    /// An `Incoming` of another store is refused (`NotStored`) unread.
    pub(crate) fn fits(&self, inc: &Incoming, key: &[u8], flags: u32) -> bool {
        inc.filled == inc.nbytes
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
            assert_eq!(inc.fill(s, p), Some(p.len()));
        }
        assert_eq!(inc.remaining(), 0);
        assert_eq!(
            inc.fill(s, b"more"),
            Some(0),
            "a whole block takes nothing more"
        );
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
            let room = inc.room(&s).unwrap();
            let k = room.len().min(1000);
            room[..k].copy_from_slice(&v[at..at + k]);
            inc.advance(k);
            at += k;
        }
        assert!(inc.room(&s).unwrap().is_empty());
        assert!(!inc.ends_in_crlf(), "the \\r\\n is the store's to write");
        let r = s.store_incoming(&req(Mode::Set, b"k", 0), inc);
        assert_eq!(r.outcome, StoreOutcome::Stored);
        assert_eq!(value(&s, b"k").as_deref(), Some(&v[..]));
    }

    #[test]
    fn a_value_abandoned_midway_gives_its_memory_back() {
        let s = store_mb(64, 8 << 20, true);
        assert_eq!(used(&s), 0);
        let mut inc = s.reserve(b"k", 0, 5 << 20, true).unwrap();
        assert_eq!(used(&s), 1, "a chained value takes its first chunk at once");
        inc.fill(&s, &vec![1; 3 << 20]).unwrap();
        assert!(used(&s) >= 6, "and the next as its bytes come");
        drop(inc);
        assert_eq!(used(&s), 0);
        // Nor is a block that did not end in \r\n stored.
        let mut inc = s.reserve(b"k", 0, 3, true).unwrap();
        inc.fill(&s, b"abcde").unwrap();
        assert!(!inc.ends_in_crlf());
        drop(inc);
        assert_eq!(used(&s), 0);
        assert_eq!(s.stats().curr_items, 0);
    }

    #[test]
    fn a_value_not_whole_or_for_another_key_is_not_linked_as_it() {
        let s = store_mb(64, 1 << 20, true);
        let mut inc = s.reserve(b"k", 0, 10, true).unwrap();
        inc.fill(&s, b"12345").unwrap();
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
        // -M: values in flight take chunks as their bytes come; once they
        // hold the memory the next chunk is refused (memcached: out of
        // memory during the read), and the next header too.
        let s = store_mb(8, 2 << 20, false);
        let mut held = Vec::new();
        let refused = loop {
            let mut inc = match s.reserve(format!("k{}", held.len()).as_bytes(), 0, 1 << 20, true) {
                Ok(inc) => inc,
                Err(e) => break e,
            };
            if inc.fill(&s, &pattern(1 << 20)).is_none() {
                break StoreOutcome::NotStored;
            }
            held.push(inc);
            assert!(held.len() < 100, "never refused");
        };
        assert_ne!(refused, StoreOutcome::TooLarge);
        assert!((6..=9).contains(&held.len()), "{} held", held.len());
        drop(held);
        assert_eq!(used(&s), 0);
        assert!(s.reserve(b"k", 0, 1 << 20, true).is_ok());
        // Declared but not sent: only the first chunk is taken, so more
        // values can be on their way than -m would hold whole (memcached
        // takes a large item's chunks as its bytes come too).
        let s = store_mb(8, 2 << 20, false);
        let waiting: Vec<Incoming> = (0..12)
            .map(|i| {
                s.reserve(format!("w{i}").as_bytes(), 0, 1 << 20, true)
                    .unwrap()
            })
            .collect();
        assert_eq!(used(&s), 12, "12 values of 1 MB on their way at -m 8");
        drop(waiting);
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
    fn a_binary_block_ending_on_a_chunk_edge_gets_its_crlf() {
        let s = store_mb(64, 4 << 20, true);
        // Values whose last byte ends a chunk (or falls one or two short):
        // the \r\n then needs a chunk of its own, or is split.
        let chunk = s.mem.chunk_of_class(s.mem.table.largest());
        let head_room = chunk - HDR - 1 - 4 * 2;
        for extra in [0usize, 1, 2, 3] {
            let len = head_room + (chunk - HDR) - extra;
            let v = pattern(len);
            let mut inc = s.reserve(b"e", 0, len, false).unwrap();
            assert_eq!(inc.fill(&s, &v), Some(len));
            let r = s.store_incoming(&req(Mode::Set, b"e", 0), inc);
            assert_eq!(r.outcome, StoreOutcome::Stored, "extra {extra}");
            assert_eq!(value(&s, b"e").as_deref(), Some(&v[..]), "extra {extra}");
        }
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
