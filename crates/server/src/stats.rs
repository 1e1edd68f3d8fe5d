//! Statistics: per-worker counters (each worker writes only its own,
//! cache-line aligned) summed on demand, and every `stats` group as data:
//! a list of [`Stat`]s, (name, value) pairs with memcached 1.6's field
//! names in its order. Text `stats` and binary `Stat` render the same
//! pairs (`session::text`, `session::binary`); nothing parses rendered
//! stats.
//!
//! ```text
//!  WorkerStats (per worker) ─┐
//!  Store::stats (per class) ─┼─► general/settings/items/slabs/sizes/conns
//!  ConnRegistry, Settings ───┘        ──► Vec<Stat> ──► text | binary
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use memcrab_store::StoreStats;

use crate::config::{Settings, MEMCACHED_VERSION};
use crate::shared::Shared;

/// The counters a worker keeps. Hits live in the store's per-class stats.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum Counter {
    GetCmds,
    GetMisses,
    GetExpired,
    GetFlushed,
    TouchCmds,
    TouchMisses,
    DeleteMisses,
    IncrMisses,
    DecrMisses,
    CasMisses,
    FlushCmds,
    StoreTooLarge,
    StoreNoMemory,
    AuthCmds,
    AuthErrors,
    BytesRead,
    BytesWritten,
    ConnYields,
    ReadBufOom,
    ResponseObjOom,
    IdleKicks,
    MetaCmds,
}

const COUNTERS: usize = Counter::MetaCmds as usize + 1;

/// What a worker's connections hold in buffers now (not reset by
/// `stats reset`), as of its last readiness event.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// Read buffers lent to connections, and their bytes.
    ReadBufs,
    ReadBufBytes,
    /// Read buffers in the worker's pool.
    ReadBufsFree,
    /// Reply buffers lent to connections, and their bytes.
    ReplyBufs,
    ReplyBufBytes,
}

const GAUGES: usize = Gauge::ReplyBufBytes as usize + 1;

/// One worker's counters, on their own cache lines.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerStats {
    c: [AtomicU64; COUNTERS],
    g: [AtomicU64; GAUGES],
    /// Per-command latency (kept under `-o metrics_port`).
    pub lat: crate::latency::Histograms,
    /// This worker's hot keys (`-o hot_keys`).
    pub hot: Option<crate::hotkeys::Slot>,
}

impl WorkerStats {
    /// A worker's counters, with a hot-key slot when `hot` says so.
    pub fn new(hot: Option<crate::hotkeys::Slot>) -> Self {
        WorkerStats {
            hot,
            ..WorkerStats::default()
        }
    }

    pub fn set_gauge(&self, g: Gauge, v: u64) {
        self.g[g as usize].store(v, Ordering::Relaxed);
    }

