//! `compare`: the same scenarios against two servers (memcrab and
//! memcached by default), runs alternating A B A B, medians and ratios.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::dist::{Popularity, SizeRange};
use crate::load::{self, Config, KeyMode, Outcome, Transport};
use crate::report;
use crate::servers::{Running, ServerSpec, StartError};

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Server A ("memcrab", "memcached" or a path); ratios are A/B.
    #[arg(long, default_value = "memcrab")]
    pub a: String,
    /// Server B.
    #[arg(long, default_value = "memcached")]
    pub b: String,
    /// Comma-separated scenario names, or "all".
    #[arg(long, default_value = "all")]
    pub scenarios: String,
    /// Runs of each server per scenario (alternating A B A B ...).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds per timed run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// CPUs for the servers (default: 0 on a machine with 2 or more).
    #[arg(long, value_delimiter = ',')]
    pub server_cpus: Option<Vec<usize>>,
    /// CPUs for the load (default: the others).
    #[arg(long, value_delimiter = ',')]
    pub client_cpus: Option<Vec<usize>>,
    /// Do not pin anything.
    #[arg(long)]
    pub no_pin: bool,
    /// Where the report and plots go.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Also write BENCHMARKS.md here (the repository's copy).
    #[arg(long)]
    pub benchmarks_md: Option<PathBuf>,
    /// Refuse a run whose errors exceed this share of its requests.
    #[arg(long, default_value_t = 0.001)]
    pub max_error_rate: f64,
    /// List the scenarios, one line each, and exit.
    #[arg(long)]
    pub list: bool,
    /// TCP ports for the servers, FIRST-LAST (each start takes the next,
    /// round the range); default: a free port the kernel picks.
    #[arg(long, value_parser = parse_ports)]
    pub ports: Option<(u16, u16)>,
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.trim().parse().map_err(|_| format!("bad port {a}"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("bad port {b}"))?;
    if a == 0 || b < a {
        return Err(format!("ports {s}: give FIRST-LAST, 1 <= FIRST <= LAST"));
    }
    Ok((a, b))
}

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    pub server_flags: Vec<String>,
    pub metrics: Vec<Metric>,
    /// A side that could not run the scenario, and why.
    pub unsupported: Vec<(String, String)>,
    pub notes: Vec<String>,
    /// Latency percentiles (p50, p90, p99, p99.9) per side, medians.
    pub latency_curve: Option<([f64; 4], [f64; 4])>,
}

impl ScenarioResult {
    fn new(name: &str, description: &str, server_flags: Vec<String>) -> Self {
        ScenarioResult {
            name: name.into(),
            description: description.into(),
            server_flags,
            metrics: Vec::new(),
            unsupported: Vec::new(),
            notes: Vec::new(),
            latency_curve: None,
        }
    }
}

/// One line per scenario, for `compare --list`.
pub const SUMMARY: &[(&str, &str)] = &[
    (
        "get-heavy",
        "90% get / 10% set, 100 B values, 50 connections, one request in flight each",
    ),
    ("get-heavy-t1", "get-heavy with -t 1"),
    ("get-heavy-t2", "get-heavy with -t 2"),
    (
        "get-heavy-pipelined",
        "get-heavy with 16 requests in flight per connection",
    ),
    ("multiget-10", "gets of 10 keys each"),
    ("multiget-100", "gets of 100 keys each"),
    ("set-heavy", "50% get / 50% set, 100 B values"),
    (
        "get-heavy-binary",
        "get-heavy over the binary protocol (GetK / Set)",
    ),
    ("set-heavy-binary", "set-heavy over the binary protocol"),
    (
        "get-heavy-meta",
        "get-heavy over the meta protocol (mg / ms)",
    ),
    (
        "latency",
        "open loop at a fixed rate below B's throughput: latency percentiles",
    ),
    (
        "hitratio-zipf",
        "hit ratio at -m 64: look-aside (get, set on a miss), Zipf 1.0 over 2M keys, 3M requests, values 100-500 B",
    ),
    (
        "hitratio-onehit",
        "hitratio-zipf with 30% of requests for keys asked for once (one-hit wonders)",
    ),
    (
        "memory-small",
        "items held in -m 64: keys 10-20 B, values 20-60 B",
    ),
    (
        "memory-medium",
        "items held in -m 64: keys 10-20 B, values 200-500 B",
    ),
    (
        "memory-large",
        "items held in -m 64: keys 10-20 B, values 5-20 KB",
    ),
    (
        "calcification",
        "a shift of value sizes: are the new sizes stored (slab automove)",
    ),
    (
        "idle-conns-1000",
        "RSS per idle connection, 1,000 connections",
    ),
    (
        "idle-conns-10000",
        "RSS per idle connection, 10,000 connections",
    ),
    (
        "idle-conns-max",
        "RSS per idle connection, as many as the descriptor limit allows",
    ),
    (
        "expiry",
        "items with short TTLs: memory taken back after they expire",
    ),
    ("expiry-cost", "CPU spent reclaiming expired items"),
    (
        "expiry-latency",
        "other clients' latency while many items expire at once",
    ),
    (
        "udp",
        "UDP gets, 100 B values, 50 sockets, one request in flight each",
    ),
    (
        "hostile-partial-values",
        "clients that stall half-way through 1 MB values: peak RSS",
    ),
    (
        "hostile-large-values",
        "clients sending many large values at once: peak RSS",
    ),
    (
        "slowloris",
        "clients sending a byte at a time: RSS, others' latency",
    ),
    (
        "unread-replies",
        "clients that never read their replies: RSS",
    ),
    (
        "unread-pipelined",
        "pipelining clients that never read: RSS",
    ),
    (
        "large-stores-concurrent",
        "20 concurrent 50 MB sets at -m 1024 -I 128m: how many are stored, peak RSS",
    ),
    (
        "connection-burst",
        "8,000 connections at once that do not read: another client's latency, connect time",
    ),
    (
        "connection-burst-paced",
        "connection-burst with the 8,000 connections opened over 3 s",
    ),
    ("get-heavy-tls", "get-heavy over TLS"),
    (
        "tls-handshakes",
        "a new TLS 1.3 connection per request (full handshake): handshakes per second",
    ),
    (
        "tls-idle-conns-1000",
        "RSS per idle TLS connection, 1,000 connections",
    ),
];

