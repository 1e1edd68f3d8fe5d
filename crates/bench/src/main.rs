//! memcrab-bench: a load generator for memcached-compatible servers, and a
//! side-by-side comparison of memcrab with Debian's memcached.
//!
//! ```text
//!  load:    Config ─► load::run ─► client threads (mio loops, one per
//!           thread, connections spread over them) ─► Outcome (HDR
//!           latencies, hits, misses, errors, client CPU) ─► table / JSON
//!  compare: scenarios ─► servers::Server (start, pin, /proc readings)
//!           ─► runs A B A B … ─► report.rs (Markdown, SVG plots,
//!           BENCHMARKS.md)
//!  soak:    one server ─► client threads (own keys, a model each, every
//!           reply checked) + a sampler each second ─► soak.csv, soak.svg
//! ```
#![forbid(unsafe_code)]

mod compare;
mod dist;
mod expiry;
mod hist;
mod hitratio;
mod hostile;
mod load;
mod perf;
mod reply;
mod report;
mod servers;
mod soak;
mod storebench;
mod tls;

use std::net::ToSocketAddrs;
use std::process::exit;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use dist::{Popularity, SizeRange};
use load::{Config, KeyMode, Outcome, Transport};

#[derive(Parser)]
#[command(
    name = "memcrab-bench",
    version,
    about = "Load generator and memcached comparison"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Drive load at one server and report throughput and latency.
    Load(LoadArgs),
    /// Start memcrab and memcached side by side and compare them.
    Compare(compare::CompareArgs),
    /// Run a long mixed load at one memcrab, checking every value and
    /// sampling RSS, CPU and latency each second (scripts/soak).
    Soak(soak::SoakArgs),
    /// The store alone, in-process: operations per second from N threads,
    /// or the eviction policy's hit ratio.
    Store(storebench::StoreArgs),
    /// Replay a trace at a server as a look-aside client (get, set on a
    /// miss) and report its hit ratio.
    Hitratio(HitratioArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HitratioArgs {
    #[arg(long, default_value = "127.0.0.1:11211")]
    server: String,
    /// A trace in libCacheSim's oracleGeneral binary format.
    #[arg(long, conflicts_with = "csv")]
    oracle: Option<std::path::PathBuf>,
    /// A trace of `time,id,size` lines.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// Without a file: Zipf skew over --keys keys, --requests requests.
    #[arg(long, default_value_t = 1.0)]
    skew: f64,
    #[arg(long, default_value_t = 2_000_000)]
    keys: u64,
    #[arg(long, default_value_t = 3_000_000)]
    requests: u64,
    /// Share of requests for keys asked for once (one-hit wonders).
    #[arg(long, default_value_t = 0.0)]
    onehit: f64,
    /// Largest value set (sizes in a trace are capped to it).
    #[arg(long, default_value_t = 1 << 20)]
    max_value: usize,
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:11211")]
    server: String,
    /// tcp or udp (the 8-byte UDP frame header; gets only).
    #[arg(long, default_value = "tcp")]
    transport: String,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 50)]
    connections: usize,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Share of requests that are gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Keys per get.
    #[arg(long, default_value_t = 1)]
    multiget: usize,
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// uniform, zipf, or zipf:SKEW.
    #[arg(long, default_value = "uniform")]
    popularity: String,
    /// Key size: N or MIN-MAX.
    #[arg(long, default_value = "10")]
    key_size: SizeRange,
    /// Value size: N or MIN-MAX.
    #[arg(long, default_value = "100")]
    value_size: SizeRange,
    /// Exptime of sets in seconds: N or MIN-MAX (0 = none).
    #[arg(long, default_value = "0")]
    ttl: SizeRange,
    /// Open loop at this many requests per second in all.
    #[arg(long)]
    rate: Option<f64>,
    /// Check every value read against what was written.
    #[arg(long)]
    verify: bool,
    /// Speak the binary protocol (TCP only).
    #[arg(long)]
    binary: bool,
    /// Speak the meta protocol: mg <key> v f t c, ms (TCP only).
    #[arg(long, conflicts_with = "binary")]
    meta: bool,
    /// Speak TLS (rustls) over TCP.
    #[arg(long)]
    tls: bool,
    /// With --tls: verify the server's certificate against this CA file
    /// (PEM); without it the certificate is not checked.
    #[arg(long, requires = "tls")]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls: a client certificate (PEM) for servers that ask for one
    /// (ssl_verify_mode); needs --tls-key.
    #[arg(long, requires_all = ["tls", "tls_key"])]
    tls_cert: Option<std::path::PathBuf>,
    /// With --tls: the client certificate's key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// With --tls: the server name asked for and checked.
    #[arg(long, default_value = "localhost", requires = "tls")]
    tls_server_name: String,
    /// Set every key once before the run.
    #[arg(long)]
    prefill: bool,
    /// Pin client threads to these CPUs (e.g. 1 or 0,1).
    #[arg(long, value_delimiter = ',')]
    client_cpus: Option<Vec<usize>>,
    /// Refuse to report when errors exceed this share of requests.
    #[arg(long, default_value_t = 0.001)]
    max_error_rate: f64,
    /// One JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl LoadArgs {
    pub fn config(&self) -> Result<Config, String> {
        let server = self
            .server
            .to_socket_addrs()
            .map_err(|e| format!("--server {}: {e}", self.server))?
            .next()
            .ok_or_else(|| format!("--server {}: no address", self.server))?;
        let transport = match self.transport.as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            t => return Err(format!("--transport {t}: tcp or udp")),
        };
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err("--get-ratio is a share between 0 and 1".into());
        }
        if self.keys == 0 || self.connections == 0 {
            return Err("--keys and --connections must be positive".into());
        }
        if transport == Transport::Udp && (self.binary || self.meta) {
            return Err("--binary and --meta are for TCP".into());
        }
        if transport == Transport::Udp && self.tls {
            return Err("--tls is for TCP".into());
        }
        if transport == Transport::Udp && self.get_ratio < 1.0 {
            return Err("UDP load sends gets only: use --get-ratio 1".into());
        }
        let tls = if self.tls {
            let cert_key = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
            Some(tls::ClientTls::new(
                self.tls_ca.as_deref(),
                cert_key,
                &self.tls_server_name,
                true,
            )?)
        } else {
            None
        };
        Ok(Config {
            server,
            tls,
            transport,
            duration: Duration::from_secs_f64(self.duration),
            connections: self.connections,
            threads: self.threads,
            pipeline: self.pipeline,
            get_ratio: self.get_ratio,
            multiget: self.multiget,
            keys: self.keys,
            popularity: Popularity::parse(&self.popularity, self.keys)?,
            key_mode: KeyMode::Random,
            key_size: self.key_size,
            value_size: self.value_size,
            ttl: self.ttl,
            rate: self.rate,
            verify: self.verify,
            binary: self.binary,
            meta: self.meta,
            max_set_bytes: None,
            noreply: false,
            client_cpus: self.client_cpus.clone(),
            progress: !self.json,
            seed: self.seed,
            track_expiry: false,
            latency_by_second: false,
        })
    }
}

