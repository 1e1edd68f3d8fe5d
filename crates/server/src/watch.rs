//! `watch`: memcached's live log. A connection that sends `watch [types]`
//! becomes a watcher: it is answered `OK`, handles no more requests, and
//! is sent one line per event of the types it asked for, in memcached
//! 1.6.18's format (`ts=SEC.USEC gid=N type=... key=... ...`).
//!
//! ```text
//!  cmd layer / store / acceptor ─ Watch::log(kind, line) ─┬─► Watcher buf (≤ watcher_logbuf_size)
//!     (one atomic load when no watcher wants `kind`)      │     full: the line is counted, skipped
//!                                                         └─► wake the watcher's worker (first line only)
//!  worker ─ Conn (watching) ─ Watcher::take ─► Output ─► socket
//! ```
//!
//! A watcher that does not read loses lines, never memory: its buffer is
//! bounded, and once room comes back it is sent `skipped=N` before the
//! next line, as memcached does. At most 20 watchers (memcached's limit).
//!
//! Lock order: `Watch::watchers`, then a `Watcher::buf`; nothing else is
//! held with either (a log line is written after the store's locks are
//! let go, except evictions, which take only these two).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use mio::Waker;
use parking_lot::Mutex;

/// Event types (memcached's `LOG_*` flags).
pub const RAWCMDS: u16 = 1;
pub const EVICTIONS: u16 = 2;
pub const FETCHERS: u16 = 4;
pub const MUTATIONS: u16 = 8;
pub const SYSEVENTS: u16 = 16;
pub const CONNEVENTS: u16 = 32;
pub const PROXY: u16 = 64;

/// memcached's `WATCHER_LIMIT`.
const WATCHER_LIMIT: usize = 20;

/// The watchers, and what any of them wants.
pub struct Watch {
    /// Off with `-W`.
    pub allowed: bool,
    wanted: AtomicU16,
    gid: AtomicU64,
    /// `watcher_logbuf_size`: a watcher's buffer.
    cap: usize,
    watchers: Mutex<Vec<Arc<Watcher>>>,
    /// Lines skipped and sent, over all watchers (`stats`).
    pub skipped: AtomicU64,
    pub sent: AtomicU64,
}

/// One watching connection's side.
pub struct Watcher {
    flags: u16,
    buf: Mutex<Buf>,
    waker: Arc<Waker>,
    /// A wake is on its way (set by the first line into an empty buffer).
    pending: AtomicBool,
    closed: AtomicBool,
}

#[derive(Default)]
struct Buf {
    data: Vec<u8>,
    skipped: u64,
}

/// Parses `watch`'s words into flags: none is `fetchers`; an unknown word
/// is memcached's `ERROR`.
pub fn parse_types<'a>(words: impl Iterator<Item = &'a [u8]>) -> Option<u16> {
    let mut f = 0;
    let mut any = false;
    for w in words {
        any = true;
        f |= match w {
            b"rawcmds" => RAWCMDS,
            b"evictions" => EVICTIONS,
            b"fetchers" => FETCHERS,
            b"mutations" => MUTATIONS,
            b"sysevents" => SYSEVENTS,
            b"connevents" => CONNEVENTS,
            b"proxyreqs" | b"proxyevents" | b"proxyuser" => PROXY,
            _ => return None,
        };
    }
    Some(if any { f } else { FETCHERS })
}

impl Watch {
    pub fn new(allowed: bool, cap: usize) -> Self {
        Watch {
            allowed,
            wanted: AtomicU16::new(0),
            gid: AtomicU64::new(0),
            cap,
            watchers: Mutex::new(Vec::new()),
            skipped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }
    }

    /// Whether some watcher wants events of `kind`.
    #[inline]
    pub fn wants(&self, kind: u16) -> bool {
        self.wanted.load(Ordering::Relaxed) & kind != 0
    }

    /// Watchers now (`stats log_watchers`).
    pub fn count(&self) -> usize {
        self.watchers
            .lock()
            .iter()
            .filter(|w| !w.closed.load(Ordering::Relaxed))
            .count()
    }