pub const ALL: &[&str] = &[
    "get-heavy",
    "get-heavy-t1",
    "get-heavy-t2",
    "get-heavy-pipelined",
    "multiget-10",
    "multiget-100",
    "set-heavy",
    "get-heavy-binary",
    "set-heavy-binary",
    "get-heavy-meta",
    "latency",
    "hitratio-zipf",
    "hitratio-onehit",
    "memory-small",
    "memory-medium",
    "memory-large",
    "calcification",
    "idle-conns-1000",
    "idle-conns-10000",
    "idle-conns-max",
    "expiry",
    "expiry-cost",
    "expiry-latency",
    "udp",
    "hostile-partial-values",
    "hostile-large-values",
    "slowloris",
    "unread-replies",
    "unread-pipelined",
    "large-stores-concurrent",
    "connection-burst",
    "connection-burst-paced",
    "get-heavy-tls",
    "tls-handshakes",
    "tls-idle-conns-1000",
];

pub struct Ctx {
    pub args: CompareArgs,
    pub a: ServerSpec,
    pub b: ServerSpec,
    pub server_cpus: Option<Vec<usize>>,
    pub client_cpus: Option<Vec<usize>>,
    /// B's median get-heavy throughput, for the latency scenario's rate.
    pub b_max_get_rate: Option<f64>,
}

pub(crate) fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn run(args: CompareArgs) -> Result<(), String> {
    if args.list {
        for (name, what) in SUMMARY {
            println!("{name:<24} {what}");
        }
        return Ok(());
    }
    if let Some((first, last)) = args.ports {
        crate::servers::use_ports(first, last);
    }
    let a = ServerSpec::resolve(&args.a)?;
    let b = ServerSpec::resolve(&args.b)?;
    let names: Vec<String> = if args.scenarios == "all" {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.scenarios.split(',').map(str::to_string).collect()
    };
    for n in &names {
        if !ALL.contains(&n.as_str()) {
            return Err(format!(
                "unknown scenario {n}; memcrab-bench compare --list names them"
            ));
        }
    }
    raise_fd_limit();
    if !crate::perf::available() {
        eprintln!("note: perf stat cannot count raw_syscalls:sys_enter here (Debian package linux-perf, run as root): no system call or context switch figures");
    }
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (server_cpus, client_cpus) = if args.no_pin {
        (None, None)
    } else {
        let sc = args
            .server_cpus
            .clone()
            .or_else(|| (ncpu >= 2).then(|| vec![0]));
        let cc = args.client_cpus.clone().or_else(|| {
            sc.as_ref()
                .map(|sc| (0..ncpu).filter(|c| !sc.contains(c)).collect::<Vec<_>>())
                .filter(|v| !v.is_empty())
        });
        (sc, cc)
    };
    let started = Instant::now();
    let mut ctx = Ctx {
        args: args.clone(),
        a,
        b,
        server_cpus,
        client_cpus,
        b_max_get_rate: None,
    };
    let mut results = Vec::new();
    for name in &names {
        eprintln!("== {name}");
        let r = scenario(&mut ctx, name)?;
        for m in &r.metrics {
            eprintln!(
                "   {:<32} A {:>12}  B {:>12}",
                m.name,
                report::fmt_num(crate::hist::Spread::of(&m.a).map(|s| s.median)),
                report::fmt_num(crate::hist::Spread::of(&m.b).map(|s| s.median)),
            );
        }
        for (side, why) in &r.unsupported {
            eprintln!("   {side}: not run: {why}");
        }
        results.push(r);
    }
    let elapsed = started.elapsed();
    let cmd: Vec<String> = std::env::args().collect();
    report::write(&ctx, &results, &cmd.join(" "), elapsed)
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(s, _)| s)
        .unwrap_or(1024)
}

