//! The expiry wheel of one shard (seed 001): a bucket per second of
//! expiry time, holding the chunk ids of the items that expire in it.
//!
//! ```text
//!  insert(id, exptime) ──► ring[exptime % RING]   (exptime < next + RING)
//!                      └─► far                    (later: re-parked every
//!                                                  RING/2 seconds)
//!  take_due(now) ──► every bucket of next..=now (and far when its turn
//!                    has come) ──► Store::reap checks each entry:
//!                       chunk still linked in this shard?  no ──► dropped
//!                       exptime <= now? ──► unlinked and freed
//!                       later ──► insert(id, exptime) again
//! ```
//!
//! An entry is 4 bytes outside the item; nothing is removed from the
//! wheel when an item goes (delete, eviction, replacement): the entry goes
//! stale and is dropped when its bucket comes due, or by `compact` when
//! stale entries pile up. An item's entry may lie in a bucket before its
//! exptime (a `touch` to a later time moves nothing: the entry is found
//! early and put back where it now belongs); it never lies after it, so no
//! item outlives its second by more than the drain's delay.
//!
//! Invariant: every item linked in the shard with a non-zero exptime `e`
//! has an entry in a bucket for a second `<= e`, in `far`, or in a list the
//! reaper took out and has not finished.

use crate::item::ChunkId;

/// Seconds the ring covers (a power of two): about 17 minutes, 24 KB of
/// empty buckets per shard, taken when the shard's first expiring item
/// comes (a store that never sees one, or a short-lived one, skips them).
pub const RING: u32 = 1024;
const MASK: u32 = RING - 1;

pub(crate) struct Wheel {
    ring: Box<[Vec<ChunkId>]>,
    /// Entries for seconds at or past `next + RING` when inserted.
    far: Vec<ChunkId>,
    /// Every second before this has been taken out for draining.
    next: u32,
    /// `next` at the last re-parking of `far`.
    far_checked: u32,
    /// Entries in the ring and `far`, stale ones included.
    entries: usize,
    /// Room for ids the ring's and `far`'s vectors hold (their capacity).
    room: usize,
}

impl Wheel {
    /// A wheel whose first due second is `now`.
    pub fn new(now: u32) -> Wheel {
        Wheel {
            ring: Box::default(),
            far: Vec::new(),
            next: now,
            far_checked: now,
            entries: 0,
            room: 0,
        }
    }

    /// Enters chunk `id`, whose item expires at `exptime` (relative
    /// seconds, not 0). One already due goes to the next bucket drained.
    pub fn insert(&mut self, id: ChunkId, exptime: u32) {
        debug_assert!(exptime != 0);
        let at = exptime.max(self.next);
        if self.ring.is_empty() {
            self.ring = (0..RING).map(|_| Vec::new()).collect();
        }
        let v = if at - self.next < RING {
            &mut self.ring[(at & MASK) as usize]
        } else {
            &mut self.far
        };
        let before = v.capacity();
        v.push(id);
        self.room += v.capacity() - before;
        self.entries += 1;
    }

    /// Takes out the entries of every second up to `now` into `out`, and
    /// the far entries when RING/2 seconds have passed since they were last
    /// looked at (so each is back in the ring before its second comes).
    /// Seconds already taken are not taken again.
    pub fn take_due(&mut self, now: u32, out: &mut Vec<ChunkId>) {
        if now < self.next {
            return;
        }
        let start = out.len();
        if self.ring.is_empty() {
            // Nothing was ever entered.
            self.next = now + 1;
            self.far_checked = self.next;
            return;
        }
        if now - self.next >= RING {
            // Behind by a whole turn (the clock jumped): every bucket.
            for b in self.ring.iter_mut() {
                let b = std::mem::take(b);
                self.room -= b.capacity();
                out.extend_from_slice(&b);
            }
        } else {
            for s in self.next..=now {
                let b = std::mem::take(&mut self.ring[(s & MASK) as usize]);
                self.room -= b.capacity();
                if out.is_empty() {
                    *out = b;
                } else {
                    out.extend_from_slice(&b);
                }
            }
        }
        self.next = now + 1;
        if self.next - self.far_checked >= RING / 2 {
            self.far_checked = self.next;
            let far = std::mem::take(&mut self.far);
            self.room -= far.capacity();
            out.extend_from_slice(&far);
        }
        self.entries -= out.len() - start;
    }