    /// A new watcher for `flags`, woken through `waker`; its first bytes
    /// are `OK`. The error is memcached's line.
    pub fn add(&self, flags: u16, waker: &Arc<Waker>) -> Result<WatchGuard, &'static str> {
        let mut ws = self.watchers.lock();
        ws.retain(|w| !w.closed.load(Ordering::Relaxed));
        if ws.len() >= WATCHER_LIMIT {
            return Err("WATCHER_TOO_MANY log watcher limit reached");
        }
        let w = Arc::new(Watcher {
            flags,
            buf: Mutex::new(Buf {
                data: b"OK\r\n".to_vec(),
                skipped: 0,
            }),
            waker: Arc::clone(waker),
            pending: AtomicBool::new(true),
            closed: AtomicBool::new(false),
        });
        ws.push(Arc::clone(&w));
        self.wanted.fetch_or(flags, Ordering::Relaxed);
        Ok(WatchGuard(w))
    }

    /// Sends a line of `kind` to the watchers that want it: `write`
    /// appends what follows `ts=... gid=... ` (with its `\n`).
    pub fn log(&self, kind: u16, write: impl FnOnce(&mut Vec<u8>)) {
        if !self.wants(kind) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let gid = self.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let mut line = Vec::with_capacity(160);
        let _ = write!(
            line,
            "ts={}.{} gid={gid} ",
            now.as_secs(),
            now.subsec_micros()
        );
        write(&mut line);
        let mut ws = self.watchers.lock();
        let before = ws.len();
        ws.retain(|w| !w.closed.load(Ordering::Relaxed));
        if ws.len() != before {
            let f = ws.iter().fold(0, |f, w| f | w.flags);
            self.wanted.store(f, Ordering::Relaxed);
        }
        for w in ws.iter().filter(|w| w.flags & kind != 0) {
            let mut b = w.buf.lock();
            // memcached asks for room for the line and a skipped notice.
            if b.data.len() + line.len() + 128 > self.cap {
                b.skipped += 1;
                self.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if b.skipped > 0 {
                let skipped = std::mem::take(&mut b.skipped);
                let _ = writeln!(b.data, "skipped={skipped}");
            }
            b.data.extend_from_slice(&line);
            self.sent.fetch_add(1, Ordering::Relaxed);
            if !w.pending.swap(true, Ordering::AcqRel) {
                let _ = w.waker.wake();
            }
        }
    }
}

/// A watching connection's hold on its watcher; dropping it (the
/// connection closed) takes the watcher out.
pub struct WatchGuard(Arc<Watcher>);

impl WatchGuard {
    /// Moves up to `max` buffered bytes to `out`; the rest waits for the
    /// next call (the connection runs again once its socket has room).
    pub fn take(&self, max: usize, out: impl FnOnce(&[u8])) -> usize {
        let mut b = self.0.buf.lock();
        let n = b.data.len().min(max);
        out(&b.data[..n]);
        b.data.drain(..n);
        if b.data.is_empty() {
            if b.data.capacity() > 64 * 1024 {
                b.data = Vec::new();
            }
            self.0.pending.store(false, Ordering::Release);
        }
        n
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Relaxed);
    }
}

/// memcached's `uriencode`: letters, digits and `-._~` as they are, every
/// other byte `%XX`.
pub fn uri_encode(src: &[u8], dst: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in src {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            dst.push(c);
        } else {
            dst.extend_from_slice(&[b'%', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uri_encoded_as_memcached_does() {
        let mut v = Vec::new();
        uri_encode(b"c%20d a:b~_.-Z9\x00\xff", &mut v);
        assert_eq!(v, b"c%2520d%20a%3Ab~_.-Z9%00%FF");
    }

    #[test]
    fn types_as_memcached_reads_them() {
        let p = |s: &str| parse_types(s.split_whitespace().map(str::as_bytes));
        assert_eq!(p(""), Some(FETCHERS));
        assert_eq!(p("mutations evictions"), Some(MUTATIONS | EVICTIONS));
        assert_eq!(p("fetchers bogus"), None);
    }

    #[test]
    fn a_full_buffer_skips_lines_and_says_so() {
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let watch = Watch::new(true, 512);
        let g = watch.add(FETCHERS, &waker).unwrap();
        assert!(watch.wants(FETCHERS) && !watch.wants(MUTATIONS));
        for i in 0..20 {
            watch.log(FETCHERS, |b| {
                b.extend(format!("type=item_get n={i}\n").bytes())
            });
        }
        let mut got = Vec::new();
        g.take(usize::MAX, |b| got.extend_from_slice(b));
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("OK\r\nts="), "{text}");
        let lines = text.lines().count();
        assert!(lines < 20, "{lines}");
        watch.log(FETCHERS, |b| b.extend(b"type=item_get n=last\n"));
        let mut got = Vec::new();
        g.take(usize::MAX, |b| got.extend_from_slice(b));
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("skipped="), "{text}");
        assert!(text.ends_with("n=last\n"), "{text}");
        drop(g);
        watch.log(FETCHERS, |b| b.extend(b"x\n"));
        assert_eq!(watch.count(), 0);
        assert!(!watch.wants(FETCHERS));
    }
}
