//! The eviction policy: S3-FIFO (Yang et al., SOSP 2023) per class and
//! shard, with nothing written to a shared list on a hit.
//!
//! ```text
//!   new item ──► small FIFO (10% of the class) ──► front: visited? ─yes─► main FIFO
//!      ▲  (ghost hit: straight to main)              │ no                   │
//!      │                                             ▼                      ▼ front
//!   ghost: hashes of keys evicted from small ◄── evicted      visited? yes: bit cleared,
//!                                                              back to main's end; no: evicted
//! ```
//!
//! A hit only sets the item's `VISITED` bit (and `FETCHED`, and the
//! access time when the second changed: `It::mark_hit`), each only when
//! unset, so it needs no exclusive lock and a hot item's cache line is
//! not written again and again. The queues hold entries outside item
//! memory, 8 bytes an item (`bytes()`): the 32-bit chunk id and 32 bits
//! of the key's hash; the item's `MAIN` bit says which queue its live
//! entry is in. An item unlinked (deleted, replaced, expired) leaves its
//! entry behind: stale entries are skipped when they reach the front
//! (their chunk is no longer linked in this shard, is in another class's
//! page, holds another key, or its `MAIN` bit names the other queue), and
//! a queue that grows past twice its items plus a little is compacted,
//! keeping the newest entry of a chunk that appears more than once (the
//! same key stored again in the same chunk).
//!
//! Why S3-FIFO (BENCHMARKS.md, "Eviction policy"): on look-aside Zipf
//! traces it keeps more hits than LRU and CLOCK, and one-hit wonders (a
//! scan, a batch job) pass through the small queue without pushing the
//! hot set out, which CLOCK and LRU cannot do.

use std::collections::VecDeque;

use crate::item::{fl, ChunkId, It};
use crate::mem::Mem;

/// A queue entry: the key hash's top 32 bits, then the chunk id.
pub(crate) type Entry = u64;

/// What a queue needs to know of its shard: its number, the class, and
/// the key hash's seed (to tell an entry's item from a later one in its
/// chunk).
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub mem: &'a Mem,
    pub shard: usize,
    pub class: usize,
    pub seed: u64,
}

fn entry(id: ChunkId, hash: u64) -> Entry {
    (hash >> 32) << 32 | u64::from(id)
}

fn chunk(e: Entry) -> ChunkId {
    e as u32
}

/// The small queue's share of a class's items, in percent (the default
/// of `Config::small_percent`; 0 makes the policy CLOCK: one queue with
/// a second chance, no ghost).
pub const SMALL_PERCENT: u32 = 10;
/// Entries an eviction passes over (held by a reader, protected) before
/// it gives up, and entries `peek` looks through for live ones.
pub(crate) const SCAN_LIMIT: usize = 256;

/// One class's queues in one shard.
#[derive(Debug, Default, Clone)]
pub(crate) struct Queues {
    pub small: VecDeque<Entry>,
    pub main: VecDeque<Entry>,
    /// Items whose live entry is in each queue.
    pub n_small: u32,
    pub n_main: u32,
}

impl Queues {
    /// Bytes the queues take (the ring buffers' capacity).
    pub fn bytes(&self) -> usize {
        (self.small.capacity() + self.main.capacity()) * std::mem::size_of::<Entry>()
    }

    /// A newly linked item (key hash `hash`) enters the small queue, or
    /// main on a ghost hit.
    pub fn push_new(&mut self, cx: Ctx<'_>, id: ChunkId, hash: u64, to_main: bool) {
        if to_main {
            cx.mem.item(id).set(fl::MAIN);
            self.main.push_back(entry(id, hash));
            self.n_main += 1;
        } else {
            self.small.push_back(entry(id, hash));
            self.n_small += 1;
        }
        self.compact_if_needed(cx, to_main);
    }

    /// An item leaves (its entry stays, stale).
    pub fn forget(&mut self, it: It) {
        if it.has(fl::MAIN) {
            self.n_main -= 1;
        } else {
            self.n_small -= 1;
        }
    }

    /// Whether the next eviction takes from the small queue, which is to
    /// hold `percent` of the items.
    pub fn evict_small_next(&self, percent: u32) -> bool {
        let total = self.n_small + self.n_main;
        self.n_small > 0 && (self.n_main == 0 || self.n_small * 100 >= total * percent)
    }

