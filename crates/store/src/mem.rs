//! Item memory: the arena's pages given to slab classes, chunks handed out
//! and taken back, pages moved between classes, and `ItemRef`, a reader's
//! hold on an item's bytes after the shard lock is gone.
//!
//! Each class takes pages lazily: chunks come from its list of freed
//! chunks (linked through their `link` field, so the list costs no memory
//! of its own), else from the unused tail of its newest page, else from a
//! new page while `-m` allows (or the class has none: seed 000's rule).
//!
//! Moving a page (`slabs reassign`, automove): the page leaves its class's
//! free list, every item with a chunk in it is unlinked, and once the last
//! of its chunks is free (readers in flight free theirs when they let go)
//! the page joins the destination class.

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::arena::Arena;
use crate::item::{self, chunk_id, fl, page_of, slot_of, ChunkId, It, NIL};
use crate::slabs::ClassTable;

/// A class's memory.
#[derive(Debug, Clone)]
pub(crate) struct SlabClass {
    /// Head of the list of freed chunks (linked through `link`).
    pub free_head: ChunkId,
    pub free_count: u32,
    /// The newest page's first never-used slot, if any is left.
    pub end_page: u32,
    pub end_slot: u32,
    pub pages: u32,
    /// Chunks in use.
    pub used: u32,
}

impl Default for SlabClass {
    fn default() -> Self {
        SlabClass {
            free_head: NIL,
            free_count: 0,
            end_page: NIL,
            end_slot: 0,
            pages: 0,
            used: 0,
        }
    }
}

/// A page on its way from one class to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Move {
    pub page: u32,
    pub src: usize,
    pub dst: usize,
}

/// Page and chunk bookkeeping, behind `Mem::slabs`.
pub(crate) struct Slabs {
    pub classes: Vec<SlabClass>,
    /// Chunks in use in each page.
    page_used: Vec<u32>,
    /// Pages moved to the global pool (`slabs reassign <src> 0`), taken
    /// first when a class grows.
    pub pool: Vec<u32>,
    /// Pages never given out start here.
    next_page: u32,
    /// Pages given back to the system (`cache_memlimit` lowered): taken
    /// again before new ones, as zeroed pages.
    released: Vec<u32>,
    pub malloced: u64,
    pub moving: Option<Move>,
    pub slabs_moved: u64,
    /// Items unlinked to empty a page being moved.
    pub move_evictions: u64,
    /// Chunks a move had to wait for (a reader held their item).
    pub move_busy: u64,
}

/// The item memory of a store, shared with every `ItemRef`.
pub struct Mem {
    arena: Arena,
    pub(crate) table: ClassTable,
    /// Chunk size of each page's class, 0 for a page not yet given out.
    /// Read without the lock to turn a chunk id into an address; written
    /// only while no chunk of the page is in use.
    page_chunk: Box<[AtomicU32]>,
    /// Class of each page (0: none), written with `page_chunk`: a chunk's
    /// class in O(1).
    page_class: Box<[AtomicU8]>,
    /// `-m`, or what `cache_memlimit` set since.
    limit: AtomicU64,
    /// `-L`: the memory was made resident at start; its limit is fixed.
    prealloc: bool,
    pub(crate) slabs: Mutex<Slabs>,
}

impl Mem {
    /// Reserves `limit` bytes plus one page per class; without `prealloc`,
    /// address space for `room` bytes if that is more (what
    /// `cache_memlimit` may raise the limit to: only reserved, and only
    /// resident once used).
    pub fn new(
        table: ClassTable,
        limit: u64,
        room: u64,
        prealloc: bool,
    ) -> std::io::Result<(Mem, Option<String>)> {
        let page = u64::from(table.page_size());
        let reserve = if prealloc { limit } else { limit.max(room) };
        let pages = (reserve / page + table.largest() as u64 + 1)
            .min(u64::from(item::MAX_PAGES) - 1) as u32;
        let resident = prealloc.then_some((limit / page) as u32);
        let (arena, warning) = Arena::new(pages, page as usize, resident)?;
        let page_chunk = zeroed_atomics(pages as usize);
        let page_class = (0..pages).map(|_| AtomicU8::new(0)).collect();
        let classes = vec![SlabClass::default(); table.largest() + 1];
        Ok((
            Mem {
                slabs: Mutex::new(Slabs {
                    classes,
                    page_used: vec![0; pages as usize],
                    pool: Vec::new(),
                    next_page: 0,
                    released: Vec::new(),
                    malloced: 0,
                    moving: None,
                    slabs_moved: 0,
                    move_evictions: 0,
                    move_busy: 0,
                }),
                arena,
                table,
                page_chunk,
                page_class,
                limit: AtomicU64::new(limit),
                prealloc,
            },
            warning,
        ))
    }

