//! The memory-bound scenarios of `compare`: clients that send part of a
//! request and stall, or never read, as a hostile or broken client would.
//! Each reports the server's resident memory before, at its peak, while
//! the clients hold on and after they leave, and the latency another
//! client sees meanwhile.
//!
//! - `hostile-partial-values`: `-m 64`; 2,000 connections each send the
//!   head of a 1,000,000-byte `set` and half its value, then stall.
//! - `hostile-large-values`: `-m 256 -I 128m`; 20 connections each
//!   declare a 100 MB value and send 30 MB of it.
//! - `slowloris`: `-m 64`; 5,000 connections send a `get` a byte at a
//!   time (every 0.3 s), then read their reply.
//! - `unread-replies`: `-m 64 -c 12000`; 8,000 connections each ask for
//!   100 keys of 1 KB and do not read.
//! - `unread-pipelined`: `-m 64 -c 1100`; 1,000 connections each send
//!   3,000 pipelined gets of 1 KB values (3 MB of replies, more than the
//!   kernel's socket buffers take) and do not read.
//! - `large-stores-concurrent`: `-m 1024 -I 128m`; 20 connections each
//!   send the header of a 50 MB `set`, then (all headers in) the value:
//!   all fit `-m`, so an honest server stores all 20.
//! - `connection-burst`: `-m 64 -c 12000`, 50,000 items of 1 KB; 8,000
//!   connections opened by 8 threads as fast as they can, each sending a
//!   `get` of 100 keys and reading nothing, while another client does a
//!   get every 2 ms: its worst and p99 round trip during the burst, the
//!   time to connect all 8,000 and the slowest connect. (On a 2-core
//!   machine the openers share the probe's core: its figures then
//!   include waiting for it.)
//! - `connection-burst-paced`: the same 8,000 opened over 3 s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::compare::{alternate, fig, s, start_side, Better, Ctx, RunResult, ScenarioResult};
use crate::servers::{Running, ServerSpec};

pub(crate) const NAMES: &[&str] = &[
    "hostile-partial-values",
    "hostile-large-values",
    "slowloris",
    "unread-replies",
    "unread-pipelined",
    "large-stores-concurrent",
    "connection-burst",
    "connection-burst-paced",
];

pub(crate) fn scenario(ctx: &Ctx, name: &str, runs: usize) -> Result<ScenarioResult, String> {
    let (flags, what): (Vec<String>, &str) = match name {
        "hostile-partial-values" => (
            s(&["-m", "64", "-c", "2100"]),
            "2,000 connections each send the head of a 1,000,000-byte set and 500,000 bytes of its value, then stall",
        ),
        "hostile-large-values" => (
            s(&["-m", "256", "-I", "128m"]),
            "20 connections each declare a 100,000,000-byte value and send 30,000,000 bytes of it, then stall",
        ),
        "slowloris" => (
            s(&["-m", "64", "-c", "5100"]),
            "5,000 connections each send `get slowloriskey` one byte every 0.3 s, then read the reply",
        ),
        "unread-replies" => (
            s(&["-m", "64", "-c", "12000"]),
            "100 keys of 1 KB set; 8,000 connections each send one get of all 100 keys and never read",
        ),
        "unread-pipelined" => (
            s(&["-m", "64", "-c", "1100"]),
            "100 keys of 1 KB set; 1,000 connections each send 3,000 pipelined gets of one key (3 MB of replies) and never read",
        ),
        "large-stores-concurrent" => (
            s(&["-m", "1024", "-I", "128m"]),
            "20 connections each send the header of a 50,000,000-byte set, then (every header in) its value",
        ),
        "connection-burst" => (
            s(&["-m", "64", "-c", "12000"]),
            "50,000 keys of 1 KB set; 8,000 connections opened by 8 threads as fast as they can, each sending a get of 100 keys and never reading",
        ),
        "connection-burst-paced" => (
            s(&["-m", "64", "-c", "12000"]),
            "50,000 keys of 1 KB set; 8,000 connections opened by 8 threads over 3 s, each sending a get of 100 keys and never reading",
        ),
        other => return Err(format!("unknown scenario {other}")),
    };
    let f2 = flags.clone();
    let name2 = name.to_string();
    if name == "large-stores-concurrent" || name.starts_with("connection-burst") {
        let what = if name.starts_with("connection-burst") {
            format!(
                "{what}; another client's get every 2 ms from before the burst to 0.5 s after it"
            )
        } else {
            format!("{what}; stores answered STORED, peak RSS")
        };
        return alternate(
            ctx,
            name,
            &what,
            flags,
            runs,
            &move |ctx: &Ctx, side: &ServerSpec| {
                if name2.starts_with("connection-burst") {
                    let spread =
                        (name2 == "connection-burst-paced").then_some(Duration::from_secs(3));
                    burst_run(ctx, side, &f2, spread)
                } else {
                    large_stores_run(ctx, side, &f2)
                }
            },
        );
    }
    let name2 = name.to_string();
    alternate(
        ctx,
        name,
        &format!("{what}; RSS before, at peak, while they hold on, and 2 s after they close; another client's get round trips meanwhile"),
        flags,
        runs,
        &move |ctx: &Ctx, side: &ServerSpec| run(ctx, side, &f2, &name2),
    )
}