    /// Pops the first live entry of a queue (stale ones dropped).
    pub fn pop_front(&mut self, cx: Ctx<'_>, main: bool) -> Option<Entry> {
        let q = if main {
            &mut self.main
        } else {
            &mut self.small
        };
        while let Some(e) = q.pop_front() {
            if live_in(cx, e, main) {
                return Some(e);
            }
        }
        None
    }

    /// A live item popped from the small queue moves to main (it was hit
    /// while on probation).
    pub fn promote(&mut self, cx: Ctx<'_>, e: Entry) {
        let it = cx.mem.item(chunk(e));
        it.clear(fl::VISITED);
        it.set(fl::MAIN);
        self.n_small -= 1;
        self.n_main += 1;
        self.main.push_back(e);
        self.compact_if_needed(cx, true);
    }

    /// A live item popped from a queue goes back to its end (main: hit
    /// since it was last looked at; either: held by a reader, protected).
    pub fn requeue(&mut self, e: Entry, main: bool) {
        if main {
            self.main.push_back(e);
        } else {
            self.small.push_back(e);
        }
    }

    /// The first of the live items at the front of both queues, up to
    /// `max` of each (oldest first), for which `pick` says yes: the
    /// allocator's look for an expired item, without popping. Stale
    /// entries at the very front are dropped first (each once), so they
    /// do not hide what lies behind them.
    pub fn find_front(
        &mut self,
        cx: Ctx<'_>,
        max: usize,
        mut pick: impl FnMut(ChunkId) -> bool,
    ) -> Option<ChunkId> {
        self.trim(cx);
        for (q, main) in [(&self.small, false), (&self.main, true)] {
            let found = q
                .iter()
                .copied()
                .take(SCAN_LIMIT)
                .filter(|&e| live_in(cx, e, main))
                .take(max)
                .map(chunk)
                .find(|&id| pick(id));
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The oldest live entry of a queue.
    pub fn oldest(&self, cx: Ctx<'_>, main: bool) -> Option<ChunkId> {
        let q = if main { &self.main } else { &self.small };
        q.iter().copied().find(|&e| live_in(cx, e, main)).map(chunk)
    }

    /// Drops the stale entries at the front of both queues (after a page
    /// move unlinked a page of items), so the front is a live item again.
    pub fn trim(&mut self, cx: Ctx<'_>) {
        for (q, main) in [(&mut self.small, false), (&mut self.main, true)] {
            while q.front().is_some_and(|&e| !live_in(cx, e, main)) {
                q.pop_front();
            }
        }
    }

    /// Every live item, each once, newest entries first.
    pub fn live(&self, cx: Ctx<'_>) -> Vec<ChunkId> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (q, main) in [(&self.small, false), (&self.main, true)] {
            for &e in q.iter().rev() {
                if live_in(cx, e, main) && seen.insert(chunk(e)) {
                    out.push(chunk(e));
                }
            }
        }
        out
    }

    fn compact_if_needed(&mut self, cx: Ctx<'_>, main: bool) {
        let (q, n) = if main {
            (&mut self.main, self.n_main)
        } else {
            (&mut self.small, self.n_small)
        };
        if q.len() > 2 * n as usize + 64 {
            compact(q, cx, main);
        }
    }
}

/// Drops a queue's stale entries, and all but the newest entry of a chunk
/// listed twice. O(entries); run only when the queue holds more than
/// twice its items, so its cost per push is O(1) amortized.
fn compact(q: &mut VecDeque<Entry>, cx: Ctx<'_>, main: bool) {
    let mut seen = std::collections::HashSet::with_capacity(q.len() / 2);
    let mut kept: Vec<Entry> = Vec::with_capacity(q.len() / 2);
    for &e in q.iter().rev() {
        if live_in(cx, e, main) && seen.insert(chunk(e)) {
            kept.push(e);
        }
    }
    q.clear();
    q.extend(kept.into_iter().rev());
    q.shrink_to(q.len() * 2 + 64);
}

/// Whether queue entry `e` names a live item of this queue: linked in
/// this shard, in a page of this class, holding the key whose hash the
/// entry keeps, its `MAIN` bit matching.
fn live_in(cx: Ctx<'_>, e: Entry, main: bool) -> bool {
    let id = chunk(e);
    if cx.mem.class_of_chunk(id) != cx.class {
        return false;
    }
    let it = cx.mem.item(id);
    it.linked_in(cx.shard)
        && !it.is_cont()
        && it.has(fl::MAIN) == main
        && crate::key_hash(cx.seed, it.key()) >> 32 == e >> 32
}

/// Hashes of keys recently evicted from a small queue, one shard's: a key
/// stored again while its hash is here was evicted too soon, and enters
/// main directly. Direct-mapped fingerprints, sized to the shard's items
/// (a newer hash overwrites an older one in its slot).
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    slots: Vec<u32>,
    pub hits: u64,
}

