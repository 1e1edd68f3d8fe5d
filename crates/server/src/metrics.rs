//! The Prometheus endpoint (`-o metrics_port=N`): every `stats`,
//! `stats slabs`, `stats items` and `stats memcrab` figure, connection
//! counts by state, per-command latency histograms and the hot keys, in
//! Prometheus' text format (0.0.4), over plain HTTP/1.1.
//!
//! ```text
//!  metrics thread (one per address) ── accept ── read one request (8 KB,
//!  5 s at most) ── GET /metrics ──► render(sh) ──► 200, Connection: close
//!  render: crate::stats groups (the same pairs `stats` prints)
//!          ──► names: memcrab_<stat>, counters with _total, µs as seconds,
//!              per class with a slab_class label
//!          + latency::Histograms summed ──► memcrab_request_duration_seconds
//!          + hotkeys::hottest ──► memcrab_hot_key_requests{key}
//! ```
//!
//! Off the request path: a scrape takes the store's statistics as `stats`
//! does, and one client at a time per address is served (a slow one is
//! cut off by the timeouts), so memory stays bounded whatever scrapers do.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::latency::{self, Cmd, Histograms};
use crate::shared::Shared;
use crate::stats::{self, Stat, Value};

const PREFIX: &str = "memcrab_";
/// The most bytes of a request read before it is refused.
const MAX_REQUEST: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `stats` figures that are gauges (a level, not a count since start).
const GAUGES: &[&str] = &[
    "pid",
    "uptime",
    "time",
    "pointer_size",
    "max_connections",
    "curr_connections",
    "connection_structures",
    "response_obj_count",
    "response_obj_bytes",
    "read_buf_count",
    "read_buf_bytes",
    "read_buf_bytes_free",
    "reserved_fds",
    "limit_maxbytes",
    "accepting_conns",
    "threads",
    "hash_power_level",
    "hash_bytes",
    "hash_is_expanding",
    "slab_reassign_running",
    "lru_crawler_running",
    "log_watchers",
    "bytes",
    "curr_items",
    "slab_global_page_pool",
    // stats memcrab
    "expiry_wheel_entries",
    "expiry_wheel_bytes",
    "eviction_policy_bytes",
    "expiry_batch",
    "expiry_wheel_seconds",
    "connection_budget",
];

/// Per-class figures (`stats slabs`, `stats items`) that are counters.
const CLASS_COUNTERS: &[&str] = &[
    "get_hits",
    "cmd_set",
    "delete_hits",
    "incr_hits",
    "decr_hits",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "evicted",
    "evicted_nonzero",
    "outofmemory",
    "tailrepairs",
    "reclaimed",
    "expired_unfetched",
    "evicted_unfetched",
    "evicted_active",
    "crawler_reclaimed",
    "crawler_items_checked",
    "lrutail_reflocked",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "direct_reclaims",
    "hits_to_hot",
    "hits_to_warm",
    "hits_to_cold",
    "hits_to_temp",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric family and its samples (each: label text, value).
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: Vec<(String, String)>,
}

/// Families in the order first seen; samples of one family together, as
/// the format requires (found by name: a page has thousands of per-class
/// samples in about two hundred families).
#[derive(Default)]
struct Families {
    list: Vec<Family>,
    index: std::collections::HashMap<String, usize>,
}

impl Families {
    fn add(&mut self, name: &str, kind: Kind, help: &str, labels: String, value: String) {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.list.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    samples: Vec::new(),
                });
                self.index.insert(name.to_string(), self.list.len() - 1);
                self.list.len() - 1
            }
        };
        self.list[i].samples.push((labels, value));
    }

    fn render(&self, out: &mut String) {
        for f in &self.list {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
            for (labels, v) in &f.samples {
                let _ = writeln!(out, "{}{labels} {v}", f.name);
            }
        }
    }
}

