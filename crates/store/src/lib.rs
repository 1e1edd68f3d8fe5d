//! memcrab-store: the cache behind every worker.
//!
//! ```text
//!  server::cmd ──► Store::{get_with, store, delete, arith, flush_all}   ops.rs
//!                     │  (request structs: GetOpts, StoreReq, ArithReq)
//!                     │  hash of key (xxh3, seeded) picks one of SHARDS
//!                     │  shards; its lock (shardlock.rs: readers count in
//!                     │  their thread's own cache line) is held shared for a hit
//!                     │  (lookup, bits set, a copy or a reference count)
//!                     │  and exclusive for a change, never during I/O
//!                     ▼
//!   shard.rs: index (hash ──► chunk id, growing incrementally; index.rs)
//!             per class: S3-FIFO queues of chunk ids (policy.rs), counters
//!             ghost: hashes of keys evicted from the small queues
//!             expiry wheel: a bucket of chunk ids per second (expiry.rs)
//!                     │ chunk ids
//!                     ▼
//!   mem.rs: the arena (-m reserved by mmap, 1 MB pages given to classes on
//!           demand; arena.rs, slabs.rs) ── items: 24-byte header, flags,
//!           key, value + "\r\n" (item.rs); a page's class in O(1);
//!           Mem::slabs (one lock): per class free chunks and pages
//!   hits.rs: get/touch hits counted per thread stripe (no shared line)
//!   write.rs: a new item written into its chunks (the unsafe write path)
//!   receive.rs: an item taken when a store's header arrives, its value
//!           read straight into its chunks, linked when whole
//!   found.rs: a found item's value, chunk by chunk, and holds on it
//!
//!  background (the server's threads):
//!   reap.rs      Store::reap, once a second: expired and flushed items freed
//!   flush.rs     Store::flush_all: an O(1) marker every lookup reads
//!   mover.rs     Store::reassign: a page moved between classes
//!   automove.rs  Store::automove_step: which page to move, every 250 ms
//!   snapshot.rs  Store::{stats, dump, reset_stats}: what `stats` reports
//! ```
//!
//! Invariants:
//! - an item is linked iff it is in its shard's index iff its reference
//!   word names that shard (the link's reference; `It::is_linked`); a
//!   linked item has a live entry in its class's small or main queue in
//!   that shard, the one its `MAIN` bit names (policy.rs);
//! - a linked item with an exptime has an entry in its shard's wheel at
//!   or before its second (expiry.rs);
//! - a chunk is in use iff a linked item, a reader's `ItemRef` or an
//!   `Incoming` (a value on its way, receive.rs) holds it
//!   (a chained item's continuation chunks follow their head); an item's
//!   chunks are freed by whoever drops its last reference;
//! - total pages times the page size never exceeds `-m`, except for the
//!   first page of a class, which a class may always take (seed 000);
//! - an item is rewritten in place (incr) only with no reader holding it.
//!
//! Lock order: a shard's lock, then `Mem::slabs`. A thread holding a
//! shard lock takes another shard's lock only with `try_write` (to evict
//! from it), so shard locks never wait on each other, except in the page
//! mover, which takes all of them in index order while holding none.
//! Under a shard's shared (read) lock a reader may only: look up, read
//! items, set `VISITED`/`FETCHED` and the access time (atomic, `It::
//! mark_hit`), take a reader's reference, and count in `hits.rs`.
//! `Store::flush_lock` is taken alone; `Store::automove` is taken before
//! any shard lock (its step reads the stats), never while holding one.
//! Callers hold no lock of theirs while calling in. The reaper takes a
//! shard's lock, then the slabs, for a batch of wheel entries (reap.rs).
//!
//! `unsafe` lives in `arena.rs` (the mapping), `shardlock.rs` (the shard
//! lock's guarded data), `item.rs` (header fields
//! read and written through the chunk pointer), `mem.rs` (`ItemRef`'s
//! slice), `found.rs` (`Parts`' slices), `write.rs` (writing a new item),
//! `receive.rs` (a value written as it arrives)
//! and `ops.rs` (in-place incr):
//! every pointer is made by `Mem::item` from a chunk id inside the
//! arena, and the rules above say which thread may use it.

pub mod clock;
pub mod item;
pub mod slabs;

mod arena;
mod automove;
mod expiry;
mod flush;
mod found;
mod hits;
mod index;
mod mem;
mod mover;
mod ops;
mod policy;
mod reap;
mod receive;
mod shard;
mod shardlock;
mod snapshot;
mod write;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use shardlock::ShardLock;