impl Ctx {
    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.args.duration)
    }

    pub(crate) fn base_load(&self, server: std::net::SocketAddr) -> Config {
        Config {
            server,
            duration: self.duration(),
            connections: 50,
            threads: self
                .client_cpus
                .as_ref()
                .map(|c| c.len())
                .unwrap_or(1)
                .max(1),
            client_cpus: self.client_cpus.clone(),
            keys: 100_000,
            popularity: Popularity::Uniform,
            key_size: SizeRange { min: 10, max: 10 },
            value_size: SizeRange { min: 100, max: 100 },
            verify: true,
            ..Config::default()
        }
    }

    fn start(&self, side: &ServerSpec, flags: &[String]) -> Result<Running, StartError> {
        Running::start(side, flags, self.server_cpus.as_deref())
    }
}

/// One measured run of one side: named figures.
pub type Figures = Vec<(String, String, Better, f64)>;

/// A side's run: its figures (and load outcome), `Ok(Err(why))` when the
/// side cannot run the scenario, `Err` when the run failed.
pub type RunResult = Result<Result<(Figures, Option<Outcome>), String>, String>;

/// One named figure.
pub(crate) fn fig(
    name: &str,
    unit: &str,
    better: Better,
    value: f64,
) -> (String, String, Better, f64) {
    (name.into(), unit.into(), better, value)
}

/// A server's peak and final resident memory, in MB.
fn rss_figures(hwm: u64, rss: u64) -> [(String, String, Better, f64); 2] {
    const MB: f64 = 1048576.0;
    [
        fig("server peak RSS", "MB", Better::Lower, hwm as f64 / MB),
        fig("server final RSS", "MB", Better::Lower, rss as f64 / MB),
    ]
}

/// Starts a side's server: `Ok(Err(why))` when it refuses the flags (a
/// feature it lacks), `Err` when it fails otherwise.
pub(crate) fn start_side(
    ctx: &Ctx,
    side: &ServerSpec,
    flags: &[String],
) -> Result<Result<Running, String>, String> {
    match ctx.start(side, flags) {
        Ok(s) => Ok(Ok(s)),
        Err(StartError::Refused(why)) => Ok(Err(why)),
        Err(StartError::Failed(why)) => Err(why),
    }
}

pub(crate) fn check(o: &Outcome, max: f64, what: &str) -> Result<(), String> {
    if o.error_rate() > max {
        return Err(format!(
            "{what}: refusing to report: {} errors, {} bad values, {} lost in {} requests",
            o.errors, o.verify_failures, o.lost, o.ops
        ));
    }
    if o.ops == 0 {
        return Err(format!("{what}: no request was answered"));
    }
    Ok(())
}

fn throughput_figures(o: &Outcome, server_cpu: f64, hwm: u64, rss: u64) -> Figures {
    let l = o.latency.summary();
    let mut figures = vec![
        fig("throughput", "ops/s", Better::Higher, o.ops_per_sec()),
        fig("p50 latency", "ms", Better::Lower, l.p50),
        fig("p90 latency", "ms", Better::Lower, l.p90),
        fig("p99 latency", "ms", Better::Lower, l.p99),
        fig("p99.9 latency", "ms", Better::Lower, l.p999),
        fig(
            "server CPU per million requests",
            "s",
            Better::Lower,
            server_cpu / o.ops.max(1) as f64 * 1e6,
        ),
    ];
    figures.extend(rss_figures(hwm, rss));
    figures.extend([
        fig(
            "client CPU share",
            "%",
            Better::Lower,
            100.0 * o.client_cpu / o.elapsed.as_secs_f64().max(1e-9),
        ),
        fig(
            "hit ratio",
            "%",
            Better::Higher,
            100.0 * o.hits as f64 / o.keys_asked.max(1) as f64,
        ),
    ]);
    figures
}

/// A timed load scenario: fresh server, optional prefill, measured run.
fn load_run(
    ctx: &Ctx,
    side: &ServerSpec,
    flags: &[String],
    shape: &dyn Fn(Config) -> Config,
    prefill: bool,
) -> Result<Result<(Figures, Outcome), String>, String> {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let mut cfg = shape(ctx.base_load(srv.addr));
    if prefill {
        crate::prefill(&cfg)?;
    }
    if cfg.transport == Transport::Udp {
        match srv.udp_port {
            Some(p) => cfg.server.set_port(p),
            None => return Ok(Err(format!("{} reported no UDP port", side.name))),
        }
    }
    let watch = crate::perf::Watch::start(srv.pid());
    let cpu0 = srv.cpu_seconds();
    let o = load::run(&cfg).map_err(|e| format!("{}: {e}", side.name))?;
    let cpu = srv.cpu_seconds() - cpu0;
    let counts = watch.and_then(crate::perf::Watch::stop);
    check(&o, ctx.args.max_error_rate, &side.name)?;
    let (hwm, rss) = srv.rss();
    let mut figures = throughput_figures(&o, cpu, hwm, rss);
    if let Some(c) = counts {
        // perf counts a little before and after the load (its start-up
        // wait and the stop): a few idle wake-ups, not requests.
        let per = |n: u64| n as f64 / o.ops.max(1) as f64;
        let at = figures
            .iter()
            .position(|f| f.0 == "server CPU per million requests")
            .map_or(figures.len(), |p| p + 1);
        figures.insert(
            at,
            fig(
                "context switches per request",
                "switches",
                Better::Lower,
                per(c.context_switches),
            ),
        );
        figures.insert(
            at,
            fig(
                "system calls per request",
                "",
                Better::Lower,
                per(c.syscalls),
            ),
        );
    }
    Ok(Ok((figures, o)))
}

