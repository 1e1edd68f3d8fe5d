//! memcached 1.6's command line, parsed with clap and checked the way
//! memcached checks it. Flags whose feature memcrab does not have yet are
//! refused at start with a message naming the flag (exit status 64,
//! memcached's EX_USAGE), never silently ignored.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{self, Users};

use clap::{ArgAction, Parser};

/// Exit status for a bad command line (sysexits' EX_USAGE, as memcached).
pub const EX_USAGE: i32 = 64;

/// The `-o` suboptions as `-h` and the man page list them (memcached's,
/// then memcrab's own): name and description with its default.
pub const SUBOPTIONS: &[(&str, &str)] = &[
    ("maxconns_fast", "close new connections past -c at once (default: enabled)"),
    ("hashpower=N", "initial hash table size, 2^N slots (default: 0, grows by itself)"),
    ("tail_repair_time=S", "at least 10; shown, memcrab never kills a busy item"),
    ("hash_algorithm=NAME", "murmur3, jenkins or xxh3: shown in stats settings (default: murmur3)"),
    ("no_lru_crawler", "the crawler starts disabled (lru_crawler enable starts it)"),
    ("lru_crawler_sleep=US", "microseconds between items (default: 100)"),
    ("lru_crawler_tocrawl=N", "items per class per crawl (default: 0, unlimited)"),
    ("read_buf_mem_limit=MB", "the connection budget: long request lines, replies not yet read (default: 0, meaning max(64 MB, -m/4, 2 x -I)); set, it also caps response objects per worker as memcached does"),
    ("no_lru_maintainer", "shown in stats settings (memcrab's LRU has no maintainer thread)"),
    ("hot_lru_pct, warm_lru_pct, hot_max_factor, warm_max_factor, temporary_ttl", "accepted and shown (memcrab's LRU is not segmented)"),
    ("idle_timeout=S", "close connections idle this long (default: 0, never)"),
    ("slab_chunk_max=BYTES", "largest chunk; bigger items are chained (default: 524288)"),
    ("watcher_logbuf_size=KB", "each watcher's buffer (default: 256)"),
    ("worker_logbuf_size=KB", "accepted and shown (default: 64)"),
    ("no_hashexpand, modern, lru_segmented, no_lru_segmented", "accepted, no effect"),
    ("no_modern", "memcached 1.4's defaults: no crawler, no slab reassignment, jenkins"),
    ("slab_reassign, no_slab_reassign", "page moves between classes (default: on)"),
    ("slab_automove[=0|1|2], no_slab_automove", "when pages move (default: 1, also when bare)"),
    ("slab_automove_ratio=F, slab_automove_window=N, slab_automove_freeratio=F", "the automover's tuning (default: 0.80, 30, 0.010)"),
    ("drop_privileges, no_drop_privileges, relaxed_privileges", "accepted, no effect (memcrab drops nothing after start)"),
    ("resp_obj_mem_limit", "deprecated, as in memcached (see read_buf_mem_limit)"),
    ("track_sizes, slab_sizes=LIST, no_chunked_items, inline_ascii_resp", "accepted and ignored, with a note at start (memcrab sizes and chains its own classes; stats sizes stays empty)"),
    ("sasl_file=FILE", "SASL passwords, user:password per line (with -S)"),
    ("ssl_chain_cert=FILE", "TLS certificate chain, PEM (required by -Z)"),
    ("ssl_key=FILE", "TLS private key, PEM (default: in the chain file)"),
    ("ssl_keyformat=N", "0: PEM, the only one taken"),
    ("ssl_verify_mode=N", "0 none, 1 request, 2 require, 3 once (default: 0)"),
    ("ssl_ca_cert=FILE", "CAs that sign client certificates"),
    ("ssl_ciphers=LIST", "TLS 1.2 cipher suites (default: rustls' own)"),
    ("ssl_wbuf_size=KB", "accepted and shown (default: 16)"),
    ("ssl_session_cache", "resume TLS sessions"),
    ("ssl_kernel_tls", "accepted; records stay in user space"),
    ("ssl_min_version=N", "2 tlsv1.2, 3 tlsv1.3 (default: 2)"),
    ("ext_*", "REFUSED: extstore is not built"),
    ("expiry_batch=N", "memcrab's own: expiry wheel entries checked per lock (default: 256)"),
    ("metrics_port=N", "memcrab's own: Prometheus metrics at http://<-l address>:N/metrics, with per-command latency histograms (default: off)"),
    ("hot_keys[=K]", "memcrab's own: keep the K most requested keys, for stats hotkeys and the metrics (bare: 10; default: 0, off)"),
    ("hot_keys_window=S", "memcrab's own: hot key counts halve every S seconds (default: 60)"),
    ("hot_keys_sample=N", "memcrab's own: count one request in N, at random (default: 64)"),
];

