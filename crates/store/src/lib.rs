//! memcrab-store: the cache behind every worker.
//!
//! ```text
//!  server::exec ──► Store::{get_with, store, delete, arith, touch, flush_all}
//!                     │  hash of key picks one of SHARDS shards; its lock is
//!                     │  held for a lookup and a copy (or a reference
//!                     │  count), never I/O
//!                     ▼
//!   shard: index (hash ──► chunk id, growing incrementally)
//!          per class: LRU list (links in the items), counters
//!          expiry wheel: a bucket of chunk ids per second ◄── Store::reap
//!                        (maintainer, once a second; expiry.rs, reap.rs)
//!                     │ chunk ids
//!                     ▼
//!   Mem: the arena (-m reserved by mmap, 1 MB pages given to classes on
//!        demand) ── items: 32-byte header, flags, key, value + "\r\n"
//!        Mem::slabs (one lock): per class free chunks and pages; page moves
//! ```
//!
//! Invariants:
//! - an item is linked iff it is in its shard's index iff it is in its
//!   class's LRU list in that shard iff its reference word names that
//!   shard (the link's reference; `It::is_linked`);
//! - a linked item with an exptime has an entry in its shard's wheel at
//!   or before its second (expiry.rs);
//! - a chunk is in use iff a linked item or a reader's `ItemRef` holds it
//!   (a chained item's continuation chunks follow their head); an item's
//!   chunks are freed by whoever drops its last reference;
//! - total pages times the page size never exceeds `-m`, except for the
//!   first page of a class, which a class may always take (seed 000);
//! - an item is rewritten in place (incr) only with no reader holding it.
//!
//! Lock order: a shard's lock, then `Mem::slabs`. A thread holding a
//! shard lock takes another shard's lock only with `try_lock` (to evict
//! from it), so shard locks never wait on each other, except in the page
//! mover, which takes all of them in index order while holding none.
//! `Store::flush_lock` is taken alone; `Store::automove` is taken before
//! any shard lock (its step reads the stats), never while holding one.
//! Callers hold no lock of theirs while calling in. The reaper takes a
//! shard's lock, then the slabs, for a batch of wheel entries (reap.rs).
//!
//! `unsafe` lives in `arena.rs` (the mapping), `item.rs` (header fields
//! read and written through the chunk pointer), `mem.rs` (`ItemRef`'s
//! slice) and here (`Parts`' slices, writing a new item, in-place incr):
//! every pointer is made by `Mem::item` from a chunk id inside the
//! arena, and the rules above say which thread may use it.

pub mod clock;
pub mod item;
pub mod lru;
pub mod slabs;

mod arena;
mod expiry;
mod index;
mod mem;
mod reap;
mod shard;

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub use clock::Clock;
pub use expiry::RING as EXPIRY_RING;
use item::{fl, ChunkId, It, HDR};
pub use mem::ItemRef;
use mem::{Chunks, Mem};
pub use reap::Reaped;
use shard::{Dead, Shard};
use slabs::ClassTable;

/// Number of index shards (a power of two).
const SHARDS: usize = 16;
// The reference word names the linking shard.
const _: () = assert!(SHARDS <= item::rf::MAX_SHARDS);
/// Seconds by which a class's coldest item must be older than an evicting
/// class's before automove takes a page from it.
const AUTOMOVE_MIN_AGE_GAP: u32 = 5;
/// Chunk slots a page move empties per taking of the locks.
const MOVE_BATCH: u32 = 256;

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
    /// `-L`: make the arena resident at start, on huge pages if possible.
    pub prealloc: bool,
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
            prealloc: false,
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

/// A copy of an item found by [`Store::get`] (tests and tools; the
/// server answers from [`Found`] without a copy of large values).
#[derive(Debug, Clone)]
pub struct Hit {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub flags: u32,
    pub cas: u64,
}

impl Hit {
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// Why a lookup found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    Miss,
    /// Found but past its exptime (now removed).
    Expired,
    /// Found but invalidated by `flush_all` (now removed).
    Flushed,
}

/// A live item, seen under its shard's lock by [`Store::get_with`].
pub struct Found<'a> {
    mem: &'a Arc<Mem>,
    head: ChunkId,
    it: It,
    pub flags: u32,
    pub cas: u64,
    /// Value bytes, without the `\r\n`.
    pub value_len: usize,
}

