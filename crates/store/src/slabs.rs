//! Slab classes: the chunk size table.
//!
//! Memory is handed to classes in pages (1 MB); a class cuts its pages into
//! chunks of its size. The table is memcached's rule applied to memcrab's
//! header: the first chunk holds the 24-byte item header plus `-n` bytes,
//! each next one is `-f` times larger, 8-byte aligned, and the last class
//! is `slab_chunk_max` (half a page). A class with no page may take one
//! even at the limit (seed 000's rule).

use crate::item::{HDR, MAX_PER_PAGE};

const CHUNK_ALIGN: u32 = 8;
/// memcached's MAX_NUMBER_OF_SLAB_CLASSES (63 + 1).
const MAX_CLASSES: usize = 64;

/// Chunk sizes; class ids start at 1 as in memcached.
#[derive(Debug, Clone)]
pub struct ClassTable {
    /// `sizes[id]` for id in 1..=largest; `sizes[0]` unused.
    sizes: Vec<u32>,
    page_size: u32,
    item_size_max: u32,
}

impl ClassTable {
    pub fn new(
        chunk_min: u32,
        factor: f64,
        page_size: u32,
        chunk_max: u32,
        item_size_max: u32,
    ) -> Self {
        let mut sizes = vec![0u32];
        let mut size = HDR as u32 + chunk_min;
        while sizes.len() < MAX_CLASSES - 1 {
            if f64::from(size) >= f64::from(chunk_max) / factor {
                break;
            }
            if !size.is_multiple_of(CHUNK_ALIGN) {
                size += CHUNK_ALIGN - size % CHUNK_ALIGN;
            }
            sizes.push(size);
            size = (f64::from(size) * factor) as u32;
        }
        sizes.push(chunk_max);
        ClassTable {
            sizes,
            page_size,
            item_size_max,
        }
    }

    pub fn largest(&self) -> usize {
        self.sizes.len() - 1
    }

    pub fn size(&self, id: usize) -> u32 {
        self.sizes[id]
    }

    /// Chunks per page (at most 2^14, what a chunk id's slot can name).
    pub fn per_page(&self, id: usize) -> u32 {
        (self.page_size / self.sizes[id]).min(MAX_PER_PAGE)
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// `slabs_clsid`: the smallest class that holds `ntotal` bytes, or None
    /// when the item is larger than `-I`. Items above the largest chunk
    /// are chained and belong to the largest class.
    pub fn class_for(&self, ntotal: usize) -> Option<usize> {
        if ntotal == 0 || ntotal > self.item_size_max as usize {
            return None;
        }
        let mut lo = 1;
        let mut hi = self.largest();
        if ntotal > self.sizes[hi] as usize {
            return Some(hi);
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.sizes[mid] as usize >= ntotal {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table() {
        // memcached's rule (x1.25, 8-byte aligned, last = slab_chunk_max)
        // from a 24-byte header + 48: memcached's own starts at 96.
        let t = ClassTable::new(48, 1.25, 1 << 20, 1 << 19, 1 << 20);
        assert_eq!(t.size(1), 72);
        assert_eq!(t.size(2), 96);
        assert_eq!(t.size(3), 120);
        assert_eq!(t.size(t.largest()), 1 << 19);
        assert_eq!(t.per_page(1), 14563);
        assert_eq!(t.per_page(t.largest()), 2);
        for i in 2..t.largest() {
            assert!(t.size(i) > t.size(i - 1));
            assert_eq!(t.size(i) % 8, 0);
        }
    }

    #[test]
    fn class_lookup() {
        let t = ClassTable::new(48, 1.25, 1 << 20, 1 << 19, 1 << 20);
        assert_eq!(t.class_for(1), Some(1));
        assert_eq!(t.class_for(72), Some(1));
        assert_eq!(t.class_for(73), Some(2));
        assert_eq!(t.class_for(524288), Some(t.largest()));
        assert_eq!(t.class_for(600_000), Some(t.largest()));
        assert_eq!(t.class_for(1 << 20), Some(t.largest()));
        assert_eq!(t.class_for((1 << 20) + 1), None);
        assert_eq!(t.class_for(0), None);
    }

    #[test]
    fn small_chunks_capped_by_slot_bits() {
        let t = ClassTable::new(8, 1.25, 1 << 20, 1 << 19, 1 << 20);
        assert_eq!(t.size(1), 32);
        assert_eq!(t.per_page(1), MAX_PER_PAGE);
    }

    #[test]
    fn factor_two() {
        let t = ClassTable::new(48, 2.0, 1 << 20, 1 << 19, 1 << 20);
        assert_eq!(t.size(1), 72);
        assert_eq!(t.size(2), 144);
        assert_eq!(t.size(t.largest()), 1 << 19);
    }
}