/// The suboptions as `-h` shows them after the flags.
pub fn suboptions_help() -> String {
    let mut out = String::from("Extended options (-o name[=value],...):\n");
    for (name, desc) in SUBOPTIONS {
        out.push_str(&format!("  {name}\n"));
        // The description wrapped under the name, 72 columns.
        let mut line = String::from("       ");
        for word in desc.split(' ') {
            if line.len() + word.len() > 72 {
                out.push_str(line.trim_end());
                out.push('\n');
                line = String::from("       ");
            }
            line.push_str(word);
            line.push(' ');
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// memcached's protocol version that memcrab implements and reports.
pub const MEMCACHED_VERSION: &str = "1.6.18";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "memcrab",
    version = concat!(env!("CARGO_PKG_VERSION"), " (memcached 1.6.18 compatible)"),
    about = "memcrab: a memcached 1.6 compatible cache server",
    disable_version_flag = true,
    disable_help_flag = true,
    // memcached (getopt) takes a repeated flag's last value.
    args_override_self = true,
    after_help = suboptions_help()
)]
pub struct Args {
    /// TCP port to listen on (default: 11211; 0 turns TCP off, -1 picks a
    /// free port, reported through MEMCACHED_PORT_FILENAME)
    #[arg(short = 'p', long = "port", allow_hyphen_values = true)]
    pub port: Option<String>,
    /// UDP port to listen on (0: off; an open UDP port can be used to
    /// amplify attacks; -1 picks a free port). Without -p, also the TCP
    /// port, as in memcached
    #[arg(
        short = 'U',
        long = "udp-port",
        default_value = "0",
        allow_hyphen_values = true
    )]
    pub udp_port: String,
    /// UNIX socket to listen on (disables network support)
    #[arg(short = 's', long = "unix-socket")]
    pub unix_socket: Option<PathBuf>,
    /// access mask for UNIX socket, in octal
    #[arg(short = 'a', long = "unix-mask", default_value = "700")]
    pub unix_mask: String,
    /// enable ascii "shutdown" command
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,
    /// interface to listen on (default: INADDR_ANY); comma separated; with
    /// -Z, a 'notls:' prefix makes a listener plain (-l notls:<ip>:<port>)
    #[arg(short = 'l', long = "listen", action = ArgAction::Append)]
    pub listen: Vec<String>,
    /// run as a daemon
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// maximize core file limit
    #[arg(short = 'r', long = "enable-coredumps")]
    pub enable_coredumps: bool,
    /// assume identity of <username> (only when run as root)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// item memory in megabytes
    #[arg(short = 'm', long = "memory-limit", default_value = "64")]
    pub memory_limit: String,
    /// return error on memory exhausted instead of evicting
    #[arg(short = 'M', long = "disable-evictions")]
    pub disable_evictions: bool,
    /// max simultaneous connections
    #[arg(short = 'c', long = "conn-limit", default_value = "1024")]
    pub conn_limit: String,
    /// lock down all paged memory
    #[arg(short = 'k', long = "lock-memory")]
    pub lock_memory: bool,
    /// verbose (print errors/warnings while in event loop); -vv, -vvv more
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,
    /// print this help and exit
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    /// print memcrab's license and exit
    #[arg(short = 'i', long = "license")]
    pub license: bool,
    /// print version and exit
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// save PID in <file>, only used with -d option
    #[arg(short = 'P', long = "pidfile")]
    pub pidfile: Option<PathBuf>,
    /// chunk size growth factor
    #[arg(short = 'f', long = "slab-growth-factor", default_value = "1.25")]
    pub growth_factor: String,
    /// min space used for key+value+flags
    #[arg(short = 'n', long = "slab-min-size", default_value = "48")]
    pub slab_min_size: String,
    /// try to use large memory pages (if available)
    #[arg(short = 'L', long = "enable-largepages")]
    pub large_pages: bool,
    /// use <char> as the delimiter between key prefixes and IDs
    #[arg(short = 'D')]
    pub delimiter: Option<String>,
    /// number of threads to use
    #[arg(short = 't', long = "threads", default_value = "4")]
    pub threads: String,
    /// maximum number of requests per event
    #[arg(short = 'R', long = "max-reqs-per-event", default_value = "20")]
    pub reqs_per_event: String,
    /// disable use of CAS
    #[arg(short = 'C', long = "disable-cas")]
    pub disable_cas: bool,
    /// set the backlog queue limit
    #[arg(short = 'b', long = "listen-backlog", default_value = "1024")]
    pub backlog: String,
    /// protocol - one of ascii, binary, or auto (default: auto-negotiate)
    #[arg(short = 'B', long = "protocol")]
    pub protocol: Option<String>,
    /// adjusts max item size (min: 1k, max: 1024m)
    #[arg(short = 'I', long = "max-item-size", default_value = "1m")]
    pub max_item_size: String,
    /// turn on Sasl authentication
    #[arg(short = 'S', long = "enable-sasl")]
    pub sasl: bool,
    /// disable flush_all command
    #[arg(short = 'F', long = "disable-flush-all")]
    pub disable_flush_all: bool,
    /// disable stats cachedump and lru_crawler metadump
    #[arg(short = 'X', long = "disable-dumping")]
    pub disable_dumping: bool,
    /// disable watch commands (live logging)
    #[arg(short = 'W', long = "disable-watch")]
    pub disable_watch: bool,
    /// enable ASCII protocol authentication
    #[arg(short = 'Y', long = "auth-file")]
    pub auth_file: Option<PathBuf>,
    /// REFUSED: mmap a file for item memory (the restartable cache is not
    /// built yet; memcrab stops with a message naming it)
    #[arg(short = 'e', long = "memory-file")]
    pub memory_file: Option<PathBuf>,
    /// enable TLS/SSL (rustls) on TCP listeners; -o ssl_chain_cert=FILE is
    /// required
    #[arg(short = 'Z', long = "enable-ssl")]
    pub ssl: bool,
    /// comma separated list of extended options (listed below); most have
    /// a 'no_' prefix to disable
    #[arg(short = 'o', long = "extended", action = ArgAction::Append)]
    pub extended: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Auto,
    Ascii,
    Binary,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Auto => "auto-negotiate",
            Protocol::Ascii => "ascii",
            Protocol::Binary => "binary",
        })
    }
}

/// The validated settings every part of the server reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `-W`: no `watch`.
    pub disable_watch: bool,
    /// `-D`: the per-prefix stats delimiter (`:`), and whether they start
    /// on (with `-D`).
    pub prefix_delimiter: u8,
    pub detail_enabled: bool,
    /// memcached's meaning: 0 = no TCP, -1 = an ephemeral port.
    pub port: i32,
    /// The same for UDP; 0 (off) unless `-U` asks.
    pub udp_port: i32,
    pub unix_socket: Option<PathBuf>,
    pub unix_mask: u32,
    pub listen: Vec<String>,
    pub daemon: bool,
    pub enable_coredumps: bool,
    pub user: Option<String>,
    pub lock_memory: bool,
    /// `-L`: preallocate the item memory on large pages.
    pub large_pages: bool,
    pub pidfile: Option<PathBuf>,
    pub maxbytes: u64,
    pub evictions: bool,
    pub maxconns: usize,
    pub verbose: u8,
    pub growth_factor: f64,
    pub chunk_size: u32,
    pub threads: usize,
    pub reqs_per_event: usize,
    pub use_cas: bool,
    pub backlog: i32,
    pub protocol: Protocol,
    pub item_size_max: u32,
    pub flush_enabled: bool,
    pub dump_enabled: bool,
    pub shutdown_command: bool,
    /// `-S`: the users SASL PLAIN lets in (every binary command but the
    /// SASL ones and Version needs a login first).
    pub sasl: Option<Arc<Users>>,
    /// `-Y`: the users of ASCII auth tokens (a connection's first command
    /// must be the `set` that carries one).
    pub auth_file: Option<Arc<Users>>,
    /// `-Z`: the certificates and the rustls configuration TCP listeners
    /// (but `-l notls:`) serve with.
    pub tls: Option<Arc<crate::tls::Tls>>,
    pub ext: Extended,
}