/// Sets every key once (pipelined), so gets find values.
pub fn prefill(cfg: &Config) -> Result<Outcome, String> {
    let fill = Config {
        transport: Transport::Tcp,
        get_ratio: 0.0,
        key_mode: KeyMode::Sequential {
            start: 0,
            end: Some(cfg.keys),
        },
        max_set_bytes: None,
        // Over TLS, a set a round trip: memcached 1.6.18 leaves the last
        // requests of a pipelined noreply flood in OpenSSL's buffer and
        // never answers the closing `version` (seen here: all 20,000 sets
        // stored, the client waiting forever).
        noreply: cfg.tls.is_none(),
        pipeline: if cfg.tls.is_none() { cfg.pipeline } else { 1 },
        rate: None,
        connections: cfg.connections.min(8),
        duration: Duration::from_secs(300),
        progress: false,
        ..cfg.clone()
    };
    load::run(&fill).map_err(|e| format!("prefill: {e}"))
}

fn print_table(o: &Outcome) {
    let l = o.latency.summary();
    println!("ops            {}", o.ops);
    println!("ops/s          {:.0}", o.ops_per_sec());
    println!("gets / sets    {} / {}", o.gets, o.sets);
    println!("hits / misses  {} / {}", o.hits, o.misses);
    println!("errors         {}", o.errors);
    if o.lost > 0 {
        println!("lost (udp)     {}", o.lost);
    }
    if o.verify_failures > 0 {
        println!("bad values     {}", o.verify_failures);
    }
    println!(
        "latency ms     p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    println!(
        "client cpu     {:.2} s over {:.2} s ({:.0}% of one core)",
        o.client_cpu,
        o.elapsed.as_secs_f64(),
        100.0 * o.client_cpu / o.elapsed.as_secs_f64().max(1e-9)
    );
}