/// A stat's Prometheus name and type: `memcrab_` and its name; a counter
/// gets `_total` (`total_x` becomes `x_total`); microseconds become
/// seconds; a gauge named `…_count` (which the format keeps for
/// histograms) becomes plural.
fn general_name(stat: &str) -> (String, Kind, f64) {
    if stat == "time_in_listen_disabled_us" {
        return (
            format!("{PREFIX}time_in_listen_disabled_seconds_total"),
            Kind::Counter,
            1e-6,
        );
    }
    if stat == "rusage_user" || stat == "rusage_system" {
        return (format!("{PREFIX}{stat}_seconds_total"), Kind::Counter, 1.0);
    }
    if stat == "uptime" || stat == "time" {
        return (format!("{PREFIX}{stat}_seconds"), Kind::Gauge, 1.0);
    }
    if GAUGES.contains(&stat) {
        let name = match stat.strip_suffix("_count") {
            Some(base) => format!("{PREFIX}{base}s"),
            None => format!("{PREFIX}{stat}"),
        };
        return (name, Kind::Gauge, 1.0);
    }
    let name = match stat.strip_prefix("total_") {
        Some(rest) => format!("{PREFIX}{rest}_total"),
        None => format!("{PREFIX}{stat}_total"),
    };
    (name, Kind::Counter, 1.0)
}

/// A number as the format writes it.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn value_of(v: &Value) -> Option<f64> {
    match v {
        Value::Num(n) => Some(*n as f64),
        Value::Text(t) => t.parse().ok(),
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn general(f: &mut Families, pairs: &[Stat], group: &str) {
    let mut info = Vec::new();
    for p in pairs {
        match value_of(&p.value) {
            Some(v) if !matches!(&p.value, Value::Text(_)) || p.name.starts_with("rusage_") => {
                let (name, kind, scale) = general_name(&p.name);
                let help = format!("memcached's `{group}` field {}", p.name);
                f.add(&name, kind, &help, String::new(), number(v * scale));
            }
            _ => info.push(format!("{}=\"{}\"", p.name, label(&p.value.to_string()))),
        }
    }
    if !info.is_empty() {
        f.add(
            &format!("{PREFIX}info"),
            Kind::Gauge,
            "the text fields of `stats`, as labels",
            format!("{{{}}}", info.join(",")),
            "1".into(),
        );
    }
}

/// `stats slabs` (`N:field`, and two totals) or `stats items`
/// (`items:N:field`) as families with a `slab_class` label.
fn per_class(f: &mut Families, pairs: &[Stat], family: &str, group: &str) {
    for p in pairs {
        let Some(v) = value_of(&p.value) else {
            continue;
        };
        let name = p.name.strip_prefix("items:").unwrap_or(&p.name);
        let help = |field: &str| format!("memcached's `{group}` field {field}, per slab class");
        match name.split_once(':') {
            Some((class, field)) => {
                let counter = CLASS_COUNTERS.contains(&field);
                let (metric, kind) = if counter {
                    (format!("{PREFIX}{family}_{field}_total"), Kind::Counter)
                } else {
                    (format!("{PREFIX}{family}_{field}"), Kind::Gauge)
                };
                f.add(
                    &metric,
                    kind,
                    &help(field),
                    format!("{{slab_class=\"{class}\"}}"),
                    number(v),
                );
            }
            None => f.add(
                &format!("{PREFIX}slabs_{name}"),
                Kind::Gauge,
                &format!("memcached's `{group}` field {name}"),
                String::new(),
                number(v),
            ),
        }
    }
}

fn histograms(out: &mut String, sh: &Shared) {
    let name = format!("{PREFIX}request_duration_seconds");
    let _ = writeln!(
        out,
        "# HELP {name} time from a request's arrival (the read that completed it) to its reply's hand-off to the socket, by command"
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for c in Cmd::ALL {
        let (b, sum_ns) = Histograms::sum(sh.worker_stats.iter().map(|w| &w.lat), c);
        let cmd = c.label();
        let mut acc = 0u64;
        for (i, n) in b.iter().enumerate() {
            acc += n;
            let le = latency::LE.get(i).copied().unwrap_or("+Inf");
            let _ = writeln!(out, "{name}_bucket{{command=\"{cmd}\",le=\"{le}\"}} {acc}");
        }
        let _ = writeln!(
            out,
            "{name}_sum{{command=\"{cmd}\"}} {}",
            number(sum_ns as f64 / 1e9)
        );
        let _ = writeln!(out, "{name}_count{{command=\"{cmd}\"}} {acc}");
    }
}

/// The whole page.
pub fn render(sh: &Shared) -> String {
    let mut f = Families::default();
    general(&mut f, &stats::general(sh), "stats");
    general(&mut f, &stats::memcrab(sh), "stats memcrab");
    per_class(&mut f, &stats::slabs(sh), "slab", "stats slabs");
    per_class(&mut f, &stats::items(sh), "items", "stats items");
    for (state, n) in sh.conns.states() {
        f.add(
            &format!("{PREFIX}client_connections"),
            Kind::Gauge,
            "client connections by state (memcached's names, as `stats conns` shows them)",
            format!("{{state=\"{state}\"}}"),
            n.to_string(),
        );
    }
    if sh.settings.ext.hot_keys > 0 {
        for (key, n) in stats::hottest(sh) {
            let mut k = Vec::new();
            crate::watch::uri_encode(&key, &mut k);
            f.add(
                &format!("{PREFIX}hot_key_requests"),
                Kind::Gauge,
                "estimated requests for the hottest keys (URI-encoded), decaying by half each hot_keys_window",
                format!("{{key=\"{}\"}}", String::from_utf8_lossy(&k)),
                n.to_string(),
            );
        }
    }
    let mut out = String::with_capacity(64 * 1024);
    f.render(&mut out);
    histograms(&mut out, sh);
    out
}

/// Starts a thread per listener, serving scrapes until the process ends.
pub fn spawn(listeners: Vec<TcpListener>, sh: Arc<Shared>) -> std::io::Result<()> {
    for l in listeners {
        let sh = Arc::clone(&sh);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for conn in l.incoming() {
                    match conn {
                        Ok(s) => serve(s, &sh),
                        // Out of descriptors and the like: try again soon.
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            })?;
    }
    Ok(())
}

/// Answers one HTTP request and closes the connection.
fn serve(mut s: std::net::TcpStream, sh: &Shared) {
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut n = 0;
    let head_end = loop {
        if let Some(i) = memchr::memmem::find(&buf[..n], b"\r\n\r\n") {
            break Some(i);
        }
        if n == buf.len() {
            break None;
        }
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
    };
    let (status, ctype, body) = match head_end {
        None => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::new(),
        ),
        Some(i) => respond(&buf[..i], sh),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
    if head_end.is_none() {
        // Read (a bounded amount of) what the client still sends, so that
        // closing does not reset the connection before it reads the answer.
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut left = 64 * 1024;
        while left > 0 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => left -= k.min(left),
            }
        }
    }
}

