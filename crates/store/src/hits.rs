//! Get and touch hits, counted by readers that hold a shard's lock only
//! shared: each thread counts in its own stripe (threads take stripes in
//! turn), so two threads reading the same hot key write no common cache
//! line; `stats` sums the stripes.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Stripes (threads past this many share one, atomically).
const STRIPES: usize = 32;

/// Which counter a hit goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A get hit on an item in its small queue (memcached's hot LRU).
    GetSmall = 0,
    /// A get hit on an item in its main queue (memcached's warm LRU).
    GetMain = 1,
    Touch = 2,
}

/// One stripe: three counters per class, in one allocation of its own.
#[repr(align(128))]
struct Stripe(Box<[[AtomicU64; 3]]>);

pub(crate) struct Hits {
    stripes: Box<[Stripe]>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
}

/// This thread's slot number (small, dense: threads take them in turn).
pub(crate) fn thread_slot() -> usize {
    SLOT.with(|s| *s)
}

impl Hits {
    pub fn new(classes: usize) -> Hits {
        Hits {
            stripes: (0..STRIPES)
                .map(|_| Stripe((0..classes).map(|_| Default::default()).collect()))
                .collect(),
        }
    }

    #[inline]
    pub fn count(&self, class: usize, kind: Kind) {
        let slot = thread_slot() % STRIPES;
        if let Some(c) = self.stripes[slot].0.get(class) {
            c[kind as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A class's sums: (small get hits, main get hits, touch hits).
    pub fn sum(&self, class: usize) -> [u64; 3] {
        let mut out = [0; 3];
        for s in self.stripes.iter() {
            if let Some(c) = s.0.get(class) {
                for (o, v) in out.iter_mut().zip(c) {
                    *o += v.load(Ordering::Relaxed);
                }
            }
        }
        out
    }

    /// `stats reset`.
    pub fn reset(&self) {
        for s in self.stripes.iter() {
            for c in s.0.iter() {
                for v in c {
                    v.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A random 64-bit seed (the std library's per-process random keys).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x006d_656d_6372_6162_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_count_in_stripes_and_sums_add_up() {
        let h = std::sync::Arc::new(Hits::new(4));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.count(2, Kind::GetMain);
                        h.count(2, Kind::Touch);
                    }
                    h.count(1, Kind::GetSmall);
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(h.sum(2), [0, 4000, 4000]);
        assert_eq!(h.sum(1), [4, 0, 0]);
        h.count(9, Kind::Touch);
        h.reset();
        assert_eq!(h.sum(2), [0, 0, 0]);
    }
}
