//! `slabs automove`: which class gives a page to which, judged from the
//! stats every step (the maintainer steps every 250 ms).

use crate::Store;

/// Seconds by which a class's coldest item must be older than an evicting
/// class's before automove takes a page from it.
const AUTOMOVE_MIN_AGE_GAP: u32 = 5;

/// What automove remembers between steps.
#[derive(Debug, Default)]
pub(crate) struct Automove {
    /// Evictions per class at the last step.
    last_evicted: Vec<u64>,
}

impl Store {
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
        // A class's age for this: how long its small queue's front has
        // gone unused (the age of what enters and leaves it: short in a
        // class that evicts, long in one that no longer takes new items),
        // or, when the small queue is empty, the main queue's. Main's
        // front alone is noisy under S3-FIFO: it is whatever item comes
        // up next for a second chance, hot or cold, and deciding on it
        // moved pages (each a page of evictions) between classes that all
        // evict alike (21 moves and 55,327 items lost in one hit-ratio run).
        let age = |id: usize| {
            let c = snap(id);
            if c.items_small > 0 {
                c.age_small
            } else {
                c.age
            }
        };
        // The evicting class whose coldest item is youngest.
        let Some(dst) = (1..evicted.len())
            .filter(|&c| evicted[c] > last[c])
            .min_by_key(|&c| age(c))
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
                .max_by_key(|&c| age(c))
                .filter(|&c| {
                    let (old, young) = (age(c), age(dst));
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
}
