//! The reaper: frees expired and flushed items in the background, so they
//! never push live ones out and `curr_items` counts live items.
//!
//! ```text
//!  maintainer, once a second ──► Store::reap(batch)
//!    per shard: take the due buckets out of its wheel (O(due) swaps)
//!               then, `batch` entries per taking of shard + slabs locks:
//!               chunk linked in this shard?  (the reference word, atomic)
//!                 expired or flushed ──► unlink, free (a reader's hold
//!                                        frees it on release)
//!                 due later (touched) ──► back into the wheel
//!                 else ──► stale entry, dropped
//!    flushed items: every class's queues walked in batches (a list of
//!    their live items taken first), each checked again under the lock
//! ```
//!
//! Why both locks: a stale entry may name a chunk freed since and taken
//! by another shard's item, or a chunk of a page since laid out for
//! another class. The slabs lock keeps every page's layout and every
//! chunk's allocation still while a batch runs; the reference word, the
//! one header field read atomically, says whether the chunk is still an
//! item this shard links (the shard's lock keeps it so). Only then is the
//! rest of the header read.

use std::sync::atomic::Ordering;

use crate::item::{fl, ChunkId};
use crate::shard::{Dead, Shard};
use crate::Store;

/// Stale entries a wheel may hold beyond twice its shard's items before
/// it is compacted.
const COMPACT_SLACK: usize = 4096;

/// What one [`Store::reap`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Wheel entries looked at.
    pub checked: u64,
    /// Expired items unlinked (and freed, or freed when their reader lets
    /// go).
    pub expired: u64,
    /// Items invalidated by `flush_all` unlinked.
    pub flushed: u64,
    /// Entries put back for a later second (items touched since).
    pub requeued: u64,
    /// Entries whose item had gone.
    pub stale: u64,
    /// Wheels compacted (too many stale entries).
    pub compacted: u64,
    /// Times a shard's lock was taken.
    pub batches: u64,
}

impl Store {
    /// Frees every item that has expired by the clock's now, and every
    /// item `flush_all` has invalidated, in all shards, taking a shard's
    /// lock for at most `batch` items at a time (and yielding the CPU in
    /// between). The maintainer calls it once a second; any thread may.
    pub fn reap(&self, batch: usize) -> Reaped {
        let now = self.clock.now();
        let batch = batch.max(1);
        let mut r = Reaped::default();
        let mut due: Vec<ChunkId> = Vec::new();
        for k in 0..self.shards.len() {
            let compact = {
                let mut g = self.shards[k].write();
                let limit = 2 * g.curr_items as usize + COMPACT_SLACK;
                if g.wheel.entries() > limit {
                    g.wheel.take_all(&mut due);
                    true
                } else {
                    g.wheel.take_due(now, &mut due);
                    false
                }
            };
            if compact {
                // No lock held: the ids are only numbers until checked.
                due.sort_unstable();
                due.dedup();
                r.compacted += 1;
            }
            self.reap_entries(k, &due, now, batch, &mut r);
            due.clear();
            due.shrink_to(1 << 16);
        }
        self.sweep_flushed(now, batch, &mut r);
        self.reaper_checked.fetch_add(r.checked, Ordering::Relaxed);
        self.reaped_through.fetch_max(now, Ordering::Relaxed);
        r
    }

    /// Checks wheel entries `ids` taken out of shard `k`'s wheel.
    fn reap_entries(&self, k: usize, ids: &[ChunkId], now: u32, batch: usize, r: &mut Reaped) {
        // Per entry of a batch: its item and key hash, if this shard
        // linked it when the batch began.
        let mut found = Vec::with_capacity(batch.min(ids.len()));
        for (n, part) in ids.chunks(batch).enumerate() {
            if n > 0 {
                std::thread::yield_now();
            }
            r.batches += 1;
            let mut g = self.shards[k].write();
            let shard = &mut *g;
            let mut slabs = self.mem.slabs.lock();
            // Two passes that only read, so that the CPU overlaps their
            // cache misses: the headers, then the keys' hashes and their
            // index slots. The checks below then find them in cache.
            found.clear();
            let mut warm = 0;
            for &id in part {
                let it = self.mem.try_item(&slabs, id);
                if let Some(it) = it {
                    warm ^= u64::from(it.readers());
                }
                found.push(it.map(|it| (it, 0)));
            }
            for f in found.iter_mut() {
                match *f {
                    Some((it, ref mut hash)) if it.linked_in(k) => {
                        *hash = self.hash(it.key());
                        warm ^= shard.index.warm(*hash);
                    }
                    _ => *f = None,
                }
            }
            std::hint::black_box(warm);
            for (&id, f) in part.iter().zip(&found) {
                r.checked += 1;
                // Not linked here, or unlinked by an earlier duplicate
                // entry of this batch.
                let Some((it, hash)) = f.filter(|(it, _)| it.linked_in(k)) else {
                    r.stale += 1;
                    continue;
                };
                // Linked here: this shard's lock (held) keeps it so, and
                // only holders of that lock write its header.
                match Shard::is_dead(self, it, now) {
                    Some(dead) => {
                        let st = &mut shard.classes[self.class_of(it)].stats;
                        if let Dead::Expired = dead {
                            st.expired_reclaimed += 1;
                            if !it.has(fl::FETCHED) {
                                st.expired_unfetched += 1;
                            }
                            r.expired += 1;
                        } else {
                            r.flushed += 1;
                        }
                        if shard.unlink(self, id, hash) {
                            self.mem.free_item(&mut slabs, id);
                        }
                    }
                    None if it.exptime() != 0 => {
                        shard.wheel.insert(id, it.exptime());
                        r.requeued += 1;
                    }
                    None => r.stale += 1,
                }
            }
        }
    }

    /// Unlinks flushed items from every class's queues, `batch` per
    /// taking of a shard lock. A `flush_all` invalidates every item last
    /// used before it, wherever it is in its queue: the queues are walked
    /// whole (a list of their live items taken first), each item checked
    /// again under the lock before it goes.
    fn sweep_flushed(&self, now: u32, batch: usize, r: &mut Reaped) {
        if !self.flush.in_force(now) {
            return;
        }
        for (k, shard) in self.shards.iter().enumerate() {
            for class in 1..=self.mem.table.largest() {
                let ids = shard.read().classes[class].q.live(self.qcx(k, class));
                for part in ids.chunks(batch.max(1)) {
                    let mut g = shard.write();
                    for &id in part {
                        let it = self.mem.item(id);
                        // Still this shard's and class's (the page may
                        // have moved since the list was taken)?
                        if self.mem.class_of_chunk(id) != class
                            || !it.linked_in(k)
                            || it.is_cont()
                            || !self.flush.covers(it, now)
                        {
                            continue;
                        }
                        g.unlink_free(self, id, self.hash(it.key()));
                        r.flushed += 1;
                    }
                    drop(g);
                    if part.len() == batch {
                        r.batches += 1;
                        std::thread::yield_now();
                    }
                }
            }
        }
    }
}