/// The largest `-m`: 2^18 pages of 1 MB, what 32-bit chunk ids can name.
pub const MAX_MEGABYTES: i64 = 262_144;

/// `-o` options. memcrab has no LRU crawler (its expiry wheel frees
/// expired items instead) and no segmented LRU; their tuning values are
/// kept and reported by `stats settings` so that scripts setting them keep
/// working.
#[derive(Debug, Clone)]
pub struct Extended {
    pub maxconns_fast: bool,
    pub hashpower_init: u8,
    pub slab_chunk_max: u32,
    pub tail_repair_time: u32,
    pub hash_algorithm: String,
    pub lru_crawler: bool,
    pub lru_crawler_sleep: u32,
    pub lru_crawler_tocrawl: u32,
    pub lru_maintainer: bool,
    pub hot_lru_pct: u32,
    pub warm_lru_pct: u32,
    pub hot_max_factor: f64,
    pub warm_max_factor: f64,
    pub temporary_ttl: u32,
    pub temp_lru: bool,
    pub idle_timeout: u32,
    pub watcher_logbuf_size: u32,
    pub worker_logbuf_size: u32,
    /// Bytes (given in megabytes).
    pub read_buf_mem_limit: u64,
    pub slab_reassign: bool,
    pub slab_automove: u32,
    pub slab_automove_ratio: f64,
    pub slab_automove_window: u32,
    pub slab_automove_freeratio: f64,
    /// memcrab's own: wheel entries the reaper checks per taking of a
    /// shard's lock.
    pub expiry_batch: u32,
    /// memcrab's own: the Prometheus endpoint's TCP port (on each `-l`
    /// address); latency histograms are kept while it is set.
    pub metrics_port: Option<u16>,
    /// memcrab's own: how many hot keys `stats hotkeys` reports (0: none
    /// kept), the seconds after which their counts halve, and one request
    /// in how many is counted.
    pub hot_keys: u32,
    pub hot_keys_window: u32,
    pub hot_keys_sample: u32,
    /// memcrab's own: the `user:password` file for `-S`.
    pub sasl_file: Option<PathBuf>,
    /// `-o ssl_*`: what `-Z` serves with (read by `crate::tls`).
    pub ssl: SslOptions,
}

/// memcached's `ssl_*` options, as given (`stats settings` shows them).
#[derive(Debug, Clone)]
pub struct SslOptions {
    pub chain_cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// OpenSSL's file type number: 1 PEM (the only one taken), 2 ASN1.
    pub keyformat: i64,
    /// 0 none, 1 request, 2 require, 3 once.
    pub verify_mode: u8,
    pub ciphers: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// Bytes (given in kilobytes): plaintext taken into TLS records per
    /// write, as memcached's per-connection output buffer.
    pub wbuf_size: u32,
    pub session_cache: bool,
    pub kernel_tls: bool,
    /// 0 tlsv1.0, 1 tlsv1.1, 2 tlsv1.2, 3 tlsv1.3.
    pub min_version: u8,
}

impl Default for SslOptions {
    fn default() -> Self {
        SslOptions {
            chain_cert: None,
            key: None,
            keyformat: 1,
            verify_mode: 0,
            ciphers: None,
            ca_cert: None,
            wbuf_size: 16 * 1024,
            session_cache: false,
            kernel_tls: false,
            min_version: 2,
        }
    }
}

/// memcached's name for a minimum version.
pub fn ssl_version_name(v: u8) -> &'static str {
    match v {
        0 => "tlsv1.0",
        1 => "tlsv1.1",
        2 => "tlsv1.2",
        3 => "tlsv1.3",
        _ => "unknown",
    }
}

/// The largest `-o expiry_batch`.
pub const MAX_EXPIRY_BATCH: u32 = 1 << 20;
/// The most hot keys `-o hot_keys` may ask for.
pub const MAX_HOT_KEYS: u32 = 1000;

impl Default for Extended {
    fn default() -> Self {
        Extended {
            maxconns_fast: true,
            hashpower_init: 0,
            slab_chunk_max: 512 * 1024,
            tail_repair_time: 0,
            hash_algorithm: "murmur3".into(),
            lru_crawler: true,
            lru_crawler_sleep: 100,
            lru_crawler_tocrawl: 0,
            lru_maintainer: true,
            hot_lru_pct: 20,
            warm_lru_pct: 40,
            hot_max_factor: 0.2,
            warm_max_factor: 2.0,
            temporary_ttl: 61,
            temp_lru: false,
            idle_timeout: 0,
            watcher_logbuf_size: 256 * 1024,
            worker_logbuf_size: 64 * 1024,
            read_buf_mem_limit: 0,
            slab_reassign: true,
            slab_automove: 1,
            slab_automove_ratio: 0.8,
            slab_automove_window: 30,
            slab_automove_freeratio: 0.01,
            expiry_batch: 256,
            metrics_port: None,
            hot_keys: 0,
            hot_keys_window: 60,
            hot_keys_sample: 64,
            sasl_file: None,
            ssl: SslOptions::default(),
        }
    }
}

/// What to do instead of serving.
#[derive(Debug)]
pub enum Early {
    /// Print this to stdout and exit 0 (`-h`, `-V`, `-i`).
    Print(String),
    /// Print this to stderr and exit with EX_USAGE.
    Usage(String),
}

fn usage(msg: impl Into<String>) -> Early {
    Early::Usage(msg.into())
}

fn not_yet(flag: &str, what: &str) -> Early {
    usage(format!(
        "memcrab: {flag} ({what}) is not supported by this version of memcrab"
    ))
}

