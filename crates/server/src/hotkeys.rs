//! Hot keys (`-o hot_keys=K`): an approximate, decaying top-K of the
//! keys requested most, kept per worker in bounded memory and merged when
//! asked for (`stats hotkeys`, the metrics endpoint).
//!
//! ```text
//!  hook::record (every key command) ──► Slot::count: one in `sample`,
//!      at random (a fixed stride would see only one key of a multiget
//!      that repeats in the same order)
//!      └─► this worker's HotKeys (its own lock; a reader takes it briefly)
//!            count-min sketch: ROWS x WIDTH u32, conservative update
//!            top: at most `cap` (key, estimate), replaced when a key's
//!                 estimate beats the smallest held
//!            every `window` seconds all counts halve (when next touched)
//!  hottest(): per worker decay, then sum each key's estimates, sort, K
//! ```
//!
//! Memory: 32 KB of sketch per worker plus `cap` keys (at most 250 bytes
//! each), whatever the load. An estimate never undercounts a key's
//! sampled requests since its last halving; it may overcount where keys
//! share sketch cells (by at most the traffic of the others, divided by
//! the width, with high probability).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

const ROWS: usize = 4;
const WIDTH: usize = 2048;

struct Entry {
    hash: u64,
    count: u32,
    key: Box<[u8]>,
}

/// One worker's sketch and top list.
pub struct HotKeys {
    sketch: Box<[u32]>,
    top: Vec<Entry>,
    /// The most keys the top list holds (twice those reported, so that a
    /// key rising past the K-th is already there).
    cap: usize,
    /// The smallest count in a full top list.
    floor: u32,
    /// Seconds between halvings.
    window: u32,
    /// The clock second the counts were last halved at.
    epoch: u32,
    /// The hash's secret (a client cannot aim keys at one another's
    /// sketch cells without it).
    seed: u64,
}

/// A seeded 64-bit hash of a key: eight bytes at a time, multiplied and
/// folded (cheaper than SipHash on short keys; the sketch needs spread,
/// not resistance to a determined attacker, who at worst makes one key
/// look hotter than it is).
fn hash(seed: u64, key: &[u8]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
        h = (h ^ w).wrapping_mul(M).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(M).rotate_left(29);
    }
    // Final mix (splitmix64's): every output bit depends on every input bit.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A random seed (the address-space layout and the clock: enough for a
/// sketch's secret, with no extra dependency).
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

impl HotKeys {
    pub fn new(k: usize, window: u32, now: u32) -> Self {
        HotKeys {
            sketch: vec![0u32; ROWS * WIDTH].into_boxed_slice(),
            top: Vec::with_capacity(2 * k),
            cap: 2 * k,
            floor: 0,
            window: window.max(1),
            epoch: now,
            seed: seed(),
        }
    }

    /// Counts one request for `key` at clock second `now`.
    pub fn count(&mut self, key: &[u8], now: u32) {
        self.decay_to(now);
        let h = hash(self.seed, key);
        let cell = |r: usize| r * WIDTH + ((h >> (r * 16)) as usize & (WIDTH - 1));
        let mut min = u32::MAX;
        for r in 0..ROWS {
            min = min.min(self.sketch[cell(r)]);
        }
        let est = min.saturating_add(1);
        // Conservative update: only the cells below the new estimate rise.
        for r in 0..ROWS {
            let c = &mut self.sketch[cell(r)];
            if *c < est {
                *c = est;
            }
        }
        if let Some(e) = self.top.iter_mut().find(|e| e.hash == h && *e.key == *key) {
            e.count = est;
            return;
        }
        if self.top.len() < self.cap {
            self.top.push(Entry {
                hash: h,
                count: est,
                key: key.into(),
            });
            if self.top.len() == self.cap {
                self.floor = self.smallest().1;
            }
            return;
        }
        if est > self.floor {
            let (i, _) = self.smallest();
            self.top[i] = Entry {
                hash: h,
                count: est,
                key: key.into(),
            };
            self.floor = self.smallest().1;
        }
    }

    /// The entry with the smallest count, and the count.
    fn smallest(&self) -> (usize, u32) {
        self.top
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.count))
            .min_by_key(|&(_, c)| c)
            .unwrap_or((0, 0))
    }

    /// Halves every count once per `window` seconds since the last time.
    fn decay_to(&mut self, now: u32) {
        let passed = now.saturating_sub(self.epoch) / self.window;
        if passed == 0 {
            return;
        }
        self.epoch = self.epoch.wrapping_add(passed * self.window);
        let shift = passed.min(31);
        for c in self.sketch.iter_mut() {
            *c >>= shift;
        }
        for e in &mut self.top {
            e.count >>= shift;
        }
        self.top.retain(|e| e.count > 0);
        self.floor = if self.top.len() == self.cap {
            self.smallest().1
        } else {
            0
        };
    }

    /// The keys held, with their estimates as of `now`.
    pub fn held(&mut self, now: u32) -> impl Iterator<Item = (&[u8], u32)> {
        self.decay_to(now);
        self.top.iter().map(|e| (&*e.key, e.count))
    }
}

