//! memcrab-store: the cache behind every worker.
//!
//! ```text
//!  server::exec ──► Store::{get, store, delete, arith, touch, flush_all}
//!                     │  hash of key picks one of SHARDS shards; its lock is
//!                     │  held for a lookup and a copy of an Arc, never I/O
//!                     ▼
//!   shard: index (hash ──► item index) ─► items[idx] ─► Arc<[u8]> key+value
//!          per class: LRU list, item count, per-class stats
//!                     │ allocation and freeing of chunks
//!                     ▼
//!   Store::pages (one small lock): per class pages and used chunks, and the
//!   pages taken from -m (1 MB each, exactly as memcached's slab classes)
//! ```
//!
//! Invariants:
//! - within a shard, an item is in the index iff it is in its class's LRU
//!   list iff its slot in `items` is `Some`;
//! - `pages.classes[c].used_chunks` is the sum of `nchunks` of the items of
//!   class `c` in all shards and never exceeds `pages * per_page`;
//! - total pages times the page size never exceeds `-m`, except for the
//!   first page of a class, which a class may always take (seed 000);
//! - values are reference counted: a reader holding a value keeps only
//!   those bytes alive; replacing or evicting the item never waits on it.
//!
//! Lock order: a shard's lock, then `Store::pages`. A thread holding a
//! shard lock takes another shard's lock only with `try_lock` (to evict
//! from it), so shard locks never wait on each other. `Store::flush_lock`
//! is taken alone. Callers hold no lock of theirs while calling in.
//!
//! Memory is accounted globally, so `-m`, the class table and eviction
//! order by class match memcached; the LRU order is kept per shard (an
//! item evicted is the coldest of its class in its shard).
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

mod shard;

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub use clock::Clock;
use item::{make_data, ntotal, NIL};
use shard::{Dead, Shard};
use slabs::ClassTable;

/// Number of index shards (a power of two).
const SHARDS: usize = 16;

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
    }
}

/// One class's share of memory.
#[derive(Debug, Default, Clone, Copy)]
struct ClassPages {
    pages: u32,
    used_chunks: u32,
}

