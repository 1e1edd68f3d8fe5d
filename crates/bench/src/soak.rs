//! `soak`: a long mixed load against one memcrab, every value checked,
//! with RSS, CPU and latency sampled each second.
//!
//! ```text
//!  clients (threads, each its own keys and a model of them)
//!    sets 50 B .. 200 KB (the size mix shifts each phase: page moves),
//!    gets, 10-40 key multigets, deletes, items expiring in 1-4 s,
//!    a reconnect now and then (churn) ── every reply checked against the
//!    model: a hit must hold the last value set, a deleted key must miss
//!  sampler (1 s): VmRSS, CPU %, ops, latency p50/p99/max, evictions,
//!    slabs moved ── soak.csv; at the end soak.svg and a verdict:
//!    wrong values, or RSS in the last minute above the first minute
//!    after warm-up by more than --drift percent, fail it.
//! ```
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;

use crate::dist::Rng;
use crate::servers::{Running, ServerSpec};

#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// The server binary ("memcrab" beside this one, or a path).
    #[arg(long, default_value = "memcrab")]
    server: String,
    /// Seconds to run.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds of warm-up before RSS is judged (default: a fifth of the
    /// run, at most 120).
    #[arg(long)]
    warmup: Option<u64>,
    /// The server's -m, in MB.
    #[arg(long, default_value_t = 64)]
    memory: u64,
    /// Client threads (one connection each).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Keys per client.
    #[arg(long, default_value_t = 20_000)]
    keys: usize,
    /// Seconds per phase of the size mix.
    #[arg(long, default_value_t = 60)]
    phase: u64,
    /// Allowed RSS growth (percent) from the first minute after warm-up
    /// to the last minute.
    #[arg(long, default_value_t = 5.0)]
    drift: f64,
    /// More server flags, one at a time (`--flag=-o --flag=slab_automove=2`).
    #[arg(long = "flag", allow_hyphen_values = true)]
    flags: Vec<String>,
    /// Where soak.csv and soak.svg go.
    #[arg(long, default_value = "soak")]
    out: PathBuf,
}

/// What a client knows of one of its keys.
#[derive(Clone, Copy)]
enum Known {
    /// Never set, or expired for sure.
    Unknown,
    /// Set with this version and length; may be evicted (then missing).
    Set { version: u32, len: u32 },
    /// Set to expire; by then it may be gone, before it must be (or be
    /// evicted).
    Expiring { version: u32, len: u32 },
    /// Deleted: must miss.
    Deleted,
}

/// The value of `key` at `version`: its name, the version and bytes
/// derived from both, so any mix-up shows.
fn value(key: &str, version: u32, len: usize) -> Vec<u8> {
    let mut v = format!("{key}|{version}|").into_bytes();
    let mut rng = Rng::new(u64::from(version) ^ (key.len() as u64) << 32);
    while v.len() < len {
        v.push(b'a' + rng.below(26) as u8);
    }
    v.truncate(len);
    v
}

/// Value length for the phase: small-heavy and large-heavy phases
/// alternate, so pages must move between classes.
fn length(rng: &mut Rng, phase: u64) -> usize {
    let r = rng.below(100);
    let big = phase % 2 == 1;
    match (big, r) {
        (false, 0..=79) | (true, 0..=19) => 50 + rng.below(400) as usize,
        (false, 80..=97) | (true, 20..=79) => 1_000 + rng.below(15_000) as usize,
        _ => 50_000 + rng.below(150_000) as usize,
    }
}

struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
    wrong: AtomicU64,
    first_wrong: Mutex<Option<String>>,
    hist: Mutex<Histogram<u64>>,
    start: Instant,
    phase: u64,
}

impl Shared {
    fn wrong(&self, what: String) {
        self.wrong.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_wrong.lock().unwrap();
        if f.is_none() {
            eprintln!("soak: WRONG: {what}");
            *f = Some(what);
        }
    }
}

/// The VALUE blocks of a reply: (key, data).
type Values = Vec<(String, Vec<u8>)>;

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn { s, buf: Vec::new() })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    fn line(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(p) = memchr::memmem::find(&self.buf, b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..p + 2);
                return Ok(l);
            }
            self.fill()?;
        }
    }

    fn data(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n + 2 {
            self.fill()?;
        }
        let v = self.buf[..n].to_vec();
        self.buf.drain(..n + 2);
        Ok(v)
    }

    /// Reads VALUE blocks up to END: (key, data).
    fn values(&mut self) -> std::io::Result<Result<Values, String>> {
        let mut out = Vec::new();
        loop {
            let l = self.line()?;
            if l == "END" {
                return Ok(Ok(out));
            }
            let t: Vec<&str> = l.split(' ').collect();
            if t.len() != 4 || t[0] != "VALUE" {
                return Ok(Err(format!("unexpected line {l:?}")));
            }
            let n: usize = t[3].parse().unwrap_or(0);
            let d = self.data(n)?;
            out.push((t[1].to_string(), d));
        }
    }
}