impl Found<'_> {
    /// The stored data block (value and its `\r\n`) in one slice per
    /// chunk: one for every item up to `slab_chunk_max`.
    pub fn parts(&self) -> Parts<'_> {
        Parts::new(self.mem, self.it)
    }

    /// A hold on `part` (a slice from [`parts`](Self::parts)) that outlives
    /// the lock: the item's memory is kept until it is dropped. `None` when
    /// the item has too many readers already (copy instead).
    pub fn pin(&self, part: &[u8]) -> Option<ItemRef> {
        self.mem.pin(self.head, part)
    }
}

/// The data block of an item, chunk by chunk.
pub struct Parts<'a> {
    mem: &'a Mem,
    it: It,
    n: usize,
    idx: usize,
    left: usize,
}

impl<'a> Parts<'a> {
    fn new(mem: &'a Mem, it: It) -> Self {
        let n = if it.has(fl::CHAINED) {
            mem.chain_len(it)
        } else {
            1
        };
        Parts {
            mem,
            it,
            n,
            idx: 0,
            left: it.nbytes() as usize,
        }
    }

    /// Where the next part lies, and how long it is.
    fn next_span(&mut self) -> Option<(*mut u8, usize)> {
        if self.left == 0 {
            return None;
        }
        let (ptr, room) = if self.idx == 0 {
            let off = self.it.value_off(self.n);
            let room = if self.n == 1 {
                self.left
            } else {
                self.mem.chunk_of_class(self.mem.table.largest()) - off
            };
            (self.mem.value_ptr(self.it, off), room)
        } else {
            let id = self
                .it
                .chain(self.n)
                .nth(self.idx - 1)
                .expect("chain entry");
            let cont = self.mem.item(id);
            (self.mem.value_ptr(cont, HDR), self.mem.chunk_size(id) - HDR)
        };
        let len = room.min(self.left);
        self.left -= len;
        self.idx += 1;
        Some((ptr.cast_mut(), len))
    }
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (ptr, len) = self.next_span()?;
        // SAFETY: the span lies inside the item's chunks, which the
        // caller's shard lock (or reference) keeps from being freed.
        Some(unsafe { std::slice::from_raw_parts(ptr, len) })
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

impl From<Missed> for GetOutcome {
    fn from(m: Missed) -> Self {
        match m {
            Missed::Miss => GetOutcome::Miss,
            Missed::Expired => GetOutcome::Expired,
            Missed::Flushed => GetOutcome::Flushed,
        }
    }
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
    /// A CAS value was given and the item's differs (binary protocol).
    Exists,
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
    /// Expired items the wheel freed (memcached's `crawler_reclaimed`).
    pub expired_reclaimed: u64,
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
        self.expired_reclaimed += o.expired_reclaimed;
    }
}

/// One class in a stats snapshot.
#[derive(Debug, Clone)]
pub struct ClassSnapshot {
    pub id: usize,
    pub chunk_size: u32,
    pub per_page: u32,
    pub pages: u32,
    pub used_chunks: u32,
    pub free_chunks: u32,
    /// Never-used chunks at the end of the newest page.
    pub free_chunks_end: u32,
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
    pub hash_is_expanding: bool,
    pub slabs_moved: u64,
    /// Pages in the global pool.
    pub pool_pages: u64,
    pub slab_reassign_running: bool,
    /// Items unlinked to empty pages being moved.
    pub slab_reassign_evictions: u64,
    /// Items a move found held by a reader.
    pub slab_reassign_busy_items: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    /// Expired items the wheel freed.
    pub expired_reclaimed: u64,
    /// Wheel entries the reaper has looked at.
    pub wheel_checked: u64,
    /// Entries in the wheels now (stale ones included), and their memory.
    pub wheel_entries: u64,
    pub wheel_bytes: u64,
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

/// An item about to be written: its data block in `pieces` (value and
/// `\r\n`, in one or more pieces), replacing `old` if any.
#[derive(Clone, Copy)]
struct NewItem<'a> {
    hash: u64,
    key: &'a [u8],
    flags: u32,
    exptime: u32,
    pieces: &'a [&'a [u8]],
    old: Option<ChunkId>,
    now: u32,
}

/// Why `slabs reassign` refused, in memcached's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassignError {
    /// A move is under way.
    Busy,
    /// A class id out of range.
    BadClass,
    /// The source class has no page to give.
    NoSpare,
    /// Source and destination are the same class.
    Same,
}

