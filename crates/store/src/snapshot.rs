//! What `stats` reports from the store: a snapshot summed over shards
//! and classes, `stats cachedump`'s listing, and `stats reset`.

use std::sync::atomic::Ordering;

use crate::item;
use crate::{ClassSnapshot, ClassStats, DumpEntry, ListedItem, Store, StoreStats};

impl ClassStats {
    fn add(&mut self, o: &ClassStats) {
        self.get_hits += o.get_hits;
        self.cmd_set += o.cmd_set;
        self.delete_hits += o.delete_hits;
        self.incr_hits += o.incr_hits;
        self.decr_hits += o.decr_hits;
        self.cas_hits += o.cas_hits;
        self.cas_badval += o.cas_badval;
        self.touch_hits += o.touch_hits;
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.evicted_time = self.evicted_time.max(o.evicted_time);
        self.evicted_unfetched += o.evicted_unfetched;
        self.outofmemory += o.outofmemory;
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.expired_reclaimed += o.expired_reclaimed;
        self.moves_to_main += o.moves_to_main;
        self.reinserted += o.reinserted;
        self.passed_busy += o.passed_busy;
        self.hits_small += o.hits_small;
        self.hits_main += o.hits_main;
    }
}

impl Store {
    /// `stats reset`: zeroes the counters, not the contents.
    pub fn reset_stats(&self) {
        self.reaper_checked.store(0, Ordering::Relaxed);
        for s in self.shards.iter() {
            let mut g = s.write();
            g.total_items = 0;
            for c in g.classes.iter_mut() {
                c.stats = ClassStats::default();
            }
            g.ghost.hits = 0;
        }
        self.hits.reset();
    }

    pub fn stats(&self) -> StoreStats {
        let now = self.clock.now();
        let table = &self.mem.table;
        let nclasses = table.largest() + 1;
        let mut s = StoreStats {
            curr_items: 0,
            total_items: 0,
            bytes: 0,
            total_malloced: 0,
            hash_power_level: 0,
            hash_bytes: 0,
            hash_is_expanding: false,
            slabs_moved: 0,
            pool_pages: 0,
            slab_reassign_running: false,
            slab_reassign_evictions: 0,
            slab_reassign_busy_items: 0,
            evictions: 0,
            reclaimed: 0,
            expired_reclaimed: 0,
            wheel_checked: self.reaper_checked.load(Ordering::Relaxed),
            wheel_entries: 0,
            wheel_bytes: 0,
            policy_bytes: 0,
            ghost_hits: 0,
            expired_unfetched: 0,
            evicted_unfetched: 0,
            outofmemory: 0,
            classes: Vec::new(),
        };
        let mut per_class = vec![(0u32, 0u64, 0u32, ClassStats::default()); nclasses];
        let mut queues = vec![QueueFigures::default(); nclasses];
        let mut capacity = 0;
        for shard in self.shards.iter() {
            let g = shard.read();
            s.curr_items += g.curr_items;
            s.total_items += g.total_items;
            s.bytes += g.bytes;
            capacity += g.index.capacity();
            s.hash_bytes += g.index.bytes() as u64;
            s.hash_is_expanding |= g.index.is_expanding();
            s.wheel_entries += g.wheel.entries() as u64;
            s.wheel_bytes += g.wheel.bytes() as u64;
            s.policy_bytes += g.ghost.bytes() as u64;
            s.ghost_hits += g.ghost.hits;
            for (id, c) in g.classes.iter().enumerate().skip(1) {
                let pc = &mut per_class[id];
                pc.0 += c.items;
                pc.1 += c.mem_requested;
                s.policy_bytes += c.q.bytes() as u64;
                let qf = &mut queues[id];
                qf.small += c.q.n_small;
                qf.main += c.q.n_main;
                for main in [false, true] {
                    if let Some(i) = c.q.oldest(self.qcx(g.id, id), main) {
                        let age = now.saturating_sub(self.mem.item(i).time());
                        let a = if main {
                            &mut qf.age_main
                        } else {
                            &mut qf.age_small
                        };
                        *a = (*a).max(age);
                        pc.2 = pc.2.max(age);
                    }
                }
                pc.3.add(&c.stats);
            }
        }
        s.hash_power_level = capacity.max(1).next_power_of_two().trailing_zeros();
        let slabs = self.mem.slabs.lock();
        s.total_malloced = slabs.malloced;
        s.slabs_moved = slabs.slabs_moved;
        s.pool_pages = slabs.pool.len() as u64;
        s.slab_reassign_running = slabs.moving.is_some();
        s.slab_reassign_evictions = slabs.move_evictions;
        s.slab_reassign_busy_items = slabs.move_busy;
        for (id, (items, mem_requested, age, mut stats)) in
            per_class.into_iter().enumerate().skip(1)
        {
            let [small, main, touch] = self.hits.sum(id);
            stats.hits_small = small;
            stats.hits_main = main;
            stats.get_hits = small + main;
            stats.touch_hits = touch;
            s.evictions += stats.evicted;
            s.reclaimed += stats.reclaimed;
            s.expired_reclaimed += stats.expired_reclaimed;
            s.expired_unfetched += stats.expired_unfetched;
            s.evicted_unfetched += stats.evicted_unfetched;
            s.outofmemory += stats.outofmemory;
            let c = &slabs.classes[id];
            let end = if c.end_page == item::NIL {
                0
            } else {
                table.per_page(id) - c.end_slot
            };
            s.classes.push(ClassSnapshot {
                id,
                chunk_size: table.size(id),
                per_page: table.per_page(id),
                pages: c.pages,
                used_chunks: c.used,
                free_chunks: c.free_count + end,
                free_chunks_end: end,
                items,
                mem_requested,
                age,
                items_small: queues[id].small,
                items_main: queues[id].main,
                age_small: queues[id].age_small,
                age_main: queues[id].age_main,
                stats,
            });
        }
        s
    }