    /// The sum of `g` over `workers`.
    pub fn gauge(workers: &[std::sync::Arc<WorkerStats>], g: Gauge) -> u64 {
        workers
            .iter()
            .map(|w| w.g[g as usize].load(Ordering::Relaxed))
            .sum()
    }

    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        self.c[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn incr(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Takes back what `add` counted too soon (never below zero: a
    /// `stats reset` may have come between).
    pub fn sub(&self, c: Counter, n: u64) {
        let _ = self.c[c as usize].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    pub fn reset(&self) {
        for c in &self.c {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Sum of all workers' counters.
pub struct Totals([u64; COUNTERS]);

impl Totals {
    pub fn of(workers: &[std::sync::Arc<WorkerStats>]) -> Totals {
        let mut t = [0u64; COUNTERS];
        for w in workers {
            for (i, v) in t.iter_mut().enumerate() {
                *v += w.c[i].load(Ordering::Relaxed);
            }
        }
        Totals(t)
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}

/// A statistic's value: a count, or text (a version, a setting, a
/// time with microseconds).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Num(u64),
    Text(Cow<'static, str>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

impl Value {
    /// Appends the value's bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Num(n) => memcrab_proto::num::write_u64(out, *n),
            Value::Text(t) => out.extend_from_slice(t.as_bytes()),
        }
    }
}

/// One `STAT name value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    pub name: Cow<'static, str>,
    pub value: Value,
}

/// A group of stats being gathered.
#[derive(Default)]
struct Pairs(Vec<Stat>);

impl Pairs {
    fn num(&mut self, name: impl Into<Cow<'static, str>>, v: u64) {
        self.0.push(Stat {
            name: name.into(),
            value: Value::Num(v),
        });
    }

    fn text(&mut self, name: impl Into<Cow<'static, str>>, v: impl Into<Cow<'static, str>>) {
        self.0.push(Stat {
            name: name.into(),
            value: Value::Text(v.into()),
        });
    }
}

fn rusage() -> (String, String) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let f = |t: nix::sys::time::TimeVal| format!("{}.{:06}", t.tv_sec(), t.tv_usec());
            (f(u.user_time()), f(u.system_time()))
        }
        Err(_) => ("0.000000".into(), "0.000000".into()),
    }
}

/// `stats` with no argument.
pub fn general(sh: &Shared) -> Vec<Stat> {
    let clock = sh.store.clock();
    let now = clock.now();
    let t = Totals::of(&sh.worker_stats);
    let s: StoreStats = sh.store.stats();
    let sum = |f: fn(&memcrab_store::ClassStats) -> u64| -> u64 {
        s.classes.iter().map(|c| f(&c.stats)).sum()
    };
    let (user, system) = rusage();
    let conns = sh.conns.snapshot_counts();
    let mut p = Pairs::default();
    p.num("pid", u64::from(std::process::id()));
    p.num("uptime", u64::from(now.saturating_sub(60)));
    p.num("time", clock.unix_now());
    p.text("version", MEMCACHED_VERSION);
    p.text("libevent", "mio-1");
    p.num("pointer_size", u64::from(usize::BITS));
    p.text("rusage_user", user);
    p.text("rusage_system", system);
    p.num("max_connections", sh.settings.maxconns as u64);
    p.num("curr_connections", conns.current);
    p.num("total_connections", conns.total);
    p.num("rejected_connections", conns.rejected);
    p.num("connection_structures", conns.structures);
    // memcached's read buffers and response objects come from one cache
    // per thread; memcrab's from a pool of read buffers and one of reply
    // buffers per worker. Response objects run out only under an explicit
    // `-o read_buf_mem_limit`, as memcached's do (`Output::resp_start`).
    let g = |g| WorkerStats::gauge(&sh.worker_stats, g);
    let free = g(Gauge::ReadBufsFree);
    p.num("response_obj_oom", t.get(Counter::ResponseObjOom));
    p.num("response_obj_count", g(Gauge::ReplyBufs));
    p.num("response_obj_bytes", g(Gauge::ReplyBufBytes));
    p.num("read_buf_count", g(Gauge::ReadBufs) + free);
    p.num(
        "read_buf_bytes",
        g(Gauge::ReadBufBytes) + free * crate::conn::READ_BUF as u64,
    );
    p.num("read_buf_bytes_free", free * crate::conn::READ_BUF as u64);
    p.num("read_buf_oom", t.get(Counter::ReadBufOom));
    p.num("reserved_fds", sh.conns.reserved_fds() as u64);
    p.num("cmd_get", t.get(Counter::GetCmds));
    p.num("cmd_set", sum(|c| c.cmd_set));
    p.num("cmd_flush", t.get(Counter::FlushCmds));
    p.num("cmd_touch", t.get(Counter::TouchCmds));
    p.num("cmd_meta", t.get(Counter::MetaCmds));
    p.num("get_hits", sum(|c| c.get_hits));
    p.num("get_misses", t.get(Counter::GetMisses));
    p.num("get_expired", t.get(Counter::GetExpired));
    p.num("get_flushed", t.get(Counter::GetFlushed));
    p.num("delete_misses", t.get(Counter::DeleteMisses));
    p.num("delete_hits", sum(|c| c.delete_hits));
    p.num("incr_misses", t.get(Counter::IncrMisses));
    p.num("incr_hits", sum(|c| c.incr_hits));
    p.num("decr_misses", t.get(Counter::DecrMisses));
    p.num("decr_hits", sum(|c| c.decr_hits));
    p.num("cas_misses", t.get(Counter::CasMisses));
    p.num("cas_hits", sum(|c| c.cas_hits));
    p.num("cas_badval", sum(|c| c.cas_badval));
    p.num("touch_hits", sum(|c| c.touch_hits));
    p.num("touch_misses", t.get(Counter::TouchMisses));
    p.num("store_too_large", t.get(Counter::StoreTooLarge));
    p.num("store_no_memory", t.get(Counter::StoreNoMemory));
    p.num("auth_cmds", t.get(Counter::AuthCmds));
    p.num("auth_errors", t.get(Counter::AuthErrors));
    if sh.settings.ext.idle_timeout != 0 {
        p.num("idle_kicks", t.get(Counter::IdleKicks));
    }
    p.num("bytes_read", t.get(Counter::BytesRead));
    p.num("bytes_written", t.get(Counter::BytesWritten));
    p.num("limit_maxbytes", sh.store.mem_limit());
    let (accepting, disabled, disabled_us) = sh.conns.listen_state();
    p.num("accepting_conns", u64::from(accepting));
    p.num("listen_disabled_num", disabled);
    p.num("time_in_listen_disabled_us", disabled_us);
    p.num("threads", sh.settings.threads as u64);
    p.num("conn_yields", t.get(Counter::ConnYields));
    p.num("hash_power_level", u64::from(s.hash_power_level));
    p.num("hash_bytes", s.hash_bytes);
    p.num("hash_is_expanding", u64::from(s.hash_is_expanding));
    p.num("slab_reassign_rescues", 0);
    p.num("slab_reassign_chunk_rescues", 0);
    p.num("slab_reassign_evictions_nomem", s.slab_reassign_evictions);
    p.num("slab_reassign_inline_reclaim", 0);
    p.num("slab_reassign_busy_items", s.slab_reassign_busy_items);
    p.num("slab_reassign_busy_deletes", 0);
    p.num("slab_reassign_running", u64::from(s.slab_reassign_running));
    p.num("slabs_moved", s.slabs_moved);
    for name in [
        "lru_crawler_running",
        "lru_crawler_starts",
        "lru_maintainer_juggles",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
    ] {
        p.num(name, 0);
    }
    let w = &sh.watch;
    p.num(
        "log_watcher_skipped",
        w.skipped.load(std::sync::atomic::Ordering::Relaxed),
    );
    p.num(
        "log_watcher_sent",
        w.sent.load(std::sync::atomic::Ordering::Relaxed),
    );
    p.num("log_watchers", w.count() as u64);
    if let Some(tls) = &sh.settings.tls {
        use std::sync::atomic::Ordering::Relaxed;
        if tls.options().session_cache {
            p.num("ssl_new_sessions", tls.counts.new_sessions.load(Relaxed));
        }
        p.num(
            "ssl_handshake_errors",
            tls.counts.handshake_errors.load(Relaxed),
        );
        p.num("time_since_server_cert_refresh", tls.since_refresh());
    }
    p.num("unexpected_napi_ids", 0);
    p.num("round_robin_fallback", 0);
    p.num("bytes", s.bytes);
    p.num("curr_items", s.curr_items);
    p.num("total_items", s.total_items);
    p.num("slab_global_page_pool", s.pool_pages);
    p.num("expired_unfetched", s.expired_unfetched);
    p.num("evicted_unfetched", s.evicted_unfetched);
    p.num("evicted_active", 0);
    p.num("evictions", s.evictions);
    p.num("reclaimed", s.reclaimed);
    // memcached's LRU crawler frees expired items in the background;
    // memcrab's expiry wheel does: its figures go in the crawler's fields.
    p.num("crawler_reclaimed", s.expired_reclaimed);
    p.num("crawler_items_checked", s.wheel_checked);
    let sum = |f: fn(&memcrab_store::ClassStats) -> u64| -> u64 {
        s.classes.iter().map(|c| f(&c.stats)).sum()
    };
    p.num("lrutail_reflocked", sum(|c| c.passed_busy));
    p.num("moves_to_cold", 0);
    p.num("moves_to_warm", sum(|c| c.moves_to_main));
    p.num("moves_within_lru", sum(|c| c.reinserted));
    p.num("direct_reclaims", 0);
    p.num("lru_bumps_dropped", 0);
    p.0
}

/// `stats memcrab`: memcrab's own figures and settings, which memcached
/// has not (so that `stats` and `stats settings` list memcached's fields
/// only, for tools that count or parse them).
pub fn memcrab(sh: &Shared) -> Vec<Stat> {
    let s = sh.store.stats();
    let mut p = Pairs::default();
    p.num("expired_reclaimed", s.expired_reclaimed);
    p.num("expiry_wheel_entries", s.wheel_entries);
    p.num("expiry_wheel_bytes", s.wheel_bytes);
    p.num("eviction_policy_bytes", s.policy_bytes);
    p.num("ghost_hits", s.ghost_hits);
    p.num("expiry_batch", u64::from(sh.settings.ext.expiry_batch));
    p.num("expiry_wheel_seconds", memcrab_store::EXPIRY_RING as u64);
    p.num("connection_budget", sh.settings.conn_budget() as u64);
    p.0
}

/// `stats hotkeys`: the settings, then `hotkey:<key> <estimate>` for the
/// hottest keys, hottest first (keys URI-encoded as metadump writes them).
pub fn hotkeys(sh: &Shared) -> Vec<Stat> {
    let e = &sh.settings.ext;
    let mut p = Pairs::default();
    p.num("hot_keys", u64::from(e.hot_keys));
    p.num("hot_keys_window", u64::from(e.hot_keys_window));
    p.num("hot_keys_sample", u64::from(e.hot_keys_sample));
    for (key, n) in hottest(sh) {
        let mut name = b"hotkey:".to_vec();
        crate::watch::uri_encode(&key, &mut name);
        p.num(String::from_utf8_lossy(&name).into_owned(), n);
    }
    p.0
}

/// The hottest keys now, over every worker (none when not kept).
pub fn hottest(sh: &Shared) -> Vec<(Vec<u8>, u64)> {
    crate::hotkeys::hottest(
        sh.worker_stats.iter().filter_map(|w| w.hot.as_ref()),
        sh.store.clock().now(),
    )
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `stats settings`.
pub fn settings(sh: &Shared) -> Vec<Stat> {
    let s: &Settings = &sh.settings;
    let e = &s.ext;
    let null_or = |o: Option<String>| o.unwrap_or_else(|| "NULL".into());
    let mut p = Pairs::default();
    p.num("maxbytes", sh.store.mem_limit());
    p.num("maxconns", s.maxconns as u64);
    p.text(
        "tcpport",
        if s.unix_socket.is_some() {
            "0".to_string()
        } else {
            s.port.to_string()
        },
    );
    p.text("udpport", s.udp_port.to_string());
    p.text(
        "inter",
        null_or((!s.listen.is_empty()).then(|| s.listen.join(","))),
    );
    p.num("verbosity", u64::from(sh.verbose()));
    p.num("oldest", 0);
    p.text("evictions", on_off(s.evictions));
    p.text(
        "domain_socket",
        null_or(s.unix_socket.as_ref().map(|p| p.display().to_string())),
    );
    p.text("umask", format!("{:o}", s.unix_mask));
    p.text("shutdown_command", yes_no(s.shutdown_command));
    p.text("growth_factor", format!("{:.2}", s.growth_factor));
    p.num("chunk_size", u64::from(s.chunk_size));
    p.num("num_threads", s.threads as u64);
    p.num("num_threads_per_udp", s.threads as u64);
    let d = sh.prefix.delimiter();
    p.text(
        "stat_key_prefix",
        String::from_utf8_lossy(&[d]).into_owned(),
    );
    p.text(
        "detail_enabled",
        if sh.prefix.is_on() { "yes" } else { "no" },
    );
    p.num("reqs_per_event", s.reqs_per_event as u64);
    p.text("cas_enabled", yes_no(s.use_cas));
    p.text("tcp_backlog", s.backlog.to_string());
    p.text("binding_protocol", s.protocol.to_string());
    p.text("auth_enabled_sasl", yes_no(s.sasl.is_some()));
    p.text(
        "auth_enabled_ascii",
        match &s.auth_file {
            Some(u) => u.path.display().to_string(),
            None => "no".into(),
        },
    );
    p.num("item_size_max", u64::from(s.item_size_max));
    p.text("maxconns_fast", yes_no(e.maxconns_fast));
    p.num("hashpower_init", u64::from(e.hashpower_init));
    p.text("slab_reassign", yes_no(e.slab_reassign));
    p.num("slab_automove", u64::from(sh.automove()));
    p.text(
        "slab_automove_ratio",
        format!("{:.2}", e.slab_automove_ratio),
    );
    p.num("slab_automove_window", u64::from(e.slab_automove_window));
    p.num("slab_chunk_max", u64::from(e.slab_chunk_max));
    p.text("lru_crawler", yes_no(sh.crawler.enabled()));
    p.num("lru_crawler_sleep", u64::from(sh.crawler.sleep()));
    p.num("lru_crawler_tocrawl", u64::from(sh.crawler.tocrawl()));
    p.num("tail_repair_time", u64::from(e.tail_repair_time));
    p.text("flush_enabled", yes_no(s.flush_enabled));
    p.text("dump_enabled", yes_no(s.dump_enabled));
    p.text("hash_algorithm", e.hash_algorithm.clone());
    p.text("lru_maintainer_thread", yes_no(e.lru_maintainer));
    p.text("lru_segmented", yes_no(e.lru_maintainer));
    p.num("hot_lru_pct", u64::from(e.hot_lru_pct));
    p.num("warm_lru_pct", u64::from(e.warm_lru_pct));
    p.text("hot_max_factor", format!("{:.2}", e.hot_max_factor));
    p.text("warm_max_factor", format!("{:.2}", e.warm_max_factor));
    p.text("temp_lru", yes_no(e.temp_lru));
    p.num("temporary_ttl", u64::from(e.temporary_ttl));
    p.num("idle_timeout", u64::from(e.idle_timeout));
    p.num("watcher_logbuf_size", u64::from(e.watcher_logbuf_size));
    p.num("worker_logbuf_size", u64::from(e.worker_logbuf_size));
    // memcached keeps the bytes in an unsigned int.
    p.num("read_buf_mem_limit", u64::from(e.read_buf_mem_limit as u32));
    p.text("track_sizes", "no");
    p.text("inline_ascii_response", "no");
    p.num("ext_item_size", 512);
    p.num("ext_item_age", u64::from(u32::MAX));
    p.num("ext_low_ttl", 0);
    p.num("ext_recache_rate", 2000);
    p.num("ext_wbuf_size", 4194304);
    p.num("ext_compact_under", 0);
    p.num("ext_drop_under", 0);
    p.num("ext_max_sleep", 1000000);
    p.text("ext_max_frag", "0.80");
    p.text(
        "slab_automove_freeratio",
        format!("{:.3}", e.slab_automove_freeratio),
    );
    p.text("ext_drop_unread", "no");
    let o = &e.ssl;
    let path = |p: &Option<std::path::PathBuf>, none: &str| {
        p.as_ref()
            .map_or_else(|| none.to_string(), |p| p.display().to_string())
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    p.text("ssl_enabled", yes(sh.settings.tls.is_some()));
    p.text("ssl_chain_cert", path(&o.chain_cert, "(null)"));
    p.text("ssl_key", path(&o.key, "(null)"));
    // OpenSSL's flags, as memcached prints them: PEER 1,
    // FAIL_IF_NO_PEER_CERT 2, CLIENT_ONCE 4.
    p.num(
        "ssl_verify_mode",
        [0, 1, 3, 7][usize::from(o.verify_mode.min(3))],
    );
    p.text("ssl_keyformat", o.keyformat.to_string());
    p.text(
        "ssl_ciphers",
        o.ciphers.clone().unwrap_or_else(|| "NULL".into()),
    );
    p.text("ssl_ca_cert", path(&o.ca_cert, "NULL"));
    p.num("ssl_wbuf_size", u64::from(o.wbuf_size));
    p.text("ssl_session_cache", yes(o.session_cache));
    p.text("ssl_kernel_tls", yes(o.kernel_tls));
    p.text(
        "ssl_min_version",
        crate::config::ssl_version_name(o.min_version),
    );
    p.text("num_napi_ids", "(null)");
    p.text("memory_file", "(null)");
    p.0
}

/// `stats items`: classes that hold items.
pub fn items(sh: &Shared) -> Vec<Stat> {
    let s = sh.store.stats();
    let mut p = Pairs::default();
    for c in s.classes.iter().filter(|c| c.items > 0) {
        let st = &c.stats;
        let mut f = |name: &str, v: u64| p.num(format!("items:{}:{name}", c.id), v);
        // S3-FIFO's small queue is memcached's hot LRU (new items), its
        // main queue the warm one (items hit since they came); no cold.
        f("number", u64::from(c.items));
        f("number_hot", u64::from(c.items_small));
        f("number_warm", u64::from(c.items_main));
        f("number_cold", 0);
        f("age_hot", u64::from(c.age_small));
        f("age_warm", u64::from(c.age_main));
        f("age", u64::from(c.age));
        f("mem_requested", c.mem_requested);
        f("evicted", st.evicted);
        f("evicted_nonzero", st.evicted_nonzero);
        f("evicted_time", u64::from(st.evicted_time));
        f("outofmemory", st.outofmemory);
        f("tailrepairs", 0);
        f("reclaimed", st.reclaimed);
        f("expired_unfetched", st.expired_unfetched);
        f("evicted_unfetched", st.evicted_unfetched);
        f("evicted_active", 0);
        f("crawler_reclaimed", st.expired_reclaimed);
        f("crawler_items_checked", 0);
        f("lrutail_reflocked", st.passed_busy);
        f("moves_to_cold", 0);
        f("moves_to_warm", st.moves_to_main);
        f("moves_within_lru", st.reinserted);
        f("direct_reclaims", 0);
        f("hits_to_hot", st.hits_small);
        f("hits_to_warm", st.hits_main);
        f("hits_to_cold", 0);
        f("hits_to_temp", 0);
    }
    p.0
}

/// `stats slabs`: classes that own pages, then the totals.
pub fn slabs(sh: &Shared) -> Vec<Stat> {
    let s = sh.store.stats();
    let mut p = Pairs::default();
    let mut active = 0;
    for c in s.classes.iter().filter(|c| c.pages > 0) {
        active += 1;
        let st = &c.stats;
        let total = u64::from(c.pages) * u64::from(c.per_page);
        debug_assert!(u64::from(c.used_chunks) <= total);
        let mut f = |name: &str, v: u64| p.num(format!("{}:{name}", c.id), v);
        f("chunk_size", u64::from(c.chunk_size));
        f("chunks_per_page", u64::from(c.per_page));
        f("total_pages", u64::from(c.pages));
        f("total_chunks", total);
        f("used_chunks", u64::from(c.used_chunks));
        f("free_chunks", u64::from(c.free_chunks));
        f("free_chunks_end", 0);
        f("get_hits", st.get_hits);
        f("cmd_set", st.cmd_set);
        f("delete_hits", st.delete_hits);
        f("incr_hits", st.incr_hits);
        f("decr_hits", st.decr_hits);
        f("cas_hits", st.cas_hits);
        f("cas_badval", st.cas_badval);
        f("touch_hits", st.touch_hits);
    }
    p.num("active_slabs", active);
    p.num("total_malloced", s.total_malloced);
    p.0
}

/// `stats sizes`: memcrab keeps no size histogram (`-o track_sizes` is
/// refused), which memcached reports this way.
pub fn sizes() -> Vec<Stat> {
    let mut p = Pairs::default();
    p.text("sizes_status", "disabled");
    p.0
}

/// `stats conns`: listeners, UDP sockets and client connections, by
/// descriptor, as memcached lists them.
pub fn conns(sh: &Shared) -> Vec<Stat> {
    let now = sh.store.clock().now();
    let mut p = Pairs::default();
    let mut fds: Vec<(i32, Entry)> = sh
        .listeners
        .iter()
        .map(|l| (l.fd, Entry::Listener(l)))
        .chain(sh.udp.iter().map(|u| (u.fd, Entry::Udp(u))))
        .collect();
    let clients = sh.conns.list();
    fds.extend(clients.iter().map(|c| (c.fd, Entry::Client(c))));
    fds.sort_by_key(|(fd, _)| *fd);
    for (fd, e) in fds {
        let secs = |last: u32| u64::from(now.saturating_sub(last));
        match e {
            Entry::Listener(l) => {
                p.text(format!("{fd}:addr"), l.addr.clone());
                p.text(format!("{fd}:state"), "conn_listening");
                p.num(format!("{fd}:secs_since_last_cmd"), secs(sh.started));
            }
            Entry::Udp(u) => {
                p.text(format!("{fd}:UDP"), "UDP");
                // Busy, it shows whom it is answering, as memcached does.
                match u.peer() {
                    Some(peer) => {
                        p.text(format!("{fd}:addr"), udp_name(peer));
                        p.text(format!("{fd}:listen_addr"), u.addr.clone());
                        p.text(format!("{fd}:state"), "conn_parse_cmd");
                    }
                    None => {
                        p.text(format!("{fd}:addr"), u.addr.clone());
                        p.text(format!("{fd}:state"), "conn_read");
                    }
                }
                p.num(format!("{fd}:secs_since_last_cmd"), secs(u.last_cmd()));
            }
            Entry::Client(c) => {
                p.text(format!("{fd}:addr"), c.addr.clone());
                p.text(format!("{fd}:listen_addr"), c.listen_addr.clone());
                p.text(format!("{fd}:state"), c.state);
                p.num(format!("{fd}:secs_since_last_cmd"), secs(c.last_cmd));
            }
        }
    }
    p.0
}

enum Entry<'a> {
    Listener(&'a crate::shared::ListenerInfo),
    Udp(&'a crate::shared::UdpInfo),
    Client(&'a crate::shared::ClientView),
}

/// memcached's name for a UDP address: `udp:ip:port`, `udp6:[ip]:port`.
pub fn udp_name(a: std::net::SocketAddr) -> String {
    match a {
        std::net::SocketAddr::V4(a) => format!("udp:{a}"),
        std::net::SocketAddr::V6(a) => format!("udp6:{a}"),
    }
}
