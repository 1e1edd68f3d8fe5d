//! Per-command latency histograms (`-o metrics_port`): how long each
//! request took from its arrival to its reply's hand-off, server side.
//!
//! ```text
//!  conn::run_io ── fill() returns ── t0
//!      process(): each request done ──► Pending[cmd] += 1   (the session
//!                                       names the request's Cmd in Cx)
//!      flush(): replies handed to the socket ── t1
//!      Histograms::record(pending, t1 - t0)   (this worker's own counters)
//!  metrics scrape ──► sum of the workers' Histograms ──► Prometheus text
//! ```
//!
//! A request's arrival is the read that completed it (a request split
//! over reads counts from its last piece); its hand-off is the write that
//! followed the batch it was handled in (the kernel has the reply, or
//! memcrab queued what the socket would not take). Requests of one batch
//! share one pair of clock readings, so the cost is two `clock_gettime`
//! calls (vDSO) per batch and an increment per request. Only the worker
//! writes its histograms (a load and a store, no locked instruction);
//! readers sum them with relaxed loads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a request was, for its histogram (the `command` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    /// get, gets, binary Get*, meta mg.
    Get,
    /// gat, gats, binary Gat*.
    Gat,
    /// touch, binary Touch.
    Touch,
    /// Every store (set add replace append prepend cas, binary Set* …,
    /// meta ms).
    Set,
    /// delete, binary Delete*, meta md.
    Delete,
    /// incr, decr, binary Increment*/Decrement*, meta ma.
    IncrDecr,
    /// flush_all, binary Flush*.
    Flush,
    /// Everything else: stats, version, verbosity, noop, mn, me, auth …
    Other,
}

pub const CMDS: usize = Cmd::Other as usize + 1;

impl Cmd {
    pub const ALL: [Cmd; CMDS] = [
        Cmd::Get,
        Cmd::Gat,
        Cmd::Touch,
        Cmd::Set,
        Cmd::Delete,
        Cmd::IncrDecr,
        Cmd::Flush,
        Cmd::Other,
    ];

    /// The `command` label.
    pub fn label(self) -> &'static str {
        match self {
            Cmd::Get => "get",
            Cmd::Gat => "gat",
            Cmd::Touch => "touch",
            Cmd::Set => "set",
            Cmd::Delete => "delete",
            Cmd::IncrDecr => "incr_decr",
            Cmd::Flush => "flush_all",
            Cmd::Other => "other",
        }
    }
}

/// Bucket upper bounds in nanoseconds (1-2-5 steps, 1 µs to 1 s), and
/// the `le` label each is written with. A last bucket holds the rest.
pub const BOUNDS_NS: [u64; 19] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
];

pub const LE: [&str; 19] = [
    "1e-06", "2e-06", "5e-06", "1e-05", "2e-05", "5e-05", "0.0001", "0.0002", "0.0005", "0.001",
    "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1",
];

const BUCKETS: usize = BOUNDS_NS.len() + 1;

/// The bucket a duration falls in.
fn bucket(ns: u64) -> usize {
    BOUNDS_NS
        .iter()
        .position(|&b| ns <= b)
        .unwrap_or(BOUNDS_NS.len())
}

/// Requests handled in the current batch, by command.
#[derive(Debug, Default)]
pub struct Pending {
    n: [u32; CMDS],
    any: bool,
}

impl Pending {
    #[inline]
    pub fn add(&mut self, c: Cmd) {
        self.n[c as usize] += 1;
        self.any = true;
    }

    pub fn is_empty(&self) -> bool {
        !self.any
    }
}

/// One command's histogram.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

/// A worker's histograms, one per command.
#[derive(Default)]
pub struct Histograms {
    h: [Histogram; CMDS],
}

/// Adds `n` to a counter only its owner writes.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Histograms {
    /// Records every pending request as taking `took`, and clears them.
    /// Only the worker that owns these histograms calls it.
    pub fn record(&self, p: &mut Pending, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let b = bucket(ns);
        for (i, n) in p.n.iter_mut().enumerate() {
            if *n > 0 {
                let h = &self.h[i];
                bump(&h.buckets[b], u64::from(*n));
                bump(&h.sum_ns, ns.saturating_mul(u64::from(*n)));
                *n = 0;
            }
        }
        p.any = false;
    }

    /// The sum over `workers` of command `c`'s histogram: bucket counts
    /// (not cumulative) and the total in nanoseconds.
    pub fn sum<'a>(workers: impl Iterator<Item = &'a Histograms>, c: Cmd) -> ([u64; BUCKETS], u64) {
        let mut b = [0u64; BUCKETS];
        let mut sum = 0u64;
        for w in workers {
            let h = &w.h[c as usize];
            for (t, a) in b.iter_mut().zip(&h.buckets) {
                *t += a.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(h.sum_ns.load(Ordering::Relaxed));
        }
        (b, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_take_their_upper_bound() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(1_001), 1);
        assert_eq!(bucket(1_000_000_000), 18);
        assert_eq!(bucket(1_000_000_001), 19);
        assert_eq!(LE.len(), BOUNDS_NS.len());
        for (le, ns) in LE.iter().zip(BOUNDS_NS) {
            let s: f64 = le.parse().unwrap();
            assert!((s * 1e9 - ns as f64).abs() < 1e-3, "{le} {ns}");
        }
    }

    #[test]
    fn a_batch_counts_each_request_once() {
        let h = Histograms::default();
        let mut p = Pending::default();
        p.add(Cmd::Get);
        p.add(Cmd::Get);
        p.add(Cmd::Set);
        h.record(&mut p, Duration::from_micros(3));
        assert!(p.is_empty());
        let (b, sum) = Histograms::sum([&h].into_iter(), Cmd::Get);
        assert_eq!(b[2], 2);
        assert_eq!(b.iter().sum::<u64>(), 2);
        assert_eq!(sum, 6_000);
        let (b, _) = Histograms::sum([&h, &h].into_iter(), Cmd::Set);
        assert_eq!(b[2], 2);
        // Nothing pending: nothing recorded.
        h.record(&mut p, Duration::from_secs(5));
        assert_eq!(Histograms::sum([&h].into_iter(), Cmd::Other).0[19], 0);
    }
}