    /// The memory limit now.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// `cache_memlimit`: a new limit, `false` when it cannot be had (`-L`
    /// made the memory resident at start, or the arena has not the pages).
    /// Pages in the global pool past the new limit go back at once.
    pub fn set_limit(&self, bytes: u64) -> bool {
        let page = u64::from(self.table.page_size());
        if self.prealloc || bytes / page > u64::from(self.arena.pages()) {
            return false;
        }
        self.limit.store(bytes, Ordering::Relaxed);
        let mut s = self.slabs.lock();
        self.release_pool(&mut s);
        true
    }

    /// Gives pooled pages back to the system while more is taken than the
    /// limit allows. Returns how many.
    pub(crate) fn release_pool(&self, s: &mut Slabs) -> usize {
        let page = u64::from(self.table.page_size());
        let mut n = 0;
        while s.malloced > self.limit() {
            let Some(p) = s.pool.pop() else { break };
            self.arena.discard(p);
            s.released.push(p);
            s.malloced -= page;
            n += 1;
        }
        n
    }

    /// The item whose chunk is `id`.
    pub fn item(&self, id: ChunkId) -> It {
        let page = page_of(id);
        let size = self.page_chunk[page as usize].load(Ordering::Relaxed) as usize;
        debug_assert!(size > 0, "chunk {id} in a page no class owns");
        debug_assert!(
            (slot_of(id) as usize + 1) * size <= self.arena.page_size(),
            "chunk {id} past its page's end"
        );
        // SAFETY: slot < per_page of the page's class, so the chunk lies
        // inside the page.
        It(unsafe { self.arena.page_ptr(page).add(slot_of(id) as usize * size) })
    }

    /// Whether the `len` bytes at `ptr` lie inside one chunk of a page a
    /// class owns: what every `unsafe` access to item memory relies on.
    /// Checked by debug assertions (so the tests, the sanitizer runs and
    /// the fuzz targets check it); too slow for release builds.
    pub(crate) fn span_in_chunk(&self, ptr: *const u8, len: usize) -> bool {
        let Some((page, off)) = self.arena.locate(ptr) else {
            return false;
        };
        let size = self.page_chunk[page as usize].load(Ordering::Relaxed) as usize;
        if size == 0 {
            return false;
        }
        let end = (off / size + 1) * size;
        end <= self.arena.page_size() && off + len <= end
    }

    /// The chunk `id` names in the current layout of its page, if the page
    /// is laid out for a class and the slot lies inside it. For ids that
    /// may be stale (the expiry wheel's): the caller holds the slabs lock,
    /// so the layout cannot change under it.
    pub(crate) fn try_item(&self, _s: &Slabs, id: ChunkId) -> Option<It> {
        let size = self
            .page_chunk
            .get(page_of(id) as usize)?
            .load(Ordering::Relaxed);
        if size == 0 || slot_of(id) >= (self.table.page_size() / size).min(item::MAX_PER_PAGE) {
            return None;
        }
        Some(self.item(id))
    }

    pub fn chunk_size(&self, id: ChunkId) -> usize {
        self.page_chunk[page_of(id) as usize].load(Ordering::Relaxed) as usize
    }

    pub fn chunk_of_class(&self, class: usize) -> usize {
        self.table.size(class) as usize
    }

    /// Frees every chunk of an item no one references any more.
    pub(crate) fn free_item(&self, s: &mut Slabs, head: ChunkId) {
        let it = self.item(head);
        if it.has(fl::CHAINED) {
            let n = self.chain_len(it);
            let chain: Vec<ChunkId> = it.chain(n).collect();
            for c in chain {
                self.free_chunk(s, c);
            }
        }
        self.free_chunk(s, head);
    }

    /// Chunks of a chained item (head included).
    pub(crate) fn chain_len(&self, it: It) -> usize {
        let chunk = self.table.size(self.table.largest()) as usize;
        item::chained_chunks(chunk, it.nkey() as usize, it.flags(), it.nbytes() as usize)
    }

