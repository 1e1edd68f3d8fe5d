//! `flush_all`: an O(1) marker that every lookup reads; the reaper
//! (reap.rs) frees the items it invalidated, walking the eviction
//! queues. Lookups never wait on it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::item::It;
use crate::Store;

/// `flush_all` state, read on every lookup without a lock.
#[derive(Default)]
pub(crate) struct Flush {
    /// A pending or past `flush_all`: items touched at or before
    /// `oldest_live` are invalid once the clock reaches it (memcached's
    /// `settings.oldest_live`).
    oldest_live: AtomicU32,
    /// Flushes that have taken effect: items with a CAS below
    /// `flushed_cas`, or last touched at or before `flushed_time`, stay
    /// invalid even if a later delayed flush replaces `oldest_live`.
    /// (memcached forgets them then, and items its LRU crawler has not yet
    /// reaped come back; memcrab does not resurrect flushed items.)
    flushed_cas: AtomicU64,
    flushed_time: AtomicU32,
}

impl Flush {
    /// Whether any flush has taken effect by `now` (else no item is
    /// flushed and the reaper has nothing to sweep).
    pub(crate) fn in_force(&self, now: u32) -> bool {
        let ol = self.oldest_live.load(Ordering::Relaxed);
        self.flushed_cas.load(Ordering::Relaxed) != 0
            || self.flushed_time.load(Ordering::Relaxed) != 0
            || (ol != 0 && ol <= now)
    }

    /// Whether `flush_all` has invalidated item `it` by `now`.
    pub(crate) fn covers(&self, it: It, now: u32) -> bool {
        let flushed_cas = self.flushed_cas.load(Ordering::Relaxed);
        let cas = it.cas();
        if cas != 0 && cas < flushed_cas {
            return true;
        }
        let time = it.time();
        let flushed_time = self.flushed_time.load(Ordering::Relaxed);
        if flushed_time != 0 && time <= flushed_time {
            return true;
        }
        let ol = self.oldest_live.load(Ordering::Relaxed);
        ol != 0 && ol <= now && time <= ol
    }
}

impl Store {
    /// `flush_all [delay]`: every item stored before the flush time becomes
    /// invalid, at once for lookups (O(1): a marker); the reaper frees
    /// them from the eviction queues in the background.
    pub fn flush_all(&self, delay: i32) {
        let now = self.clock.now();
        let new_oldest = if delay > 0 {
            self.clock.realtime(delay)
        } else {
            now
        };
        let _guard = self.flush_lock.lock();
        let f = &self.flush;
        let oldest = f.oldest_live.load(Ordering::Relaxed);
        let mut flushed_time = f.flushed_time.load(Ordering::Relaxed);
        if oldest != 0 && oldest <= now {
            // The pending flush has happened: keep its effect.
            flushed_time = flushed_time.max(oldest);
        }
        let oldest = if self.cfg.use_cas {
            new_oldest.saturating_sub(1)
        } else {
            new_oldest
        };
        if oldest <= now {
            if self.cfg.use_cas {
                f.flushed_cas.store(self.next_cas(), Ordering::Relaxed);
            }
            flushed_time = flushed_time.max(oldest);
        }
        f.flushed_time.store(flushed_time, Ordering::Relaxed);
        f.oldest_live.store(oldest, Ordering::Relaxed);
    }
}
