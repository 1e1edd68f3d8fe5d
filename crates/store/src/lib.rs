//! memcrab-store: the cache behind every worker.
//!
//! ```text
//!  server::exec ──► Store::{get, store, delete, arith, touch, flush_all}
//!                     │  one lock (Store::inner), held for a lookup and a
//!                     │  copy of an Arc, never across I/O
//!                     ▼
//!   index (hash of key ──► item index) ─► items[idx] ─► Arc<[u8]> key+value
//!                     │
//!   classes[c]: chunk size, pages, used chunks, LRU list, per-class stats
//!   (memory accounting in 1 MB pages, exactly as memcached's slab classes)
//! ```
//!
//! Invariants:
//! - an item is in the index iff it is in its class's LRU list iff its
//!   slot in `items` is `Some`;
//! - `classes[c].used_chunks` is the sum of `nchunks` of the items of `c`
//!   and never exceeds `pages * per_page`;
//! - total pages times the page size never exceeds `-m`, except for the
//!   first page of a class, which a class may always take (seed 000);
//! - values are reference counted: a reader holding a value keeps only
//!   those bytes alive; replacing or evicting the item never waits on it.
//!
//! Lock order: `Store::inner` is the only lock in this crate, and callers
//! hold no other lock while calling in.
//!
//! This is the foundation store: memory is accounted in memcached's slab
//! classes and pages (so `-m`, `-n`, `-f`, `-I`, eviction and `stats slabs`
//! behave as memcached's) while item bytes live on the heap. The slab
//! arena that stores items inside those pages replaces `Inner` without
//! changing this API.

pub mod clock;
pub mod item;
pub mod lru;
pub mod slabs;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::Mutex;

pub use clock::Clock;
use item::{make_data, ntotal, Idx, Item, NIL};
use lru::Lru;
use slabs::ClassTable;

/// Store settings, from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// `-m` in bytes.
    pub mem_limit: u64,
    /// `-I`.
    pub item_size_max: u32,
    pub slab_page_size: u32,
    /// Largest chunk; items above it are chained.
    pub slab_chunk_max: u32,
    /// `-f`.
    pub growth_factor: f64,
    /// `-n`.
    pub chunk_min: u32,
    /// Off with `-C`.
    pub use_cas: bool,
    /// Off with `-M`.
    pub evictions: bool,
    /// Initial index size as a power of two (`-o hashpower`).
    pub hashpower: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_limit: 64 << 20,
            item_size_max: 1 << 20,
            slab_page_size: 1 << 20,
            slab_chunk_max: 1 << 19,
            growth_factor: 1.25,
            chunk_min: 48,
            use_cas: true,
            evictions: true,
            hashpower: 16,
        }
    }
}

/// The store commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// A value found by `get`: the item's shared key+value bytes.
#[derive(Debug, Clone)]
pub struct Hit {
    pub data: Arc<[u8]>,
    pub nkey: usize,
    pub flags: u32,
    pub cas: u64,
}

impl Hit {
    pub fn key(&self) -> &[u8] {
        &self.data[..self.nkey]
    }
    pub fn value(&self) -> &[u8] {
        &self.data[self.nkey..]
    }
}

#[derive(Debug, Clone)]
pub enum GetOutcome {
    Hit(Hit),
    Miss,
    /// Found but past its exptime (now removed).
    Expired,
    /// Found but invalidated by `flush_all` (now removed).
    Flushed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    TooLarge,
    OutOfMemory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    Value(u64),
    NotFound,
    NonNumeric,
    OutOfMemory,
}

/// Per-class counters, reported by `stats slabs` and `stats items`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClassStats {
    pub get_hits: u64,
    pub cmd_set: u64,
    pub delete_hits: u64,
    pub incr_hits: u64,
    pub decr_hits: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub evicted: u64,
    pub evicted_nonzero: u64,
    pub evicted_time: u32,
    pub evicted_unfetched: u64,
    pub outofmemory: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
}

#[derive(Debug, Default, Clone)]
struct ClassState {
    lru: Lru,
    pages: u32,
    used_chunks: u32,
    items: u32,
    mem_requested: u64,
    stats: ClassStats,
}

/// One class in a stats snapshot.
#[derive(Debug, Clone)]
pub struct ClassSnapshot {
    pub id: usize,
    pub chunk_size: u32,
    pub per_page: u32,
    pub pages: u32,
    pub used_chunks: u32,
    pub items: u32,
    pub mem_requested: u64,
    /// Seconds since the least recently used item was touched.
    pub age: u32,
    pub stats: ClassStats,
}