    /// Takes out every entry (compaction: the caller drops the stale ones
    /// and inserts the rest again).
    /// (Buckets are taken with their memory, so a wheel that once held
    /// many entries does not keep room for them.)
    pub fn take_all(&mut self, out: &mut Vec<ChunkId>) {
        for b in self.ring.iter_mut() {
            out.extend_from_slice(&std::mem::take(b));
        }
        out.extend_from_slice(&std::mem::take(&mut self.far));
        self.far_checked = self.next;
        self.entries = 0;
        self.room = 0;
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The first second not yet taken out.
    #[cfg(test)]
    pub fn next(&self) -> u32 {
        self.next
    }

    /// Heap bytes the wheel holds.
    pub fn bytes(&self) -> usize {
        self.room * 4 + self.ring.len() * std::mem::size_of::<Vec<ChunkId>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(w: &mut Wheel, now: u32) -> Vec<ChunkId> {
        // The running count of room is the vectors' capacity.
        let room: usize = w.ring.iter().map(Vec::capacity).sum::<usize>() + w.far.capacity();
        assert_eq!(w.room, room);
        let mut v = Vec::new();
        w.take_due(now, &mut v);
        v.sort_unstable();
        v
    }

    #[test]
    fn buckets_come_due_in_their_second() {
        let mut w = Wheel::new(100);
        w.insert(1, 105);
        w.insert(2, 106);
        w.insert(3, 105);
        w.insert(4, 50); // already due
        assert_eq!(w.entries(), 4);
        assert_eq!(due(&mut w, 104), vec![4]);
        assert_eq!(due(&mut w, 104), Vec::<ChunkId>::new(), "taken once");
        assert_eq!(due(&mut w, 105), vec![1, 3]);
        // Inserted for a second already taken: the next one drained.
        w.insert(5, 105);
        assert_eq!(due(&mut w, 106), vec![2, 5]);
        assert_eq!(w.entries(), 0);
    }

    #[test]
    fn far_entries_come_back_before_their_second() {
        let mut w = Wheel::new(0);
        let far = 3 * RING + 7;
        w.insert(9, far);
        let mut now = 0;
        // Drive the wheel second by second, putting back what is not due
        // (as the reaper does), until the entry comes due.
        loop {
            now += 1;
            let mut out = Vec::new();
            w.take_due(now, &mut out);
            if out.contains(&9) {
                if now >= far {
                    break;
                }
                w.insert(9, far);
            }
            assert!(now <= far, "the entry came due late");
        }
        assert_eq!(now, far, "due exactly in its second");
    }

    #[test]
    fn a_jump_past_a_turn_takes_everything() {
        let mut w = Wheel::new(10);
        w.insert(1, 20);
        w.insert(2, 10 + RING + 5);
        w.insert(3, 600);
        let got = due(&mut w, 10 + 4 * RING);
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(w.next(), 11 + 4 * RING);
    }

    #[test]
    fn take_all_empties() {
        let mut w = Wheel::new(0);
        for i in 0..100 {
            w.insert(i, 1 + i * 37);
        }
        let mut v = Vec::new();
        w.take_all(&mut v);
        assert_eq!(v.len(), 100);
        assert_eq!(w.entries(), 0);
        assert_eq!(
            w.bytes(),
            RING as usize * std::mem::size_of::<Vec<ChunkId>>()
        );
        assert!(due(&mut w, 5 * RING).is_empty());
    }
}
