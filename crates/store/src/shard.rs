//! One shard of the store: a hash index over its items, and per class an
//! LRU list and counters. Memory (pages and chunks) is accounted in the
//! store, shared by all shards.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::item::{ntotal, Idx, Item, NIL};
use crate::lru::Lru;
use crate::{ClassStats, Store};

/// Why an item is no longer valid.
pub(crate) enum Dead {
    Expired,
    Flushed,
}

/// A class as one shard sees it.
#[derive(Debug, Default, Clone)]
pub(crate) struct ShardClass {
    pub lru: Lru,
    pub items: u32,
    pub mem_requested: u64,
    pub stats: ClassStats,
}

pub(crate) struct Shard {
    pub index: HashTable<Idx>,
    pub items: Vec<Option<Item>>,
    pub free: Vec<Idx>,
    pub classes: Vec<ShardClass>,
    pub curr_items: u64,
    pub total_items: u64,
    pub bytes: u64,
}

impl Shard {
    pub fn new(classes: usize, capacity: usize) -> Shard {
        Shard {
            index: HashTable::with_capacity(capacity),
            items: Vec::new(),
            free: Vec::new(),
            classes: vec![ShardClass::default(); classes],
            curr_items: 0,
            total_items: 0,
            bytes: 0,
        }
    }

    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<Idx> {
        let items = &self.items;
        self.index
            .find(hash, |&i| {
                items[i as usize].as_ref().expect("indexed").key() == key
            })
            .copied()
    }

    fn is_flushed(store: &Store, it: &Item, now: u32) -> bool {
        let f = &store.flush;
        let flushed_cas = f.flushed_cas.load(Ordering::Relaxed);
        if it.cas != 0 && it.cas < flushed_cas {
            return true;
        }
        let flushed_time = f.flushed_time.load(Ordering::Relaxed);
        if flushed_time != 0 && it.time <= flushed_time {
            return true;
        }
        let ol = f.oldest_live.load(Ordering::Relaxed);
        ol != 0 && ol <= now && it.time <= ol
    }