fn client(id: usize, addr: SocketAddr, keys: usize, sh: Arc<Shared>) {
    let mut rng = Rng::new(id as u64 + 1);
    let mut model = vec![Known::Unknown; keys];
    // When an Expiring key is sure to be gone (its exptime passed, with a
    // second of the server's clock to spare).
    let mut gone_at: HashMap<usize, Instant> = HashMap::new();
    let mut version = 0u32;
    let name = |k: usize| format!("c{id}:{k}");
    let mut conn = match Conn::open(addr) {
        Ok(c) => c,
        Err(e) => return sh.wrong(format!("client {id}: connect: {e}")),
    };
    while !sh.stop.load(Ordering::Relaxed) {
        let k = rng.below(keys as u64) as usize;
        let phase = sh.start.elapsed().as_secs() / sh.phase;
        let t = Instant::now();
        let r: std::io::Result<()> = (|| {
            match rng.below(100) {
                0..=54 => {
                    // get
                    conn.s
                        .write_all(format!("get {}\r\n", name(k)).as_bytes())?;
                    match conn.values()? {
                        Ok(v) => check(&sh, &name, &model, &gone_at, k, v.first()),
                        Err(e) => sh.wrong(e),
                    }
                }
                55..=79 => {
                    // set, a quarter of them expiring in 1-4 s
                    let expiring = rng.below(100) >= 75;
                    let len = length(&mut rng, phase);
                    version += 1;
                    let ttl = if expiring { 1 + rng.below(4) } else { 0 };
                    let mut req = format!("set {} 0 {ttl} {len}\r\n", name(k)).into_bytes();
                    req.extend_from_slice(&value(&name(k), version, len));
                    req.extend_from_slice(b"\r\n");
                    conn.s.write_all(&req)?;
                    let l = conn.line()?;
                    match l.as_str() {
                        "STORED" => {
                            model[k] = if expiring {
                                gone_at.insert(k, Instant::now() + Duration::from_secs(ttl + 2));
                                Known::Expiring {
                                    version,
                                    len: len as u32,
                                }
                            } else {
                                gone_at.remove(&k);
                                Known::Set {
                                    version,
                                    len: len as u32,
                                }
                            };
                        }
                        // Memory is full of items readers hold: the old
                        // value is gone (memcached drops it too).
                        "SERVER_ERROR out of memory storing object" => {
                            model[k] = Known::Deleted;
                        }
                        other => sh.wrong(format!("set {}: {other:?}", name(k))),
                    }
                }
                80..=87 => {
                    // multiget of 10-40 keys
                    let n = 10 + rng.below(31) as usize;
                    let ks: Vec<usize> = (0..n).map(|_| rng.below(keys as u64) as usize).collect();
                    let mut req = b"get".to_vec();
                    for &k in &ks {
                        req.extend_from_slice(format!(" {}", name(k)).as_bytes());
                    }
                    req.extend_from_slice(b"\r\n");
                    conn.s.write_all(&req)?;
                    match conn.values()? {
                        Ok(vals) => {
                            let mut vals = vals.into_iter().peekable();
                            for &k in &ks {
                                let hit = vals.next_if(|(key, _)| *key == name(k));
                                check(&sh, &name, &model, &gone_at, k, hit.as_ref());
                            }
                            if let Some((key, _)) = vals.next() {
                                sh.wrong(format!("multiget: {key} out of order"));
                            }
                        }
                        Err(e) => sh.wrong(e),
                    }
                }
                88..=95 => {
                    conn.s
                        .write_all(format!("delete {}\r\n", name(k)).as_bytes())?;
                    let l = conn.line()?;
                    if l != "DELETED" && l != "NOT_FOUND" {
                        sh.wrong(format!("delete {}: {l:?}", name(k)));
                    }
                    model[k] = Known::Deleted;
                    gone_at.remove(&k);
                }
                _ => {
                    // churn: a new connection
                    conn = Conn::open(addr)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            if sh.stop.load(Ordering::Relaxed) {
                break;
            }
            sh.wrong(format!("client {id}: {e}"));
            match Conn::open(addr) {
                Ok(c) => conn = c,
                Err(_) => break,
            }
        }
        sh.ops.fetch_add(1, Ordering::Relaxed);
        let us = t.elapsed().as_micros() as u64;
        let _ = sh.hist.lock().unwrap().record(us.max(1));
    }
}

fn check(
    sh: &Shared,
    name: &dyn Fn(usize) -> String,
    model: &[Known],
    gone_at: &HashMap<usize, Instant>,
    k: usize,
    hit: Option<&(String, Vec<u8>)>,
) {
    let key = name(k);
    match (model[k], hit) {
        (_, Some((got, _))) if *got != key => sh.wrong(format!("asked {key}, got {got}")),
        (Known::Unknown, Some(_)) => sh.wrong(format!("{key}: a hit for a key never set")),
        (Known::Deleted, Some(_)) => sh.wrong(format!("{key}: a hit after delete")),
        (Known::Set { version, len }, Some((_, v)))
        | (Known::Expiring { version, len }, Some((_, v))) => {
            if *v != value(&key, version, len as usize) {
                sh.wrong(format!(
                    "{key}: version {version} has {} bytes {:?}..",
                    v.len(),
                    String::from_utf8_lossy(&v[..v.len().min(40)])
                ));
            }
            if matches!(model[k], Known::Expiring { .. })
                && gone_at.get(&k).is_some_and(|&at| Instant::now() > at)
            {
                sh.wrong(format!("{key}: a hit two seconds past its expiry"));
            }
        }
        (_, None) => {}
    }
}

struct Sample {
    sec: u64,
    rss_mb: f64,
    cpu_pct: f64,
    ops: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    evictions: u64,
    slabs_moved: u64,
    expired: u64,
    conns: u64,
}

pub fn run(a: SoakArgs) -> Result<(), String> {
    let spec = ServerSpec::resolve(&a.server)?;
    let mut flags: Vec<String> = ["-m", &a.memory.to_string(), "-c", "4096"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    flags.extend(a.flags.iter().cloned());
    let server = Running::start(&spec, &flags, None).map_err(|e| format!("{e:?}"))?;
    let warmup = a.warmup.unwrap_or((a.duration / 5).min(120));
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    eprintln!(
        "soak: {} {} (pid {}), -m {}, {} clients x {} keys, {} s ({} s warm-up), phases of {} s",
        spec.path.display(),
        flags.join(" "),
        server.pid(),
        a.memory,
        a.clients,
        a.keys,
        a.duration,
        warmup,
        a.phase
    );
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        first_wrong: Mutex::new(None),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
        start: Instant::now(),
        phase: a.phase.max(1),
    });
    let threads: Vec<_> = (0..a.clients)
        .map(|id| {
            let sh = Arc::clone(&sh);
            let (addr, keys) = (server.addr, a.keys);
            std::thread::spawn(move || client(id, addr, keys, sh))
        })
        .collect();
    let mut samples = Vec::new();
    let mut last_cpu = server.cpu_seconds();
    let mut last_ops = 0;
    let mut last_t = Instant::now();
    let stat = |m: &[(String, String)], n: &str| -> u64 {
        m.iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    for sec in 1..=a.duration {
        let next = sh.start + Duration::from_secs(sec);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        let cpu = server.cpu_seconds();
        let ops = sh.ops.load(Ordering::Relaxed);
        let h = std::mem::replace(
            &mut *sh.hist.lock().unwrap(),
            Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        );
        let st = server.stats().unwrap_or_default();
        let dt = now.duration_since(last_t).as_secs_f64();
        let s = Sample {
            sec,
            rss_mb: server.rss().1 as f64 / 1048576.0,
            cpu_pct: (cpu - last_cpu) / dt * 100.0,
            ops: ((ops - last_ops) as f64 / dt) as u64,
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            evictions: stat(&st, "evictions"),
            slabs_moved: stat(&st, "slabs_moved"),
            expired: stat(&st, "expired_unfetched") + stat(&st, "reclaimed"),
            conns: stat(&st, "total_connections"),
        };
        if sec % 10 == 0 {
            eprintln!(
                "soak {:>4}s: RSS {:.1} MB, CPU {:.0}%, {} ops/s, p99 {} us, max {} us, {} evictions, {} slabs moved, {} wrong",
                s.sec,
                s.rss_mb,
                s.cpu_pct,
                s.ops,
                s.p99_us,
                s.max_us,
                s.evictions,
                s.slabs_moved,
                sh.wrong.load(Ordering::Relaxed)
            );
        }
        samples.push(s);
        (last_cpu, last_ops, last_t) = (cpu, ops, now);
    }
    sh.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    write_csv(&a.out.join("soak.csv"), &samples)?;
    // RSS after warm-up: the first minute against the last.
    let judged: Vec<&Sample> = samples.iter().filter(|s| s.sec > warmup).collect();
    let window = judged.len().clamp(1, 60);
    let mean = |v: &[&Sample]| v.iter().map(|s| s.rss_mb).sum::<f64>() / v.len().max(1) as f64;
    let first = mean(&judged[..window.min(judged.len())]);
    let last = mean(&judged[judged.len().saturating_sub(window)..]);
    let growth = if first > 0.0 {
        (last / first - 1.0) * 100.0
    } else {
        0.0
    };
    let last_s = samples.last();
    let total_ops = sh.ops.load(Ordering::Relaxed);
    let wrong = sh.wrong.load(Ordering::Relaxed);
    let peak = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    let worst = samples.iter().map(|s| s.max_us).max().unwrap_or(0);
    let p99s: Vec<u64> = {
        let mut v: Vec<u64> = samples.iter().map(|s| s.p99_us).collect();
        v.sort_unstable();
        v
    };
    let cpu: f64 = samples.iter().map(|s| s.cpu_pct).sum::<f64>() / samples.len().max(1) as f64;
    let verdict = format!(
        "soak: {} s, {} requests ({:.0}/s), {} wrong; RSS after warm-up {:.1} MB (first minute) -> {:.1} MB (last minute): {:+.2}% (allowed {:+.1}%), peak {:.1} MB with -m {}; server CPU {:.0}% on average; per-second p99 median {} us, worst request {} us; {} evictions, {} slabs moved, {} expired items reclaimed, {} connections made",
        a.duration,
        total_ops,
        total_ops as f64 / a.duration.max(1) as f64,
        wrong,
        first,
        last,
        growth,
        a.drift,
        peak,
        a.memory,
        cpu,
        p99s.get(p99s.len() / 2).copied().unwrap_or(0),
        worst,
        last_s.map_or(0, |s| s.evictions),
        last_s.map_or(0, |s| s.slabs_moved),
        last_s.map_or(0, |s| s.expired),
        last_s.map_or(0, |s| s.conns),
    );
    println!("{verdict}");
    plot(&a.out.join("soak.svg"), &samples, warmup, a.memory)?;
    eprintln!(
        "soak: wrote {} and {}",
        a.out.join("soak.csv").display(),
        a.out.join("soak.svg").display()
    );
    if wrong > 0 {
        return Err(format!(
            "{wrong} wrong replies; the first: {}",
            sh.first_wrong.lock().unwrap().clone().unwrap_or_default()
        ));
    }
    if growth > a.drift {
        return Err(format!(
            "RSS grew {growth:.2}% after warm-up (allowed {}%)",
            a.drift
        ));
    }
    Ok(())
}

fn write_csv(path: &Path, samples: &[Sample]) -> Result<(), String> {
    let mut out = String::from(
        "sec,rss_mb,cpu_pct,ops_per_sec,p50_us,p99_us,max_us,evictions,slabs_moved,expired,total_connections\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{},{:.2},{:.1},{},{},{},{},{},{},{},{}\n",
            s.sec,
            s.rss_mb,
            s.cpu_pct,
            s.ops,
            s.p50_us,
            s.p99_us,
            s.max_us,
            s.evictions,
            s.slabs_moved,
            s.expired,
            s.conns
        ));
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

fn plot(path: &Path, samples: &[Sample], warmup: u64, memory: u64) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((3, 1));
    let xmax = samples.last().map_or(1, |s| s.sec) as f64;
    type Series<'a> = (&'a str, &'a str, Box<dyn Fn(&Sample) -> f64>, RGBColor);
    let series: [Series; 3] = [
        ("resident memory", "MB", Box::new(|s| s.rss_mb), BLUE),
        ("server CPU", "% of a core", Box::new(|s| s.cpu_pct), RED),
        (
            "latency p99 (per second)",
            "ms",
            Box::new(|s| s.p99_us as f64 / 1000.0),
            BLACK,
        ),
    ];
    for (i, (title, unit, f, color)) in series.iter().enumerate() {
        let ymax = samples
            .iter()
            .map(f)
            .fold(if i == 0 { memory as f64 } else { 0.0 }, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&panels[i])
            .caption(*title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax.max(1.0))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(*unit)
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                samples.iter().map(|s| (s.sec as f64, f(s))),
                color,
            ))
            .map_err(|e| err(&e))?;
        if i == 0 {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, memory as f64), (xmax, memory as f64)],
                    RGBColor(120, 120, 120),
                ))
                .map_err(|e| err(&e))?
                .label(format!("-m {memory}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(120, 120, 120)));
        }
        chart
            .draw_series(LineSeries::new(
                [(warmup as f64, 0.0), (warmup as f64, ymax)],
                RGBColor(0, 150, 0),
            ))
            .map_err(|e| err(&e))?
            .label("end of warm-up")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(0, 150, 0)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
