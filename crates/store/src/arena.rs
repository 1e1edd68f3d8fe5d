//! The arena: `-m` megabytes (plus one page per slab class, the seed's
//! "a class with no page may take one even at the limit") reserved as one
//! anonymous mapping, cut into pages of `slab_page_size` bytes.
//!
//! Reserving is not touching: with `MAP_NORESERVE` the kernel gives the
//! process address space only, and a page becomes resident when the first
//! item is written into it. `-L` instead populates the whole mapping at
//! start and asks for huge pages (`MAP_HUGETLB`, else `MADV_HUGEPAGE`).

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{madvise, mmap_anonymous, munmap, MapFlags, MmapAdvise, ProtFlags};

/// One reserved region of memory. Owns the mapping; unmaps it on drop.
pub(crate) struct Arena {
    base: NonNull<u8>,
    len: usize,
    page_size: usize,
    pages: u32,
}

// SAFETY: the arena is plain memory; who may read or write which chunk of
// it is governed by the store's locks and reference counts (lib.rs).
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

impl Arena {
    /// Reserves `pages` pages. With `prealloc` pages given, the first
    /// `prealloc` pages (the `-m` limit) are made resident at once, on huge
    /// pages when the system has them; the returned warning says when it
    /// fell back.
    pub fn new(
        pages: u32,
        page_size: usize,
        prealloc: Option<u32>,
    ) -> std::io::Result<(Arena, Option<String>)> {
        let len = (pages as usize).max(1) * page_size;
        let nz = NonZeroUsize::new(len).expect("non-empty arena");
        let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        let map = |flags: MapFlags| {
            // SAFETY: a fresh anonymous private mapping at an address the
            // kernel picks overlaps nothing of ours.
            unsafe { mmap_anonymous(None, nz, prot, flags | MapFlags::MAP_PRIVATE) }
        };
        let Some(resident) = prealloc else {
            let base = map(MapFlags::MAP_NORESERVE).map_err(std::io::Error::from)?;
            return Ok((Arena::from_raw(base, len, page_size, pages), None));
        };
        if let Ok(p) = map(MapFlags::MAP_HUGETLB | MapFlags::MAP_POPULATE) {
            return Ok((Arena::from_raw(p, len, page_size, pages), None));
        }
        let p = map(MapFlags::MAP_NORESERVE).map_err(std::io::Error::from)?;
        // SAFETY: `p` is our mapping of `len` bytes.
        let warning = if unsafe { madvise(p, len, MmapAdvise::MADV_HUGEPAGE) }.is_err() {
            "Cannot enable large pages on this system (no hugetlb pages, no transparent huge pages); using normal pages"
        } else {
            "No hugetlb pages reserved on this system; asked for transparent huge pages instead"
        };
        let arena = Arena::from_raw(p, len, page_size, pages);
        // Touch the -m pages (not the spare page per class) so they are
        // resident from the start, as memcached's -L does.
        for page in 0..resident.min(pages) {
            let base = arena.page_ptr(page);
            for off in (0..page_size).step_by(4096) {
                // SAFETY: inside page `page` of the mapping; a fresh
                // anonymous page reads as zero, so writing zero keeps it so.
                unsafe { base.add(off).write_volatile(0) };
            }
        }
        Ok((arena, Some(warning.to_string())))
    }

    fn from_raw(
        base: NonNull<std::ffi::c_void>,
        len: usize,
        page_size: usize,
        pages: u32,
    ) -> Arena {
        Arena {
            base: base.cast(),
            len,
            page_size,
            pages,
        }
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Where `ptr` lies: (page, offset in it), if inside the mapping.
    pub fn locate(&self, ptr: *const u8) -> Option<(u32, usize)> {
        let off = (ptr as usize).checked_sub(self.base.as_ptr() as usize)?;
        let page = off / self.page_size;
        (page < self.pages as usize).then(|| (page as u32, off % self.page_size))
    }

    /// Gives page `page`'s memory back to the system: it reads as zeros
    /// when next touched, as a page never used.
    pub fn discard(&self, page: u32) {
        let p = self.page_ptr(page);
        // SAFETY: `p` starts page `page` of our mapping and the page lies
        // inside it; the caller owns the page (no chunk of it is in use),
        // so nothing reads the bytes this zeroes.
        let _ = unsafe {
            madvise(
                NonNull::new_unchecked(p.cast()),
                self.page_size,
                MmapAdvise::MADV_DONTNEED,
            )
        };
    }

    /// The first byte of page `page`.
    pub fn page_ptr(&self, page: u32) -> *mut u8 {
        assert!(page < self.pages, "page {page} outside the arena");
        // SAFETY: page < pages, so the offset stays inside the mapping.
        unsafe { self.base.as_ptr().add(page as usize * self.page_size) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: base and len are exactly the mapping made in `new`; no
        // reference into it outlives the arena (items borrow the store).
        let _ = unsafe { munmap(self.base.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_distinct_and_writable() {
        let (a, w) = Arena::new(4, 1 << 20, None).unwrap();
        assert!(w.is_none());
        for p in 0..4 {
            let ptr = a.page_ptr(p);
            // SAFETY: inside page p of our mapping.
            unsafe {
                ptr.write(p as u8 + 1);
                ptr.add((1 << 20) - 1).write(7);
            }
        }
        for p in 0..4 {
            // SAFETY: as above.
            assert_eq!(unsafe { a.page_ptr(p).read() }, p as u8 + 1);
        }
    }

    #[test]
    fn prealloc_falls_back_without_hugepages() {
        let (a, _warning) = Arena::new(3, 1 << 20, Some(2)).unwrap();
        // SAFETY: inside page 1.
        unsafe { a.page_ptr(1).write(1) };
        assert_eq!(a.pages(), 3);
    }
}