/// Everything `stats` needs from the store.
#[derive(Debug, Clone)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    pub bytes: u64,
    pub total_malloced: u64,
    pub hash_power_level: u32,
    pub hash_bytes: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub outofmemory: u64,
    pub classes: Vec<ClassSnapshot>,
}

/// One line of `stats cachedump`.
#[derive(Debug, Clone)]
pub struct DumpEntry {
    pub key: Vec<u8>,
    pub value_len: usize,
    /// Unix expiry time, 0 for never.
    pub exptime: u64,
}

#[derive(Default)]
struct Inner {
    index: HashTable<Idx>,
    items: Vec<Option<Item>>,
    free: Vec<Idx>,
    classes: Vec<ClassState>,
    mem_malloced: u64,
    last_cas: u64,
    /// A pending or past `flush_all`: items touched at or before
    /// `oldest_live` are invalid once the clock reaches it (memcached's
    /// `settings.oldest_live`).
    oldest_live: u32,
    /// Flushes that have taken effect: items with a CAS below
    /// `flushed_cas`, or last touched at or before `flushed_time`, stay
    /// invalid even if a later delayed flush replaces `oldest_live`.
    /// (memcached forgets them then, and items its LRU crawler has not yet
    /// reaped come back; memcrab does not resurrect flushed items.)
    flushed_cas: u64,
    flushed_time: u32,
    curr_items: u64,
    total_items: u64,
    bytes: u64,
}

/// The cache. `Sync`: every worker thread calls it through `&Store`.
pub struct Store {
    cfg: Config,
    table: ClassTable,
    clock: Arc<Clock>,
    hasher: RandomState,
    inner: Mutex<Inner>,
}

/// Why an item is no longer valid.
enum Dead {
    Expired,
    Flushed,
}