fn rss_mb(srv: &Running) -> (f64, f64) {
    let (hwm, rss) = srv.rss();
    (hwm as f64 / 1048576.0, rss as f64 / 1048576.0)
}

/// One `get probe` round trip, in ms.
fn probe_get(c: &mut TcpStream) -> Result<f64, String> {
    let mut buf = [0u8; 256];
    let t = Instant::now();
    c.write_all(b"get probe\r\n").map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    while !got.ends_with(b"END\r\n") {
        let k = c.read(&mut buf).map_err(|e| format!("probe: {e}"))?;
        if k == 0 {
            return Err("probe: connection closed".into());
        }
        got.extend_from_slice(&buf[..k]);
    }
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// Another client's get round trips (median and worst, ms) over `n`.
fn probe(addr: SocketAddr, n: usize) -> Result<(f64, f64), String> {
    let mut c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(probe_get(&mut c)?);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[times.len() - 1]))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let c = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    c.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(c)
}

/// Sends `head` and `sent` bytes of value on `n` connections, in
/// `threads` threads (a refused value is swallowed, a held one read, so
/// every send completes unless the server stops reading).
fn stall_values(
    addr: SocketAddr,
    n: usize,
    size: usize,
    sent: usize,
    threads: usize,
) -> Result<Vec<TcpStream>, String> {
    let per = n.div_ceil(threads);
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || -> Result<Vec<TcpStream>, String> {
                let body = vec![b'x'; sent];
                let mut out = Vec::new();
                for i in t * per..((t + 1) * per).min(n) {
                    let mut c = connect(addr)?;
                    c.set_write_timeout(Some(Duration::from_secs(30)))
                        .map_err(|e| e.to_string())?;
                    c.write_all(format!("set hostile{i} 0 0 {size}\r\n").as_bytes())
                        .map_err(|e| e.to_string())?;
                    // A server that stops reading (memcached's item memory
                    // full) leaves the rest in the socket: not an error.
                    let _ = c.write_all(&body);
                    out.push(c);
                }
                Ok(out)
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().map_err(|_| "sender panicked".to_string())??);
    }
    Ok(all)
}

