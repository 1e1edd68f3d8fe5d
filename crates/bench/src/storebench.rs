//! `memcrab-bench store`: the store alone, in-process, no network —
//! operations per second from N threads on one shared `Store`, and the
//! eviction policy's hit ratio on look-aside traces.
//!
//! ```text
//!  threads ─► Store::{get_with, store} (the calls every protocol's
//!             command layer makes) ─► ops counted per thread ─► total
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Args;
use memcrab_store::{Clock, Config, GetOpts, Mode, Store, StoreOutcome, StoreReq};

use crate::dist::{Popularity, Rng};

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Threads calling the store.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// get-hot (every thread reads one key), get-zipf (Zipf 1.0 over 1M
    /// keys), set-uniform (100 B values over 1M keys), mixed-zipf (90%
    /// get / 10% set, Zipf 1.0), lookaside-zipf, lookaside-onehit (hit
    /// ratio at -m 64: Zipf 1.0 over 2M keys, 3M requests, 100-500 B
    /// values; 30% one-hit wonders).
    #[arg(long, default_value = "get-zipf")]
    workload: String,
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// The small queue's share (percent; 0: CLOCK) for comparing
    /// policies.
    #[arg(long, default_value_t = memcrab_store::SMALL_PERCENT)]
    small_percent: u32,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

const KEYS: u64 = 1_000_000;

/// `key:` and the id in ten digits (no formatting machinery: the
/// benchmark measures the store, not `fmt`).
fn key(buf: &mut Vec<u8>, mut id: u64) {
    buf.clear();
    buf.extend_from_slice(b"key:0000000000");
    for b in buf[4..].iter_mut().rev() {
        *b = b'0' + (id % 10) as u8;
        id /= 10;
    }
}

/// Draws made before the clock starts, cycled through while it runs (a
/// Zipf draw is a binary search over a 1M-entry table: done in the loop,
/// it would be most of what is measured).
const DRAWS: usize = 1 << 20;

pub fn run(a: &StoreArgs) -> Result<(), String> {
    if a.workload.starts_with("lookaside") {
        return lookaside(a);
    }
    let store = Arc::new(Store::new(
        Config {
            mem_limit: 1 << 30,
            hashpower: 21,
            small_percent: a.small_percent,
            ..Config::default()
        },
        Arc::new(Clock::new()),
    ));
    let value = vec![b'v'; 100];
    let mut k = Vec::new();
    let fill = match a.workload.as_str() {
        "get-hot" => 1,
        "get-zipf" | "mixed-zipf" | "set-uniform" => KEYS,
        w => return Err(format!("unknown workload {w:?}")),
    };
    for id in 0..fill {
        key(&mut k, id);
        store.store(&StoreReq {
            key: &k,
            value: &value,
            ..StoreReq::default()
        });
    }
    let zipf = Arc::new(Popularity::zipf(1.0, KEYS));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(a.threads + 1));
    let handles: Vec<_> = (0..a.threads)
        .map(|t| {
            let (store, zipf, stop, start) =
                (store.clone(), zipf.clone(), stop.clone(), start.clone());
            let workload = a.workload.clone();
            let value = value.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 1);
                let draws: Vec<(u32, bool)> = (0..DRAWS)
                    .map(|_| match workload.as_str() {
                        "get-hot" => (0, true),
                        "get-zipf" => (zipf.pick(&mut rng, KEYS) as u32, true),
                        "set-uniform" => (rng.below(KEYS) as u32, false),
                        _ => (zipf.pick(&mut rng, KEYS) as u32, rng.below(10) != 0),
                    })
                    .collect();
                let mut k = Vec::new();
                let mut out = [0u8; 128];
                let mut ops = 0u64;
                let mut next = 0usize;
                start.wait();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        let (id, get) = draws[next];
                        let id = u64::from(id);
                        next = (next + 1) % DRAWS;
                        key(&mut k, id);
                        if get {
                            // What a text get does: the value copied out
                            // under the lock.
                            let r = store.get_with(&k, GetOpts::default(), |f| {
                                let mut n = 0;
                                for p in f.parts() {
                                    let m = p.len().min(out.len() - n);
                                    out[n..n + m].copy_from_slice(&p[..m]);
                                    n += m;
                                }
                                n
                            });
                            std::hint::black_box(r.ok());
                        } else {
                            let r = store.store(&StoreReq {
                                key: &k,
                                value: &value,
                                ..StoreReq::default()
                            });
                            debug_assert_eq!(r.outcome, StoreOutcome::Stored);
                        }
                    }
                    ops += 256;
                }
                ops
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(a.seconds));
    stop.store(true, Ordering::Relaxed);
    let per: Vec<u64> = handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "a thread panicked".to_string()))
        .collect::<Result<_, _>>()?;
    let secs = t0.elapsed().as_secs_f64();
    let total: u64 = per.iter().sum();
    let rate = total as f64 / secs;
    if a.json {
        let per_thread: Vec<f64> = per.iter().map(|&n| n as f64 / secs).collect();
        println!(
            "{}",
            serde_json::json!({
                "workload": a.workload,
                "threads": a.threads,
                "seconds": secs,
                "ops_per_sec": rate,
                "ops_per_sec_per_thread": per_thread,
            })
        );
    } else {
        println!(
            "{} x{}: {:.0} ops/s in all, {:.0} per thread",
            a.workload,
            a.threads,
            rate,
            rate / a.threads as f64
        );
    }
    Ok(())
}

/// The policy's hit ratio, in-process: -m 64, get, and set on a miss.
fn lookaside(a: &StoreArgs) -> Result<(), String> {
    let onehit = match a.workload.as_str() {
        "lookaside-zipf" => 0.0,
        "lookaside-onehit" => 0.3,
        w => return Err(format!("unknown workload {w:?}")),
    };
    let store = Store::new(
        Config {
            small_percent: a.small_percent,
            ..Config::default()
        },
        Arc::new(Clock::new()),
    );
    let (keys, requests) = (2_000_000u64, 3_000_000u64);
    let zipf = Popularity::zipf(1.0, keys);
    let mut rng = Rng::new(42);
    let mut fresh = keys;
    let value = vec![b'v'; 500];
    let mut k = Vec::new();
    let mut hits = 0u64;
    for _ in 0..requests {
        let id = if rng.unit() < onehit {
            fresh += 1;
            fresh
        } else {
            zipf.pick(&mut rng, keys)
        };
        key(&mut k, id);
        if store.get_with(&k, GetOpts::default(), |_| ()).is_ok() {
            hits += 1;
        } else {
            let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
            let size = 100 + (h % 401) as usize;
            store.store(&StoreReq {
                mode: Mode::Set,
                key: &k,
                value: &value[..size],
                ..StoreReq::default()
            });
        }
    }
    let ratio = hits as f64 / requests as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"workload": a.workload, "small_percent": a.small_percent, "hit_ratio": ratio})
        );
    } else {
        println!(
            "{} (small queue {}%): hit ratio {ratio:.4}",
            a.workload, a.small_percent
        );
    }
    Ok(())
}