impl Store {
    pub fn new(cfg: Config, clock: Arc<Clock>) -> Self {
        let table = ClassTable::new(
            cfg.chunk_min,
            cfg.growth_factor,
            cfg.slab_page_size,
            cfg.slab_chunk_max,
            cfg.item_size_max,
        );
        let inner = Inner {
            index: HashTable::with_capacity(1usize << cfg.hashpower.min(30)),
            classes: vec![ClassState::default(); table.largest() + 1],
            ..Inner::default()
        };
        Store {
            cfg,
            table,
            clock,
            hasher: RandomState::new(),
            inner: Mutex::new(inner),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn classes(&self) -> &ClassTable {
        &self.table
    }

    /// memcached's `item_size_ok`: whether an item of this shape fits `-I`.
    pub fn item_size_ok(&self, nkey: usize, flags: u32, value_len: usize) -> bool {
        self.table
            .class_for(ntotal(nkey, flags, value_len, self.cfg.use_cas))
            .is_some()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn get(&self, key: &[u8], touch: Option<i32>) -> GetOutcome {
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = touch.map(|t| self.clock.realtime(t));
        let mut g = self.inner.lock();
        let idx = match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => i,
            Ok(None) => return GetOutcome::Miss,
            Err(Dead::Expired) => return GetOutcome::Expired,
            Err(Dead::Flushed) => return GetOutcome::Flushed,
        };
        let inner = &mut *g;
        let it = inner.items[idx as usize].as_mut().expect("live");
        if let Some(e) = exptime {
            it.exptime = e;
        }
        it.fetched = true;
        it.time = now;
        let hit = Hit {
            data: Arc::clone(&it.data),
            nkey: it.nkey as usize,
            flags: it.flags,
            cas: it.cas,
        };
        let class = it.class as usize;
        let cs = &mut inner.classes[class];
        if touch.is_some() {
            cs.stats.touch_hits += 1;
        } else {
            cs.stats.get_hits += 1;
        }
        cs.lru.bump(&mut inner.items, idx);
        GetOutcome::Hit(hit)
    }

    /// Counts a store attempt whose data block was malformed: memcached
    /// counts the `set` in the item's class before it checks the block.
    pub fn note_set_attempt(&self, nkey: usize, flags: u32, value_len: usize) {
        if let Some(c) = self
            .table
            .class_for(ntotal(nkey, flags, value_len, self.cfg.use_cas))
        {
            self.inner.lock().classes[c].stats.cmd_set += 1;
        }
    }

    /// Stores `value` under `key` according to `mode`. Returns the outcome
    /// memcached would report; `cas_unique` is only read for `Mode::Cas`.
    pub fn store(
        &self,
        mode: Mode,
        key: &[u8],
        flags: u32,
        exptime: i32,
        value: &[u8],
        cas_unique: u64,
    ) -> StoreOutcome {
        let use_cas = self.cfg.use_cas;
        let Some(class_in) = self
            .table
            .class_for(ntotal(key.len(), flags, value.len(), use_cas))
        else {
            if mode == Mode::Set {
                self.unlink_key(key);
            }
            return StoreOutcome::TooLarge;
        };
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = self.clock.realtime(exptime);
        let mut g = self.inner.lock();
        let inner = &mut *g;
        inner.classes[class_in].stats.cmd_set += 1;
        let old = inner.find_live(self, hash, key, now).unwrap_or(None);

        // Decide from the existing item what to store, if anything.
        let (data, flags, exptime) = match (mode, old) {
            (Mode::Set, _) | (Mode::Add, None) => (make_data(key, value, &[]), flags, exptime),
            (Mode::Add, Some(o)) => {
                // add promotes the item it did not replace.
                inner.touch_lru(o, now);
                return StoreOutcome::NotStored;
            }
            (Mode::Replace | Mode::Append | Mode::Prepend, None) => return StoreOutcome::NotStored,
            (Mode::Cas, None) => return StoreOutcome::NotFound,
            (Mode::Replace, Some(_)) => (make_data(key, value, &[]), flags, exptime),
            (Mode::Cas, Some(o)) => {
                let it = inner.items[o as usize].as_ref().expect("live");
                let class = it.class as usize;
                if cas_unique == 0 || cas_unique != it.cas {
                    inner.classes[class].stats.cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                inner.classes[class].stats.cas_hits += 1;
                (make_data(key, value, &[]), flags, exptime)
            }
            (Mode::Append | Mode::Prepend, Some(o)) => {
                let it = inner.items[o as usize].as_ref().expect("live");
                let (a, b) = if mode == Mode::Append {
                    (it.value(), value)
                } else {
                    (value, it.value())
                };
                if self
                    .table
                    .class_for(ntotal(key.len(), it.flags, a.len() + b.len(), use_cas))
                    .is_none()
                {
                    return StoreOutcome::NotStored;
                }
                (make_data(key, a, b), it.flags, it.exptime)
            }
        };
        match inner.link_new(self, hash, data, key.len(), flags, exptime, now, old) {
            Ok(_) => StoreOutcome::Stored,
            Err(()) => {
                if mode == Mode::Set {
                    if let Some(o) = old {
                        inner.unlink(self, o);
                    }
                }
                StoreOutcome::OutOfMemory
            }
        }
    }

    /// Removes `key` if present, counting nothing (memcached drops the old
    /// value of a `set` that cannot be stored).
    pub fn unlink_key(&self, key: &[u8]) {
        let hash = self.hash(key);
        let mut g = self.inner.lock();
        if let Some(i) = g.find(hash, key) {
            g.unlink(self, i);
        }
    }

    pub fn delete(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.inner.lock();
        match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => {
                let class = g.items[i as usize].as_ref().expect("live").class as usize;
                g.classes[class].stats.delete_hits += 1;
                g.unlink(self, i);
                true
            }
            _ => false,
        }
    }

    pub fn touch(&self, key: &[u8], exptime: i32) -> bool {
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = self.clock.realtime(exptime);
        let mut g = self.inner.lock();
        match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => {
                let it = g.items[i as usize].as_mut().expect("live");
                it.exptime = exptime;
                it.fetched = true;
                let class = it.class as usize;
                g.classes[class].stats.touch_hits += 1;
                g.touch_lru(i, now);
                true
            }
            _ => false,
        }
    }

    /// `incr`/`decr`: `parse` reads the stored number with the protocol's
    /// rules (the store does not know the protocol). Incr wraps at 2^64,
    /// decr stops at 0. A result no longer than the stored text is written
    /// in place, padded with spaces, as memcached does.
    pub fn arith(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        parse: fn(&[u8]) -> Option<u64>,
    ) -> DeltaOutcome {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let idx = match inner.find_live(self, hash, key, now) {
            Ok(Some(i)) => i,
            _ => return DeltaOutcome::NotFound,
        };
        let chunk_max = self.cfg.slab_chunk_max as usize;
        let use_cas = self.cfg.use_cas;
        let it = inner.items[idx as usize].as_mut().expect("live");
        let big = ntotal(it.nkey as usize, it.flags, it.value_len(), use_cas) > chunk_max;
        if it.value_len() == 0 || big {
            return DeltaOutcome::NonNumeric;
        }
        let Some(cur) = parse(it.value()) else {
            return DeltaOutcome::NonNumeric;
        };
        let new = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        let class = it.class as usize;
        if incr {
            inner.classes[class].stats.incr_hits += 1;
        } else {
            inner.classes[class].stats.decr_hits += 1;
        }
        let digits = new.to_string();
        let cas = if use_cas { inner.last_cas + 1 } else { 0 };
        let it = inner.items[idx as usize].as_mut().expect("live");
        let nkey = it.nkey as usize;
        if digits.len() <= it.value_len() {
            if let Some(buf) = Arc::get_mut(&mut it.data) {
                let v = &mut buf[nkey..];
                v[..digits.len()].copy_from_slice(digits.as_bytes());
                v[digits.len()..].fill(b' ');
                it.cas = cas;
                if use_cas {
                    inner.last_cas = cas;
                }
                inner.touch_lru(idx, now);
                return DeltaOutcome::Value(new);
            }
        }
        let (flags, exptime) = (it.flags, it.exptime);
        let data = make_data(key, digits.as_bytes(), &[]);
        match inner.link_new(self, hash, data, key.len(), flags, exptime, now, Some(idx)) {
            Ok(_) => DeltaOutcome::Value(new),
            Err(()) => DeltaOutcome::OutOfMemory,
        }
    }

    /// `flush_all [delay]`: every item stored before the flush time becomes
    /// invalid (lazily: it is removed when next seen).
    pub fn flush_all(&self, delay: i32) {
        let now = self.clock.now();
        let new_oldest = if delay > 0 {
            self.clock.realtime(delay)
        } else {
            now
        };
        let mut g = self.inner.lock();
        if g.oldest_live != 0 && g.oldest_live <= now {
            // The pending flush has happened: keep its effect.
            g.flushed_time = g.flushed_time.max(g.oldest_live);
        }
        if self.cfg.use_cas {
            g.oldest_live = new_oldest.saturating_sub(1);
            if g.oldest_live <= now {
                g.flushed_cas = g.next_cas();
                g.flushed_time = g.flushed_time.max(g.oldest_live);
            }
        } else {
            g.oldest_live = new_oldest;
            if g.oldest_live <= now {
                g.flushed_time = g.flushed_time.max(g.oldest_live);
            }
        }
    }

    /// `stats reset`: zeroes the counters, not the contents.
    pub fn reset_stats(&self) {
        let mut g = self.inner.lock();
        g.total_items = 0;
        for c in g.classes.iter_mut() {
            c.stats = ClassStats::default();
        }
    }

    pub fn stats(&self) -> StoreStats {
        let now = self.clock.now();
        let g = self.inner.lock();
        let mut s = StoreStats {
            curr_items: g.curr_items,
            total_items: g.total_items,
            bytes: g.bytes,
            total_malloced: g.mem_malloced,
            hash_power_level: 0,
            hash_bytes: 0,
            evictions: 0,
            reclaimed: 0,
            expired_unfetched: 0,
            evicted_unfetched: 0,
            outofmemory: 0,
            classes: Vec::new(),
        };
        let buckets = (g.index.capacity() * 8 / 7)
            .next_power_of_two()
            .max(1 << 16);
        s.hash_power_level = buckets.trailing_zeros();
        s.hash_bytes = (buckets * (std::mem::size_of::<Idx>() + 1)) as u64;
        for (id, c) in g.classes.iter().enumerate().skip(1) {
            s.evictions += c.stats.evicted;
            s.reclaimed += c.stats.reclaimed;
            s.expired_unfetched += c.stats.expired_unfetched;
            s.evicted_unfetched += c.stats.evicted_unfetched;
            s.outofmemory += c.stats.outofmemory;
            let age = match c.lru.tail {
                NIL => 0,
                t => now.saturating_sub(g.items[t as usize].as_ref().expect("live").time),
            };
            s.classes.push(ClassSnapshot {
                id,
                chunk_size: self.table.size(id),
                per_page: self.table.per_page(id),
                pages: c.pages,
                used_chunks: c.used_chunks,
                items: c.items,
                mem_requested: c.mem_requested,
                age,
                stats: c.stats,
            });
        }
        s
    }

    /// `stats cachedump`: up to `limit` (0 = all) items of a class, most
    /// recently used first, within `max_bytes` of output.
    pub fn dump(&self, class: usize, limit: usize, max_bytes: usize) -> Vec<DumpEntry> {
        let started = self.clock.started();
        let g = self.inner.lock();
        let mut out = Vec::new();
        let Some(c) = g.classes.get(class).filter(|_| class > 0) else {
            return out;
        };
        let mut bytes = 0;
        let mut i = c.lru.head;
        while i != NIL && (limit == 0 || out.len() < limit) {
            let it = g.items[i as usize].as_ref().expect("live");
            bytes += it.nkey as usize + 40;
            if bytes > max_bytes {
                break;
            }
            out.push(DumpEntry {
                key: it.key().to_vec(),
                value_len: it.value_len(),
                exptime: if it.exptime == 0 {
                    0
                } else {
                    started + u64::from(it.exptime)
                },
            });
            i = it.next;
        }
        out
    }
}

impl Inner {
    fn find(&self, hash: u64, key: &[u8]) -> Option<Idx> {
        let items = &self.items;
        self.index
            .find(hash, |&i| {
                items[i as usize].as_ref().expect("indexed").key() == key
            })
            .copied()
    }

