//! The expiry scenarios of `compare`:
//!
//! - `expiry`: short-TTL churn through several times `-m`, with long-TTL
//!   items written first and read back last: are live items lost, is
//!   anything evicted, does `curr_items` count only live items?
//! - `expiry-cost`: 10^4, 10^5 and 10^6 items expiring in one second:
//!   server CPU per item reclaimed (O(1) means flat).
//! - `expiry-latency`: get latency second by second, open loop, around a
//!   second in which 10^6 items expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::compare::{
    alternate, check, fig, s, start_side, Better, Ctx, Figures, RunResult, ScenarioResult,
};
use crate::dist::SizeRange;
use crate::load::{self, Config, KeyMode};
use crate::servers::{Running, ServerSpec};

pub(crate) fn scenario(ctx: &Ctx, name: &str, runs: usize) -> Result<ScenarioResult, String> {
    match name {
        "expiry" => {
            let flags = s(&["-m", "64"]);
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                "-m 64: 10,000 long-TTL items (1 hour, 100 B), then distinct items of 300-700 B with TTLs of 2-5 s, written for 30 s at a steady rate that keeps about half of -m live (about 4 x -m written in all); curr_items compared with the live items the generator counts; then every long-TTL item is read back",
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| expiry_run(ctx, side, &f2),
            )
        }
        "expiry-cost" => {
            let flags = s(&["-m", "1024"]);
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                "-m 1024: 10^4, then 10^5, then 10^6 items (12 B keys, 20 B values) all expiring in one second; the server's CPU time (all threads, /proc schedstat), and that of the thread that reclaims (memcrab: expiry, memcached: mc-itemcrawler), from the end of the fill until 3 s past that second, less their idle CPU over as long, per item reclaimed (crawler_reclaimed, which memcrab's expiry wheel also counts)",
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| cost_run(ctx, side, &f2),
            )
        }
        "expiry-latency" => {
            let flags = s(&["-m", "1024"]);
            let f2 = flags.clone();
            let mut r = alternate(
                ctx,
                name,
                &format!("-m 1024: 10^6 items expiring in one second T, and 10,000 items without TTL; open-loop gets of those at {LATENCY_RATE}/s over 20 connections from T-4 to T+3, latency kept by second of intended send; quiet = median of the seconds T-4..T-2, expiry = the worse of T and T+1"),
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| latency_run(ctx, side, &f2),
            )?;
            r.notes.push(
                "memcrab's reaper runs when its clock turns to T (within 250 ms of the wall-clock second); memcached reclaims when its LRU crawler gets to it".into(),
            );
            Ok(r)
        }
        other => Err(format!("unknown scenario {other}")),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps until unix time `t`.
fn sleep_until(t: f64) {
    let d = t - unix_now();
    if d > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(d));
    }
}

fn expiry_run(ctx: &Ctx, side: &ServerSpec, flags: &[String]) -> RunResult {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let limit = 64u64 << 20;
    let long_keys = 10_000u64;
    let long = Config {
        get_ratio: 0.0,
        key_mode: KeyMode::Sequential {
            start: 0,
            end: Some(long_keys),
        },
        key_size: "12".parse()?,
        value_size: "100".parse()?,
        ttl: SizeRange {
            min: 3600,
            max: 3600,
        },
        connections: 4,
        pipeline: 16,
        duration: Duration::from_secs(60),
        verify: false,
        ..ctx.base_load(srv.addr)
    };
    let o = load::run(&long).map_err(|e| format!("{}: {e}", side.name))?;
    check(&o, 0.0, "long-TTL writes")?;
    // Short-TTL churn: live keys and values ~ rate x mean TTL ~ limit / 2.
    let value_size: SizeRange = "300-700".parse()?;
    let ttl = SizeRange { min: 2, max: 5 };
    let item = 12.0 + value_size.mean();
    let rate = (limit as f64 / 2.0) / ttl.mean() / item;
    let churn = Config {
        get_ratio: 0.0,
        key_mode: KeyMode::Sequential {
            start: 1_000_000,
            end: None,
        },
        key_size: "12".parse()?,
        value_size,
        ttl,
        rate: Some(rate),
        max_set_bytes: Some(10 * limit),
        connections: 8,
        duration: Duration::from_secs(30),
        verify: false,
        track_expiry: true,
        ..ctx.base_load(srv.addr)
    };
    let o = load::run(&churn).map_err(|e| format!("{}: {e}", side.name))?;
    check(&o, ctx.args.max_error_rate, "short-TTL writes")?;
    let end = unix_now() as u64;
    let curr = srv.stat_u64("curr_items")?;
    let evictions = srv.stat_u64("evictions")?;
    // Live now by the generator's count: those expiring after this second.
    let live_short: u64 = o.expiries.range(end + 1..).map(|(_, n)| n).sum();
    let recent: u64 = o
        .expiries
        .range(end.saturating_sub(1)..=end)
        .map(|(_, n)| n)
        .sum();
    // Read every long-TTL key back.
    let read = Config {
        key_size: "12".parse()?,
        ..ctx.base_load(srv.addr)
    };
    let lost = count_missing(&read, long_keys)?;
    let live = long_keys - lost + live_short;
    // Six seconds on, every short-TTL item has expired.
    std::thread::sleep(Duration::from_secs(6));
    let curr_after = srv.stat_u64("curr_items")?;
    Ok(Ok((
        vec![
            fig("evictions", "items", Better::Lower, evictions as f64),
            fig("long-TTL items lost", "items", Better::Lower, lost as f64),
            fig(
                "curr_items at the end of writes",
                "items",
                Better::Lower,
                curr as f64,
            ),
            fig(
                "live items then (generator's count)",
                "items",
                Better::Higher,
                live as f64,
            ),
            fig(
                "curr_items minus live items",
                "items",
                Better::Lower,
                curr as f64 - live as f64,
            ),
            fig(
                "items that expired in the last 2 s of writes",
                "items",
                Better::Lower,
                recent as f64,
            ),
            fig(
                "expired items counted 6 s after the last write",
                "items",
                Better::Lower,
                curr_after.saturating_sub(long_keys - lost) as f64,
            ),
            fig(
                "short-TTL data written",
                "x -m",
                Better::Higher,
                o.set_bytes as f64 / limit as f64,
            ),
        ],
        None,
    )))
}

