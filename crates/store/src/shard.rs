//! One shard of the store: a hash index over its items, and per class the
//! eviction policy's queues (policy.rs) and counters. Item memory is the
//! store's `Mem`, shared by all shards.

use crate::expiry::Wheel;
use crate::index::Index;
use crate::item::{fl, ChunkId, It};
use crate::mem::Chunks;
use crate::policy::{Ghost, Queues};
use crate::{ClassStats, Store};

/// Why an item is no longer valid.
pub(crate) enum Dead {
    Expired,
    Flushed,
}

/// A class as one shard sees it.
#[derive(Debug, Default, Clone)]
pub(crate) struct ShardClass {
    pub q: Queues,
    pub items: u32,
    pub mem_requested: u64,
    pub stats: ClassStats,
}

pub(crate) struct Shard {
    /// This shard's number (what the reference word's link field names).
    pub id: usize,
    pub index: Index,
    /// The items with an exptime, by second.
    pub wheel: Wheel,
    pub classes: Vec<ShardClass>,
    /// Keys evicted from the small queues lately.
    pub ghost: Ghost,
    pub curr_items: u64,
    pub total_items: u64,
    pub bytes: u64,
}

impl Shard {
    /// None when the index's memory cannot be had.
    pub fn new(id: usize, classes: usize, hashpower: u32, now: u32) -> Option<Shard> {
        Some(Shard {
            id,
            index: Index::new(hashpower)?,
            wheel: Wheel::new(now),
            classes: vec![ShardClass::default(); classes],
            ghost: Ghost::default(),
            curr_items: 0,
            total_items: 0,
            bytes: 0,
        })
    }

    pub(crate) fn find(&mut self, store: &Store, hash: u64, key: &[u8]) -> Option<ChunkId> {
        let mem = &*store.mem;
        self.index.find(hash, |id| mem.item(id).key() == key)
    }

    pub(crate) fn is_dead(store: &Store, it: It, now: u32) -> Option<Dead> {
        if store.flush.covers(it, now) {
            Some(Dead::Flushed)
        } else if it.exptime() != 0 && it.exptime() <= now {
            Some(Dead::Expired)
        } else {
            None
        }
    }

    /// Looks `key` up; an expired or flushed item is unlinked on the way.
    pub(crate) fn find_live(
        &mut self,
        store: &Store,
        hash: u64,
        key: &[u8],
        now: u32,
    ) -> Result<Option<ChunkId>, Dead> {
        let Some(i) = self.find(store, hash, key) else {
            return Ok(None);
        };
        match Self::is_dead(store, store.mem.item(i), now) {
            None => Ok(Some(i)),
            Some(d) => {
                self.unlink_free(store, i, hash);
                Err(d)
            }
        }
    }

    /// Gives linked item `i` a new exptime. The wheel needs a new entry
    /// only when the item expires earlier than before (or did not expire):
    /// an entry before the item's second is put back when found early.
    pub(crate) fn set_exptime(&mut self, store: &Store, i: ChunkId, exptime: u32) {
        let it = store.mem.item(i);
        let old = it.exptime();
        it.set_exptime(exptime);
        if exptime != 0 && (old == 0 || exptime < old) {
            self.wheel.insert(i, exptime);
        }
    }

    /// Removes item `i` (whose key hashes to `hash`) from the index, its
    /// queue's count (its entry stays, stale) and the counters, and drops the link's reference. True when that
    /// was the last reference: the caller frees the chunks
    /// (`Mem::free_item`).
    pub(crate) fn unlink(&mut self, store: &Store, i: ChunkId, hash: u64) -> bool {
        let mem = &*store.mem;
        let it = mem.item(i);
        debug_assert!(it.linked_in(self.id));
        debug_assert_eq!(hash, store.hash(it.key()));
        let removed = self.index.remove(hash, i);
        debug_assert!(removed, "a linked item is indexed");
        let class = store.class_of_linked(i);
        let size = store.size_of(it) as u64;
        let cs = &mut self.classes[class];
        cs.q.forget(it);
        cs.items -= 1;
        cs.mem_requested -= size;
        self.curr_items -= 1;
        self.bytes -= size;
        it.unlink_ref()
    }

    /// `unlink`, then frees the item if no reader holds it.
    pub(crate) fn unlink_free(&mut self, store: &Store, i: ChunkId, hash: u64) {
        if self.unlink(store, i, hash) {
            store.mem.free_item_locking(i);
        }
    }

    /// Takes `n` chunks of `class` into `out`, adding a page or freeing
    /// items of the class when it is full: in this shard, else in another
    /// shard whose lock is free at once. `protect` is never evicted.
    pub(crate) fn alloc(
        &mut self,
        store: &Store,
        class: usize,
        n: usize,
        protect: Option<ChunkId>,
        now: u32,
        out: &mut Chunks,
    ) -> bool {
        loop {
            if store.mem.take(&mut store.mem.slabs.lock(), class, n, out) {
                return true;
            }
            // Expired or flushed items first, here and then in the other
            // shards (whose locks are only tried: this shard's is held, so
            // its own try_write fails); then the policy's victim.
            let mut freed = false;
            // (No expired item can be linked while the reaper is up to the
            // clock: then straight to eviction, not a look at every shard.)
            let passes: &[bool] = if store.may_have_dead(now) {
                &[false, true]
            } else {
                &[true]
            };
            for &evict in passes {
                freed = self.pull(store, class, protect, now, evict)
                    || store.shards.iter().any(|other| {
                        other
                            .try_write()
                            .is_some_and(|mut g| g.pull(store, class, None, now, evict))
                    });
                if freed {
                    break;
                }
            }
            if !freed {
                self.classes[class].stats.outofmemory += 1;
                return false;
            }
        }
    }

