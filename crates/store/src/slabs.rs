//! Slab classes: the chunk size table and per-class page accounting.
//!
//! Memory is handed to classes in pages (1 MB); a class cuts its pages into
//! chunks of its size. The table is memcached's: the first chunk holds the
//! item header plus `-n` bytes, each next one is `-f` times larger, 8-byte
//! aligned, and the last class is `slab_chunk_max` (half a page). A class
//! with no page may take one even at the limit (seed 000's rule).

/// memcached's `sizeof(item)` on 64-bit hosts: the per-item overhead the
/// class table and `-I` limits are computed with.
pub const ITEM_HEADER: usize = 48;
/// Extra header bytes memcached spends on the CAS value.
pub const CAS_BYTES: usize = 8;
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
        let mut size = ITEM_HEADER as u32 + chunk_min;
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

    pub fn per_page(&self, id: usize) -> u32 {
        self.page_size / self.sizes[id]
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// `slabs_clsid`: the smallest class that holds `ntotal` bytes, or None
    /// when the item is larger than `-I`. Items above the largest chunk
    /// are chunked and belong to the largest class.
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

    /// How many chunks of class `id` an item of `ntotal` bytes takes: one,
    /// or for items above the largest chunk, enough largest chunks to hold
    /// it (memcached chains such items across chunks).
    pub fn chunks_for(&self, id: usize, ntotal: usize) -> u32 {
        let size = self.sizes[id] as usize;
        ntotal.div_ceil(size).max(1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_matches_memcached() {
        // memcached 1.6 -vv with defaults prints these chunk sizes.
        let t = ClassTable::new(48, 1.25, 1 << 20, 1 << 19, 1 << 20);
        let want = [
            96, 120, 152, 192, 240, 304, 384, 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904,
            3632, 4544, 5680, 7104, 8880, 11104, 13880, 17352, 21696, 27120, 33904, 42384, 52984,
            66232, 82792, 103496, 129376, 161720, 202152, 252696, 315872, 394840, 524288,
        ];
        assert_eq!(t.largest(), want.len());
        for (i, w) in want.iter().enumerate() {
            assert_eq!(t.size(i + 1), *w, "class {}", i + 1);
        }
        assert_eq!(t.per_page(1), 10922);
        assert_eq!(t.per_page(39), 2);
    }

    #[test]
    fn class_lookup() {
        let t = ClassTable::new(48, 1.25, 1 << 20, 1 << 19, 1 << 20);
        assert_eq!(t.class_for(1), Some(1));
        assert_eq!(t.class_for(96), Some(1));
        assert_eq!(t.class_for(97), Some(2));
        assert_eq!(t.class_for(524288), Some(39));
        assert_eq!(t.class_for(600_000), Some(39));
        assert_eq!(t.chunks_for(39, 600_000), 2);
        assert_eq!(t.class_for(1 << 20), Some(39));
        assert_eq!(t.class_for((1 << 20) + 1), None);
        assert_eq!(t.class_for(0), None);
    }

    #[test]
    fn factor_two() {
        let t = ClassTable::new(48, 2.0, 1 << 20, 1 << 19, 1 << 20);
        assert_eq!(t.size(1), 96);
        assert_eq!(t.size(2), 192);
        assert_eq!(t.size(t.largest()), 1 << 19);
    }
}