    fn is_flushed(&self, it: &Item, now: u32) -> bool {
        if it.cas != 0 && it.cas < self.flushed_cas {
            return true;
        }
        if self.flushed_time != 0 && it.time <= self.flushed_time {
            return true;
        }
        let ol = self.oldest_live;
        ol != 0 && ol <= now && it.time <= ol
    }

    fn is_dead(&self, it: &Item, now: u32) -> Option<Dead> {
        if self.is_flushed(it, now) {
            Some(Dead::Flushed)
        } else if it.exptime != 0 && it.exptime <= now {
            Some(Dead::Expired)
        } else {
            None
        }
    }

    /// Looks `key` up; an expired or flushed item is unlinked on the way.
    fn find_live(
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
        match self.is_dead(it, now) {
            None => Ok(Some(i)),
            Some(d) => {
                self.unlink(store, i);
                Err(d)
            }
        }
    }

    fn next_cas(&mut self) -> u64 {
        self.last_cas += 1;
        self.last_cas
    }

    fn touch_lru(&mut self, i: Idx, now: u32) {
        let it = self.items[i as usize].as_mut().expect("live");
        it.time = now;
        let class = it.class as usize;
        self.classes[class].lru.bump(&mut self.items, i);
    }

    /// Removes item `i` from the index, its LRU and the accounting.
    fn unlink(&mut self, store: &Store, i: Idx) {
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
        let cs = &mut self.classes[class];
        cs.lru.unlink(&mut self.items, i);
        cs.used_chunks -= nchunks;
        cs.items -= 1;
        cs.mem_requested -= size;
        self.curr_items -= 1;
        self.bytes -= size;
        self.items[i as usize] = None;
        self.free.push(i);
    }