/// Sets `unread0` .. `unread99`, 1 KB each.
fn set_unread_keys(addr: SocketAddr) -> Result<(), String> {
    let mut c = connect(addr)?;
    let value = vec![b'v'; 1024];
    for k in 0..100 {
        c.write_all(format!("set unread{k} 0 0 1024\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        c.write_all(&value).map_err(|e| e.to_string())?;
        c.write_all(b"\r\n").map_err(|e| e.to_string())?;
        let mut b = [0u8; 8];
        c.read_exact(&mut b).map_err(|e| e.to_string())?;
        if &b != b"STORED\r\n" {
            return Err(format!("set unread{k}: {:?}", &b));
        }
    }
    Ok(())
}

fn run(ctx: &Ctx, side: &ServerSpec, flags: &[String], name: &str) -> RunResult {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let addr = srv.addr;
    {
        let mut c = connect(addr)?;
        c.write_all(b"set probe 0 0 5\r\nhello\r\n")
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 16];
        let _ = c.read(&mut b);
    }
    if name.starts_with("unread") {
        // The data the clients ask for is stored before "before": what
        // stays after they leave is then only what they cost.
        set_unread_keys(addr)?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_mb(&srv).1;
    let held: Vec<TcpStream> = match name {
        "hostile-partial-values" => stall_values(addr, 2000, 1_000_000, 500_000, 4)?,
        "hostile-large-values" => stall_values(addr, 20, 100_000_000, 30_000_000, 20)?,
        "slowloris" => {
            let mut conns = Vec::new();
            for _ in 0..5000 {
                conns.push(connect(addr)?);
            }
            let msg = b"get slowloriskey\r\n";
            for i in 0..msg.len() - 2 {
                for c in &mut conns {
                    c.write_all(&msg[i..i + 1]).map_err(|e| e.to_string())?;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            conns
        }
        "unread-pipelined" => {
            let mut gets = Vec::new();
            for k in 0..3000 {
                gets.extend_from_slice(format!("get unread{}\r\n", k % 100).as_bytes());
            }
            let mut conns = Vec::new();
            for _ in 0..1000 {
                let mut c = connect(addr)?;
                c.set_write_timeout(Some(Duration::from_secs(5)))
                    .map_err(|e| e.to_string())?;
                c.write_all(&gets).map_err(|e| e.to_string())?;
                conns.push(c);
            }
            conns
        }
        _ => {
            let mut get = b"get".to_vec();
            for k in 0..100 {
                get.extend_from_slice(format!(" unread{k}").as_bytes());
            }
            get.extend_from_slice(b"\r\n");
            let mut conns = Vec::new();
            for _ in 0..8000 {
                let mut c = connect(addr)?;
                c.write_all(&get).map_err(|e| e.to_string())?;
                conns.push(c);
            }
            conns
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    let holding = rss_mb(&srv).1;
    let (p50, worst) = probe(addr, 200)?;
    if name == "slowloris" {
        let mut conns = held;
        for c in &mut conns {
            c.write_all(b"\r\n").map_err(|e| e.to_string())?;
        }
        for c in &mut conns {
            c.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 16];
            let k = c
                .read(&mut b)
                .map_err(|e| format!("slowloris reply: {e}"))?;
            if &b[..k] != b"END\r\n" {
                return Err(format!("slowloris reply {:?}", &b[..k]));
            }
        }
    } else {
        drop(held);
    }
    std::thread::sleep(Duration::from_secs(2));
    let (peak, after) = rss_mb(&srv);
    Ok(Ok((
        vec![
            fig("server RSS before", "MB", Better::Lower, before),
            fig("server peak RSS", "MB", Better::Lower, peak),
            fig(
                "server RSS while the clients hold on",
                "MB",
                Better::Lower,
                holding,
            ),
            fig(
                "server RSS 2 s after they leave",
                "MB",
                Better::Lower,
                after,
            ),
            fig("another client's get, median", "ms", Better::Lower, p50),
            fig("another client's get, worst", "ms", Better::Lower, worst),
            fig(
                "stores refused for memory (store_no_memory)",
                "stores",
                Better::Lower,
                srv.stat_u64("store_no_memory").unwrap_or(0) as f64,
            ),
        ],
        None,
    )))
}

/// 20 concurrent 50 MB stores: how many are stored, peak RSS.
fn large_stores_run(ctx: &Ctx, side: &ServerSpec, flags: &[String]) -> RunResult {
    const N: usize = 20;
    const SIZE: usize = 50_000_000;
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let addr = srv.addr;
    let heads = std::sync::Arc::new(std::sync::Barrier::new(N));
    let t0 = Instant::now();
    let clients: Vec<_> = (0..N)
        .map(|i| {
            let heads = std::sync::Arc::clone(&heads);
            std::thread::spawn(move || -> Result<Vec<u8>, String> {
                let mut c = connect(addr)?;
                c.set_read_timeout(Some(Duration::from_secs(120)))
                    .map_err(|e| e.to_string())?;
                c.write_all(format!("set large{i} 0 0 {SIZE}\r\n").as_bytes())
                    .map_err(|e| e.to_string())?;
                heads.wait();
                std::thread::sleep(Duration::from_millis(100));
                let mut value = vec![b'a' + i as u8; SIZE];
                value.extend_from_slice(b"\r\n");
                // A refusal comes before the value is read; the server
                // swallows the rest, so the write completes either way.
                c.write_all(&value).map_err(|e| e.to_string())?;
                let mut got = Vec::new();
                let mut b = [0u8; 128];
                while !got.ends_with(b"\r\n") {
                    let k = c.read(&mut b).map_err(|e| format!("reply: {e}"))?;
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&b[..k]);
                }
                Ok(got)
            })
        })
        .collect();
    let mut stored = 0;
    for c in clients {
        let got = c.join().map_err(|_| "client panicked".to_string())??;
        if got.starts_with(b"STORED\r\n") {
            stored += 1;
        }
    }
    let took = t0.elapsed().as_secs_f64();
    let (peak, _) = rss_mb(&srv);
    Ok(Ok((
        vec![
            fig(
                "stores answered STORED",
                "of 20",
                Better::Higher,
                stored as f64,
            ),
            fig("server peak RSS", "MB", Better::Lower, peak),
            fig("time for all 20", "s", Better::Lower, took),
        ],
        None,
    )))
}

/// A burst of 8,000 connections that do not read: another client's get
/// latency meanwhile, and the time to connect them all.
fn burst_run(
    ctx: &Ctx,
    side: &ServerSpec,
    flags: &[String],
    spread: Option<Duration>,
) -> RunResult {
    const CONNS: usize = 8000;
    const THREADS: usize = 8;
    const KEYS: usize = 50_000;
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let addr = srv.addr;
    {
        // 50,000 keys of 1 KB, pipelined with noreply, then one round trip.
        let mut c = connect(addr)?;
        let value = vec![b'v'; 1024];
        let mut batch = Vec::new();
        for k in 0..KEYS {
            batch.extend_from_slice(format!("set burst{k} 0 0 1024 noreply\r\n").as_bytes());
            batch.extend_from_slice(&value);
            batch.extend_from_slice(b"\r\n");
            if batch.len() > 1 << 20 {
                c.write_all(&batch).map_err(|e| e.to_string())?;
                batch.clear();
            }
        }
        batch.extend_from_slice(b"set probe 0 0 5\r\nhello\r\n");
        c.write_all(&batch).map_err(|e| e.to_string())?;
        let mut b = [0u8; 16];
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let k = c.read(&mut b).map_err(|e| e.to_string())?;
        if &b[..k] != b"STORED\r\n" {
            return Err(format!("setting the keys: {:?}", &b[..k]));
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let prober = std::thread::spawn(move || -> Result<Vec<f64>, String> {
        let mut c = connect(addr)?;
        c.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut times = Vec::new();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            times.push(probe_get(&mut c)?);
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(times)
    });
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = srv.cpu_seconds();
    // Paced: connection j at `spread` x j / 8,000, over the threads.
    let t0 = Instant::now();
    let openers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || -> Result<(Vec<TcpStream>, f64), String> {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                let mut out = Vec::with_capacity(CONNS / THREADS);
                let mut slowest = 0f64;
                for i in 0..CONNS / THREADS {
                    let j = i * THREADS + t;
                    if let Some(spread) = spread {
                        let due = t0 + spread.mul_f64(j as f64 / CONNS as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let mut get = b"get".to_vec();
                    for _ in 0..100 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        get.extend_from_slice(format!(" burst{}", rng % KEYS as u64).as_bytes());
                    }
                    get.extend_from_slice(b"\r\n");
                    let c0 = Instant::now();
                    let mut c = connect(addr)?;
                    slowest = slowest.max(c0.elapsed().as_secs_f64() * 1e3);
                    c.write_all(&get).map_err(|e| e.to_string())?;
                    out.push(c);
                }
                Ok((out, slowest))
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut slowest = 0f64;
    for o in openers {
        let (conns, worst) = o.join().map_err(|_| "opener panicked".to_string())??;
        held.extend(conns);
        slowest = slowest.max(worst);
    }
    let connect_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_ms = (srv.cpu_seconds() - cpu0) * 1e3;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut times = prober.join().map_err(|_| "probe panicked".to_string())??;
    let (peak, _) = rss_mb(&srv);
    drop(held);
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    Ok(Ok((
        vec![
            fig("another client's get, worst", "ms", Better::Lower, at(1.0)),
            fig("another client's get, p99", "ms", Better::Lower, at(0.99)),
            fig("another client's get, median", "ms", Better::Lower, at(0.5)),
            fig(
                if spread.is_some() {
                    "time to connect 8,000 (paced over 3 s)"
                } else {
                    "time to connect 8,000 (8 threads at once)"
                },
                "s",
                Better::Lower,
                connect_s,
            ),
            fig("slowest connect", "ms", Better::Lower, slowest),
            fig(
                "server CPU per connection (its first request included)",
                "us",
                Better::Lower,
                cpu_ms * 1e3 / CONNS as f64,
            ),
            fig("server peak RSS", "MB", Better::Lower, peak),
        ],
        None,
    )))
}