    /// Gives back chunks taken for an item that was never written.
    pub(crate) fn free_chunks(&self, ids: &[ChunkId]) {
        let mut s = self.slabs.lock();
        for &id in ids {
            self.free_chunk(&mut s, id);
        }
    }

    /// Takes the slabs lock and frees an item (reference count now zero).
    pub(crate) fn free_item_locking(&self, head: ChunkId) {
        let mut s = self.slabs.lock();
        self.free_item(&mut s, head);
    }

    fn free_chunk(&self, s: &mut Slabs, id: ChunkId) {
        let page = page_of(id);
        let it = self.item(id);
        it.set_iflags(0);
        it.set_nkey(0);
        s.page_used[page as usize] -= 1;
        let class = self.class_of_page(page);
        s.classes[class].used -= 1;
        if let Some(m) = s.moving {
            if m.page == page {
                if s.page_used[page as usize] == 0 {
                    self.finish_move(s);
                }
                return;
            }
        }
        let c = &mut s.classes[class];
        it.set_link(c.free_head);
        c.free_head = id;
        c.free_count += 1;
    }

    fn class_of_page(&self, page: u32) -> usize {
        usize::from(self.page_class[page as usize].load(Ordering::Relaxed))
    }

    /// The class of the page chunk `id` lies in (0: a page no class
    /// owns): O(1), no search.
    pub(crate) fn class_of_chunk(&self, id: ChunkId) -> usize {
        self.page_class
            .get(page_of(id) as usize)
            .map_or(0, |c| usize::from(c.load(Ordering::Relaxed)))
    }

    /// The class of the page item `it` lies in: O(1), no search.
    pub(crate) fn class_of_item(&self, it: It) -> usize {
        self.arena
            .locate(it.0)
            .map_or(0, |(page, _)| self.class_of_page(page))
    }

    /// Sets page `p`'s chunk size and class together.
    fn lay_out(&self, p: u32, class: usize) {
        let size = if class == 0 {
            0
        } else {
            self.table.size(class)
        };
        self.page_chunk[p as usize].store(size, Ordering::Relaxed);
        self.page_class[p as usize].store(class as u8, Ordering::Relaxed);
    }

    /// Takes `n` chunks of `class` into `out`, growing the class by a page
    /// when it may. `None` (and nothing taken) when the class is full.
    pub(crate) fn take(&self, s: &mut Slabs, class: usize, n: usize, out: &mut Chunks) -> bool {
        loop {
            let c = &s.classes[class];
            let end_left = if c.end_page == NIL {
                0
            } else {
                self.table.per_page(class) - c.end_slot
            };
            if (c.free_count + end_left) as usize >= n {
                break;
            }
            if !self.grow(s, class) {
                return false;
            }
        }
        out.clear();
        for _ in 0..n {
            let c = &mut s.classes[class];
            let id = if c.free_head != NIL {
                let id = c.free_head;
                c.free_head = self.item(id).link();
                c.free_count -= 1;
                id
            } else {
                let id = chunk_id(c.end_page, c.end_slot);
                c.end_slot += 1;
                if c.end_slot == self.table.per_page(class) {
                    c.end_page = NIL;
                }
                id
            };
            c.used += 1;
            s.page_used[page_of(id) as usize] += 1;
            out.push(id);
        }
        true
    }

    /// Gives `class` a new page: from the global pool, else a fresh one
    /// if `-m` (or the seed's first-page rule) allows and the arena has one.
    fn grow(&self, s: &mut Slabs, class: usize) -> bool {
        if let Some(p) = s.pool.pop() {
            self.retire_end_page(s, class);
            self.give_page(s, p, class);
            return true;
        }
        let page = u64::from(self.table.page_size());
        let c = &s.classes[class];
        let may = c.pages == 0 || s.malloced + page <= self.limit();
        if !may || (s.released.is_empty() && s.next_page >= self.arena.pages()) {
            return false;
        }
        self.retire_end_page(s, class);
        let p = match s.released.pop() {
            Some(p) => p,
            None => {
                s.next_page += 1;
                s.next_page - 1
            }
        };
        s.malloced += page;
        self.lay_out(p, class);
        let c = &mut s.classes[class];
        c.pages += 1;
        // A fresh page is zeroed by the kernel: its chunks read as free.
        c.end_page = p;
        c.end_slot = 0;
        true
    }

