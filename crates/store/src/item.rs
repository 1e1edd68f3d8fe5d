//! One cached item and the arithmetic of its size.

use std::sync::Arc;

use crate::slabs::{CAS_BYTES, ITEM_HEADER};

/// Index of an item in the item table; `NIL` ends a list.
pub type Idx = u32;
pub const NIL: Idx = u32::MAX;

/// A stored item. The key and the value share one allocation (`data` is
/// key followed by value, the value without its `\r\n`), reference
/// counted so that a connection can write a value after the lock is gone
/// while the item is replaced or evicted underneath.
pub struct Item {
    pub data: Arc<[u8]>,
    pub nkey: u8,
    /// Slab class the item's chunks are charged to.
    pub class: u8,
    /// Whether a client has read the item since it was stored.
    pub fetched: bool,
    /// Chunks of `class` charged to this item.
    pub nchunks: u32,
    pub flags: u32,
    /// Relative expiry time, 0 = never.
    pub exptime: u32,
    /// Relative time of the last store or access.
    pub time: u32,
    pub cas: u64,
    /// Per-class LRU links: `prev` towards the head (most recent).
    pub prev: Idx,
    pub next: Idx,
}

impl Item {
    pub fn key(&self) -> &[u8] {
        &self.data[..self.nkey as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.nkey as usize..]
    }

    pub fn value_len(&self) -> usize {
        self.data.len() - self.nkey as usize
    }
}

/// memcached's `ITEM_ntotal`: header, key and its NUL, flags when non-zero,
/// value with `\r\n`, and the CAS when CAS is on. This is what `-I`,
/// `mem_requested` and the class choice are computed from.
pub fn ntotal(nkey: usize, flags: u32, value_len: usize, use_cas: bool) -> usize {
    ITEM_HEADER
        + nkey
        + 1
        + if flags == 0 { 0 } else { 4 }
        + value_len
        + 2
        + if use_cas { CAS_BYTES } else { 0 }
}

/// Builds the shared key+value buffer from up to two value pieces (two
/// for append/prepend), without an intermediate copy.
pub fn make_data(key: &[u8], a: &[u8], b: &[u8]) -> Arc<[u8]> {
    let mut v = Vec::with_capacity(key.len() + a.len() + b.len());
    v.extend_from_slice(key);
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    Arc::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntotal_matches_memcached_mem_requested() {
        // memcached 1.6 reports mem_requested 61 for key "a", value "x".
        assert_eq!(ntotal(1, 0, 1, true), 61);
        assert_eq!(ntotal(1, 5, 1, true), 65);
        assert_eq!(ntotal(1, 0, 1, false), 53);
    }

    #[test]
    fn data_layout() {
        let d = make_data(b"key", b"va", b"lue");
        let it = Item {
            data: d,
            nkey: 3,
            class: 1,
            fetched: false,
            nchunks: 1,
            flags: 0,
            exptime: 0,
            time: 0,
            cas: 0,
            prev: NIL,
            next: NIL,
        };
        assert_eq!(it.key(), b"key");
        assert_eq!(it.value(), b"value");
        assert_eq!(it.value_len(), 5);
    }
}