/// Runs `one` for A and B alternately, `runs` times each.
/// One line per run on stderr (a log when not on a terminal): the
/// scenario, the server, and its figures.
fn progress_line(scenario: &str, side: &ServerSpec, i: usize, figs: &Figures) {
    let shown: Vec<String> = figs
        .iter()
        .take(6)
        .map(|(n, unit, _, v)| {
            let shown = if v.abs() >= 1000.0 {
                report::grouped(*v)
            } else {
                report::fmt_num(Some(*v))
            };
            format!("{n} {shown} {unit}")
        })
        .collect();
    eprintln!(
        "   run: {scenario} {} ({}): {}",
        ["A", "B"][i],
        side.name,
        shown.join(", ")
    );
}

pub(crate) fn alternate(
    ctx: &Ctx,
    name: &str,
    description: &str,
    flags: Vec<String>,
    runs: usize,
    one: &dyn Fn(&Ctx, &ServerSpec) -> RunResult,
) -> Result<ScenarioResult, String> {
    let mut r = ScenarioResult::new(name, description, flags);
    let mut curves: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
    let mut skip = [false, false];
    for _ in 0..runs {
        for (i, side) in [&ctx.a, &ctx.b].into_iter().enumerate() {
            if skip[i] {
                continue;
            }
            match one(ctx, side)? {
                Err(why) => {
                    skip[i] = true;
                    r.unsupported
                        .push((format!("{} ({})", side.name, ["A", "B"][i]), why));
                }
                Ok((figs, outcome)) => {
                    progress_line(name, side, i, &figs);
                    if let Some(o) = outcome {
                        let l = o.latency.summary();
                        curves[i].push([l.p50, l.p90, l.p99, l.p999]);
                    }
                    for (fname, unit, better, v) in figs {
                        let m = match r.metrics.iter_mut().position(|m| m.name == fname) {
                            Some(p) => &mut r.metrics[p],
                            None => {
                                r.metrics.push(Metric {
                                    name: fname,
                                    unit,
                                    better,
                                    a: Vec::new(),
                                    b: Vec::new(),
                                });
                                r.metrics.last_mut().expect("just pushed")
                            }
                        };
                        if i == 0 {
                            m.a.push(v);
                        } else {
                            m.b.push(v);
                        }
                    }
                }
            }
        }
    }
    let med = |c: &Vec<[f64; 4]>| -> Option<[f64; 4]> {
        if c.is_empty() {
            return None;
        }
        let mut out = [0.0; 4];
        for (k, o) in out.iter_mut().enumerate() {
            let v: Vec<f64> = c.iter().map(|x| x[k]).collect();
            *o = crate::hist::Spread::of(&v).map(|s| s.median).unwrap_or(0.0);
        }
        Some(out)
    };
    if let (Some(a), Some(b)) = (med(&curves[0]), med(&curves[1])) {
        r.latency_curve = Some((a, b));
    }
    Ok(r)
}