/// C's `atoi`: leading space, sign, digits; anything else stops it; no
/// digits gives 0. memcached reads most numeric flags this way.
fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// C's `atof`, enough for growth factors: the longest leading float.
fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    let mut end = 0;
    for (i, c) in t.char_indices() {
        if c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0) {
            end = i + 1;
        } else {
            break;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

/// `-I`: bytes with an optional k/m suffix (memcached's rule).
fn parse_size(s: &str) -> i64 {
    let v = atoi(s);
    match s.trim().chars().last() {
        Some('k' | 'K') => v.saturating_mul(1024),
        Some('m' | 'M') => v.saturating_mul(1024 * 1024),
        _ => v,
    }
}

pub fn help_text() -> String {
    use clap::CommandFactory;
    Args::command().render_help().to_string()
}

/// `-i`: the LICENSE file, and where the protocol comes from.
const LICENSE: &str = concat!(
    include_str!("../../../LICENSE"),
    "\nmemcrab implements the protocol of memcached (Copyright (c) 2003, Danga\n",
    "Interactive, Inc., BSD licensed); it contains no memcached code.\n"
);

impl Settings {
    /// The store's settings from the command line's.
    pub fn store_config(&self) -> memcrab_store::Config {
        memcrab_store::Config {
            mem_limit: self.maxbytes,
            item_size_max: self.item_size_max,
            slab_page_size: 1 << 20,
            slab_chunk_max: self.ext.slab_chunk_max,
            growth_factor: self.growth_factor,
            chunk_min: self.chunk_size,
            use_cas: self.use_cas,
            evictions: self.evictions,
            hashpower: if self.ext.hashpower_init == 0 {
                16
            } else {
                self.ext.hashpower_init
            },
            prealloc: self.large_pages,
            mem_room: physical_memory(),
            ..memcrab_store::Config::default()
        }
    }

    /// The connection budget (`ConnBudget`): `-o
    /// read_buf_mem_limit` when set; else the largest of 64 MB, a quarter
    /// of `-m` and two values of `-I`.
    pub fn conn_budget(&self) -> usize {
        let set = self.ext.read_buf_mem_limit as usize;
        if set > 0 {
            return set;
        }
        (64usize << 20)
            .max((self.maxbytes / 4) as usize)
            .max(2 * self.item_size_max as usize)
    }

    /// Under an explicit `-o read_buf_mem_limit`, the 16 KB buffers each
    /// worker may hold for read buffers and response objects, as memcached
    /// counts them: the limit (as its unsigned int holds it) divided by the
    /// threads, at least one. `None` without the option (memcached's
    /// default: no limit; memcrab's connection budget still bounds bytes).
    pub fn resp_buffers_per_worker(&self) -> Option<u32> {
        let limit = self.ext.read_buf_mem_limit as u32;
        if limit == 0 {
            return None;
        }
        let per_thread = limit / self.threads.max(1) as u32;
        Some((per_thread / crate::conn::READ_BUF as u32).max(1))
    }

    /// Turns parsed flags into settings, applying memcached's checks.
    pub fn from_args(a: Args) -> Result<Settings, Early> {
        if a.help {
            return Err(Early::Print(help_text()));
        }
        if a.version {
            return Err(Early::Print(format!(
                "memcrab {} (memcached {MEMCACHED_VERSION} compatible)\n",
                env!("CARGO_PKG_VERSION")
            )));
        }
        if a.license {
            return Err(Early::Print(LICENSE.into()));
        }
        if a.memory_file.is_some() {
            return Err(not_yet("-e/--memory-file", "restartable cache"));
        }
        // memcached takes the first character of -D's argument and turns
        // per-prefix stats on.
        let (prefix_delimiter, detail_enabled) = match a.delimiter.as_deref() {
            None => (b':', false),
            Some(d) => match d.as_bytes().first() {
                Some(&c) => (c, true),
                None => return Err(usage("No delimiter specified")),
            },
        };
        let protocol = match a.protocol.as_deref().unwrap_or("auto") {
            "auto" => Protocol::Auto,
            "ascii" => Protocol::Ascii,
            "binary" => Protocol::Binary,
            other => {
                return Err(usage(format!(
                    "Invalid value for binding protocol: {other}\n -- should be one of auto, binary, or ascii"
                )))
            }
        };
        let udp_port = atoi(&a.udp_port);
        if !(-1..=65535).contains(&udp_port) {
            return Err(usage(format!("Invalid UDP port: {}", a.udp_port)));
        }
        // memcached: `-U` without `-p` moves the TCP port too.
        let port = match &a.port {
            Some(p) => atoi(p),
            None if udp_port != 0 => udp_port,
            None => 11211,
        };
        if !(-1..=65535).contains(&port) {
            return Err(usage(format!(
                "Invalid TCP port: {}",
                a.port.as_deref().unwrap_or_default()
            )));
        }
        let threads = atoi(&a.threads);
        if threads <= 0 {
            return Err(usage("Number of threads must be greater than 0"));
        }
        if threads > 1024 {
            return Err(usage("Number of threads must be at most 1024"));
        }
        let reqs = atoi(&a.reqs_per_event);
        if reqs <= 0 {
            return Err(usage("Number of requests per event must be greater than 0"));
        }
        let maxconns = atoi(&a.conn_limit);
        if maxconns <= 0 {
            return Err(usage("Maximum connections must be greater than 0"));
        }
        let factor = atof(&a.growth_factor);
        if factor <= 1.0 {
            return Err(usage("Factor must be greater than 1"));
        }
        let chunk = atoi(&a.slab_min_size);
        if chunk <= 0 {
            return Err(usage("Chunk size must be greater than 0"));
        }
        let megabytes = atoi(&a.memory_limit);
        if megabytes < 0 {
            return Err(usage("Memory limit must not be negative"));
        }
        if megabytes > MAX_MEGABYTES {
            return Err(usage(format!(
                "Memory limit above {MAX_MEGABYTES} megabytes (256 GB) is not supported: memcrab names item chunks with 32-bit numbers"
            )));
        }
        let maxbytes = (megabytes as u64).saturating_mul(1024 * 1024);
        let item_size_max = parse_size(&a.max_item_size);
        if item_size_max < 1024 {
            return Err(usage("Item max size cannot be less than 1024 bytes."));
        }
        if item_size_max > 1024 * 1024 * 1024 {
            return Err(usage("Cannot set item size limit higher than 1 gigabyte."));
        }
        if item_size_max as u64 > maxbytes / 2 {
            return Err(usage(
                "Cannot set item size limit higher than 1/2 of memory max.",
            ));
        }
        let unix_mask = u32::from_str_radix(a.unix_mask.trim(), 8)
            .map_err(|_| usage(format!("Invalid unix mask: {}", a.unix_mask)))?;
        let backlog = atoi(&a.backlog).clamp(0, i64::from(i32::MAX)) as i32;
        let mut ext = Extended::default();
        for list in &a.extended {
            for opt in list.split(',').filter(|o| !o.is_empty()) {
                apply_extended(&mut ext, opt)?;
            }
        }
        // memcached's rules: -S serves only the binary protocol (refusing
        // any -B given with it), -Y only ASCII.
        let mut protocol = protocol;
        let sasl = if a.sasl {
            if a.protocol.is_some() && protocol != Protocol::Binary {
                return Err(usage(
                    "ERROR: You cannot allow the ASCII protocol while using SASL.",
                ));
            }
            protocol = Protocol::Binary;
            // A datagram has no session to log in.
            if udp_port != 0 {
                return Err(usage(
                    "ERROR: Cannot enable UDP while using binary SASL authentication.",
                ));
            }
            Some(Arc::new(
                auth::sasl_users(ext.sasl_file.as_deref()).map_err(usage)?,
            ))
        } else {
            None
        };
        let auth_file = match &a.auth_file {
            Some(path) => {
                if (a.protocol.is_some() && protocol != Protocol::Ascii) || a.sasl {
                    return Err(usage(
                        "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.",
                    ));
                }
                protocol = Protocol::Ascii;
                if udp_port != 0 {
                    return Err(usage(
                        "Cannot use UDP with ascii authentication enabled (-U 0 to disable)",
                    ));
                }
                Some(Arc::new(Users::load(path).map_err(usage)?))
            }
            None => None,
        };
        let tls = if a.ssl {
            if port == 0 || a.unix_socket.is_some() {
                return Err(usage("ERROR: You cannot enable SSL without a TCP port."));
            }
            let o = &ext.ssl;
            if o.min_version < 2 {
                eprintln!(
                    "memcrab: ssl_min_version {}: TLS 1.0 and 1.1 are not offered (rustls has neither); clients need TLS 1.2 or later",
                    ssl_version_name(o.min_version)
                );
            }
            if o.kernel_tls {
                eprintln!("memcrab: ssl_kernel_tls: {}", crate::tls::kernel_tls_note());
            }
            Some(Arc::new(crate::tls::Tls::new(o.clone()).map_err(usage)?))
        } else {
            None
        };
        let chunk_max = i64::from(ext.slab_chunk_max);
        if chunk_max > item_size_max {
            return Err(usage(format!(
                "slab_chunk_max (bytes: {chunk_max}) cannot be larger than -I (item_size_max {item_size_max})"
            )));
        }
        if item_size_max % chunk_max != 0 {
            return Err(usage(format!(
                "-I (item_size_max: {item_size_max}) must be evenly divisible by slab_chunk_max (bytes: {chunk_max})"
            )));
        }
        if (1 << 20) % chunk_max != 0 {
            return Err(usage(format!(
                "slab_chunk_max (bytes: {chunk_max}) must divide evenly into 1048576 (slab_page_size)"
            )));
        }
        Ok(Settings {
            port: port as i32,
            udp_port: udp_port as i32,
            unix_socket: a.unix_socket,
            unix_mask,
            listen: a
                .listen
                .iter()
                .flat_map(|l| l.split(',').map(str::to_string))
                .filter(|l| !l.is_empty())
                .collect(),
            daemon: a.daemon,
            enable_coredumps: a.enable_coredumps,
            user: a.user,
            lock_memory: a.lock_memory,
            large_pages: a.large_pages,
            pidfile: a.pidfile,
            maxbytes,
            evictions: !a.disable_evictions,
            maxconns: maxconns as usize,
            verbose: a.verbose,
            growth_factor: factor,
            chunk_size: chunk as u32,
            threads: threads as usize,
            reqs_per_event: reqs as usize,
            use_cas: !a.disable_cas,
            backlog,
            protocol,
            item_size_max: item_size_max as u32,
            flush_enabled: !a.disable_flush_all,
            dump_enabled: !a.disable_dumping,
            prefix_delimiter,
            detail_enabled,
            disable_watch: a.disable_watch,
            shutdown_command: a.enable_shutdown,
            sasl,
            auth_file,
            tls,
            ext,
        })
    }
}

/// A suboption's value, or memcached's message for its absence.
fn given<'v>(val: Option<&'v str>, missing: &str) -> Result<&'v str, Early> {
    val.ok_or_else(|| usage(missing))
}