    /// Lists the never-used chunks left in the class's newest page as free,
    /// before a newer page takes its place.
    fn retire_end_page(&self, s: &mut Slabs, class: usize) {
        let per = self.table.per_page(class);
        let c = &mut s.classes[class];
        if c.end_page == NIL {
            return;
        }
        for slot in c.end_slot..per {
            self.list_unused(c, chunk_id(c.end_page, slot));
        }
        c.end_page = NIL;
    }

    /// Marks a chunk that holds no item (its bytes may be anything) free
    /// and lists it in `c`'s free list.
    fn list_unused(&self, c: &mut SlabClass, id: ChunkId) {
        let it = self.item(id);
        it.set_iflags(0);
        it.set_nkey(0);
        it.clear_ref();
        it.set_link(c.free_head);
        c.free_head = id;
        c.free_count += 1;
    }

    /// Gives a used page (no chunk of it in use) to `class`, or to the
    /// pool when `class` is 0.
    pub(crate) fn give_page(&self, s: &mut Slabs, page: u32, class: usize) {
        self.lay_out(page, class);
        if class == 0 {
            s.pool.push(page);
            return;
        }
        let per = self.table.per_page(class);
        let c = &mut s.classes[class];
        c.pages += 1;
        // The page holds an old class's bytes: mark each new chunk free
        // and list it.
        for slot in (0..per).rev() {
            self.list_unused(c, chunk_id(page, slot));
        }
    }

    /// Starts moving a page from `src` to `dst`: picks the page of `src`
    /// with the fewest chunks in use and takes its free chunks out of the
    /// free list. Returns the page; the caller unlinks its items.
    pub(crate) fn start_move(&self, s: &mut Slabs, src: usize, dst: usize) -> Option<u32> {
        if s.moving.is_some() || s.classes[src].pages == 0 {
            return None;
        }
        let src_size = self.table.size(src);
        let page = (0..s.next_page)
            .filter(|&p| self.page_chunk[p as usize].load(Ordering::Relaxed) == src_size)
            .min_by_key(|&p| s.page_used[p as usize])?;
        // Out of the free list.
        let c = &mut s.classes[src];
        let mut prev = NIL;
        let mut id = c.free_head;
        while id != NIL {
            let next = self.item(id).link();
            if page_of(id) == page {
                if prev == NIL {
                    c.free_head = next;
                } else {
                    self.item(prev).set_link(next);
                }
                c.free_count -= 1;
            } else {
                prev = id;
            }
            id = next;
        }
        if c.end_page == page {
            c.end_page = NIL;
        }
        s.moving = Some(Move { page, src, dst });
        if s.page_used[page as usize] == 0 {
            self.finish_move(s);
        }
        Some(page)
    }

    /// Chunk slots of a page of the class of chunk size `size`.
    pub(crate) fn slots_in_page(&self, page: u32) -> u32 {
        let size = self.page_chunk[page as usize]
            .load(Ordering::Relaxed)
            .max(1);
        (self.table.page_size() / size).min(item::MAX_PER_PAGE)
    }

    /// The heads of the items that have a chunk in `slots` of `page`.
    pub(crate) fn items_in_slots(&self, page: u32, slots: std::ops::Range<u32>) -> Vec<ChunkId> {
        let mut heads = Vec::new();
        for slot in slots {
            let id = chunk_id(page, slot);
            let it = self.item(id);
            if it.is_cont() {
                heads.push(it.link());
            } else if it.is_linked() {
                heads.push(id);
            }
        }
        heads
    }

    fn finish_move(&self, s: &mut Slabs) {
        let m = s.moving.take().expect("a move in progress");
        s.classes[m.src].pages -= 1;
        self.give_page(s, m.page, m.dst);
        s.slabs_moved += 1;
    }

    /// Takes a reader's reference on a linked item (under its shard lock)
    /// and returns a hold on `part` of its bytes. `None` when the count is
    /// at its maximum (the caller copies instead).
    pub(crate) fn pin(self: &Arc<Self>, head: ChunkId, part: &[u8]) -> Option<ItemRef> {
        if !self.item(head).pin_ref() {
            return None;
        }
        debug_assert!(self.span_in_chunk(part.as_ptr(), part.len()));
        Some(ItemRef {
            mem: Arc::clone(self),
            head,
            ptr: part.as_ptr(),
            len: part.len(),
        })
    }

    /// Drops one reference; the last one frees the item.
    pub(crate) fn release(&self, head: ChunkId) {
        if self.item(head).release_ref() {
            self.free_item_locking(head);
        }
    }

