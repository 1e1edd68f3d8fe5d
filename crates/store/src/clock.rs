//! The server clock: relative seconds since start in one atomic, advanced by
//! the maintainer thread once a second, so the request path never calls
//! `time()`. Exptime conversion follows memcached's `realtime()`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Exptimes above this many seconds (30 days) are absolute unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// memcached starts its relative clock this many seconds before the
/// process start, so that relative time 0 stays free to mean "never".
const START_OFFSET: u64 = 62;

pub struct Clock {
    /// Unix time at relative time 0.
    started: u64,
    now: AtomicU32,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        let started = unix_now().saturating_sub(START_OFFSET);
        Clock {
            started,
            now: AtomicU32::new(START_OFFSET as u32),
        }
    }

    /// Relative seconds since the clock's origin.
    #[inline]
    pub fn now(&self) -> u32 {
        self.now.load(Ordering::Relaxed)
    }

    /// Reads the system time and advances the clock (maintainer thread).
    /// True when that turned it to a new second.
    pub fn tick(&self) -> bool {
        let rel = unix_now().saturating_sub(self.started);
        let rel = u32::try_from(rel).unwrap_or(u32::MAX);
        // Never go backwards, even if the wall clock does.
        self.now.fetch_max(rel, Ordering::Relaxed) < rel
    }

    /// Moves the clock forward by `secs` (tests of expiry).
    pub fn advance(&self, secs: u32) {
        self.now.fetch_add(secs, Ordering::Relaxed);
    }

    /// Unix time of the clock's origin (memcached's `process_started`).
    pub fn started(&self) -> u64 {
        self.started
    }

    /// Unix time now, as the clock sees it.
    pub fn unix_now(&self) -> u64 {
        self.started + u64::from(self.now())
    }

    /// memcached's `realtime(EXPTIME_TO_POSITIVE_TIME(exptime))`: 0 stays
    /// "never"; up to 30 days is relative; above that an absolute unix time
    /// (one already past becomes relative time 1, i.e. expired); negative
    /// means already expired.
    pub fn realtime(&self, exptime: i32) -> u32 {
        let exptime = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            i64::from(exptime)
        };
        if exptime == 0 {
            return 0;
        }
        if exptime > REALTIME_MAXDELTA {
            if exptime as u64 <= self.started {
                1
            } else {
                (exptime as u64 - self.started) as u32
            }
        } else {
            (exptime as u32).wrapping_add(self.now())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let c = Clock::new();
        let now = c.now();
        assert_eq!(c.realtime(0), 0);
        assert_eq!(c.realtime(10), now + 10);
        assert_eq!(
            c.realtime(REALTIME_MAXDELTA as i32),
            now + REALTIME_MAXDELTA as u32
        );
        // Negative: already expired.
        assert_eq!(c.realtime(-1), 1);
        // Absolute time in the past: expired.
        assert_eq!(c.realtime(REALTIME_MAXDELTA as i32 + 1), 1);
        // Absolute time in the future: relative to the origin.
        let abs = (c.unix_now() + 100) as i32;
        assert_eq!(c.realtime(abs), now + 100);
    }

    #[test]
    fn advances() {
        let c = Clock::new();
        let a = c.now();
        c.advance(5);
        assert_eq!(c.now(), a + 5);
        assert!(!c.tick(), "the clock is ahead of the wall: no new second");
        assert!(c.now() >= a + 5, "tick never moves backwards");
    }
}