    pub(crate) fn is_dead(store: &Store, it: &Item, now: u32) -> Option<Dead> {
        if Self::is_flushed(store, it, now) {
            Some(Dead::Flushed)
        } else if it.exptime != 0 && it.exptime <= now {
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
    ) -> Result<Option<Idx>, Dead> {
        let Some(i) = self.find(hash, key) else {
            return Ok(None);
        };
        let it = self.items[i as usize].as_ref().expect("indexed");
        match Self::is_dead(store, it, now) {
            None => Ok(Some(i)),
            Some(d) => {
                self.unlink(store, i);
                Err(d)
            }
        }
    }

    pub(crate) fn touch_lru(&mut self, i: Idx, now: u32) {
        let it = self.items[i as usize].as_mut().expect("live");
        it.time = now;
        let class = it.class as usize;
        self.classes[class].lru.bump(&mut self.items, i);
    }

    /// Removes item `i` from the index, its LRU and the accounting.
    pub(crate) fn unlink(&mut self, store: &Store, i: Idx) {
        let (hash, class, nchunks, size) = {
            let it = self.items[i as usize].as_ref().expect("live");
            (
                store.hash(it.key()),
                it.class as usize,
                it.nchunks,
                ntotal(
                    it.nkey as usize,
                    it.flags,
                    it.value_len(),
                    store.cfg.use_cas,
                ) as u64,
            )
        };
        if let Ok(e) = self.index.find_entry(hash, |&x| x == i) {
            e.remove();
        }
        store.pages.lock().classes[class].used_chunks -= nchunks;
        let cs = &mut self.classes[class];
        cs.lru.unlink(&mut self.items, i);
        cs.items -= 1;
        cs.mem_requested -= size;
        self.curr_items -= 1;
        self.bytes -= size;
        self.items[i as usize] = None;
        self.free.push(i);
    }

    /// Takes `n` chunks of `class`, adding a page or freeing the coldest
    /// items of the class when it is full: in this shard, else in another
    /// shard whose lock is free at once. `protect` is never evicted.
    fn alloc(
        &mut self,
        store: &Store,
        class: usize,
        n: u32,
        protect: Option<Idx>,
        now: u32,
    ) -> bool {
        let per_page = store.table.per_page(class);
        let page = u64::from(store.table.page_size());
        loop {
            {
                let mut p = store.pages.lock();
                let fits_limit = p.mem_malloced + page <= store.cfg.mem_limit;
                let cp = &mut p.classes[class];
                if cp.used_chunks + n <= cp.pages * per_page {
                    cp.used_chunks += n;
                    return true;
                }
                if cp.pages == 0 || fits_limit {
                    cp.pages += 1;
                    p.mem_malloced += page;
                    continue;
                }
            }
            // Expired or flushed items first, here and then in the other
            // shards (whose locks are only tried: this shard's is held, so
            // its own try_lock fails); then the coldest live item.
            let mut freed = false;
            for evict in [false, true] {
                freed = self.pull_tail(store, class, protect, now, evict)
                    || store.shards.iter().any(|other| {
                        other
                            .try_lock()
                            .is_some_and(|mut g| g.pull_tail(store, class, None, now, evict))
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

    /// Frees one item at the cold end of `class`: an expired or flushed one
    /// among the last five if there is one, else (evictions on) the coldest.
    fn pull_tail(
        &mut self,
        store: &Store,
        class: usize,
        protect: Option<Idx>,
        now: u32,
        evict: bool,
    ) -> bool {
        let mut i = self.classes[class].lru.tail;
        let mut victim = NIL;
        let mut seen = 0;
        while i != NIL && seen < 5 {
            let it = self.items[i as usize].as_ref().expect("live");
            let prev = it.prev;
            if Some(i) != protect {
                if Self::is_dead(store, it, now).is_some() {
                    let unfetched = !it.fetched;
                    let st = &mut self.classes[class].stats;
                    st.reclaimed += 1;
                    if unfetched {
                        st.expired_unfetched += 1;
                    }
                    self.unlink(store, i);
                    return true;
                }
                if victim == NIL {
                    victim = i;
                }
                seen += 1;
            }
            i = prev;
        }
        if victim == NIL || !evict || !store.cfg.evictions {
            return false;
        }
        let it = self.items[victim as usize].as_ref().expect("live");
        let st = &mut self.classes[class].stats;
        st.evicted += 1;
        st.evicted_time = now.saturating_sub(it.time);
        if it.exptime != 0 {
            st.evicted_nonzero += 1;
        }
        if !it.fetched {
            st.evicted_unfetched += 1;
        }
        self.unlink(store, victim);
        true
    }

    /// Allocates and links a new item, replacing `old` if given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn link_new(
        &mut self,
        store: &Store,
        hash: u64,
        data: Arc<[u8]>,
        nkey: usize,
        flags: u32,
        exptime: u32,
        now: u32,
        old: Option<Idx>,
    ) -> Result<Idx, ()> {
        let size = ntotal(nkey, flags, data.len() - nkey, store.cfg.use_cas);
        let class = store.table.class_for(size).ok_or(())?;
        let nchunks = store.table.chunks_for(class, size);
        if !self.alloc(store, class, nchunks, old, now) {
            return Err(());
        }
        if let Some(o) = old {
            self.unlink(store, o);
        }
        let cas = if store.cfg.use_cas {
            store.next_cas()
        } else {
            0
        };
        let item = Item {
            data,
            nkey: nkey as u8,
            class: class as u8,
            fetched: false,
            nchunks,
            flags,
            exptime,
            time: now,
            cas,
            prev: NIL,
            next: NIL,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.items[i as usize] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                (self.items.len() - 1) as Idx
            }
        };
        let items = &self.items;
        self.index.insert_unique(hash, idx, |&i| {
            store.hash(items[i as usize].as_ref().expect("indexed").key())
        });
        let cs = &mut self.classes[class];
        cs.lru.push_head(&mut self.items, idx);
        cs.items += 1;
        cs.mem_requested += size as u64;
        self.curr_items += 1;
        self.total_items += 1;
        self.bytes += size as u64;
        Ok(idx)
    }
}