    /// Pages given out and the arena's size, for tests.
    pub fn pages_taken(&self) -> u32 {
        self.slabs.lock().next_page
    }

    pub fn value_ptr(&self, it: It, off: usize) -> *const u8 {
        // SAFETY: callers pass an offset inside the item's head chunk.
        unsafe { it.0.add(off) }
    }
}

/// Chunk ids taken for one item (the head first). Up to `INLINE` ids live
/// inline, so storing an item of one chunk (or a short chain) allocates
/// nothing; longer chains spill to the heap.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    inline: [ChunkId; Chunks::INLINE],
    n: usize,
    spill: Vec<ChunkId>,
}

impl Chunks {
    const INLINE: usize = 4;

    pub fn new() -> Chunks {
        Chunks::default()
    }

    pub fn push(&mut self, id: ChunkId) {
        if self.n < Self::INLINE {
            self.inline[self.n] = id;
        } else {
            if self.n == Self::INLINE {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(id);
        }
        self.n += 1;
    }

    pub fn clear(&mut self) {
        self.n = 0;
        self.spill.clear();
    }
}

impl std::ops::Deref for Chunks {
    type Target = [ChunkId];
    fn deref(&self) -> &[ChunkId] {
        if self.n <= Self::INLINE {
            &self.inline[..self.n]
        } else {
            &self.spill
        }
    }
}

/// A hold on part of an item's bytes: the item is not freed, and its
/// chunks not reused, until every `ItemRef` on it is dropped.
pub struct ItemRef {
    mem: Arc<Mem>,
    head: ChunkId,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the bytes are immutable while referenced (nothing writes an
// item with readers: in-place incr checks the count under the shard lock),
// and dropping takes the locks it needs.
unsafe impl Send for ItemRef {}
// SAFETY: as above; `&ItemRef` only reads.
unsafe impl Sync for ItemRef {}

impl Deref for ItemRef {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len was part of the item when pinned, and the
        // reference keeps the item's chunks from being freed or rewritten.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for ItemRef {
    fn drop(&mut self) {
        self.mem.release(self.head);
    }
}

/// `n` atomics, zero, from zeroed memory: a large table is not touched
/// (and so not resident) until used.
fn zeroed_atomics(n: usize) -> Box<[AtomicU32]> {
    let zeros: Box<[u32]> = vec![0u32; n].into_boxed_slice();
    // SAFETY: `AtomicU32` has the size, alignment and bit validity of
    // `u32`, so a boxed slice of one is a boxed slice of the other; the
    // box is moved, not copied.
    unsafe { Box::from_raw(Box::into_raw(zeros) as *mut [AtomicU32]) }
}

#[cfg(test)]
#[test]
fn chunks_spill_past_inline_in_order() {
    let mut c = Chunks::new();
    for i in 0..10 {
        c.push(i);
        assert_eq!(&c[..], &(0..=i).collect::<Vec<_>>()[..]);
    }
    c.clear();
    assert!(c.is_empty());
    c.push(7);
    assert_eq!(&c[..], &[7]);
}

impl std::fmt::Debug for ItemRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ItemRef({} bytes of chunk {})", self.len, self.head)
    }
}

#[cfg(test)]
mod span_tests {
    use super::*;

    /// The check every debug assertion on item memory makes: a span inside
    /// one chunk passes, one crossing into the next chunk or outside the
    /// arena does not.
    #[test]
    fn span_checks_find_spans_outside_their_chunk() {
        let s = crate::Store::new(crate::Config::default(), Arc::new(crate::Clock::new()));
        s.put_v(crate::Mode::Set, b"k", 0, 0, b"value", 0);
        let r = s
            .get_with(b"k", None, |f| f.pin(f.parts().next().unwrap()).unwrap())
            .unwrap();
        let mem = &s.mem;
        assert!(mem.span_in_chunk(r.as_ptr(), r.len()));
        let (page, off) = mem.arena.locate(r.as_ptr()).unwrap();
        let size = mem.page_chunk[page as usize].load(Ordering::Relaxed) as usize;
        let start = r.as_ptr().wrapping_sub(off % size).cast_mut();
        assert!(mem.span_in_chunk(start, size));
        assert!(!mem.span_in_chunk(start, size + 1));
        assert!(!mem.span_in_chunk(r.as_ptr(), size));
        let outside = [0u8; 4];
        assert!(!mem.span_in_chunk(outside.as_ptr(), 1));
    }
}