fn scenario(ctx: &mut Ctx, name: &str) -> Result<ScenarioResult, String> {
    let runs = ctx.args.runs.max(1);
    let timed = |shape: fn(Config) -> Config, prefill: bool| {
        move |ctx: &Ctx,
              side: &ServerSpec|
              -> Result<Result<(Figures, Option<Outcome>), String>, String> {
            Ok(load_run(ctx, side, &[], &shape, prefill)?.map(|(f, o)| (f, Some(o))))
        }
    };
    let r = match name {
        "get-heavy" => {
            let r = alternate(
                ctx,
                name,
                "90% get / 10% set, 100 B values, 100k keys (prefilled), 50 connections, one request in flight each",
                vec![],
                runs,
                &timed(|c| c, true),
            )?;
            ctx.b_max_get_rate = r
                .metrics
                .iter()
                .find(|m| m.name == "throughput")
                .and_then(|m| crate::hist::Spread::of(&m.b))
                .map(|s| s.median);
            r
        }
        "get-heavy-t1" | "get-heavy-t2" => {
            let t = if name == "get-heavy-t1" { "1" } else { "2" };
            let flags = s(&["-t", t]);
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                &format!("as get-heavy with -t {t}: 50 connections, one request in flight each (what most clients do), 90% get / 10% set, 100 B values"),
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| {
                    Ok(load_run(ctx, side, &f2, &|c| c, true)?.map(|(f, o)| (f, Some(o))))
                },
            )?
        }
        "get-heavy-pipelined" => alternate(
            ctx,
            name,
            "as get-heavy, 16 requests in flight per connection",
            vec![],
            runs,
            &timed(|c| Config { pipeline: 16, ..c }, true),
        )?,
        "multiget-10" => alternate(
            ctx,
            name,
            "gets of 10 keys each, 100 B values, 100k keys (prefilled), 50 connections",
            vec![],
            runs,
            &timed(
                |c| Config {
                    get_ratio: 1.0,
                    multiget: 10,
                    ..c
                },
                true,
            ),
        )?,
        "multiget-100" => alternate(
            ctx,
            name,
            "gets of 100 keys each, 100 B values, 100k keys (prefilled), 50 connections",
            vec![],
            runs,
            &timed(
                |c| Config {
                    get_ratio: 1.0,
                    multiget: 100,
                    ..c
                },
                true,
            ),
        )?,
        "set-heavy" => alternate(
            ctx,
            name,
            "50% get / 50% set, 100 B values, 100k keys (prefilled), 50 connections",
            vec![],
            runs,
            &timed(
                |c| Config {
                    get_ratio: 0.5,
                    ..c
                },
                true,
            ),
        )?,
        "get-heavy-binary" => alternate(
            ctx,
            name,
            "as get-heavy over the binary protocol (GetK / Set)",
            vec![],
            runs,
            &timed(|c| Config { binary: true, ..c }, true),
        )?,
        "set-heavy-binary" => alternate(
            ctx,
            name,
            "as set-heavy over the binary protocol (GetK / Set)",
            vec![],
            runs,
            &timed(
                |c| Config {
                    get_ratio: 0.5,
                    binary: true,
                    ..c
                },
                true,
            ),
        )?,
        "get-heavy-meta" => alternate(
            ctx,
            name,
            "as get-heavy over the meta protocol (mg <key> v f t c / ms)",
            vec![],
            runs,
            &timed(|c| Config { meta: true, ..c }, true),
        )?,
        "latency" => {
            let rate = match ctx.b_max_get_rate {
                Some(r) => r,
                None => {
                    // Measure B's maximum first, as get-heavy would.
                    let o = load_run(ctx, &ctx.b, &[], &|c| c, true)?
                        .map_err(|why| format!("latency: B cannot run get-heavy: {why}"))?;
                    o.1.ops_per_sec()
                }
            };
            let target = (rate / 2.0).max(100.0);
            let mut r = alternate(
                ctx,
                name,
                &format!(
                    "open loop at {target:.0} requests/s (half of B's get-heavy maximum), 90% get, latency from the intended send time"
                ),
                vec![],
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| {
                    Ok(load_run(ctx, side, &[], &|c| Config { rate: Some(target), pipeline: 1, ..c }, true)?
                        .map(|(f, o)| (f, Some(o))))
                },
            )?;
            r.notes.push(format!("target rate {target:.0} requests/s"));
            r
        }
        "hitratio-zipf" | "hitratio-onehit" => {
            let onehit = if name == "hitratio-onehit" { 0.3 } else { 0.0 };
            let flags = s(&["-m", "64"]);
            let desc = SUMMARY
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, d)| d);
            alternate(
                ctx,
                name,
                desc,
                flags.clone(),
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| hitratio_run(ctx, side, &flags, onehit),
            )?
        }
        "memory-small" | "memory-medium" | "memory-large" => {
            let (ks, vs, what) = match name {
                "memory-small" => ("10-20", "20-60", "keys 10-20 B, values 20-60 B"),
                "memory-medium" => ("10-20", "200-500", "keys 10-20 B, values 200-500 B"),
                _ => ("10-20", "5000-20000", "keys 10-20 B, values 5-20 KB"),
            };
            let key_size: SizeRange = ks.parse()?;
            let value_size: SizeRange = vs.parse()?;
            let flags = s(&["-m", "64"]);
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                &format!(
                    "-m 64; distinct keys written until 192 MB (3 x -m) of {what}; then stats"
                ),
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| {
                    memory_run(ctx, side, &f2, key_size, value_size)
                },
            )?
        }
        "calcification" => {
            let flags = s(&["-m", "64"]);
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                "-m 64 (automove as each server defaults: on): distinct keys with 50 B values written until 192 MB (3 x -m), then 5,000 B values written for 60 s at 4,000 sets/s; 5 KB items held after 10, 30 and 60 s, against what a fresh server holds of them",
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| calcification_run(ctx, side, &f2),
            )?
        }
        "idle-conns-1000" | "idle-conns-10000" | "idle-conns-max" => {
            let limit = fd_limit();
            let n: u64 = match name {
                "idle-conns-1000" => 1000,
                "idle-conns-10000" => 10_000,
                // Client and server share the machine's ports and each
                // side needs a descriptor per connection.
                _ => limit.saturating_sub(200).min(28_000),
            };
            if n + 100 > limit {
                let mut r = ScenarioResult::new(name, &format!("{n} idle connections"), vec![]);
                r.unsupported.push((
                    "both".into(),
                    format!("descriptor limit {limit} is below {n} connections"),
                ));
                return Ok(r);
            }
            let flags = vec!["-c".to_string(), (n + 100).to_string()];
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                &format!("{n} connections opened, one version round trip each, then idle; RSS growth per connection"),
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| idle_run(ctx, side, &f2, n),
            )?
        }
        "expiry" | "expiry-cost" | "expiry-latency" => crate::expiry::scenario(ctx, name, runs)?,
        n if crate::hostile::NAMES.contains(&n) => crate::hostile::scenario(ctx, name, runs)?,
        "udp" => {
            let flags = s(&["-U", "-1"]);
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                "UDP gets (8-byte frame header), 100 B values, 100k keys (prefilled over TCP), 50 sockets, one request in flight each",
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| {
                    Ok(load_run(
                        ctx,
                        side,
                        &f2,
                        &|c| Config { transport: Transport::Udp, get_ratio: 1.0, ..c },
                        true,
                    )?
                    .map(|(mut f, o)| {
                        // Requests whose reply did not come within 250 ms
                        // (UDP drops; not retried).
                        f.push(fig("lost replies", "replies", Better::Lower, o.lost as f64));
                        (f, Some(o))
                    }))
                },
            )?
        }
        "get-heavy-tls" => {
            let pki = crate::tls::TestPki::new()?;
            let client = pki.client(true)?;
            let flags = pki.server_flags();
            let f2 = flags.clone();
            alternate(
                ctx,
                name,
                "as get-heavy over TLS 1.3 (both servers -Z with the same ECDSA P-256 certificate; rustls client): 90% get / 10% set, 100 B values, 100k keys (prefilled), 50 connections, one request in flight each",
                flags,
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| {
                    let tls = client.clone();
                    Ok(load_run(ctx, side, &f2, &move |c| Config { tls: Some(tls.clone()), ..c }, true)?
                        .map(|(f, o)| (f, Some(o))))
                },
            )?
        }
        "tls-handshakes" => {
            let pki = crate::tls::TestPki::new()?;
            alternate(
                ctx,
                name,
                "a new TLS connection per request: connect, full TLS 1.3 handshake (no resumption; ECDSA P-256 certificate), one version round trip, close; 4 client threads per client CPU",
                pki.server_flags(),
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| crate::tls::handshake_run(ctx, side, &pki),
            )?
        }
        "tls-idle-conns-1000" => {
            let pki = crate::tls::TestPki::new()?;
            alternate(
                ctx,
                name,
                "1000 TLS connections opened (full handshake, one version round trip each), then idle; RSS growth per connection",
                pki.server_flags(),
                runs,
                &move |ctx: &Ctx, side: &ServerSpec| crate::tls::idle_run(ctx, side, &pki, 1000),
            )?
        }
        other => return Err(format!("unknown scenario {other}")),
    };
    Ok(r)
}