/// A worker's hot keys: the sampling generator (only the worker touches
/// it) and the structure behind its lock.
pub struct Slot {
    rng: AtomicU64,
    /// Requests until the next one counted.
    left: AtomicU32,
    sample: u32,
    k: usize,
    inner: Mutex<HotKeys>,
}

impl Slot {
    pub fn new(k: usize, window: u32, sample: u32, now: u32) -> Self {
        Slot {
            rng: AtomicU64::new(seed() | 1),
            left: AtomicU32::new(1),
            sample: sample.max(1),
            k,
            inner: Mutex::new(HotKeys::new(k, window, now)),
        }
    }

    /// A request for `key`: one in `sample` on average is counted, after
    /// a random gap (1 to 2 x sample - 1), so a request costs a decrement.
    #[inline]
    pub fn count(&self, key: &[u8], now: impl FnOnce() -> u32) {
        let left = self.left.load(Ordering::Relaxed) - 1;
        if left > 0 {
            self.left.store(left, Ordering::Relaxed);
            return;
        }
        self.left.store(self.gap(), Ordering::Relaxed);
        self.inner.lock().count(key, now());
    }

    /// The next gap: xorshift64's high bits scaled to [1, 2 x sample - 1].
    #[cold]
    fn gap(&self) -> u32 {
        if self.sample == 1 {
            return 1;
        }
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        let span = u64::from(2 * self.sample - 1);
        1 + (((x >> 32) * span) >> 32) as u32
    }
}

/// The `k` hottest keys over `slots` (each worker's estimates summed,
/// scaled by the sampling), hottest first; ties in key order.
pub fn hottest<'a>(slots: impl Iterator<Item = &'a Slot>, now: u32) -> Vec<(Vec<u8>, u64)> {
    let mut sums: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
    let mut k = 0;
    for s in slots {
        k = k.max(s.k);
        let mut g = s.inner.lock();
        for (key, n) in g.held(now) {
            *sums.entry(key.to_vec()).or_default() += u64::from(n) * u64::from(s.sample);
        }
    }
    let mut v: Vec<(Vec<u8>, u64)> = sums.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_heavy_keys_among_many_light_ones() {
        let s = Slot::new(3, 60, 1, 0);
        for i in 0..20_000u32 {
            s.count(format!("light{}", i % 5000).as_bytes(), || 0);
            if i % 4 == 0 {
                s.count(b"a", || 0);
            }
            if i % 8 == 0 {
                s.count(b"b", || 0);
            }
            if i % 16 == 0 {
                s.count(b"c", || 0);
            }
        }
        let top = hottest([&s].into_iter(), 0);
        let keys: Vec<&[u8]> = top.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"a".as_slice(), b"b", b"c"]);
        // Never under the true count; here the sketch is wide enough to
        // be close.
        assert!((5000..5100).contains(&top[0].1), "{top:?}");
    }

    #[test]
    fn counts_halve_each_window_and_workers_add_up() {
        let a = Slot::new(2, 10, 1, 100);
        let b = Slot::new(2, 10, 1, 100);
        for _ in 0..64 {
            a.count(b"k", || 100);
            b.count(b"k", || 100);
        }
        assert_eq!(
            hottest([&a, &b].into_iter(), 105),
            vec![(b"k".to_vec(), 128)]
        );
        assert_eq!(
            hottest([&a, &b].into_iter(), 110),
            vec![(b"k".to_vec(), 64)]
        );
        assert_eq!(
            hottest([&a, &b].into_iter(), 131),
            vec![(b"k".to_vec(), 16)]
        );
        // Long idle: gone.
        assert!(hottest([&a, &b].into_iter(), 1000).is_empty());
    }

    #[test]
    fn sampling_scales_the_estimates() {
        let s = Slot::new(2, 60, 16, 0);
        for _ in 0..16_000 {
            s.count(b"x", || 0);
            // A key that always comes right after: a stride would miss it.
            s.count(b"y", || 0);
        }
        let top = hottest([&s].into_iter(), 0);
        assert_eq!(top.len(), 2, "{top:?}");
        for (k, n) in top {
            assert!((14_000..18_000).contains(&n), "{k:?} {n}");
        }
    }

    #[test]
    fn the_hash_spreads_short_and_long_keys() {
        let mut cells = std::collections::HashSet::new();
        for i in 0..1000u32 {
            let h = hash(7, format!("key:{i}").as_bytes());
            cells.insert(h & 4095);
            assert_ne!(h, hash(8, format!("key:{i}").as_bytes()));
        }
        // 1,000 keys in 4,096 cells: few collide.
        assert!(cells.len() > 850, "{}", cells.len());
        assert_ne!(hash(1, b""), hash(1, b"\0"));
        assert_ne!(hash(1, &[1; 16]), hash(1, &[1; 17]));
    }

    #[test]
    fn memory_is_bounded_by_the_cap() {
        let s = Slot::new(5, 60, 1, 0);
        for i in 0..100_000u32 {
            s.count(&i.to_le_bytes(), || 0);
        }
        assert!(s.inner.lock().top.len() <= 10);
    }
}