/// Writes keys `start..start + n` (12 B keys, 20 B values) with the
/// absolute exptime `at` (a unix time), noreply over 8 connections.
fn fill_expiring(srv: &Running, ctx: &Ctx, start: u64, n: u64, at: u64) -> Result<(), String> {
    let cfg = Config {
        get_ratio: 0.0,
        key_mode: KeyMode::Sequential {
            start,
            end: Some(start + n),
        },
        key_size: "12".parse()?,
        value_size: "20".parse()?,
        ttl: SizeRange {
            min: at as usize,
            max: at as usize,
        },
        noreply: true,
        connections: 8,
        duration: Duration::from_secs(300),
        verify: false,
        ..ctx.base_load(srv.addr)
    };
    let o = load::run(&cfg).map_err(|e| format!("fill: {e}"))?;
    check(&o, 0.0, "fill")
}

/// The thread that frees expired items in the background: memcrab's
/// reaper, memcached's LRU crawler.
fn reaper_thread(side: &ServerSpec) -> &'static str {
    if side.is_memcached() {
        "mc-itemcrawler"
    } else {
        "expiry"
    }
}

/// The stat that counts items freed in the background after expiring
/// (memcrab's expiry wheel counts in memcached's crawler field).
fn reclaimed(srv: &Running, _side: &ServerSpec) -> Result<u64, String> {
    srv.stat_u64("crawler_reclaimed")
}

fn cost_run(ctx: &Ctx, side: &ServerSpec, flags: &[String]) -> RunResult {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    // Idle CPU per second (clock, maintainer threads), to take off.
    let thread = reaper_thread(side);
    let (c0, r0, t0) = (srv.cpu_ns(), srv.thread_cpu_ns(thread), unix_now());
    std::thread::sleep(Duration::from_secs(3));
    let el = unix_now() - t0;
    let idle_per_s = (srv.cpu_ns() - c0) as f64 / el;
    let reaper_idle_per_s = (srv.thread_cpu_ns(thread) - r0) as f64 / el;
    let mut figures: Figures = vec![
        fig("idle CPU", "ms/s", Better::Lower, idle_per_s / 1e6),
        fig(
            "idle CPU of the reaper thread",
            "ms/s",
            Better::Lower,
            reaper_idle_per_s / 1e6,
        ),
    ];
    let mut start = 0;
    for (n, label) in [(10_000u64, "10^4"), (100_000, "10^5"), (1_000_000, "10^6")] {
        // Far enough ahead for the fill to end a second before.
        let at = unix_now().ceil() as u64 + 3 + n / 100_000;
        fill_expiring(&srv, ctx, start, n, at)?;
        start += n;
        let t0 = unix_now();
        if t0 > at as f64 - 1.0 {
            return Err(format!(
                "{}: the fill of {n} items ended too late",
                side.name
            ));
        }
        let (c0, th0, r0) = (
            srv.cpu_ns(),
            srv.thread_cpu_ns(thread),
            reclaimed(&srv, side)?,
        );
        sleep_until(at as f64 + 3.0);
        let (c1, th1, t1) = (srv.cpu_ns(), srv.thread_cpu_ns(thread), unix_now());
        let got = reclaimed(&srv, side)? - r0;
        let cpu = (c1 - c0) as f64 - idle_per_s * (t1 - t0);
        let thread_cpu = (th1 - th0) as f64 - reaper_idle_per_s * (t1 - t0);
        figures.push(fig(
            &format!("items reclaimed within 3 s, {label} expiring"),
            "items",
            Better::Higher,
            got as f64,
        ));
        let per = |ns: f64| {
            if got == 0 {
                f64::NAN
            } else {
                ns.max(0.0) / got as f64 / 1e3
            }
        };
        figures.push(fig(
            &format!("server CPU per item reclaimed, {label} expiring"),
            "us",
            Better::Lower,
            per(cpu),
        ));
        figures.push(fig(
            &format!("reaper thread CPU per item reclaimed, {label} expiring"),
            "us",
            Better::Lower,
            per(thread_cpu),
        ));
    }
    Ok(Ok((figures, None)))
}