/// Distinct keys from `start` on, written with noreply over 8 connections
/// until 192 MB (3 x `-m 64`) have gone out.
fn fill_config(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    key_size: SizeRange,
    value_size: SizeRange,
    start: u64,
) -> Config {
    Config {
        get_ratio: 0.0,
        key_mode: KeyMode::Sequential { start, end: None },
        key_size,
        value_size,
        max_set_bytes: Some(3 * (64 << 20)),
        noreply: true,
        connections: 8,
        duration: Duration::from_secs(600),
        verify: false,
        ..ctx.base_load(addr)
    }
}

/// One look-aside replay (hitratio.rs) against a fresh server.
fn hitratio_run(ctx: &Ctx, side: &ServerSpec, flags: &[String], onehit: f64) -> RunResult {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let trace = crate::hitratio::Trace::Zipf {
        skew: 1.0,
        keys: 2_000_000,
        onehit,
        requests: 3_000_000,
        sizes: (100, 500),
        seed: 42,
    };
    let cpu0 = srv.cpu_seconds();
    let r = crate::hitratio::replay(srv.addr, &trace, 1 << 20)
        .map_err(|e| format!("{}: {e}", side.name))?;
    let cpu = srv.cpu_seconds() - cpu0;
    let items = srv.stat_u64("curr_items")? as f64;
    Ok(Ok((
        vec![
            fig("hit ratio", "%", Better::Higher, 100.0 * r.hit_ratio()),
            fig(
                "miss ratio",
                "%",
                Better::Lower,
                100.0 * (1.0 - r.hit_ratio()),
            ),
            fig("items held", "items", Better::Higher, items),
            fig(
                "server CPU per million requests",
                "s",
                Better::Lower,
                cpu / r.requests.max(1) as f64 * 1e6,
            ),
        ],
        None,
    )))
}