    /// Sets what is told of every eviction (once; later calls are
    /// ignored).
    pub fn observe_evictions(&self, f: crate::EvictObserver) {
        let _ = self.evict_observer.set(f);
    }

    /// The item memory limit (`-m`, or `cache_memlimit`'s), in bytes.
    pub fn mem_limit(&self) -> u64 {
        self.mem.limit()
    }

    /// `cache_memlimit`: a new limit in bytes; false when it cannot be
    /// changed (`-L`) or the arena reserved too little for it. Pooled
    /// pages past it go back to the system now; [`Store::shrink_step`]
    /// frees more as classes empty.
    pub fn set_mem_limit(&self, bytes: u64) -> bool {
        self.mem.set_limit(bytes)
    }

    /// While more memory is taken than the limit: a class with a page's
    /// worth of free chunks gives its emptiest page to the global pool
    /// (evicting what is left in it), and pooled pages go back to the
    /// system. The maintainer calls it; nothing happens under the limit.
    /// Returns whether a page went back.
    pub fn shrink_step(&self) -> bool {
        let over = {
            let mut s = self.mem.slabs.lock();
            if self.mem.release_pool(&mut s) > 0 {
                return true;
            }
            s.malloced > self.mem.limit() && s.moving.is_none()
        };
        if !over {
            return false;
        }
        let src = {
            let s = self.mem.slabs.lock();
            (1..s.classes.len())
                .filter(|&c| {
                    let k = &s.classes[c];
                    k.pages > 1 && k.free_count >= self.mem.table.per_page(c)
                })
                .max_by_key(|&c| s.classes[c].free_count / self.mem.table.per_page(c).max(1))
        };
        let Some(src) = src else { return false };
        if self.move_page(src, 0).is_err() {
            return false;
        }
        let mut s = self.mem.slabs.lock();
        self.mem.release_pool(&mut s) > 0
    }

    /// Shards a key listing walks ([`Store::list_ids`]).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// A bounded step of a key listing (`lru_crawler metadump`): the item
    /// ids of up to `max_slots` index slots of `shard` from `from`, taken
    /// under its lock, which is held for this step only. Returns where to
    /// go on, `None` when the shard is done.
    pub fn list_ids(
        &self,
        shard: usize,
        from: usize,
        max_slots: usize,
        out: &mut Vec<u32>,
    ) -> Option<usize> {
        self.shards[shard]
            .write()
            .index
            .collect(from, max_slots, out)
    }

