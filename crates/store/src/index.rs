//! A shard's hash index: open addressing with linear probing over 64-bit
//! slots, each holding the low 32 bits of the key's hash and the item's
//! chunk id. The key itself lives in the item; the stored hash bits sort
//! out nearly every mismatch without touching item memory.
//!
//! Growing never stops the shard: at 3/4 full a table twice the size
//! takes new entries, and every later operation moves a few whole probe
//! clusters of the old table across (the stored hash bits place an entry
//! without reading its key). Lookups consult the new table, then the old
//! one while it still holds entries. Moving whole clusters, in order from
//! an empty slot, keeps the old table's remaining probe chains intact.

/// An empty slot. Never a real entry: chunk id `u32::MAX` is never used.
const EMPTY: u64 = u64::MAX;
/// Slots moved per operation while growing (at least; clusters finish).
const MIGRATE_STEP: usize = 16;

struct Table {
    slots: Box<[u64]>,
    mask: usize,
    len: usize,
}

impl Table {
    fn new(power: u32) -> Table {
        Self::try_new(power).expect("memory for the index")
    }

    /// A table of `2^power` slots, or None when the memory cannot be had.
    fn try_new(power: u32) -> Option<Table> {
        let n = 1usize.checked_shl(power)?;
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, EMPTY);
        Some(Table {
            slots: v.into_boxed_slice(),
            mask: n - 1,
            len: 0,
        })
    }

    fn cap(&self) -> usize {
        self.slots.len()
    }

    fn entry(hash: u64, id: u32) -> u64 {
        ((hash as u32 as u64) << 32) | u64::from(id)
    }

    fn home(&self, e: u64) -> usize {
        (e >> 32) as usize & self.mask
    }

    fn insert(&mut self, e: u64) {
        let mut i = self.home(e);
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = e;
        self.len += 1;
    }

    fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = hash as u32;
        let mut i = tag as usize & self.mask;
        loop {
            let e = self.slots[i];
            if e == EMPTY {
                return None;
            }
            if (e >> 32) as u32 == tag && eq(e as u32) {
                return Some(e as u32);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes the entry `e`; closes the gap by shifting later entries of
    /// the cluster back (no tombstones).
    fn remove(&mut self, e: u64) -> bool {
        let mut i = self.home(e);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s == e {
                break;
            }
            i = (i + 1) & self.mask;
        }
        self.len -= 1;
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = self.home(s);
            // Move s into the hole unless its home lies cyclically in
            // (hole, j]: then it is already as close as it can be.
            let in_range = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !in_range {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        true
    }
}

/// The growing index of one shard.
pub(crate) struct Index {
    cur: Table,
    /// The table being emptied into `cur`, with the next slot to move and
    /// how many slots are left to visit.
    old: Option<(Table, usize, usize)>,
}

impl Index {
    /// An index of `2^power` slots, or None when the memory cannot be had.
    pub fn new(power: u32) -> Option<Index> {
        Some(Index {
            cur: Table::try_new(power.clamp(4, 40))?,
            old: None,
        })
    }

    pub fn len(&self) -> usize {
        self.cur.len + self.old.as_ref().map_or(0, |o| o.0.len)
    }

    /// Slots of the current table (what `hash_power_level` reports).
    pub fn capacity(&self) -> usize {
        self.cur.cap()
    }

    /// Bytes held by both tables.
    pub fn bytes(&self) -> usize {
        8 * (self.cur.cap() + self.old.as_ref().map_or(0, |o| o.0.cap()))
    }

    /// Reads the slot where `hash` would start its probe in the current
    /// table (bringing it into cache before a batch of removals).
    pub fn warm(&self, hash: u64) -> u64 {
        self.cur.slots[self.cur.home(Table::entry(hash, 0))]
    }

    pub fn is_expanding(&self) -> bool {
        self.old.is_some()
    }

    /// Appends the ids of up to `max` slots from position `from` of the
    /// table to `out`. Returns the position to go on from, `None` past the
    /// end. While the index is expanding it first moves up to `max` slots'
    /// worth of entries to the new table (what lookups would move anyway)
    /// and lists nothing: a walk then starts on one table that lookups do
    /// not reshuffle. Entries moved by inserts and deletes between calls
    /// (a delete shifts its neighbours back, a growing table doubles) may
    /// be missed or seen twice.
    pub fn collect(&mut self, from: usize, max: usize, out: &mut Vec<u32>) -> Option<usize> {
        if self.old.is_some() {
            for _ in 0..max.div_ceil(MIGRATE_STEP) {
                self.migrate();
            }
            return Some(from);
        }
        let cur = &self.cur.slots;
        let stop = from.saturating_add(max).min(cur.len());
        out.extend(
            cur[from.min(stop)..stop]
                .iter()
                .filter(|&&e| e != EMPTY)
                .map(|&e| e as u32),
        );
        (stop < cur.len()).then_some(stop)
    }

    pub fn find(&mut self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.migrate();
        self.lookup(hash, eq)
    }

    /// [`find`](Self::find) without moving entries: for readers that hold
    /// the shard's lock shared.
    pub fn lookup(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if let Some(id) = self.cur.find(hash, &mut eq) {
            return Some(id);
        }
        self.old.as_ref().and_then(|o| o.0.find(hash, eq))
    }

    /// Adds an entry; the caller has made sure the key is not present.
    pub fn insert(&mut self, hash: u64, id: u32) {
        self.migrate();
        if (self.len() + 1) * 4 > self.cur.cap() * 3 {
            self.grow();
        }
        self.cur.insert(Table::entry(hash, id));
    }

    pub fn remove(&mut self, hash: u64, id: u32) -> bool {
        self.migrate();
        let e = Table::entry(hash, id);
        self.cur.remove(e) || self.old.as_mut().is_some_and(|o| o.0.remove(e))
    }

    fn grow(&mut self) {
        // A growth still under way finishes first (rare: the new table is
        // twice the old one, and each operation moves a few slots).
        while self.old.is_some() {
            self.migrate();
        }
        let power = self.cur.cap().trailing_zeros() + 1;
        let old = std::mem::replace(&mut self.cur, Table::new(power));
        if old.len == 0 {
            return;
        }
        // Start right after an empty slot, so clusters are moved whole.
        let start = old.slots.iter().position(|&s| s == EMPTY).unwrap_or(0);
        let cap = old.cap();
        self.old = Some((old, start, cap));
    }

    /// Moves at least `MIGRATE_STEP` slots, and the rest of the cluster
    /// the last one is in, from the old table.
    fn migrate(&mut self) {
        let Some((old, pos, left)) = &mut self.old else {
            return;
        };
        let mut moved = 0;
        while *left > 0 {
            let e = old.slots[*pos];
            if e == EMPTY {
                if moved >= MIGRATE_STEP {
                    break;
                }
            } else {
                old.slots[*pos] = EMPTY;
                old.len -= 1;
                self.cur.insert(e);
            }
            moved += 1;
            *pos = (*pos + 1) & old.mask;
            *left -= 1;
        }
        if *left == 0 || old.len == 0 {
            self.old = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn h(k: u64) -> u64 {
        // A poor hash on purpose: clusters form.
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7
    }

    #[test]
    fn grows_while_serving() {
        let mut ix = Index::new(4).unwrap();
        let mut model: HashMap<u64, u32> = HashMap::new();
        let mut seen_expanding = false;
        for k in 0..50_000u64 {
            ix.insert(h(k), k as u32);
            model.insert(k, k as u32);
            seen_expanding |= ix.is_expanding();
            if k % 3 == 0 {
                let d = k / 2;
                if model.remove(&d).is_some() {
                    assert!(ix.remove(h(d), d as u32));
                }
            }
            if k % 101 == 0 {
                for (&mk, &id) in model.iter().take(50) {
                    assert_eq!(ix.find(h(mk), |x| x == id), Some(id), "key {mk}");
                }
            }
        }
        assert!(seen_expanding);
        assert_eq!(ix.len(), model.len());
        for (&mk, &id) in &model {
            assert_eq!(ix.find(h(mk), |x| x == id), Some(id));
        }
        for k in 0..50_000u64 {
            if !model.contains_key(&k) {
                assert_eq!(ix.find(h(k), |x| x == k as u32), None);
            }
        }
        assert!(ix.capacity() >= 65_536);
    }

    #[test]
    fn colliding_tags_compare_keys() {
        let mut ix = Index::new(4).unwrap();
        for id in 0..10 {
            ix.insert(42, id);
        }
        for id in 0..10 {
            assert_eq!(ix.find(42, |x| x == id), Some(id));
        }
        assert!(ix.remove(42, 3));
        assert!(!ix.remove(42, 3));
        assert_eq!(ix.find(42, |x| x == 3), None);
        assert_eq!(ix.find(42, |x| x == 9), Some(9));
    }
}