fn memory_run(
    ctx: &Ctx,
    side: &ServerSpec,
    flags: &[String],
    key_size: SizeRange,
    value_size: SizeRange,
) -> RunResult {
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let cfg = fill_config(ctx, srv.addr, key_size, value_size, 0);
    let o = load::run(&cfg).map_err(|e| format!("{}: {e}", side.name))?;
    let items = srv.stat_u64("curr_items")? as f64;
    let maxbytes = srv.stat_u64("limit_maxbytes")? as f64;
    // Memory kept outside -m for each item: the index in both servers,
    // and memcrab's eviction queues and ghost (memcached keeps its LRU
    // links inside the item).
    let stats = srv.stats()?;
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let is_memcrab = stats
        .iter()
        .any(|(n, v)| n == "libevent" && v.starts_with("mio"));
    let policy = if is_memcrab {
        srv.stats_group("memcrab")?
            .into_iter()
            .find(|(n, _)| n == "eviction_policy_bytes")
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    } else {
        0.0
    };
    let outside = (stat("hash_bytes").unwrap_or(0.0) + policy) / items.max(1.0);
    let mean_payload = o.set_bytes as f64 / o.sets.max(1) as f64;
    let (hwm, rss) = srv.rss();
    // Connections take keys in turn (id + n x connections) but at their own
    // pace: the highest key written can be past `sets`.
    let end = o.sets + o.sets / 8 + 1000;
    let (intact, corrupt) = read_back(srv.addr, key_size, value_size, 0..end)
        .map_err(|e| format!("{}: read back: {e}", side.name))?;
    Ok(Ok((
        vec![
            fig("items held", "items", Better::Higher, items),
            fig(
                "bytes outside -m per item (index, eviction queues)",
                "B",
                Better::Lower,
                outside,
            ),
            fig(
                "items read back intact",
                "items",
                Better::Higher,
                intact as f64,
            ),
            fig(
                "items read back wrong",
                "items",
                Better::Lower,
                corrupt as f64,
            ),
            fig(
                "payload held / limit_maxbytes",
                "%",
                Better::Higher,
                100.0 * items * mean_payload / maxbytes,
            ),
        ]
        .into_iter()
        .chain(rss_figures(hwm, rss))
        .collect(),
        None,
    )))
}

