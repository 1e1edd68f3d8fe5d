//! Hit ratio: a look-aside client (get; on a miss, set) replaying a trace
//! against one server, and the `compare` scenarios built on it.
//!
//! ```text
//!  Trace (zipf | zipf with one-hit wonders | oracleGeneral file | CSV file)
//!    ─► (key id, size) ─► batches of pipelined `get`s ─► replies parsed
//!    ─► a `set ... noreply` for each miss ─► hits / requests
//! ```
//! A batch stands for requests made one after another: a key that misses
//! and is asked for again later in the same batch counts as a hit the
//! second time (a client that waited for each reply would have stored it
//! in between), and is set once.
//! Traces in libCacheSim's formats let users replay their own:
//! `oracleGeneral` is binary, 24 bytes a request (u32 time, u64 object id,
//! u32 size, i64 next access, little-endian); CSV is `time,id,size` a
//! line (a header line and further columns are skipped).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use crate::dist::{Popularity, Rng};

/// Requests in flight per batch.
const BATCH: usize = 64;

/// Where the requests come from.
pub enum Trace {
    /// Zipf `skew` over `keys` keys; with probability `onehit` a request
    /// is instead for a key never asked for before or after.
    Zipf {
        skew: f64,
        keys: u64,
        onehit: f64,
        requests: u64,
        sizes: (usize, usize),
        seed: u64,
    },
    /// libCacheSim's oracleGeneral binary format.
    Oracle(PathBuf),
    /// `time,id,size` lines.
    Csv(PathBuf),
}

/// What a replay found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replay {
    pub requests: u64,
    pub hits: u64,
}

impl Replay {
    pub fn hit_ratio(&self) -> f64 {
        self.hits as f64 / self.requests.max(1) as f64
    }
}

/// A source of (key id, value size) requests.
fn requests(trace: &Trace) -> Result<Box<dyn Iterator<Item = (u64, usize)>>, String> {
    match trace {
        &Trace::Zipf {
            skew,
            keys,
            onehit,
            requests,
            sizes,
            seed,
        } => {
            let pop = Popularity::zipf(skew, keys);
            let mut rng = Rng::new(seed);
            let mut fresh = keys;
            Ok(Box::new((0..requests).map(move |_| {
                let id = if onehit > 0.0 && rng.unit() < onehit {
                    fresh += 1;
                    fresh
                } else {
                    pop.pick(&mut rng, keys)
                };
                (id, size_of(id, sizes))
            })))
        }
        Trace::Oracle(path) => {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut r = BufReader::new(f);
            Ok(Box::new(std::iter::from_fn(move || {
                let mut rec = [0u8; 24];
                r.read_exact(&mut rec).ok()?;
                let id = u64::from_le_bytes(rec[4..12].try_into().ok()?);
                let size = u32::from_le_bytes(rec[12..16].try_into().ok()?);
                Some((id, (size as usize).max(1)))
            })))
        }
        Trace::Csv(path) => {
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let lines = BufReader::new(f).lines();
            Ok(Box::new(lines.map_while(Result::ok).filter_map(|l| {
                let mut cols = l.split(',').map(str::trim);
                let _time = cols.next()?;
                let id: u64 = cols.next()?.parse().ok()?;
                let size: usize = cols.next()?.parse().ok()?;
                Some((id, size.max(1)))
            })))
        }
    }
}

/// A key's value size: fixed per key, uniform in `sizes`.
fn size_of(id: u64, (lo, hi): (usize, usize)) -> usize {
    let h = id.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    lo + (h % (hi - lo + 1) as u64) as usize
}

/// Replays `trace` at `addr` as a look-aside client. Values larger than
/// `max_value` are capped (memcached's `-I`).
pub fn replay(addr: SocketAddr, trace: &Trace, max_value: usize) -> Result<Replay, String> {
    let s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).ok();
    let mut w =
        std::io::BufWriter::with_capacity(1 << 16, s.try_clone().map_err(|e| e.to_string())?);
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut out = Replay::default();
    let mut batch: Vec<(u64, usize)> = Vec::with_capacity(BATCH);
    let mut it = requests(trace)?;
    let mut line = Vec::new();
    let value = vec![b'v'; max_value];
    loop {
        batch.clear();
        batch.extend(it.by_ref().take(BATCH));
        if batch.is_empty() {
            break;
        }
        for &(id, _) in &batch {
            write!(w, "get k{id}\r\n").map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
        let mut missed = Vec::new();
        let mut stored_now = std::collections::HashSet::new();
        for &(id, size) in &batch {
            line.clear();
            r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
            if line.starts_with(b"VALUE ") {
                let len: usize = std::str::from_utf8(&line)
                    .ok()
                    .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
                    .ok_or("a VALUE line without a length")?;
                let mut skip = vec![0u8; len + 2];
                r.read_exact(&mut skip).map_err(|e| e.to_string())?;
                line.clear();
                r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
                if line != b"END\r\n" {
                    return Err("no END after a value".into());
                }
                out.hits += 1;
            } else if line == b"END\r\n" {
                if stored_now.insert(id) {
                    missed.push((id, size.min(max_value)));
                } else {
                    out.hits += 1;
                }
            } else {
                return Err(format!(
                    "unexpected reply {:?}",
                    String::from_utf8_lossy(&line)
                ));
            }
            out.requests += 1;
        }
        for (id, size) in missed {
            write!(w, "set k{id} 0 0 {size} noreply\r\n").map_err(|e| e.to_string())?;
            w.write_all(&value[..size]).map_err(|e| e.to_string())?;
            w.write_all(b"\r\n").map_err(|e| e.to_string())?;
        }
    }
    // Every noreply set has landed once this answers.
    w.write_all(b"mn\r\n")
        .and_then(|_| w.flush())
        .map_err(|e| e.to_string())?;
    line.clear();
    r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hit_wonders_are_never_asked_twice() {
        let t = Trace::Zipf {
            skew: 1.0,
            keys: 1000,
            onehit: 0.3,
            requests: 20_000,
            sizes: (100, 500),
            seed: 1,
        };
        let mut fresh = std::collections::HashSet::new();
        let mut n_fresh = 0;
        for (id, size) in requests(&t).unwrap() {
            assert!((100..=500).contains(&size));
            if id >= 1000 {
                n_fresh += 1;
                assert!(fresh.insert(id), "key {id} asked twice");
            }
        }
        assert!((5_000..7_000).contains(&n_fresh), "{n_fresh}");
    }

    #[test]
    fn trace_files_are_read() {
        let dir = std::env::temp_dir().join(format!("hr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("t.oracleGeneral");
        let mut b = Vec::new();
        for (id, size) in [(7u64, 100u32), (9, 200), (7, 100)] {
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&size.to_le_bytes());
            b.extend_from_slice(&(-1i64).to_le_bytes());
        }
        std::fs::write(&bin, b).unwrap();
        let got: Vec<_> = requests(&Trace::Oracle(bin)).unwrap().collect();
        assert_eq!(got, vec![(7, 100), (9, 200), (7, 100)]);
        let csv = dir.join("t.csv");
        std::fs::write(&csv, "time,id,size\n1,5,10\n2,6,20,x\n").unwrap();
        let got: Vec<_> = requests(&Trace::Csv(csv)).unwrap().collect();
        assert_eq!(got, vec![(5, 10), (6, 20)]);
        std::fs::remove_dir_all(dir).ok();
    }
}