impl Ghost {
    fn slot(&self, hash: u64) -> (usize, u32) {
        let i = (hash >> 8) as usize & (self.slots.len() - 1);
        // Never 0 (an empty slot).
        ((i), (hash >> 32) as u32 | 1)
    }

    /// Remembers an evicted key; the table grows (emptied) to the next
    /// power of two at or above `items`.
    pub fn insert(&mut self, hash: u64, items: u64) {
        let want = (items.max(1024) as usize).next_power_of_two();
        if self.slots.len() < want {
            self.slots = vec![0; want];
        }
        let (i, fp) = self.slot(hash);
        self.slots[i] = fp;
    }

    /// Whether a key was evicted lately (and forgets it).
    pub fn take(&mut self, hash: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (i, fp) = self.slot(hash);
        if self.slots[i] == fp {
            self.slots[i] = 0;
            self.hits += 1;
            true
        } else {
            false
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::Chunks;
    use crate::slabs::ClassTable;

    #[test]
    fn stale_entries_are_skipped_and_compacted() {
        let table = ClassTable::new(48, 1.25, 1 << 20, 1 << 19, 1 << 20);
        let (mem, _) = Mem::new(table, 4 << 20, 0, false).unwrap();
        let mut ids = Chunks::new();
        assert!(mem.take(&mut mem.slabs.lock(), 1, 4, &mut ids));
        let hash = |k: &[u8]| crate::key_hash(7, k);
        let cx = Ctx {
            mem: &mem,
            shard: 0,
            class: 1,
            seed: 7,
        };
        let mut q = Queues::default();
        let key = |i: ChunkId| mem.item(i).key()[0];
        for (n, &i) in ids.iter().enumerate() {
            let it = mem.item(i);
            it.set_nkey(1);
            // SAFETY: the key byte lies in the chunk just taken.
            unsafe { it.0.add(crate::item::HDR).write(b'a' + n as u8) };
            it.link_ref(0);
            q.push_new(cx, i, hash(&[key(i)]), false);
        }
        // The first item leaves, the second moves to main.
        let first = mem.item(ids[0]);
        q.forget(first);
        assert!(first.unlink_ref());
        let e = q.pop_front(cx, false).expect("live items left");
        assert_eq!(chunk(e), ids[1]);
        q.promote(cx, e);
        assert_eq!((q.n_small, q.n_main), (2, 1));
        assert_eq!(q.live(cx).len(), 3);
        // Another key in the first chunk: its old entry is not its own.
        first.link_ref(0);
        // SAFETY: as above.
        unsafe { first.0.add(crate::item::HDR).write(b'z') };
        assert!(!live_in(cx, entry(ids[0], hash(b"a")), false));
        assert!(live_in(cx, entry(ids[0], hash(b"z")), false));
        assert!(first.unlink_ref());
        // The same chunk pushed again and again (the same key stored
        // again in it) is compacted down to one entry.
        let c = ids[2];
        for _ in 0..500 {
            q.forget(mem.item(c));
            q.push_new(cx, c, hash(&[key(c)]), false);
        }
        assert!(q.small.len() <= 2 * q.n_small as usize + 64);
        assert!(q.small.iter().filter(|&&e| chunk(e) == c).count() <= 65);
        assert_eq!(q.live(cx).len(), 3);
        // Another shard's view sees no live item.
        let other = Ctx { shard: 1, ..cx };
        assert!(q.live(other).is_empty());
    }

    #[test]
    fn ghost_remembers_and_forgets() {
        let mut g = Ghost::default();
        assert!(!g.take(42 << 32));
        g.insert(42 << 32, 10);
        assert!(g.take(42 << 32));
        assert!(!g.take(42 << 32), "taken once");
        assert_eq!(g.hits, 1);
        assert_eq!(g.bytes(), 1024 * 4);
    }
}