use automove::Automove;
pub use clock::Clock;
pub use expiry::RING as EXPIRY_RING;
use flush::Flush;
pub use found::{Found, ItemMeta, Parts};
use item::It;
pub use mem::ItemRef;
use mem::Mem;
pub use policy::SMALL_PERCENT;
pub use reap::Reaped;
pub use receive::Incoming;
use shard::Shard;
use slabs::ClassTable;

/// Number of index shards (a power of two).
const SHARDS: usize = 16;
// The reference word names the linking shard.
const _: () = assert!(SHARDS <= item::rf::MAX_SHARDS);

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
    /// Address space reserved beyond `mem_limit` for `cache_memlimit` to
    /// grow into (0: none).
    pub mem_room: u64,
    /// The eviction policy's small queue, in percent of a class's items
    /// ([`SMALL_PERCENT`]; 0: CLOCK, for comparison).
    pub small_percent: u32,
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
            mem_room: 0,
            small_percent: SMALL_PERCENT,
        }
    }
}

/// The store commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// Which per-class counter a found item counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HitCount {
    /// `get_hits`.
    #[default]
    Get,
    /// `touch_hits`.
    Touch,
    /// Neither (meta `me`).
    None,
}

/// What a lookup does besides finding the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetOpts {
    /// A new exptime, as the client sent it (gat, touch), set before the
    /// caller sees the item.
    pub touch: Option<i32>,
    /// Mark the item used now: fetched, visited (the eviction policy's
    /// bit), its last-access time (false: meta's `u` and `me`).
    pub bump: bool,
    pub count: HitCount,
    /// On a miss, create an empty item (flags 0, no exptime) and hand it
    /// over (meta `N`; its exptime is the caller's to set).
    pub vivify: bool,
    /// The CAS value a created item gets (meta `E`); else the next one.
    pub vivify_cas: Option<u64>,
    /// Hold the shard's lock exclusively while `f` runs (meta `mg`, whose
    /// flags change the item and decide recache wins). Otherwise a lookup
    /// without `touch` or `vivify` holds it shared, and an exptime or CAS
    /// value `f` sets is applied after, under the exclusive lock, if the
    /// item is still there.
    pub exclusive: bool,
}

impl Default for GetOpts {
    fn default() -> Self {
        GetOpts {
            touch: None,
            bump: true,
            count: HitCount::Get,
            vivify: false,
            vivify_cas: None,
            exclusive: false,
        }
    }
}

impl GetOpts {
    /// A lookup that also gives the item a new exptime.
    pub fn touch(exptime: i32) -> Self {
        GetOpts {
            touch: Some(exptime),
            count: HitCount::Touch,
            ..GetOpts::default()
        }
    }
}

/// A store request: `value` under `key` according to `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreReq<'a> {
    pub mode: Mode,
    pub key: &'a [u8],
    pub flags: u32,
    /// As the client sent it (the clock converts it).
    pub exptime: i32,
    pub value: &'a [u8],
    /// The CAS value to compare: read by `Mode::Cas`, and by append and
    /// prepend when it is not 0 (the binary protocol's check).
    pub cas: u64,
    /// `Mode::Cas` with a CAS value older than the item's stores anyway,
    /// keeping the item's exptime and marking it stale (meta `I`).
    pub stale_ok: bool,
    /// The CAS value the stored item gets (meta `E`); else the next one.
    pub new_cas: Option<u64>,
    /// The key came base64-encoded (meta `b`).
    pub key_binary: bool,
    /// Append/prepend on a miss stores the value as a new item with this
    /// exptime (meta `N`, 1.6.45).
    pub vivify: Option<i32>,
}

/// What a store did, and the stored item's CAS value (0 unless stored,
/// and under `-C`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreResult {
    pub outcome: StoreOutcome,
    pub cas: u64,
    /// The stored item's value length (after an append, the whole).
    pub value_len: usize,
    /// The live item the store found under the key first: its flags and
    /// value length (memcached's `watch` logs that lookup; the class is
    /// worked out only then, with `class_for_item`).
    pub old: Option<(u32, usize)>,
    /// The stored item's exptime (store clock; 0: none), when stored.
    pub exptime: u32,
}