pub fn outcome_json(o: &Outcome) -> serde_json::Value {
    let l = o.latency.summary();
    serde_json::json!({
        "ops": o.ops,
        "ops_per_sec": o.ops_per_sec(),
        "gets": o.gets,
        "sets": o.sets,
        "hits": o.hits,
        "misses": o.misses,
        "errors": o.errors,
        "lost": o.lost,
        "verify_failures": o.verify_failures,
        "p50_ms": l.p50,
        "p90_ms": l.p90,
        "p99_ms": l.p99,
        "p999_ms": l.p999,
        "max_ms": l.max,
        "elapsed_s": o.elapsed.as_secs_f64(),
        "client_cpu_s": o.client_cpu,
    })
}

fn run_load(a: LoadArgs) -> Result<(), String> {
    let cfg = a.config()?;
    if a.prefill {
        prefill(&cfg)?;
    }
    let o = load::run(&cfg).map_err(|e| format!("load: {e}"))?;
    if o.error_rate() > a.max_error_rate {
        return Err(format!(
            "refusing to report: {} errors, {} bad values, {} lost in {} requests (over {:.3}%)",
            o.errors,
            o.verify_failures,
            o.lost,
            o.ops,
            a.max_error_rate * 100.0
        ));
    }
    if a.json {
        println!("{}", outcome_json(&o));
    } else {
        print_table(&o);
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Load(a) => run_load(a),
        Cmd::Compare(a) => compare::run(a),
        Cmd::Soak(a) => soak::run(a),
        Cmd::Store(a) => storebench::run(&a),
        Cmd::Hitratio(a) => hitratio_cmd(&a),
    };
    if let Err(e) = r {
        eprintln!("memcrab-bench: {e}");
        exit(1);
    }
}

/// `memcrab-bench hitratio`.
fn hitratio_cmd(a: &HitratioArgs) -> Result<(), String> {
    let addr = a
        .server
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", a.server))?
        .next()
        .ok_or_else(|| format!("{}: no address", a.server))?;
    let trace = match (&a.oracle, &a.csv) {
        (Some(p), _) => hitratio::Trace::Oracle(p.clone()),
        (_, Some(p)) => hitratio::Trace::Csv(p.clone()),
        _ => hitratio::Trace::Zipf {
            skew: a.skew,
            keys: a.keys,
            onehit: a.onehit,
            requests: a.requests,
            sizes: (100, 500),
            seed: 42,
        },
    };
    let r = hitratio::replay(addr, &trace, a.max_value)?;
    println!(
        "{} requests, {} hits: hit ratio {:.4}, miss ratio {:.4}",
        r.requests,
        r.hits,
        r.hit_ratio(),
        1.0 - r.hit_ratio()
    );
    Ok(())
}