fn num<T: std::str::FromStr>(key: &str, v: Option<&str>) -> Result<T, Early> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| usage(format!("Invalid value for {key}: {}", v.unwrap_or(""))))
}

fn apply_extended(e: &mut Extended, opt: &str) -> Result<(), Early> {
    let (key, val) = match opt.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    match key {
        "maxconns_fast" => e.maxconns_fast = true,
        "no_maxconns_fast" => e.maxconns_fast = false,
        "hashpower" => {
            let hp: i64 = num(key, val)?;
            if hp < 12 {
                return Err(usage(format!(
                    "Initial hashtable multiplier of {hp} is too low"
                )));
            }
            if hp > 32 {
                return Err(usage(format!(
                    "Initial hashtable multiplier of {hp} is too high\nChoose a value based on \"STAT hash_power_level\" from a running instance"
                )));
            }
            e.hashpower_init = hp as u8;
        }
        "slab_chunk_max" => {
            // In bytes, as memcached 1.6 reads it (its messages say bytes).
            let bytes: u32 = num(key, val)?;
            if bytes < 64 {
                return Err(usage(format!(
                    "slab_chunk_max (bytes: {bytes}) is too small (at least 64)"
                )));
            }
            e.slab_chunk_max = bytes;
        }
        "tail_repair_time" => {
            let t = atoi(given(val, "Missing numeric argument for tail_repair_time")?);
            if t < 10 {
                return Err(usage("Cannot set tail_repair_time to less than 10 seconds"));
            }
            e.tail_repair_time = t.min(i64::from(u32::MAX)) as u32;
        }
        "hash_algorithm" => match given(val, "Missing hash_algorithm argument")? {
            v @ ("murmur3" | "jenkins" | "xxh3") => e.hash_algorithm = v.to_string(),
            _ => {
                return Err(usage(
                    "Unknown hash_algorithm option (jenkins, murmur3, xxh3)",
                ))
            }
        },
        "lru_crawler" => e.lru_crawler = true,
        "no_lru_crawler" => e.lru_crawler = false,
        "lru_crawler_sleep" => e.lru_crawler_sleep = num(key, val)?,
        "lru_crawler_tocrawl" => e.lru_crawler_tocrawl = num(key, val)?,
        "lru_maintainer" => e.lru_maintainer = true,
        "no_lru_maintainer" => e.lru_maintainer = false,
        "hot_lru_pct" => e.hot_lru_pct = num(key, val)?,
        "warm_lru_pct" => e.warm_lru_pct = num(key, val)?,
        "hot_max_factor" => e.hot_max_factor = num(key, val)?,
        "warm_max_factor" => e.warm_max_factor = num(key, val)?,
        "temporary_ttl" => {
            e.temp_lru = true;
            e.temporary_ttl = num(key, val)?;
        }
        "idle_timeout" => e.idle_timeout = num(key, val)?,
        // memcached multiplies these in an unsigned int: `stats settings`
        // shows what wraps; the budget itself takes the megabytes whole.
        "watcher_logbuf_size" => e.watcher_logbuf_size = num::<u32>(key, val)?.wrapping_mul(1024),
        "worker_logbuf_size" => e.worker_logbuf_size = num::<u32>(key, val)?.wrapping_mul(1024),
        "read_buf_mem_limit" => e.read_buf_mem_limit = u64::from(num::<u32>(key, val)?) << 20,
        // memcached 1.6 says so and goes on: replies are in the budget
        // `read_buf_mem_limit` sets.
        "resp_obj_mem_limit" => {
            eprintln!("DEPRECATED: resp_obj_mem_limit no longer used. See read_buf_mem_limit,")
        }
        "sasl_file" => match val {
            Some(v) if !v.is_empty() => e.sasl_file = Some(PathBuf::from(v)),
            _ => return Err(usage("sasl_file needs a path: -o sasl_file=FILE")),
        },
        "expiry_batch" => {
            let n: u32 = num(key, val)?;
            if n == 0 || n > MAX_EXPIRY_BATCH {
                return Err(usage(format!(
                    "expiry_batch must be between 1 and {MAX_EXPIRY_BATCH}"
                )));
            }
            e.expiry_batch = n;
        }
        "metrics_port" => {
            let p: u16 = num(key, val)?;
            if p == 0 {
                return Err(usage("metrics_port must be a TCP port (1-65535)"));
            }
            e.metrics_port = Some(p);
        }
        "hot_keys" => {
            // Bare: the ten hottest.
            let k: u32 = if val.is_none() { 10 } else { num(key, val)? };
            if k > MAX_HOT_KEYS {
                return Err(usage(format!("hot_keys must be at most {MAX_HOT_KEYS}")));
            }
            e.hot_keys = k;
        }
        "hot_keys_window" => {
            let w: u32 = num(key, val)?;
            if w == 0 {
                return Err(usage("hot_keys_window must be at least 1 (seconds)"));
            }
            e.hot_keys_window = w;
        }
        "hot_keys_sample" => {
            let n: u32 = num(key, val)?;
            if n == 0 || n > 1 << 20 {
                return Err(usage("hot_keys_sample must be between 1 and 1048576"));
            }
            e.hot_keys_sample = n;
        }
        "slab_reassign" => e.slab_reassign = true,
        "no_slab_reassign" => e.slab_reassign = false,
        // Bare: mode 1, as memcached reads it.
        "slab_automove" => {
            let m = val.map_or(1, atoi);
            if !(0..=2).contains(&m) {
                return Err(usage("slab_automove must be between 0 and 2"));
            }
            e.slab_automove = m as u32;
        }
        "no_slab_automove" => e.slab_automove = 0,
        "slab_automove_ratio" => {
            let r = atof(given(val, "Missing slab_automove_ratio argument")?);
            if r <= 0.0 || r > 1.0 {
                return Err(usage("slab_automove_ratio must be > 0 and < 1"));
            }
            e.slab_automove_ratio = r;
        }
        "slab_automove_window" => {
            let w = atoi(given(val, "Missing slab_automove_window argument")?);
            if w < 3 {
                return Err(usage("slab_automove_window must be > 2"));
            }
            e.slab_automove_window = w.min(i64::from(u32::MAX)) as u32;
        }
        // memcached takes these; memcrab's class table and replies are its
        // own, so they change nothing here (said once at start).
        "inline_ascii_resp" | "no_inline_ascii_resp" => {}
        "no_chunked_items" | "slab_sizes" | "track_sizes" => {
            eprintln!("memcrab: -o {key} accepted and ignored (memcrab sizes and chains its own slab classes; stats sizes stays empty)");
        }
        "slab_automove_freeratio" => e.slab_automove_freeratio = num(key, val)?,
        // memcached's pre-1.5 defaults: no crawler or maintainer thread
        // at start, no slab reassignment, jenkins hash. (memcrab keeps its
        // slab_chunk_max: memcached also raises it to the page size.)
        "no_modern" => {
            e.lru_crawler = false;
            e.lru_maintainer = false;
            e.slab_reassign = false;
            e.slab_automove = 0;
            e.maxconns_fast = false;
            e.hash_algorithm = "jenkins".into();
        }
        "modern" | "no_hashexpand" | "lru_segmented" | "no_lru_segmented" => {}
        // memcrab drops no privileges after start (no seccomp filter), so
        // these change nothing; memcached's debug builds take
        // relaxed_privileges, which its own test suite passes every server.
        "drop_privileges" | "no_drop_privileges" | "relaxed_privileges" => {}
        k if k.starts_with("ext_") => return Err(not_yet(&format!("-o {k}"), "extstore")),
        k if k.starts_with("ssl_") => apply_ssl(&mut e.ssl, k, val, opt)?,
        _ => return Err(usage(format!("Illegal suboption \"{opt}\""))),
    }
    Ok(())
}