/// An item evicted to make room, as the eviction observer sees it.
#[derive(Debug)]
pub struct Evicted<'a> {
    pub key: &'a [u8],
    pub fetched: bool,
    /// Seconds it had left to live; -1: no exptime.
    pub ttl: i64,
    /// Seconds since its last access.
    pub idle: u32,
    pub class: usize,
    pub value_len: usize,
}

/// What the store calls for each eviction (set once, at start).
pub type EvictObserver = Box<dyn Fn(&Evicted<'_>) + Send + Sync>;

/// `incr`/`decr`: `parse` reads the stored number with the protocol's
/// rules (the store does not know the protocol).
#[derive(Debug, Clone, Copy)]
pub struct ArithReq<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    /// Compared with the item's when not 0 (binary, meta `C`).
    pub cas: u64,
    pub parse: fn(&[u8]) -> Option<u64>,
    /// On a miss, store this number instead (binary incr/decr with an
    /// exptime other than 0xffffffff, meta `N`), under the same lock as
    /// the miss.
    pub create: Option<Create>,
    /// The CAS value the changed or created item gets (meta `E`).
    pub new_cas: Option<u64>,
}

/// The item an incr/decr creates on a miss: `initial` in decimal, flags 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Create {
    pub initial: u64,
    /// As the client sent it.
    pub exptime: i32,
}

/// What an incr/decr did, and the item's new CAS value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArithResult {
    pub outcome: DeltaOutcome,
    pub cas: u64,
    /// The key was missing and `create` stored its initial value
    /// (`outcome` is that value).
    pub created: bool,
    /// The key was missing (created or not).
    pub missed: bool,
    /// What the lookup before the change saw (memcached's `watch
    /// fetchers` line).
    pub seen: Seen,
}

/// What a delete's or an incr/decr's lookup saw: the item's class and
/// value length, or why it was missing.
pub type Seen = Result<(usize, usize), Missed>;

/// A delete request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteReq<'a> {
    pub key: &'a [u8],
    /// The CAS value the item must have (`None`: any).
    pub cas: Option<u64>,
    /// Meta `x` (1.6.45): replace the value with an empty one (flags
    /// `flags`, exptime `ttl` or none), keeping the item and, unless
    /// `new_cas`, its CAS value.
    pub remove_value: bool,
    /// Meta `I`: instead of removing the item, mark it stale, let the
    /// next client win its recache, give it a new CAS value and, with
    /// `ttl`, a new exptime.
    pub invalidate: bool,
    /// As the client sent it.
    pub ttl: Option<i32>,
    pub flags: u32,
    /// The CAS value a changed item gets (meta `E`).
    pub new_cas: Option<u64>,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed (or, with `remove_value`, emptied).
    Deleted,
    /// Marked stale (`invalidate`).
    Invalidated,
    NotFound,
    /// A CAS value was given and the item's differs.
    Exists,
    /// `remove_value` found no memory for the empty item.
    OutOfMemory,
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
    /// Items moved from the small queue to main (memcached's
    /// `moves_to_warm`).
    pub moves_to_main: u64,
    /// Items in main given a second round (memcached's
    /// `moves_within_lru`).
    pub reinserted: u64,
    /// Items passed over by eviction because a reader held them
    /// (memcached's `lrutail_reflocked`).
    pub passed_busy: u64,
    /// Get hits on items in the small queue (`hits_to_hot`).
    pub hits_small: u64,
    /// Get hits on items in main (`hits_to_warm`).
    pub hits_main: u64,
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
    /// Seconds since the oldest item at the front of a queue was used.
    pub age: u32,
    /// Items in the small (probationary) queue and in main.
    pub items_small: u32,
    pub items_main: u32,
    /// `age` of each queue's front.
    pub age_small: u32,
    pub age_main: u32,
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
    /// Memory the eviction policy keeps outside item memory (queues of
    /// chunk ids, ghost hashes).
    pub policy_bytes: u64,
    /// Keys stored again while the ghost remembered their eviction.
    pub ghost_hits: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub outofmemory: u64,
    pub classes: Vec<ClassSnapshot>,
}

/// One item of a key listing (`lru_crawler metadump`), as memcached
/// reports it: unix times, and the size memcached's item would take.
#[derive(Debug)]
pub struct ListedItem<'a> {
    /// As stored (a key that came base64-encoded, decoded).
    pub key: &'a [u8],
    /// Unix expiry time; `None`: never.
    pub exptime: Option<u64>,
    /// Unix time of the last access.
    pub last_access: u64,
    pub cas: u64,
    pub fetched: bool,
    pub class: usize,
    pub size: usize,
}