/// Memory taken from `-m`, by class.
#[derive(Debug, Default)]
struct Pages {
    classes: Vec<ClassPages>,
    mem_malloced: u64,
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

/// `flush_all` state, read on every lookup without a lock.
#[derive(Default)]
struct Flush {
    /// A pending or past `flush_all`: items touched at or before
    /// `oldest_live` are invalid once the clock reaches it (memcached's
    /// `settings.oldest_live`).
    oldest_live: AtomicU32,
    /// Flushes that have taken effect: items with a CAS below
    /// `flushed_cas`, or last touched at or before `flushed_time`, stay
    /// invalid even if a later delayed flush replaces `oldest_live`.
    /// (memcached forgets them then, and items its LRU crawler has not yet
    /// reaped come back; memcrab does not resurrect flushed items.)
    flushed_cas: AtomicU64,
    flushed_time: AtomicU32,
}

/// The cache. `Sync`: every worker thread calls it through `&Store`.
pub struct Store {
    cfg: Config,
    table: ClassTable,
    clock: Arc<Clock>,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    pages: Mutex<Pages>,
    last_cas: AtomicU64,
    flush: Flush,
    flush_lock: Mutex<()>,
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
        let per_shard = (1usize << cfg.hashpower.min(30)) / SHARDS;
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard::new(table.largest() + 1, per_shard)))
            .collect();
        Store {
            pages: Mutex::new(Pages {
                classes: vec![ClassPages::default(); table.largest() + 1],
                mem_malloced: 0,
            }),
            cfg,
            table,
            clock,
            hasher: RandomState::new(),
            shards,
            last_cas: AtomicU64::new(0),
            flush: Flush::default(),
            flush_lock: Mutex::new(()),
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

    /// The shard of a hash: its top bits (the index uses the low ones).
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash >> 58) as usize % SHARDS]
    }

    fn next_cas(&self) -> u64 {
        self.last_cas.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self, key: &[u8], touch: Option<i32>) -> GetOutcome {
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = touch.map(|t| self.clock.realtime(t));
        let mut g = self.shard(hash).lock();
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
    pub fn note_set_attempt(&self, key: &[u8], flags: u32, value_len: usize) {
        if let Some(c) = self
            .table
            .class_for(ntotal(key.len(), flags, value_len, self.cfg.use_cas))
        {
            self.shard(self.hash(key)).lock().classes[c].stats.cmd_set += 1;
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
        let mut g = self.shard(hash).lock();
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
        let mut g = self.shard(hash).lock();
        if let Some(i) = g.find(hash, key) {
            g.unlink(self, i);
        }
    }

    pub fn delete(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
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
        let mut g = self.shard(hash).lock();
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
        let mut g = self.shard(hash).lock();
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
        let mut buf = [0u8; 20];
        let digits = decimal(new, &mut buf);
        let it = inner.items[idx as usize].as_mut().expect("live");
        let nkey = it.nkey as usize;
        if digits.len() <= it.value_len() {
            if let Some(buf) = Arc::get_mut(&mut it.data) {
                let v = &mut buf[nkey..];
                v[..digits.len()].copy_from_slice(digits);
                v[digits.len()..].fill(b' ');
                it.cas = if use_cas { self.next_cas() } else { 0 };
                inner.touch_lru(idx, now);
                return DeltaOutcome::Value(new);
            }
        }
        let (flags, exptime) = (it.flags, it.exptime);
        let data = make_data(key, digits, &[]);
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
        let _guard = self.flush_lock.lock();
        let f = &self.flush;
        let oldest = f.oldest_live.load(Ordering::Relaxed);
        let mut flushed_time = f.flushed_time.load(Ordering::Relaxed);
        if oldest != 0 && oldest <= now {
            // The pending flush has happened: keep its effect.
            flushed_time = flushed_time.max(oldest);
        }
        let oldest = if self.cfg.use_cas {
            new_oldest.saturating_sub(1)
        } else {
            new_oldest
        };
        if oldest <= now {
            if self.cfg.use_cas {
                f.flushed_cas.store(self.next_cas(), Ordering::Relaxed);
            }
            flushed_time = flushed_time.max(oldest);
        }
        f.flushed_time.store(flushed_time, Ordering::Relaxed);
        f.oldest_live.store(oldest, Ordering::Relaxed);
    }

    /// `stats reset`: zeroes the counters, not the contents.
    pub fn reset_stats(&self) {
        for s in self.shards.iter() {
            let mut g = s.lock();
            g.total_items = 0;
            for c in g.classes.iter_mut() {
                c.stats = ClassStats::default();
            }
        }
    }

    pub fn stats(&self) -> StoreStats {
        let now = self.clock.now();
        let nclasses = self.table.largest() + 1;
        let mut s = StoreStats {
            curr_items: 0,
            total_items: 0,
            bytes: 0,
            total_malloced: 0,
            hash_power_level: 0,
            hash_bytes: 0,
            evictions: 0,
            reclaimed: 0,
            expired_unfetched: 0,
            evicted_unfetched: 0,
            outofmemory: 0,
            classes: Vec::new(),
        };
        let mut per_class = vec![(0u32, 0u64, 0u32, ClassStats::default()); nclasses];
        let mut capacity = 0;
        for shard in self.shards.iter() {
            let g = shard.lock();
            s.curr_items += g.curr_items;
            s.total_items += g.total_items;
            s.bytes += g.bytes;
            capacity += g.index.capacity();
            for (id, c) in g.classes.iter().enumerate().skip(1) {
                let pc = &mut per_class[id];
                pc.0 += c.items;
                pc.1 += c.mem_requested;
                if c.lru.tail != NIL {
                    let t = g.items[c.lru.tail as usize].as_ref().expect("live").time;
                    pc.2 = pc.2.max(now.saturating_sub(t));
                }
                pc.3.add(&c.stats);
            }
        }
        let buckets = (capacity * 8 / 7).next_power_of_two().max(1 << 16);
        s.hash_power_level = buckets.trailing_zeros();
        s.hash_bytes = (buckets * (std::mem::size_of::<item::Idx>() + 1)) as u64;
        let pages = self.pages.lock();
        s.total_malloced = pages.mem_malloced;
        for (id, (items, mem_requested, age, stats)) in per_class.into_iter().enumerate().skip(1) {
            s.evictions += stats.evicted;
            s.reclaimed += stats.reclaimed;
            s.expired_unfetched += stats.expired_unfetched;
            s.evicted_unfetched += stats.evicted_unfetched;
            s.outofmemory += stats.outofmemory;
            s.classes.push(ClassSnapshot {
                id,
                chunk_size: self.table.size(id),
                per_page: self.table.per_page(id),
                pages: pages.classes[id].pages,
                used_chunks: pages.classes[id].used_chunks,
                items,
                mem_requested,
                age,
                stats,
            });
        }
        s
    }

    /// `stats cachedump`: up to `limit` (0 = all) items of a class, most
    /// recently used first, within `max_bytes` of output.
    pub fn dump(&self, class: usize, limit: usize, max_bytes: usize) -> Vec<DumpEntry> {
        let started = self.clock.started();
        let mut all: Vec<((u32, u64), DumpEntry)> = Vec::new();
        if class == 0 || class > self.table.largest() {
            return Vec::new();
        }
        for shard in self.shards.iter() {
            let g = shard.lock();
            // Each shard gives at most `limit` of its most recent items;
            // the most recent `limit` of all of them are kept below.
            let mut i = g.classes[class].lru.head;
            let mut taken = 0;
            while i != NIL && (limit == 0 || taken < limit) {
                taken += 1;
                let it = g.items[i as usize].as_ref().expect("live");
                all.push((
                    (it.time, it.cas),
                    DumpEntry {
                        key: it.key().to_vec(),
                        value_len: it.value_len(),
                        exptime: if it.exptime == 0 {
                            0
                        } else {
                            started + u64::from(it.exptime)
                        },
                    },
                ));
                i = it.next;
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

/// `v` in decimal, written into `buf` without an allocation.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests;