/// The `ssl_*` options, with memcached's messages.
fn apply_ssl(o: &mut SslOptions, key: &str, val: Option<&str>, opt: &str) -> Result<(), Early> {
    let missing = || usage(format!("Missing {key} argument"));
    let unparsed = || usage(format!("could not parse argument to {key}"));
    let path = |v: Option<&str>| v.map(PathBuf::from).ok_or_else(missing);
    match key {
        "ssl_chain_cert" => o.chain_cert = Some(path(val)?),
        "ssl_key" => o.key = Some(path(val)?),
        "ssl_ca_cert" => o.ca_cert = Some(path(val)?),
        "ssl_ciphers" => o.ciphers = Some(val.ok_or_else(missing)?.to_string()),
        "ssl_verify_mode" => {
            let v = val.ok_or_else(missing)?;
            let n = safe_strtol(v).ok_or_else(unparsed)?;
            if !(0..=3).contains(&n) {
                return Err(usage(
                    "Invalid ssl_verify_mode. Use help to see valid options.",
                ));
            }
            o.verify_mode = n as u8;
        }
        "ssl_keyformat" => {
            let v = val.ok_or_else(missing)?;
            o.keyformat = safe_strtol(v).ok_or_else(unparsed)?;
        }
        "ssl_wbuf_size" => {
            let v = val.ok_or_else(missing)?;
            let kb = safe_strtol(v)
                .filter(|&k| k >= 0 && k <= i64::from(u32::MAX))
                .ok_or_else(unparsed)?;
            // memcached multiplies in an unsigned int.
            o.wbuf_size = (kb as u32).wrapping_mul(1024);
        }
        "ssl_session_cache" => o.session_cache = true,
        "ssl_kernel_tls" => o.kernel_tls = true,
        "ssl_min_version" => {
            let v = val.ok_or_else(missing)?;
            let n = safe_strtol(v).ok_or_else(unparsed)?;
            if !(0..=3).contains(&n) {
                return Err(usage(
                    "Invalid ssl_min_version. Use help to see valid options.",
                ));
            }
            o.min_version = n as u8;
        }
        _ => return Err(usage(format!("Illegal suboption \"{opt}\""))),
    }
    Ok(())
}