/// Gets per second in the latency scenario.
const LATENCY_RATE: u64 = 40_000;

fn latency_run(ctx: &Ctx, side: &ServerSpec, flags: &[String]) -> RunResult {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let hot = 10_000u64;
    let gets = Config {
        get_ratio: 1.0,
        keys: hot,
        key_size: "12".parse()?,
        value_size: "100".parse()?,
        connections: 20,
        rate: Some(LATENCY_RATE as f64),
        duration: Duration::from_secs(300),
        verify: true,
        ..ctx.base_load(srv.addr)
    };
    crate::prefill(&gets)?;
    let at = unix_now().ceil() as u64 + 16;
    fill_expiring(&srv, ctx, 10_000_000, 1_000_000, at)?;
    if unix_now() > at as f64 - 5.0 {
        return Err(format!("{}: the fill ended too late", side.name));
    }
    let r0 = reclaimed(&srv, side)?;
    // One open-loop run from T-4 to T+3, latency kept per second of send.
    sleep_until(at as f64 - 4.0);
    let cfg = Config {
        duration: Duration::from_secs_f64(at as f64 + 3.0 - unix_now()),
        latency_by_second: true,
        ..gets
    };
    let o = load::run(&cfg).map_err(|e| format!("{}: {e}", side.name))?;
    check(&o, ctx.args.max_error_rate, &side.name)?;
    let mut p999 = Vec::new();
    let mut p99 = Vec::new();
    for k in -4i64..=2 {
        let l = o
            .by_second
            .get(&((at as i64 + k) as u64))
            .map(|l| l.summary())
            .ok_or_else(|| format!("{}: no gets sent in second T{k:+}", side.name))?;
        p999.push(l.p999);
        p99.push(l.p99);
    }
    let got = reclaimed(&srv, side)? - r0;
    let median3 = |v: &[f64]| {
        let mut q = v[..3].to_vec();
        q.sort_by(f64::total_cmp);
        q[1]
    };
    let (quiet999, quiet99) = (median3(&p999), median3(&p99));
    let (exp999, exp99) = (p999[4].max(p999[5]), p99[4].max(p99[5]));
    let mut figures = vec![
        fig("p99.9, quiet second", "ms", Better::Lower, quiet999),
        fig("p99.9, expiry second", "ms", Better::Lower, exp999),
        fig(
            "p99.9 expiry / quiet",
            "x",
            Better::Lower,
            exp999 / quiet999.max(1e-9),
        ),
        fig("p99, quiet second", "ms", Better::Lower, quiet99),
        fig("p99, expiry second", "ms", Better::Lower, exp99),
        fig(
            "items reclaimed by T+3",
            "items",
            Better::Higher,
            got as f64,
        ),
    ];
    for (k, v) in (-4i64..=2).zip(&p999) {
        figures.push(fig(&format!("p99.9 at T{k:+}"), "ms", Better::Lower, *v));
    }
    Ok(Ok((figures, None)))
}

/// Gets keys 0..n one by one and counts the misses.
fn count_missing(cfg: &Config, n: u64) -> Result<u64, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(cfg.server).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut missing = 0;
    let mut key = Vec::new();
    let mut chunk = 0;
    while chunk < n {
        let end = (chunk + 100).min(n);
        let mut req = b"get".to_vec();
        for k in chunk..end {
            crate::dist::key(k, cfg.key_size, &mut key);
            req.push(b' ');
            req.extend_from_slice(&key);
        }
        req.extend_from_slice(b"\r\n");
        s.write_all(&req).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 65536];
        let hits = loop {
            if let Some((crate::reply::Reply::Values(v), _)) =
                crate::reply::parse(&buf, crate::reply::Expect::Values, false)
            {
                break v.len() as u64;
            }
            let k = s.read(&mut tmp).map_err(|e| e.to_string())?;
            if k == 0 {
                return Err("server closed the connection".into());
            }
            buf.extend_from_slice(&tmp[..k]);
        };
        missing += (end - chunk) - hits;
        chunk = end;
    }
    Ok(missing)
}