    /// The live items among `ids` (listed from `shard` by
    /// [`Store::list_ids`]; ids that have been freed or now name an item
    /// of another shard since are skipped), handed to `f` under the
    /// shard's lock: no I/O in `f`. Expired and flushed items are left out.
    pub fn list_meta(&self, shard: usize, ids: &[u32], mut f: impl FnMut(&ListedItem<'_>)) {
        let started = self.clock.started();
        let now = self.clock.now();
        let _g = self.shards[shard].read();
        for &id in ids {
            let it = self.mem.item(id);
            if !it.linked_in(shard) || crate::shard::Shard::is_dead(self, it, now).is_some() {
                continue;
            }
            let value_len = it.nbytes() as usize - 2;
            f(&ListedItem {
                key: it.key(),
                exptime: (it.exptime() != 0).then(|| started + u64::from(it.exptime())),
                last_access: started + u64::from(it.time()),
                cas: it.cas(),
                fetched: it.has(item::fl::FETCHED),
                class: self.class_of(it),
                size: item::memcached_ntotal(
                    it.nkey() as usize,
                    it.flags(),
                    value_len,
                    self.cfg.use_cas,
                ),
            });
        }
    }

    /// `stats cachedump`: up to `limit` (0 = all) items of a class, most
    /// recently used first, within `max_bytes` of output.
    pub fn dump(&self, class: usize, limit: usize, max_bytes: usize) -> Vec<DumpEntry> {
        let started = self.clock.started();
        let mut all: Vec<((u32, u64), DumpEntry)> = Vec::new();
        if class == 0 || class > self.mem.table.largest() {
            return Vec::new();
        }
        for shard in self.shards.iter() {
            let g = shard.read();
            // Each shard gives at most `limit` of its most recent items;
            // the most recent `limit` of all of them are kept below.
            let live = g.classes[class].q.live(self.qcx(g.id, class));
            let mut mine: Vec<_> = live.into_iter().map(|i| self.mem.item(i)).collect();
            mine.sort_by_key(|it| std::cmp::Reverse((it.time(), it.cas())));
            if limit != 0 {
                mine.truncate(limit);
            }
            for it in mine {
                all.push((
                    (it.time(), it.cas()),
                    DumpEntry {
                        key: it.key().to_vec(),
                        value_len: it.nbytes() as usize - 2,
                        exptime: if it.exptime() == 0 {
                            0
                        } else {
                            started + u64::from(it.exptime())
                        },
                    },
                ));
            }
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut bytes = 0;
        let mut out = Vec::new();
        for (_, e) in all {
            bytes += e.key.len() + 40;
            if bytes > max_bytes || (limit != 0 && out.len() >= limit) {
                break;
            }
            out.push(e);
        }
        out
    }
}

/// One class's queue figures, summed over shards.
#[derive(Debug, Default, Clone, Copy)]
struct QueueFigures {
    small: u32,
    main: u32,
    age_small: u32,
    age_main: u32,
}

#[cfg(test)]
impl Store {
    /// The policy's bookkeeping agrees with the items: in every shard and
    /// class, the queues' counts are the class's items, each linked item
    /// has exactly one live entry, in the queue its `MAIN` bit names.
    pub(crate) fn check_policy(&self) {
        for (k, shard) in self.shards.iter().enumerate() {
            let g = shard.read();
            for (class, c) in g.classes.iter().enumerate().skip(1) {
                assert_eq!(c.q.n_small + c.q.n_main, c.items, "shard {k} class {class}");
                let live = c.q.live(self.qcx(k, class));
                assert_eq!(live.len(), c.items as usize, "shard {k} class {class}");
                let main = live
                    .iter()
                    .filter(|&&i| self.mem.item(i).has(item::fl::MAIN))
                    .count();
                assert_eq!(main, c.q.n_main as usize, "shard {k} class {class}");
            }
        }
    }
}