/// One line of `stats cachedump`.
#[derive(Debug, Clone)]
pub struct DumpEntry {
    pub key: Vec<u8>,
    pub value_len: usize,
    /// Unix expiry time, 0 for never.
    pub exptime: u64,
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

/// The cache. `Sync`: every worker thread calls it through `&Store`.
pub struct Store {
    cfg: Config,
    clock: Arc<Clock>,
    /// The key hash's seed, random per store (see `hash`).
    seed: u64,
    shards: Box<[ShardLock<Shard>]>,
    /// Get and touch hits, per thread stripe.
    hits: hits::Hits,
    mem: Arc<Mem>,
    last_cas: AtomicU64,
    flush: Flush,
    flush_lock: Mutex<()>,
    automove: Mutex<Automove>,
    /// Wheel entries the reaper has looked at.
    reaper_checked: AtomicU64,
    /// The second through which the reaper has freed every expired item
    /// (`Store::reap`): while the clock has not passed it and no flush is
    /// in force, the allocator need not look for expired items.
    reaped_through: std::sync::atomic::AtomicU32,
    /// Told of every eviction, under the shard lock (no I/O in it).
    pub(crate) evict_observer: std::sync::OnceLock<EvictObserver>,
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
        let (mem, warning) = Mem::new(table, cfg.mem_limit, cfg.mem_room, cfg.prealloc)?;
        let per_shard = u32::from(cfg.hashpower.min(40)).saturating_sub(SHARDS.trailing_zeros());
        let now = clock.now();
        let shards = (0..SHARDS)
            .map(|id| Shard::new(id, nclasses, per_shard, now).map(ShardLock::new))
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
            seed: hits::random_seed(),
            shards,
            hits: hits::Hits::new(nclasses),
            mem: Arc::new(mem),
            last_cas: AtomicU64::new(0),
            flush: Flush::default(),
            flush_lock: Mutex::new(()),
            automove: Mutex::new(Automove::default()),
            reaper_checked: AtomicU64::new(0),
            reaped_through: std::sync::atomic::AtomicU32::new(0),
            evict_observer: std::sync::OnceLock::new(),
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

    /// The key's hash: xxh3 (64-bit) with a random seed per store. A
    /// client that picks keys to collide cannot know the seed; the index
    /// is open addressing with linear probing, so what a collision costs
    /// is a longer probe, never a chain an attacker can grow at will
    /// without first finding colliding keys for an unknown seed.
    fn hash(&self, key: &[u8]) -> u64 {
        key_hash(self.seed, key)
    }

    /// What the policy's queues of `class` in `shard` need to know.
    pub(crate) fn qcx(&self, shard: usize, class: usize) -> policy::Ctx<'_> {
        policy::Ctx {
            mem: &self.mem,
            shard,
            class,
            seed: self.seed,
        }
    }

    /// The shard of a hash: its top bits (the index uses the low ones).
    fn shard_of(&self, hash: u64) -> usize {
        (hash >> 58) as usize % SHARDS
    }

    fn shard(&self, hash: u64) -> &ShardLock<Shard> {
        &self.shards[self.shard_of(hash)]
    }

    /// Whether an expired or flushed item may still be linked somewhere
    /// (the reaper is behind the clock, or a flush is in force): only then
    /// does the allocator look for one before it evicts.
    pub(crate) fn may_have_dead(&self, now: u32) -> bool {
        self.reaped_through.load(Ordering::Relaxed) < now || self.flush.in_force(now)
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

    /// An item's class: its page's (O(1)).
    pub(crate) fn class_of(&self, it: It) -> usize {
        self.mem.class_of_item(it)
    }

    /// The class of the item whose head chunk is `id`.
    pub(crate) fn class_of_linked(&self, id: item::ChunkId) -> usize {
        self.mem.class_of_chunk(id)
    }

    fn class_for_size(&self, size: usize) -> usize {
        let t = &self.mem.table;
        if size > t.size(t.largest()) as usize {
            t.largest()
        } else {
            t.class_for(size).expect("a size within the largest chunk")
        }
    }

    /// Pages taken from the arena (for tests and `stats`).
    pub fn pages_taken(&self) -> u32 {
        self.mem.pages_taken()
    }
}

/// The key hash (see `Store::hash`).
pub(crate) fn key_hash(seed: u64, key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key, seed)
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod reap_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