/// Reads keys `ids` back (pipelined gets of 100 keys) and checks each
/// value found against the one the generator wrote. Returns the values
/// found intact and the values found wrong.
fn read_back(
    addr: std::net::SocketAddr,
    key_size: SizeRange,
    value_size: SizeRange,
    ids: std::ops::Range<u64>,
) -> Result<(u64, u64), String> {
    use crate::reply::{self, Expect, Reply};
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let (mut intact, mut wrong) = (0u64, 0u64);
    let mut key = Vec::new();
    let mut want = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let ids: Vec<u64> = ids.collect();
    for batch in ids.chunks(100) {
        let mut req = b"get".to_vec();
        for &k in batch {
            crate::dist::key(k, key_size, &mut key);
            req.push(b' ');
            req.extend_from_slice(&key);
        }
        req.extend_from_slice(b"\r\n");
        s.write_all(&req).map_err(|e| e.to_string())?;
        let values = loop {
            if let Some((r, used)) = reply::parse(&buf, Expect::Values, true) {
                buf.drain(..used);
                match r {
                    Reply::Values(v) => break v,
                    other => return Err(format!("get answered {other:?}")),
                }
            }
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        for (k, data) in values {
            let id = batch.iter().copied().find(|&i| {
                crate::dist::key(i, key_size, &mut key);
                key == k
            });
            match id {
                Some(i) => {
                    crate::dist::value(i, value_size, &mut want);
                    if want == data {
                        intact += 1;
                    } else {
                        wrong += 1;
                    }
                }
                None => wrong += 1,
            }
        }
    }
    Ok((intact, wrong))
}

/// Items a server holds in classes whose chunks are at least `min_chunk`
/// bytes (from `stats slabs` and `stats items`).
fn items_in_classes_from(srv: &Running, min_chunk: u64) -> Result<u64, String> {
    let slabs = srv.stats_group("slabs")?;
    let items = srv.stats_group("items")?;
    let mut total = 0;
    for (name, v) in &slabs {
        let Some((id, "chunk_size")) = name.split_once(':') else {
            continue;
        };
        if v.parse::<u64>().unwrap_or(0) < min_chunk {
            continue;
        }
        let want = format!("items:{id}:number");
        total += items
            .iter()
            .find(|(n, _)| *n == want)
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

fn calcification_run(ctx: &Ctx, side: &ServerSpec, flags: &[String]) -> RunResult {
    let key_size: SizeRange = "10-20".parse()?;
    let fill = |addr, value_size, start| fill_config(ctx, addr, key_size, value_size, start);
    let big: SizeRange = "5000".parse()?;
    // What a fresh server holds of the big values.
    let fresh = {
        let srv = match start_side(ctx, side, flags)? {
            Ok(s) => s,
            Err(why) => return Ok(Err(why)),
        };
        load::run(&fill(srv.addr, big, 0)).map_err(|e| format!("{}: {e}", side.name))?;
        items_in_classes_from(&srv, 5000)? as f64
    };
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    load::run(&fill(srv.addr, "50".parse()?, 0)).map_err(|e| format!("{}: {e}", side.name))?;
    let small_items = srv.stat_u64("curr_items")? as f64;
    // The switch: big values at a steady rate, sampled each second.
    let switch = Config {
        rate: Some(4000.0),
        max_set_bytes: None,
        duration: Duration::from_secs(60),
        connections: 4,
        ..fill(srv.addr, big, 1 << 40)
    };
    let addr = srv.addr;
    let loader = std::thread::spawn(move || load::run(&switch));
    let started = Instant::now();
    let mut at = [0.0f64; 3];
    let mut reached_80 = None;
    let marks = [10u64, 30, 60];
    for sec in 1..=60u64 {
        let due = started + Duration::from_secs(sec);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let held = items_in_classes_from(&srv, 5000)? as f64;
        if reached_80.is_none() && held >= 0.8 * fresh {
            reached_80 = Some(sec as f64);
        }
        if let Some(i) = marks.iter().position(|&m| m == sec) {
            at[i] = held;
        }
    }
    let o = loader
        .join()
        .map_err(|_| "load thread panicked".to_string())?
        .map_err(|e| format!("{}: {e}", side.name))?;
    let _ = (addr, o);
    let moved = srv.stat_u64("slabs_moved").unwrap_or(0) as f64;
    Ok(Ok((
        vec![
            fig(
                "50 B items held before the switch",
                "items",
                Better::Higher,
                small_items,
            ),
            fig(
                "5 KB items a fresh server holds",
                "items",
                Better::Higher,
                fresh,
            ),
            fig(
                "5 KB items held after 10 s",
                "% of fresh",
                Better::Higher,
                100.0 * at[0] / fresh,
            ),
            fig(
                "5 KB items held after 30 s",
                "% of fresh",
                Better::Higher,
                100.0 * at[1] / fresh,
            ),
            fig(
                "5 KB items held after 60 s",
                "% of fresh",
                Better::Higher,
                100.0 * at[2] / fresh,
            ),
            fig(
                "seconds to 80% of fresh (61 = not within 60 s)",
                "s",
                Better::Lower,
                reached_80.unwrap_or(61.0),
            ),
            fig("pages moved", "pages", Better::Higher, moved),
        ],
        None,
    )))
}

fn idle_run(
    ctx: &Ctx,
    side: &ServerSpec,
    flags: &[String],
    n: u64,
) -> Result<Result<(Figures, Option<Outcome>), String>, String> {
    use std::io::{Read, Write};
    let srv = match start_side(ctx, side, flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let mut first = std::net::TcpStream::connect(srv.addr).map_err(|e| e.to_string())?;
    first.write_all(b"version\r\n").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let _ = first.read(&mut buf);
    std::thread::sleep(Duration::from_millis(100));
    let before = srv.rss().1;
    let mut conns = Vec::with_capacity(n as usize);
    // Open in waves: send on a batch, then read the batch's answers.
    let mut opened = 0u64;
    while opened < n {
        let wave = (n - opened).min(500);
        let mut batch = Vec::new();
        for _ in 0..wave {
            let mut s = std::net::TcpStream::connect(srv.addr)
                .map_err(|e| format!("{}: connection {opened}: {e}", side.name))?;
            s.write_all(b"version\r\n").map_err(|e| e.to_string())?;
            batch.push(s);
        }
        for mut s in batch {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let k = s
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", side.name))?;
            if !buf[..k].starts_with(b"VERSION") {
                return Err(format!(
                    "{}: connection {opened} got {:?}",
                    side.name,
                    String::from_utf8_lossy(&buf[..k])
                ));
            }
            conns.push(s);
            opened += 1;
        }
    }
    let figures = idle_figures("RSS growth per idle connection", &srv, before, n);
    drop(conns);
    Ok(Ok((figures, None)))
}

/// What an idle-connections run reports: RSS growth per connection (named
/// `per_name`), RSS with them open, peak RSS.
pub(crate) fn idle_figures(per_name: &str, srv: &Running, before: u64, n: u64) -> Figures {
    const MB: f64 = 1048576.0;
    // Once the last connection has been answered: RSS at 0.3 s, while the
    // workers may still hold the buffers they used to answer (memcrab
    // frees pools unused for a second), and once that second has passed.
    std::thread::sleep(Duration::from_millis(300));
    let early = srv.rss().1;
    std::thread::sleep(Duration::from_millis(2000));
    let (hwm, after) = srv.rss();
    let per = |rss: u64| rss.saturating_sub(before) as f64 / n as f64;
    vec![
        fig(per_name, "bytes", Better::Lower, per(after)),
        fig(
            &format!("{per_name}, 0.3 s after the last"),
            "bytes",
            Better::Lower,
            per(early),
        ),
        fig(
            "server RSS with connections open",
            "MB",
            Better::Lower,
            after as f64 / MB,
        ),
        fig("server peak RSS", "MB", Better::Lower, hwm as f64 / MB),
    ]
}