/// The status, content type and body for a request head.
fn respond(head: &[u8], sh: &Shared) -> (&'static str, &'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if method != b"GET" && method != b"HEAD" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    match path {
        b"/metrics" => {
            let body = if method == b"GET" {
                render(sh)
            } else {
                String::new()
            };
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
        }
        b"/" => (
            "200 OK",
            "text/plain; charset=utf-8",
            "memcrab: the metrics are at /metrics\n".into(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_names_follow_the_conventions() {
        assert_eq!(
            general_name("cmd_get"),
            ("memcrab_cmd_get_total".into(), Kind::Counter, 1.0)
        );
        assert_eq!(general_name("total_items").0, "memcrab_items_total");
        assert_eq!(general_name("curr_items").0, "memcrab_curr_items");
        assert_eq!(general_name("read_buf_count").0, "memcrab_read_bufs");
        let (n, k, scale) = general_name("time_in_listen_disabled_us");
        assert_eq!(n, "memcrab_time_in_listen_disabled_seconds_total");
        assert_eq!((k, scale), (Kind::Counter, 1e-6));
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn families_keep_their_samples_together() {
        let mut f = Families::default();
        f.add("a", Kind::Gauge, "h", "{x=\"1\"}".into(), "1".into());
        f.add("b", Kind::Counter, "h", String::new(), "2".into());
        f.add("a", Kind::Gauge, "h", "{x=\"2\"}".into(), "3".into());
        let mut s = String::new();
        f.render(&mut s);
        assert_eq!(
            s,
            "# HELP a h\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 3\n# HELP b h\n# TYPE b counter\nb 2\n"
        );
    }
}
