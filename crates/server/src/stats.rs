//! Statistics: per-worker counters (each worker writes only its own,
//! cache-line aligned) summed on demand, and the rendering of every
//! `stats` group with memcached 1.6's field names and order.

use std::io::Write as _;
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
}

const COUNTERS: usize = Counter::ConnYields as usize + 1;

/// One worker's counters, on their own cache lines.
#[repr(align(128))]
#[derive(Default)]
pub struct WorkerStats {
    c: [AtomicU64; COUNTERS],
}

impl WorkerStats {
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        self.c[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn incr(&self, c: Counter) {
        self.add(c, 1);
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

/// Appends `STAT name value\r\n`.
fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "STAT {name} {value}\r\n");
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
pub fn general(sh: &Shared, out: &mut Vec<u8>) {
    let clock = sh.store.clock();
    let now = clock.now();
    let t = Totals::of(&sh.worker_stats);
    let s: StoreStats = sh.store.stats();
    let sum = |f: fn(&memcrab_store::ClassStats) -> u64| -> u64 {
        s.classes.iter().map(|c| f(&c.stats)).sum()
    };
    let (user, system) = rusage();
    let conns = sh.conns.snapshot_counts();
    stat(out, "pid", std::process::id());
    stat(out, "uptime", now.saturating_sub(60));
    stat(out, "time", clock.unix_now());
    stat(out, "version", MEMCACHED_VERSION);
    stat(out, "libevent", "mio-1");
    stat(out, "pointer_size", usize::BITS);
    stat(out, "rusage_user", user);
    stat(out, "rusage_system", system);
    stat(out, "max_connections", sh.settings.maxconns);
    stat(out, "curr_connections", conns.current);
    stat(out, "total_connections", conns.total);
    stat(out, "rejected_connections", conns.rejected);
    stat(out, "connection_structures", conns.current);
    stat(out, "response_obj_oom", 0);
    stat(out, "response_obj_count", 0);
    stat(out, "response_obj_bytes", 0);
    stat(out, "read_buf_count", 0);
    stat(out, "read_buf_bytes", 0);
    stat(out, "read_buf_bytes_free", 0);
    stat(out, "read_buf_oom", 0);
    stat(out, "reserved_fds", 0);
    stat(out, "cmd_get", t.get(Counter::GetCmds));
    stat(out, "cmd_set", sum(|c| c.cmd_set));
    stat(out, "cmd_flush", t.get(Counter::FlushCmds));
    stat(out, "cmd_touch", t.get(Counter::TouchCmds));
    stat(out, "cmd_meta", 0);
    stat(out, "get_hits", sum(|c| c.get_hits));
    stat(out, "get_misses", t.get(Counter::GetMisses));
    stat(out, "get_expired", t.get(Counter::GetExpired));
    stat(out, "get_flushed", t.get(Counter::GetFlushed));
    stat(out, "delete_misses", t.get(Counter::DeleteMisses));
    stat(out, "delete_hits", sum(|c| c.delete_hits));
    stat(out, "incr_misses", t.get(Counter::IncrMisses));
    stat(out, "incr_hits", sum(|c| c.incr_hits));
    stat(out, "decr_misses", t.get(Counter::DecrMisses));
    stat(out, "decr_hits", sum(|c| c.decr_hits));
    stat(out, "cas_misses", t.get(Counter::CasMisses));
    stat(out, "cas_hits", sum(|c| c.cas_hits));
    stat(out, "cas_badval", sum(|c| c.cas_badval));
    stat(out, "touch_hits", sum(|c| c.touch_hits));
    stat(out, "touch_misses", t.get(Counter::TouchMisses));
    stat(out, "store_too_large", t.get(Counter::StoreTooLarge));
    stat(out, "store_no_memory", t.get(Counter::StoreNoMemory));
    stat(out, "auth_cmds", t.get(Counter::AuthCmds));
    stat(out, "auth_errors", t.get(Counter::AuthErrors));
    stat(out, "bytes_read", t.get(Counter::BytesRead));
    stat(out, "bytes_written", t.get(Counter::BytesWritten));
    stat(out, "limit_maxbytes", sh.settings.maxbytes);
    stat(out, "accepting_conns", 1);
    stat(out, "listen_disabled_num", 0);
    stat(out, "time_in_listen_disabled_us", 0);
    stat(out, "threads", sh.settings.threads);
    stat(out, "conn_yields", t.get(Counter::ConnYields));
    stat(out, "hash_power_level", s.hash_power_level);
    stat(out, "hash_bytes", s.hash_bytes);
    stat(out, "hash_is_expanding", u8::from(s.hash_is_expanding));
    stat(out, "slab_reassign_rescues", 0);
    stat(out, "slab_reassign_chunk_rescues", 0);
    stat(
        out,
        "slab_reassign_evictions_nomem",
        s.slab_reassign_evictions,
    );
    stat(out, "slab_reassign_inline_reclaim", 0);
    stat(out, "slab_reassign_busy_items", s.slab_reassign_busy_items);
    stat(out, "slab_reassign_busy_deletes", 0);
    stat(
        out,
        "slab_reassign_running",
        u8::from(s.slab_reassign_running),
    );
    stat(out, "slabs_moved", s.slabs_moved);
    for name in [
        "lru_crawler_running",
        "lru_crawler_starts",
        "lru_maintainer_juggles",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
    ] {
        stat(out, name, 0);
    }
    stat(out, "bytes", s.bytes);
    stat(out, "curr_items", s.curr_items);
    stat(out, "total_items", s.total_items);
    stat(out, "slab_global_page_pool", s.pool_pages);
    stat(out, "expired_unfetched", s.expired_unfetched);
    stat(out, "evicted_unfetched", s.evicted_unfetched);
    stat(out, "evicted_active", 0);
    stat(out, "evictions", s.evictions);
    stat(out, "reclaimed", s.reclaimed);
    // memcached's LRU crawler frees expired items in the background;
    // memcrab's expiry wheel does: its figures go in the crawler's fields.
    stat(out, "crawler_reclaimed", s.expired_reclaimed);
    stat(out, "crawler_items_checked", s.wheel_checked);
    for name in [
        "lrutail_reflocked",
        "moves_to_cold",
        "moves_to_warm",
        "moves_within_lru",
        "direct_reclaims",
        "lru_bumps_dropped",
    ] {
        stat(out, name, 0);
    }
    // memcrab's own (after memcached's fields, so parsers that read
    // memcached's order are not disturbed).
    stat(out, "expired_reclaimed", s.expired_reclaimed);
    stat(out, "expiry_wheel_entries", s.wheel_entries);
    stat(out, "expiry_wheel_bytes", s.wheel_bytes);
    out.extend_from_slice(b"END\r\n");
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
pub fn settings(sh: &Shared, out: &mut Vec<u8>) {
    let s: &Settings = &sh.settings;
    let e = &s.ext;
    let null_or = |o: Option<String>| o.unwrap_or_else(|| "NULL".into());
    stat(out, "maxbytes", s.maxbytes);
    stat(out, "maxconns", s.maxconns);
    stat(
        out,
        "tcpport",
        if s.unix_socket.is_some() { 0 } else { s.port },
    );
    stat(out, "udpport", s.udp_port);
    stat(
        out,
        "inter",
        null_or((!s.listen.is_empty()).then(|| s.listen.join(","))),
    );
    stat(out, "verbosity", sh.verbose());
    stat(out, "oldest", 0);
    stat(out, "evictions", on_off(s.evictions));
    stat(
        out,
        "domain_socket",
        null_or(s.unix_socket.as_ref().map(|p| p.display().to_string())),
    );
    stat(out, "umask", format!("{:o}", s.unix_mask));
    stat(out, "shutdown_command", yes_no(s.shutdown_command));
    stat(out, "growth_factor", format!("{:.2}", s.growth_factor));
    stat(out, "chunk_size", s.chunk_size);
    stat(out, "num_threads", s.threads);
    stat(out, "num_threads_per_udp", s.threads);
    stat(out, "stat_key_prefix", ":");
    stat(out, "detail_enabled", "no");
    stat(out, "reqs_per_event", s.reqs_per_event);
    stat(out, "cas_enabled", yes_no(s.use_cas));
    stat(out, "tcp_backlog", s.backlog);
    stat(out, "binding_protocol", s.protocol);
    stat(out, "auth_enabled_sasl", yes_no(s.sasl.is_some()));
    stat(
        out,
        "auth_enabled_ascii",
        match &s.auth_file {
            Some(u) => u.path.display().to_string(),
            None => "no".into(),
        },
    );
    stat(out, "item_size_max", s.item_size_max);
    stat(out, "maxconns_fast", yes_no(e.maxconns_fast));
    stat(out, "hashpower_init", e.hashpower_init);
    stat(out, "slab_reassign", yes_no(e.slab_reassign));
    stat(out, "slab_automove", sh.automove());
    stat(
        out,
        "slab_automove_ratio",
        format!("{:.2}", e.slab_automove_ratio),
    );
    stat(out, "slab_automove_window", e.slab_automove_window);
    stat(out, "slab_chunk_max", e.slab_chunk_max);
    stat(out, "lru_crawler", yes_no(e.lru_crawler));
    stat(out, "lru_crawler_sleep", e.lru_crawler_sleep);
    stat(out, "lru_crawler_tocrawl", e.lru_crawler_tocrawl);
    stat(out, "tail_repair_time", e.tail_repair_time);
    stat(out, "flush_enabled", yes_no(s.flush_enabled));
    stat(out, "dump_enabled", yes_no(s.dump_enabled));
    stat(out, "hash_algorithm", &e.hash_algorithm);
    stat(out, "lru_maintainer_thread", yes_no(e.lru_maintainer));
    stat(out, "lru_segmented", yes_no(e.lru_maintainer));
    stat(out, "hot_lru_pct", e.hot_lru_pct);
    stat(out, "warm_lru_pct", e.warm_lru_pct);
    stat(out, "hot_max_factor", format!("{:.2}", e.hot_max_factor));
    stat(out, "warm_max_factor", format!("{:.2}", e.warm_max_factor));
    stat(out, "temp_lru", yes_no(e.temp_lru));
    stat(out, "temporary_ttl", e.temporary_ttl);
    stat(out, "idle_timeout", e.idle_timeout);
    stat(out, "watcher_logbuf_size", e.watcher_logbuf_size);
    stat(out, "worker_logbuf_size", e.worker_logbuf_size);
    stat(out, "read_buf_mem_limit", e.read_buf_mem_limit);
    stat(out, "track_sizes", "no");
    stat(out, "inline_ascii_response", "no");
    stat(out, "ext_item_size", 512);
    stat(out, "ext_item_age", u32::MAX);
    stat(out, "ext_low_ttl", 0);
    stat(out, "ext_recache_rate", 2000);
    stat(out, "ext_wbuf_size", 4194304);
    stat(out, "ext_compact_under", 0);
    stat(out, "ext_drop_under", 0);
    stat(out, "ext_max_sleep", 1000000);
    stat(out, "ext_max_frag", "0.80");
    stat(
        out,
        "slab_automove_freeratio",
        format!("{:.3}", e.slab_automove_freeratio),
    );
    stat(out, "ext_drop_unread", "no");
    stat(out, "ssl_enabled", "no");
    stat(out, "ssl_chain_cert", "(null)");
    stat(out, "ssl_key", "(null)");
    stat(out, "ssl_verify_mode", 0);
    stat(out, "ssl_keyformat", 1);
    stat(out, "ssl_ciphers", "NULL");
    stat(out, "ssl_ca_cert", "NULL");
    stat(out, "ssl_wbuf_size", 16384);
    stat(out, "ssl_session_cache", "no");
    stat(out, "ssl_kernel_tls", "no");
    stat(out, "ssl_min_version", "tlsv1.2");
    stat(out, "num_napi_ids", "(null)");
    stat(out, "memory_file", "(null)");
    stat(out, "expiry_batch", e.expiry_batch);
    stat(out, "expiry_wheel_seconds", memcrab_store::EXPIRY_RING);
    out.extend_from_slice(b"END\r\n");
}

/// `stats items`: classes that hold items.
pub fn items(sh: &Shared, out: &mut Vec<u8>) {
    let s = sh.store.stats();
    for c in s.classes.iter().filter(|c| c.items > 0) {
        let st = &c.stats;
        let mut f = |name: &str, v: u64| {
            let _ = write!(out, "STAT items:{}:{name} {v}\r\n", c.id);
        };
        f("number", u64::from(c.items));
        f("number_hot", 0);
        f("number_warm", 0);
        f("number_cold", u64::from(c.items));
        f("age_hot", 0);
        f("age_warm", 0);
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
        f("lrutail_reflocked", 0);
        f("moves_to_cold", 0);
        f("moves_to_warm", 0);
        f("moves_within_lru", 0);
        f("direct_reclaims", 0);
        f("hits_to_hot", 0);
        f("hits_to_warm", 0);
        f("hits_to_cold", st.get_hits);
        f("hits_to_temp", 0);
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats slabs`: classes that own pages, then the totals.
pub fn slabs(sh: &Shared, out: &mut Vec<u8>) {
    let s = sh.store.stats();
    let mut active = 0;
    for c in s.classes.iter().filter(|c| c.pages > 0) {
        active += 1;
        let st = &c.stats;
        let total = u64::from(c.pages) * u64::from(c.per_page);
        debug_assert!(u64::from(c.used_chunks) <= total);
        let mut f = |name: &str, v: u64| {
            let _ = write!(out, "STAT {}:{name} {v}\r\n", c.id);
        };
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
    stat(out, "active_slabs", active);
    stat(out, "total_malloced", s.total_malloced);
    out.extend_from_slice(b"END\r\n");
}

/// `stats sizes`: memcrab keeps no size histogram (`-o track_sizes` is
/// refused), which memcached reports this way.
pub fn sizes(out: &mut Vec<u8>) {
    stat(out, "sizes_status", "disabled");
    out.extend_from_slice(b"END\r\n");
}

/// `stats conns`: listeners, then client connections, by descriptor.
pub fn conns(sh: &Shared, out: &mut Vec<u8>) {
    let now = sh.store.clock().now();
    for l in &sh.listeners {
        let _ = write!(out, "STAT {}:addr {}\r\n", l.fd, l.addr);
        let _ = write!(out, "STAT {}:state conn_listening\r\n", l.fd);
        let _ = write!(out, "STAT {}:secs_since_last_cmd 0\r\n", l.fd);
    }
    for c in sh.conns.list() {
        let _ = write!(out, "STAT {}:addr {}\r\n", c.fd, c.addr);
        if let Some(l) = &c.listen_addr {
            let _ = write!(out, "STAT {}:listen_addr {l}\r\n", c.fd);
        }
        let _ = write!(out, "STAT {}:state {}\r\n", c.fd, c.state());
        let _ = write!(
            out,
            "STAT {}:secs_since_last_cmd {}\r\n",
            c.fd,
            now.saturating_sub(c.last_cmd())
        );
    }
    out.extend_from_slice(b"END\r\n");
}