    /// Takes `n` chunks of `class`, adding a page or freeing the coldest
    /// items of the class when it is full. `protect` is never evicted.
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
            let cs = &mut self.classes[class];
            if cs.used_chunks + n <= cs.pages * per_page {
                cs.used_chunks += n;
                return true;
            }
            if cs.pages == 0 || self.mem_malloced + page <= store.cfg.mem_limit {
                cs.pages += 1;
                self.mem_malloced += page;
                continue;
            }
            if !self.pull_tail(store, class, protect, now) {
                self.classes[class].stats.outofmemory += 1;
                return false;
            }
        }
    }

    /// Frees one item at the cold end of `class`: an expired or flushed one
    /// among the last five if there is one, else (evictions on) the coldest.
    fn pull_tail(&mut self, store: &Store, class: usize, protect: Option<Idx>, now: u32) -> bool {
        let mut i = self.classes[class].lru.tail;
        let mut victim = NIL;
        let mut seen = 0;
        while i != NIL && seen < 5 {
            let it = self.items[i as usize].as_ref().expect("live");
            let prev = it.prev;
            if Some(i) != protect {
                if self.is_dead(it, now).is_some() {
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
        if victim == NIL || !store.cfg.evictions {
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
    fn link_new(
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
            self.next_cas()
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

#[cfg(test)]
mod tests;