/// memcached's `safe_strtol`: the whole string (trailing space allowed)
/// a decimal integer.
fn safe_strtol(s: &str) -> Option<i64> {
    let t = s.trim_end();
    if t.is_empty() {
        return None;
    }
    t.trim_start().parse().ok()
}

/// The machine's memory in bytes (what `cache_memlimit` may raise `-m`
/// to without reserving the address space again); 0 if unknown.
fn physical_memory() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    let pages = sysconf(SysconfVar::_PHYS_PAGES).ok().flatten().unwrap_or(0);
    let size = sysconf(SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(0);
    (pages.max(0) as u64).saturating_mul(size.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, Early> {
        let mut v = vec!["memcrab"];
        v.extend_from_slice(args);
        Settings::from_args(Args::try_parse_from(v).expect("clap accepts"))
    }

    fn usage_msg(args: &[&str]) -> String {
        match settings(args) {
            Err(Early::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_memcacheds() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 11211);
        assert_eq!(s.udp_port, 0);
        assert_eq!(s.maxbytes, 64 << 20);
        assert_eq!(s.maxconns, 1024);
        assert_eq!(s.threads, 4);
        assert_eq!(s.reqs_per_event, 20);
        assert_eq!(s.backlog, 1024);
        assert_eq!(s.item_size_max, 1 << 20);
        assert_eq!(s.growth_factor, 1.25);
        assert_eq!(s.chunk_size, 48);
        assert_eq!(s.unix_mask, 0o700);
        assert!(s.use_cas && s.evictions && s.flush_enabled && !s.shutdown_command);
    }

    #[test]
    fn the_connection_budget() {
        let mb = 1usize << 20;
        assert_eq!(settings(&[]).unwrap().conn_budget(), 64 * mb);
        assert_eq!(settings(&["-m", "1024"]).unwrap().conn_budget(), 256 * mb);
        assert_eq!(
            settings(&["-m", "256", "-I", "128m"])
                .unwrap()
                .conn_budget(),
            256 * mb
        );
        // Past 4095 MB memcached's unsigned int wraps what stats shows;
        // the budget takes the megabytes whole.
        let s = settings(&["-o", "read_buf_mem_limit=5000"]).unwrap();
        assert_eq!(s.conn_budget(), 5000 * mb);
        assert_eq!(s.ext.read_buf_mem_limit as u32, 947_912_704);
    }

    #[test]
    fn short_and_long_flags() {
        let s = settings(&[
            "-p",
            "1",
            "-m",
            "128",
            "-c",
            "10",
            "-t",
            "2",
            "-R",
            "5",
            "-C",
            "-M",
            "-F",
            "-A",
            "-I",
            "2m",
            "-f",
            "2",
            "-n",
            "64",
            "-vv",
            "-l",
            "127.0.0.1,::1",
            "-b",
            "16",
        ])
        .unwrap();
        assert_eq!(
            (s.port, s.maxbytes, s.maxconns, s.threads, s.reqs_per_event),
            (1, 128 << 20, 10, 2, 5)
        );
        assert!(!s.use_cas && !s.evictions && !s.flush_enabled && s.shutdown_command);
        assert_eq!(s.item_size_max, 2 << 20);
        assert_eq!(s.verbose, 2);
        assert_eq!(s.listen, vec!["127.0.0.1", "::1"]);
        let s = settings(&["--port=2", "--memory-limit=32", "--max-item-size=512k"]).unwrap();
        assert_eq!(
            (s.port, s.maxbytes, s.item_size_max),
            (2, 32 << 20, 512 << 10)
        );
        assert_eq!(settings(&["-p", "-1"]).unwrap().port, -1);
    }

    #[test]
    fn bad_values_get_memcacheds_messages() {
        assert_eq!(
            usage_msg(&["-t", "0"]),
            "Number of threads must be greater than 0"
        );
        assert_eq!(
            usage_msg(&["-c", "0"]),
            "Maximum connections must be greater than 0"
        );
        assert_eq!(usage_msg(&["-f", "0.5"]), "Factor must be greater than 1");
        assert_eq!(usage_msg(&["-n", "0"]), "Chunk size must be greater than 0");
        assert_eq!(
            usage_msg(&["-R", "0"]),
            "Number of requests per event must be greater than 0"
        );
        assert_eq!(
            usage_msg(&["-I", "512"]),
            "Item max size cannot be less than 1024 bytes."
        );
        assert_eq!(
            usage_msg(&["-I", "64m"]),
            "Cannot set item size limit higher than 1/2 of memory max."
        );
        assert_eq!(usage_msg(&["-o", "foo"]), "Illegal suboption \"foo\"");
        assert_eq!(
            usage_msg(&["-I", "4k"]),
            "slab_chunk_max (bytes: 524288) cannot be larger than -I (item_size_max 4096)"
        );
        assert_eq!(
            usage_msg(&["-I", "600k"]),
            "-I (item_size_max: 614400) must be evenly divisible by slab_chunk_max (bytes: 524288)"
        );
        assert!(settings(&["-I", "4k", "-o", "slab_chunk_max=2048"]).is_ok());
        assert_eq!(
            usage_msg(&["-o", "hashpower=2"]),
            "Initial hashtable multiplier of 2 is too low"
        );
        assert!(usage_msg(&["-B", "foo"]).starts_with("Invalid value for binding protocol: foo"));
    }

    #[test]
    fn later_features_are_refused_by_name() {
        let m = usage_msg(&["-o", "ext_path=/tmp/x"]);
        assert!(m.contains("ext_path"), "{m} names ext_path");
        assert!(m.contains("not supported"), "{m}");
        // -Z is TLS now: without a certificate, memcached's message.
        assert!(usage_msg(&["-Z"]).starts_with("Error loading the certificate chain: (null) : "));
    }

    #[test]
    fn protocol_and_auth_flags() {
        assert_eq!(settings(&[]).unwrap().protocol, Protocol::Auto);
        assert_eq!(
            settings(&["-B", "binary"]).unwrap().protocol,
            Protocol::Binary
        );
        assert_eq!(
            settings(&["-B", "ascii"]).unwrap().protocol,
            Protocol::Ascii
        );
        assert_eq!(
            usage_msg(&["-S", "-B", "ascii"]),
            "ERROR: You cannot allow the ASCII protocol while using SASL."
        );
        let users = std::env::temp_dir().join(format!("memcrab-cfg-{}", std::process::id()));
        std::fs::write(&users, "u:p\n").unwrap();
        let u = users.to_str().unwrap();
        let s = settings(&["-S", "-B", "binary", "-o", &format!("sasl_file={u}")]).unwrap();
        assert_eq!(s.protocol, Protocol::Binary);
        assert!(s.sasl.unwrap().check(b"u", b"p"));
        let s = settings(&["-S", "-o", &format!("sasl_file={u}")]).unwrap();
        assert_eq!(s.protocol, Protocol::Binary, "-S alone serves binary");
        let s = settings(&["-Y", u]).unwrap();
        assert_eq!(s.protocol, Protocol::Ascii, "-Y alone serves ASCII");
        assert!(s.auth_file.unwrap().check(b"u", b"p"));
        assert!(settings(&["-Y", u, "-B", "ascii"]).is_ok());
        for bad in [
            &["-Y", u, "-B", "binary"][..],
            &["-Y", u, "-B", "auto"],
            &["-Y", u, "-S", "-o", &format!("sasl_file={u}")],
        ] {
            assert!(
                usage_msg(bad).contains("cannot allow the BINARY protocol"),
                "{bad:?}"
            );
        }
        assert!(usage_msg(&["-o", "sasl_file="]).contains("sasl_file needs a path"));
        let _ = std::fs::remove_file(users);
    }

    #[test]
    fn extended_options() {
        let s = settings(&["-o", "hashpower=20,idle_timeout=5", "-o", "no_lru_crawler"]).unwrap();
        assert_eq!(s.ext.hashpower_init, 20);
        assert_eq!(s.ext.idle_timeout, 5);
        assert!(!s.ext.lru_crawler);
        assert_eq!(s.ext.expiry_batch, 256);
        let s = settings(&["-o", "expiry_batch=1000"]).unwrap();
        assert_eq!(s.ext.expiry_batch, 1000);
        let s = settings(&["-o", "no_modern"]).unwrap();
        assert!(!s.ext.lru_crawler && !s.ext.lru_maintainer && !s.ext.slab_reassign);
        assert_eq!(
            (s.ext.slab_automove, s.ext.hash_algorithm.as_str()),
            (0, "jenkins")
        );
        let s = settings(&["-o", "metrics_port=9150,hot_keys"]).unwrap();
        assert_eq!((s.ext.metrics_port, s.ext.hot_keys), (Some(9150), 10));
        assert_eq!((s.ext.hot_keys_window, s.ext.hot_keys_sample), (60, 64));
        for bad in ["expiry_batch=0", "expiry_batch=2000000"] {
            assert_eq!(
                usage_msg(&["-o", bad]),
                "expiry_batch must be between 1 and 1048576"
            );
        }
        assert_eq!(
            usage_msg(&["-o", "expiry_batch=x"]),
            "Invalid value for expiry_batch: x"
        );
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi(" -3"), -3);
        assert_eq!(atof("1.5x"), 1.5);
        assert_eq!(parse_size("1m"), 1 << 20);
        assert_eq!(parse_size("3k"), 3072);
        assert_eq!(parse_size("100"), 100);
    }
}