/// What automove remembers between steps.
#[derive(Debug, Default)]
struct Automove {
    /// Evictions per class at the last step.
    last_evicted: Vec<u64>,
}

/// The cache. `Sync`: every worker thread calls it through `&Store`.
pub struct Store {
    cfg: Config,
    clock: Arc<Clock>,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    mem: Arc<Mem>,
    last_cas: AtomicU64,
    flush: Flush,
    flush_lock: Mutex<()>,
    automove: Mutex<Automove>,
    /// Wheel entries the reaper has looked at.
    reaper_checked: AtomicU64,
    /// `-L` fell back: what to tell the operator.
    warning: Option<String>,
}

impl Store {
    /// A store with its arena reserved. Panics if the address space for
    /// `-m` cannot be reserved (see [`try_new`](Self::try_new)).
    pub fn new(cfg: Config, clock: Arc<Clock>) -> Self {
        Self::try_new(cfg, clock).expect("reserve the item arena")
    }

    pub fn try_new(cfg: Config, clock: Arc<Clock>) -> std::io::Result<Self> {
        let table = ClassTable::new(
            cfg.chunk_min,
            cfg.growth_factor,
            cfg.slab_page_size,
            cfg.slab_chunk_max,
            cfg.item_size_max,
        );
        let nclasses = table.largest() + 1;
        let (mem, warning) = Mem::new(table, cfg.mem_limit, cfg.prealloc)?;
        let per_shard = u32::from(cfg.hashpower.min(40)).saturating_sub(SHARDS.trailing_zeros());
        let now = clock.now();
        let shards = (0..SHARDS)
            .map(|id| Shard::new(id, nclasses, per_shard, now).map(Mutex::new))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("no memory for a hash table of 2^{} slots", cfg.hashpower),
                )
            })?;
        Ok(Store {
            cfg,
            clock,
            hasher: RandomState::new(),
            shards,
            mem: Arc::new(mem),
            last_cas: AtomicU64::new(0),
            flush: Flush::default(),
            flush_lock: Mutex::new(()),
            automove: Mutex::new(Automove::default()),
            reaper_checked: AtomicU64::new(0),
            warning,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn classes(&self) -> &ClassTable {
        &self.mem.table
    }

    /// Set when `-L` could not have what it asked for.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// memcached's `item_size_ok`: whether an item of this shape fits `-I`
    /// (by memcached's arithmetic, so memcrab refuses exactly what it does).
    pub fn item_size_ok(&self, nkey: usize, flags: u32, value_len: usize) -> bool {
        let n = item::memcached_ntotal(nkey, flags, value_len, self.cfg.use_cas);
        n <= self.cfg.item_size_max as usize
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of a hash: its top bits (the index uses the low ones).
    fn shard_of(&self, hash: u64) -> usize {
        (hash >> 58) as usize % SHARDS
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[self.shard_of(hash)]
    }

    fn next_cas(&self) -> u64 {
        self.last_cas.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Bytes an item of this shape takes in one chunk (its class's key).
    fn size_for(nkey: usize, flags: u32, nbytes: usize) -> usize {
        item::single_size(nkey, flags, nbytes)
    }

    pub(crate) fn size_of(&self, it: It) -> usize {
        Self::size_for(it.nkey() as usize, it.flags(), it.nbytes() as usize)
    }

    pub(crate) fn class_of(&self, it: It) -> usize {
        self.class_for_size(self.size_of(it))
    }

    fn class_for_size(&self, size: usize) -> usize {
        let t = &self.mem.table;
        if size > t.size(t.largest()) as usize {
            t.largest()
        } else {
            t.class_for(size).expect("a size within the largest chunk")
        }
    }

    /// Looks `key` up and, when it is live, runs `f` on it under the shard
    /// lock (bumping it in its LRU; with `touch`, setting a new exptime).
    pub fn get_with<R>(
        &self,
        key: &[u8],
        touch: Option<i32>,
        f: impl FnOnce(&Found<'_>) -> R,
    ) -> Result<R, Missed> {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
        let id = match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => i,
            Ok(None) => return Err(Missed::Miss),
            Err(Dead::Expired) => return Err(Missed::Expired),
            Err(Dead::Flushed) => return Err(Missed::Flushed),
        };
        let it = self.mem.item(id);
        if let Some(t) = touch {
            g.set_exptime(self, id, self.clock.realtime(t));
        }
        it.set(fl::FETCHED);
        let class = self.class_of(it);
        let cs = &mut g.classes[class];
        if touch.is_some() {
            cs.stats.touch_hits += 1;
        } else {
            cs.stats.get_hits += 1;
        }
        g.touch_lru(self, id, class, now);
        let found = Found {
            mem: &self.mem,
            head: id,
            it,
            flags: it.flags(),
            cas: it.cas(),
            value_len: it.nbytes() as usize - 2,
        };
        Ok(f(&found))
    }

    /// `get_with`, copying the item out.
    pub fn get(&self, key: &[u8], touch: Option<i32>) -> GetOutcome {
        match self.get_with(key, touch, |f| {
            let mut value = Vec::with_capacity(f.value_len + 2);
            for p in f.parts() {
                value.extend_from_slice(p);
            }
            value.truncate(f.value_len);
            Hit {
                key: key.to_vec(),
                value,
                flags: f.flags,
                cas: f.cas,
            }
        }) {
            Ok(h) => GetOutcome::Hit(h),
            Err(m) => m.into(),
        }
    }

    /// Counts a store attempt whose data block was malformed: memcached
    /// counts the `set` in the item's class before it checks the block.
    pub fn note_set_attempt(&self, key: &[u8], flags: u32, value_len: usize) {
        if self.item_size_ok(key.len(), flags, value_len) {
            let c = self.class_for_size(Self::size_for(key.len(), flags, value_len + 2));
            self.shard(self.hash(key)).lock().classes[c].stats.cmd_set += 1;
        }
    }

    /// Stores `value` under `key` according to `mode`. Returns the outcome
    /// memcached would report; `cas_unique` is read for `Mode::Cas`, and
    /// for append/prepend when it is not 0 (the binary protocol's check).
    pub fn store(
        &self,
        mode: Mode,
        key: &[u8],
        flags: u32,
        exptime: i32,
        value: &[u8],
        cas_unique: u64,
    ) -> StoreOutcome {
        self.store_cas(mode, key, flags, exptime, value, cas_unique)
            .0
    }

    /// [`store`](Self::store), also returning the new item's CAS value
    /// (0 unless stored).
    pub fn store_cas(
        &self,
        mode: Mode,
        key: &[u8],
        flags: u32,
        exptime: i32,
        value: &[u8],
        cas_unique: u64,
    ) -> (StoreOutcome, u64) {
        if !self.item_size_ok(key.len(), flags, value.len()) {
            if mode == Mode::Set {
                self.unlink_key(key);
            }
            return (StoreOutcome::TooLarge, 0);
        }
        let class_in = self.class_for_size(Self::size_for(key.len(), flags, value.len() + 2));
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = self.clock.realtime(exptime);
        let mut g = self.shard(hash).lock();
        let shard = &mut *g;
        shard.classes[class_in].stats.cmd_set += 1;
        let old = shard.find_live(self, hash, key, now).unwrap_or(None);
        let crlf: &[u8] = b"\r\n";

        // Decide from the existing item what to store, if anything.
        let fresh: [&[u8]; 2] = [value, crlf];
        let old_value: Cow<'_, [u8]>;
        let joined: [&[u8]; 3];
        let (pieces, flags, exptime): (&[&[u8]], u32, u32) = match (mode, old) {
            (Mode::Set, _) | (Mode::Add, None) => (&fresh, flags, exptime),
            (Mode::Add, Some(o)) => {
                // add promotes the item it did not replace.
                shard.touch_lru(self, o, self.class_of(self.mem.item(o)), now);
                return (StoreOutcome::NotStored, 0);
            }
            (Mode::Replace | Mode::Append | Mode::Prepend, None) => {
                return (StoreOutcome::NotStored, 0)
            }
            (Mode::Cas, None) => return (StoreOutcome::NotFound, 0),
            (Mode::Replace, Some(_)) => (&fresh, flags, exptime),
            (Mode::Cas, Some(o)) => {
                let it = self.mem.item(o);
                let class = self.class_of(it);
                if cas_unique == 0 || cas_unique != it.cas() {
                    shard.classes[class].stats.cas_badval += 1;
                    return (StoreOutcome::Exists, 0);
                }
                shard.classes[class].stats.cas_hits += 1;
                (&fresh, flags, exptime)
            }
            (Mode::Append | Mode::Prepend, Some(o)) => {
                let it = self.mem.item(o);
                if cas_unique != 0 && cas_unique != it.cas() {
                    return (StoreOutcome::Exists, 0);
                }
                let old_len = it.nbytes() as usize - 2;
                if !self.item_size_ok(key.len(), it.flags(), old_len + value.len()) {
                    return (StoreOutcome::NotStored, 0);
                }
                old_value = self.value_of(it);
                let v: &[u8] = &old_value;
                let (flags, exptime) = (it.flags(), it.exptime());
                joined = if mode == Mode::Append {
                    [v, value, crlf]
                } else {
                    [value, v, crlf]
                };
                (&joined, flags, exptime)
            }
        };
        let new = NewItem {
            hash,
            key,
            flags,
            exptime,
            pieces,
            old,
            now,
        };
        self.finish_store(shard, &new, mode)
    }

    fn finish_store(
        &self,
        shard: &mut Shard,
        new: &NewItem<'_>,
        mode: Mode,
    ) -> (StoreOutcome, u64) {
        if let Some(cas) = self.put(shard, new) {
            (StoreOutcome::Stored, cas)
        } else {
            if mode == Mode::Set {
                if let Some(o) = new.old {
                    shard.unlink_free(self, o, new.hash);
                }
            }
            (StoreOutcome::OutOfMemory, 0)
        }
    }

    /// An item's value without its `\r\n`: borrowed from item memory when
    /// it is in one chunk, copied when chained.
    fn value_of(&self, it: It) -> Cow<'_, [u8]> {
        let len = it.nbytes() as usize - 2;
        let mut parts = Parts::new(&self.mem, it);
        if !it.has(fl::CHAINED) {
            let p = parts.next().expect("one part");
            return Cow::Borrowed(&p[..len]);
        }
        let mut v = Vec::with_capacity(len + 2);
        for p in parts {
            v.extend_from_slice(p);
        }
        v.truncate(len);
        Cow::Owned(v)
    }

    /// Allocates, writes and links a new item, replacing `new.old`; its
    /// CAS value, or `None` when out of memory.
    fn put(&self, shard: &mut Shard, new: &NewItem<'_>) -> Option<u64> {
        let NewItem {
            hash,
            key,
            flags,
            exptime,
            pieces,
            old,
            now,
        } = *new;
        let nbytes: usize = pieces.iter().map(|p| p.len()).sum();
        let size = Self::size_for(key.len(), flags, nbytes);
        let class = self.class_for_size(size);
        let largest = self.mem.table.largest();
        let chunk_max = self.mem.chunk_of_class(largest);
        let n = if size > chunk_max {
            item::chained_chunks(chunk_max, key.len(), flags, nbytes)
        } else {
            1
        };
        let mut chunks = Chunks::new();
        if n == 1 {
            if !shard.alloc(self, class, 1, old, now, &mut chunks) {
                return None;
            }
        } else {
            // A chain: largest chunks, the last one from the smallest class
            // that holds what is left (as memcached 1.6 does).
            let fixed = HDR + if flags == 0 { 0 } else { 4 } + key.len() + 4 * (n - 1);
            let before_last = (chunk_max - fixed) + (n - 2) * (chunk_max - HDR);
            let last = self.class_for_size(HDR + nbytes - before_last);
            if !shard.alloc(self, largest, n - 1, old, now, &mut chunks) {
                return None;
            }
            let mut tail = Chunks::new();
            if !shard.alloc(self, last, 1, old, now, &mut tail) {
                self.mem.free_chunks(&chunks);
                return None;
            }
            chunks.push(tail[0]);
        }
        let head = chunks[0];
        let it = self.mem.item(head);
        let cas = if self.cfg.use_cas { self.next_cas() } else { 0 };
        it.set_cas(cas);
        it.set_exptime(exptime);
        it.set_time(now);
        it.set_prev(item::NIL);
        it.set_next(item::NIL);
        it.set_nbytes(nbytes as u32);
        it.set_nkey(key.len() as u8);
        let mut iflags = 0;
        if flags != 0 {
            iflags |= fl::HAS_FLAGS;
        }
        if n > 1 {
            iflags |= fl::CHAINED;
        }
        it.set_iflags(iflags);
        // SAFETY: the chunks were just taken for this item and no one else
        // can see them; every write stays inside them (the sizes were
        // computed from these lengths).
        unsafe {
            let mut p = self.mem.value_ptr(it, HDR).cast_mut();
            if flags != 0 {
                p.cast::<u32>().write(flags);
                p = p.add(4);
            }
            std::ptr::copy_nonoverlapping(key.as_ptr(), p, key.len());
            p = p.add(key.len());
            for &c in &chunks[1..] {
                p.cast::<u32>().write_unaligned(c);
                p = p.add(4);
                let cont = self.mem.item(c);
                cont.set_iflags(fl::CONT);
                cont.clear_ref();
                cont.set_prev(head);
            }
        }
        let mut dst = Parts::new(&self.mem, it);
        let (mut span, mut room) = dst.next_span().expect("at least one part");
        for piece in pieces {
            let mut src = *piece;
            while !src.is_empty() {
                if room == 0 {
                    (span, room) = dst.next_span().expect("room for the data");
                }
                let k = room.min(src.len());
                // SAFETY: `span` points at `room` bytes of this item's
                // chunks, not overlapping any source piece (those are the
                // client's buffer or another item's chunks).
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), span, k);
                    span = span.add(k);
                }
                room -= k;
                src = &src[k..];
            }
        }
        if let Some(o) = old {
            shard.unlink_free(self, o, hash);
        }
        shard.link(self, hash, head);
        Some(cas)
    }

    /// Removes `key` if present, counting nothing (memcached drops the old
    /// value of a `set` that cannot be stored).
    pub fn unlink_key(&self, key: &[u8]) {
        let hash = self.hash(key);
        let mut g = self.shard(hash).lock();
        if let Some(i) = g.find(self, hash, key) {
            g.unlink_free(self, i, hash);
        }
    }

    pub fn delete(&self, key: &[u8]) -> bool {
        self.delete_cas(key, 0) == StoreOutcome::Stored
    }

    /// Deletes `key` if its CAS value is `cas_unique` (any, when 0; the
    /// binary protocol's check): `Stored` when deleted, `NotFound`, or
    /// `Exists` when the CAS value differs.
    pub fn delete_cas(&self, key: &[u8], cas_unique: u64) -> StoreOutcome {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
        match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => {
                let it = self.mem.item(i);
                if cas_unique != 0 && cas_unique != it.cas() {
                    return StoreOutcome::Exists;
                }
                let class = self.class_of(it);
                g.classes[class].stats.delete_hits += 1;
                g.unlink_free(self, i, hash);
                StoreOutcome::Stored
            }
            _ => StoreOutcome::NotFound,
        }
    }

    pub fn touch(&self, key: &[u8], exptime: i32) -> bool {
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = self.clock.realtime(exptime);
        let mut g = self.shard(hash).lock();
        match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => {
                let it = self.mem.item(i);
                g.set_exptime(self, i, exptime);
                it.set(fl::FETCHED);
                let class = self.class_of(it);
                g.classes[class].stats.touch_hits += 1;
                g.touch_lru(self, i, class, now);
                true
            }
            _ => false,
        }
    }

    /// `incr`/`decr`: `parse` reads the stored number with the protocol's
    /// rules (the store does not know the protocol). Incr wraps at 2^64,
    /// decr stops at 0. A result no longer than the stored text is written
    /// in place, padded with spaces, as memcached does (when no reader
    /// holds the item).
    pub fn arith(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        parse: fn(&[u8]) -> Option<u64>,
    ) -> DeltaOutcome {
        self.arith_cas(key, incr, delta, 0, parse).0
    }

    /// [`arith`](Self::arith) with the binary protocol's CAS check (none
    /// when `cas_unique` is 0), also returning the item's new CAS value.
    pub fn arith_cas(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        cas_unique: u64,
        parse: fn(&[u8]) -> Option<u64>,
    ) -> (DeltaOutcome, u64) {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
        let shard = &mut *g;
        let id = match shard.find_live(self, hash, key, now) {
            Ok(Some(i)) => i,
            _ => return (DeltaOutcome::NotFound, 0),
        };
        let it = self.mem.item(id);
        if cas_unique != 0 && cas_unique != it.cas() {
            return (DeltaOutcome::Exists, 0);
        }
        let len = it.nbytes() as usize - 2;
        if len == 0 || it.has(fl::CHAINED) {
            return (DeltaOutcome::NonNumeric, 0);
        }
        let value = self.value_of(it);
        let Some(cur) = parse(&value) else {
            return (DeltaOutcome::NonNumeric, 0);
        };
        let new = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        let class = self.class_of(it);
        if incr {
            shard.classes[class].stats.incr_hits += 1;
        } else {
            shard.classes[class].stats.decr_hits += 1;
        }
        let mut buf = [0u8; 20];
        let digits = decimal(new, &mut buf);
        if digits.len() <= len && it.readers() == 0 {
            let off = it.value_off(1);
            // SAFETY: the value's `len` bytes lie in the item's one chunk;
            // the shard lock is held and no reader holds the item.
            let v = unsafe {
                std::slice::from_raw_parts_mut(self.mem.value_ptr(it, off).cast_mut(), len)
            };
            v[..digits.len()].copy_from_slice(digits);
            v[digits.len()..].fill(b' ');
            let cas = if self.cfg.use_cas { self.next_cas() } else { 0 };
            it.set_cas(cas);
            shard.touch_lru(self, id, class, now);
            return (DeltaOutcome::Value(new), cas);
        }
        let (flags, exptime) = (it.flags(), it.exptime());
        let new_item = NewItem {
            hash,
            key,
            flags,
            exptime,
            pieces: &[digits, b"\r\n"],
            old: Some(id),
            now,
        };
        match self.put(shard, &new_item) {
            Some(cas) => (DeltaOutcome::Value(new), cas),
            None => (DeltaOutcome::OutOfMemory, 0),
        }
    }

    /// `flush_all [delay]`: every item stored before the flush time becomes
    /// invalid, at once for lookups (O(1): a marker); the reaper frees
    /// them from the cold ends of the LRU lists in the background.
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
        self.reaper_checked.store(0, Ordering::Relaxed);
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
            s.hash_bytes += g.index.bytes() as u64;
            s.hash_is_expanding |= g.index.is_expanding();
            s.wheel_entries += g.wheel.entries() as u64;
            s.wheel_bytes += g.wheel.bytes() as u64;
            for (id, c) in g.classes.iter().enumerate().skip(1) {
                let pc = &mut per_class[id];
                pc.0 += c.items;
                pc.1 += c.mem_requested;
                if c.lru.tail != item::NIL {
                    let t = self.mem.item(c.lru.tail).time();
                    pc.2 = pc.2.max(now.saturating_sub(t));
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
        for (id, (items, mem_requested, age, stats)) in per_class.into_iter().enumerate().skip(1) {
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
        if class == 0 || class > self.mem.table.largest() {
            return Vec::new();
        }
        for shard in self.shards.iter() {
            let g = shard.lock();
            // Each shard gives at most `limit` of its most recent items;
            // the most recent `limit` of all of them are kept below.
            let mut i = g.classes[class].lru.head;
            let mut taken = 0;
            while i != item::NIL && (limit == 0 || taken < limit) {
                taken += 1;
                let it = self.mem.item(i);
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
                i = it.next();
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

    /// `slabs reassign <src> <dst>`: moves one page of `src` (any class
    /// with a page to spare when `src` is -1) to `dst`, evicting the items
    /// in it. The move finishes at once unless a reader holds one of them;
    /// then it finishes when the last such reader lets go.
    pub fn reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        if self.mem.slabs.lock().moving.is_some() {
            return Err(ReassignError::Busy);
        }
        if src == dst {
            return Err(ReassignError::Same);
        }
        let largest = self.mem.table.largest() as i32;
        let src = if src == -1 {
            let slabs = self.mem.slabs.lock();
            (1..=largest)
                .filter(|&c| c != dst && slabs.classes[c as usize].pages > 1)
                .max_by_key(|&c| slabs.classes[c as usize].pages)
                .unwrap_or(-1)
        } else {
            src
        };
        if src < 0 || dst < 0 || src > largest || dst > largest {
            return Err(ReassignError::BadClass);
        }
        self.move_page(src as usize, dst as usize)
    }

    /// Moves a page from class `src` to class `dst`; class 0 is the
    /// global pool of pages no class holds.
    fn move_page(&self, src: usize, dst: usize) -> Result<(), ReassignError> {
        if src == 0 {
            let mut slabs = self.mem.slabs.lock();
            if slabs.pool.len() < 2 {
                return Err(ReassignError::NoSpare);
            }
            let page = slabs.pool.pop().expect("a pooled page");
            self.mem.give_page(&mut slabs, page, dst);
            slabs.slabs_moved += 1;
            return Ok(());
        }
        // Every shard, in order (the one place that waits on more than one
        // shard lock), then the slabs.
        let page = {
            let _shards: Vec<_> = self.shards.iter().map(|s| s.lock()).collect();
            let mut slabs = self.mem.slabs.lock();
            if slabs.moving.is_some() {
                return Err(ReassignError::Busy);
            }
            if slabs.classes[src].pages < 2 {
                return Err(ReassignError::NoSpare);
            }
            let page = self
                .mem
                .start_move(&mut slabs, src, dst)
                .ok_or(ReassignError::NoSpare)?;
            if slabs.moving.is_none() {
                return Ok(());
            }
            page
        };
        // Unlink the page's items a batch of slots at a time, letting the
        // workers in between: a request waits for one batch at most.
        let slots = self.mem.slots_in_page(page);
        let mut from = 0;
        while from < slots {
            let to = (from + MOVE_BATCH).min(slots);
            let mut shards: Vec<_> = self.shards.iter().map(|s| s.lock()).collect();
            let mut slabs = self.mem.slabs.lock();
            if slabs.moving.map(|m| m.page) != Some(page) {
                break;
            }
            for head in self.mem.items_in_slots(page, from..to) {
                let it = self.mem.item(head);
                if !it.is_linked() {
                    // Unlinked already (a chained item seen twice, or one
                    // a reader holds): its release frees the chunk.
                    continue;
                }
                if it.readers() > 0 {
                    slabs.move_busy += 1;
                }
                let hash = self.hash(it.key());
                slabs.move_evictions += 1;
                if shards[self.shard_of(hash)].unlink(self, head, hash) {
                    self.mem.free_item(&mut slabs, head);
                }
            }
            from = to;
        }
        Ok(())
    }

    /// One step of `slabs automove`: when a class has evicted since the
    /// last step, a page moves to it from the class whose coldest item is
    /// oldest, if the evicting class's coldest item is younger than that by
    /// the ratio memcached uses (`slab_automove_ratio`) and by at least
    /// `AUTOMOVE_MIN_AGE_GAP` seconds (so classes filled together, whose
    /// ages differ by a second or two, do not trade pages back and forth,
    /// each move evicting a page of items); mode 2 moves on any eviction.
    /// Returns whether a page moved. The maintainer calls it.
    pub fn automove_step(&self, mode: u32, ratio: f64) -> bool {
        if mode == 0 {
            return false;
        }
        let s = self.stats();
        let mut am = self.automove.lock();
        let evicted: Vec<u64> = std::iter::once(0)
            .chain(s.classes.iter().map(|c| c.stats.evicted))
            .collect();
        let last = std::mem::replace(&mut am.last_evicted, evicted.clone());
        if last.len() != evicted.len() || s.slab_reassign_running {
            return false;
        }
        let snap = |id: usize| &s.classes[id - 1];
        // The evicting class whose coldest item is youngest.
        let Some(dst) = (1..evicted.len())
            .filter(|&c| evicted[c] > last[c])
            .min_by_key(|&c| snap(c).age)
        else {
            return false;
        };
        // The oldest class that has a page to give: a whole page of free
        // chunks first, else the oldest coldest item.
        let spare = (1..evicted.len()).find(|&c| {
            c != dst && snap(c).pages > 1 && snap(c).free_chunks >= 2 * snap(c).per_page
        });
        let src = spare.or_else(|| {
            (1..evicted.len())
                .filter(|&c| c != dst && snap(c).pages > 1)
                .max_by_key(|&c| snap(c).age)
                .filter(|&c| {
                    let (old, young) = (snap(c).age, snap(dst).age);
                    mode == 2
                        || (f64::from(young) < f64::from(old) * ratio
                            && old >= young + AUTOMOVE_MIN_AGE_GAP)
                })
        });
        let Some(src) = src else {
            return false;
        };
        drop(am);
        self.move_page(src, dst).is_ok()
    }

    /// Pages taken from the arena (for tests and `stats`).
    pub fn pages_taken(&self) -> u32 {
        self.mem.pages_taken()
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
mod model_tests;
#[cfg(test)]
mod reap_tests;
#[cfg(test)]
mod tests;