    /// Frees one item of `class`: an expired or flushed one near the
    /// front of its queues if there is one, else (`evict`, and evictions
    /// on) the policy's victim. Items a reader holds are passed over:
    /// unlinking them frees nothing.
    fn pull(
        &mut self,
        store: &Store,
        class: usize,
        protect: Option<ChunkId>,
        now: u32,
        evict: bool,
    ) -> bool {
        let mem = &*store.mem;
        if store.may_have_dead(now) {
            let dead = self.classes[class]
                .q
                .find_front(store.qcx(self.id, class), 5, |i| {
                    let it = mem.item(i);
                    Some(i) != protect
                        && it.readers() == 0
                        && Self::is_dead(store, it, now).is_some()
                });
            if let Some(i) = dead {
                self.reclaim(store, class, i);
                return true;
            }
        }
        if !evict || !store.cfg.evictions {
            return false;
        }
        self.evict(store, class, protect, now)
    }

    /// An expired or flushed item found by the allocator, freed.
    fn reclaim(&mut self, store: &Store, class: usize, i: ChunkId) {
        let it = store.mem.item(i);
        let st = &mut self.classes[class].stats;
        st.reclaimed += 1;
        if !it.has(fl::FETCHED) {
            st.expired_unfetched += 1;
        }
        self.unlink_free(store, i, store.hash(it.key()));
    }

    /// S3-FIFO's eviction: from the small queue while it holds more than
    /// its share (an item hit there moves to main instead), else from
    /// main (an item hit since it was last looked at goes round again,
    /// its bit cleared). False when every item looked at was busy.
    fn evict(&mut self, store: &Store, class: usize, protect: Option<ChunkId>, now: u32) -> bool {
        let mem = &*store.mem;
        let cx = store.qcx(self.id, class);
        let mut budget = crate::policy::SCAN_LIMIT;
        while budget > 0 {
            let cs = &mut self.classes[class];
            let main = !cs.q.evict_small_next(store.cfg.small_percent);
            // The other queue, if this one has no live entry.
            let Some(e) =
                cs.q.pop_front(cx, main)
                    .or_else(|| cs.q.pop_front(cx, !main))
            else {
                return false;
            };
            let i = e as ChunkId;
            let it = mem.item(i);
            let main = it.has(fl::MAIN);
            if Some(i) == protect || it.readers() > 0 {
                // Only these count against the budget: a promotion or a
                // second chance clears a bit, so those end by themselves.
                budget -= 1;
                cs.stats.passed_busy += u64::from(it.readers() > 0);
                cs.q.requeue(e, main);
                continue;
            }
            if Self::is_dead(store, it, now).is_some() {
                self.reclaim(store, class, i);
                return true;
            }
            if it.has(fl::VISITED) {
                if main {
                    it.clear(fl::VISITED);
                    cs.stats.reinserted += 1;
                    cs.q.requeue(e, true);
                } else {
                    cs.stats.moves_to_main += 1;
                    cs.q.promote(cx, e);
                }
                continue;
            }
            // The victim. Its entry is gone from the queue: unlink's
            // `forget` still counts it out of the queue its bit names.
            let hash = store.hash(it.key());
            if !main && store.cfg.small_percent > 0 {
                self.ghost.insert(hash, self.curr_items);
            }
            self.count_eviction(store, class, it, now);
            self.unlink_free(store, i, hash);
            return true;
        }
        false
    }

    fn count_eviction(&mut self, store: &Store, class: usize, it: It, now: u32) {
        let st = &mut self.classes[class].stats;
        st.evicted += 1;
        st.evicted_time = now.saturating_sub(it.time());
        if it.exptime() != 0 {
            st.evicted_nonzero += 1;
        }
        if !it.has(fl::FETCHED) {
            st.evicted_unfetched += 1;
        }
        if let Some(observe) = store.evict_observer.get() {
            observe(&crate::Evicted {
                key: it.key(),
                fetched: it.has(fl::FETCHED),
                ttl: if it.exptime() == 0 {
                    -1
                } else {
                    i64::from(it.exptime()) - i64::from(now)
                },
                idle: now.saturating_sub(it.time()),
                class,
                value_len: it.nbytes() as usize - 2,
            });
        }
    }

    /// Links a newly written item: index, its class's small queue (main
    /// when the ghost remembers the key), counters.
    #[inline(always)]
    pub(crate) fn link(&mut self, store: &Store, hash: u64, head: ChunkId) {
        let mem = &*store.mem;
        let it = mem.item(head);
        self.index.insert(hash, head);
        it.link_ref(self.id);
        if it.exptime() != 0 {
            self.wheel.insert(head, it.exptime());
        }
        let class = store.class_of_linked(head);
        let size = store.size_of(it) as u64;
        let to_main = store.cfg.small_percent == 0 || self.ghost.take(hash);
        let cs = &mut self.classes[class];
        cs.q.push_new(store.qcx(self.id, class), head, hash, to_main);
        cs.items += 1;
        cs.mem_requested += size;
        self.curr_items += 1;
        self.total_items += 1;
        self.bytes += size;
    }
}
