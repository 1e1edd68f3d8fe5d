//! A connection's pending output: reply bytes composed in one buffer plus
//! large values referenced straight from the store, sent with one
//! `writev` per batch (seed 000's scatter/gather get responses).

use memcrab_store::{Found, ItemRef};
use std::io::{self, IoSlice, Write};
use std::ops::Range;

/// Values up to this size are copied into the reply buffer; larger ones
/// are sent from the item's own memory (held by a reference count). At
/// 2048, 1,000 clients that pipeline gets of 1 KB values and never read
/// held 45 MB at peak (memcached, which copies nothing, 24 MB); at 512,
/// 26 MB, and the server CPU per request of a 1 KB get/set load did not
/// move (6.66 and 6.72 us, medians of 3, one run).
const COPY_MAX: usize = 512;
/// At most this many slices per `writev` call (well under IOV_MAX).
const MAX_IOV: usize = 64;
/// A reply buffer grown past this is released once flushed.
pub const KEEP_CAPACITY: usize = 16 * 1024;
/// A segment list grown past this is not pooled.
const KEEP_SEGS: usize = 256;
/// A fresh reply buffer's size: a pipelined batch of small replies fits.
const INITIAL_CAPACITY: usize = 4 * 1024;

enum Seg {
    Buf(Range<usize>),
    Val(ItemRef),
}

#[derive(Default)]
pub struct Output {
    buf: Vec<u8>,
    segs: Vec<Seg>,
    /// First segment not fully sent, and bytes of it already sent.
    head: usize,
    off: usize,
    /// Bytes queued and not yet sent.
    pending: usize,
    /// Segments before this index are committed: memcached would have
    /// written them already (it flushes after every get), so a later
    /// `discard_unsent` keeps them.
    mark: usize,
    /// Bytes queued since the last commit (some may be sent since).
    since_commit: usize,
    /// Over UDP: where memcached's response objects begin and end.
    track: Option<Box<Track>>,
    /// memcached's response objects (a command's reply; each key of a
    /// multiget) queued since the last commit and not yet sent, which
    /// memcached would still hold.
    resps: u32,
    /// How many of them this connection may hold now (`None`: no limit;
    /// see [`RESPS_PER_BUFFER`]).
    resp_cap: Option<u32>,
}

/// memcached 1.6.18 takes its response objects in bundles of 13 (each
/// about 1.2 KB with its inline write buffer) out of the same per-thread
/// cache of 16 KB buffers as read buffers, which `-o read_buf_mem_limit`
/// bounds at the limit divided by the threads: with 32 KB a thread, a
/// multiget of 13 keys is answered and one of 14 is refused (measured
/// against Debian's build).
pub const RESPS_PER_BUFFER: u32 = 13;

/// What a UDP transport needs to frame replies as memcached does, which
/// sends each response object (a command's reply; each key of a multiget)
/// as its own sequence of datagrams. Offsets are `pending()` values.
#[derive(Default, Debug)]
pub struct Track {
    /// Where a new response object began (within a multiget).
    pub breaks: Vec<usize>,
    /// Set by `discard_unsent`: what was left pending.
    pub discarded: Option<usize>,
    /// `commit` calls: memcached wrote out its responses there.
    pub commits: u32,
}

impl Output {
    /// An output that records response boundaries (for UDP).
    pub fn tracking() -> Self {
        Output {
            track: Some(Box::default()),
            ..Output::default()
        }
    }

    /// Moves the boundaries recorded since the last call into `into`
    /// (cleared first) and starts afresh. The two buffers trade places,
    /// so neither is reallocated.
    pub fn take_track(&mut self, into: &mut Track) {
        into.breaks.clear();
        into.discarded = None;
        into.commits = 0;
        if let Some(t) = &mut self.track {
            std::mem::swap(&mut **t, into);
        }
    }

    /// memcached starts a new response object here (before each key of a
    /// multiget but the first). A UDP reply shows the boundary; false when
    /// the connection may hold no more response objects (then nothing is
    /// recorded).
    pub fn resp_break(&mut self) -> bool {
        if !self.resp_start() {
            return false;
        }
        if let Some(t) = &mut self.track {
            t.breaks.push(self.pending);
        }
        true
    }

    /// Takes a response object for a command's reply; false when the
    /// limit has no room for one.
    #[inline]
    pub fn resp_start(&mut self) -> bool {
        if let Some(cap) = self.resp_cap {
            if self.resps >= cap {
                return false;
            }
        }
        self.resps = self.resps.saturating_add(1);
        true
    }

    /// Gives back the response object [`resp_start`](Self::resp_start)
    /// took for a command that turned out not to be complete yet.
    #[inline]
    pub fn resp_unstart(&mut self) {
        self.resps = self.resps.saturating_sub(1);
    }

    /// Response objects held (queued since the last commit, unsent).
    pub fn resps(&self) -> u32 {
        self.resps
    }

    /// How many response objects the connection may hold from now on.
    pub fn set_resp_cap(&mut self, cap: Option<u32>) {
        self.resp_cap = cap;
    }

    /// Bytes of reply buffer this output holds (composed replies; values
    /// sent from item memory are not counted).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Bytes queued since the last commit and not yet sent: the tail of
    /// what is pending, which a hang-up would drop.
    pub fn uncommitted(&self) -> usize {
        self.since_commit.min(self.pending)
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(b);
        self.extend_buf_seg(start);
    }

    /// Runs `f` on the reply buffer and queues what it appended.
    pub fn with_buf(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        f(&mut self.buf);
        self.extend_buf_seg(start);
    }

    fn extend_buf_seg(&mut self, start: usize) {
        let end = self.buf.len();
        if end == start {
            return;
        }
        self.pending += end - start;
        self.since_commit += end - start;
        if self.segs.len() > self.mark {
            if let Some(Seg::Buf(r)) = self.segs.last_mut() {
                if r.end == start {
                    r.end = end;
                    return;
                }
            }
        }
        self.segs.push(Seg::Buf(start..end));
    }

    /// A reply line: `s` and `\r\n`.
    pub fn line(&mut self, s: &str) {
        self.with_buf(|b| {
            b.extend_from_slice(s.as_bytes());
            b.extend_from_slice(b"\r\n");
        });
    }

    /// An item's data block (value and `\r\n`): copied when small, else
    /// sent from item memory, held until written. Runs under the store's
    /// shard lock: no I/O here.
    pub fn data_block(&mut self, found: &Found<'_>) {
        for part in found.parts() {
            self.item_part(found, part);
        }
    }

    /// A slice of an item's memory: copied when small or when the item has
    /// too many readers, else held.
    fn item_part(&mut self, found: &Found<'_>, part: &[u8]) {
        if part.len() <= COPY_MAX {
            self.bytes(part);
        } else if let Some(r) = found.pin(part) {
            self.pending += r.len();
            self.since_commit += r.len();
            self.segs.push(Seg::Val(r));
        } else {
            self.bytes(part);
        }
    }

    /// An item's value alone, without the `\r\n` the store keeps after it
    /// (binary responses), copied or held as [`data_block`](Self::data_block) does.
    pub fn value(&mut self, found: &Found<'_>) {
        let mut left = found.value_len;
        for part in found.parts() {
            if left == 0 {
                break;
            }
            let part = &part[..part.len().min(left)];
            left -= part.len();
            self.item_part(found, part);
        }
    }

    /// Marks everything queued so far as sent as far as
    /// [`discard_unsent`](Self::discard_unsent) is concerned.
    pub fn commit(&mut self) {
        self.mark = self.segs.len();
        self.since_commit = 0;
        self.resps = 0;
        if let Some(t) = &mut self.track {
            t.commits += 1;
        }
    }

    /// Drops the replies queued since the last commit (memcached culls its
    /// unsent responses when a get fails on a too-long key, and when it
    /// hangs up on an HTTP request or an over-long line).
    pub fn discard_unsent(&mut self) {
        // A segment already partly on the wire must be finished.
        let keep = self.mark.max(if self.off > 0 {
            self.head + 1
        } else {
            self.head
        });
        self.segs.truncate(keep);
        self.since_commit = 0;
        self.resps = 0;
        self.pending = self.segs[self.head.min(self.segs.len())..]
            .iter()
            .map(|s| match s {
                Seg::Buf(r) => r.len(),
                Seg::Val(r) => r.len(),
            })
            .sum::<usize>()
            - self.off;
        if self.pending == 0 {
            self.reset();
        }
        if let Some(t) = &mut self.track {
            t.breaks.clear();
            t.discarded = Some(self.pending);
        }
    }

    /// Moves the next `n` pending bytes (at most) to the end of `dst`, as
    /// if sent. Returns how many.
    pub fn copy_out(&mut self, dst: &mut Vec<u8>, n: usize) -> usize {
        let mut left = n.min(self.pending);
        let mut i = self.head;
        let mut off = self.off;
        while left > 0 {
            let s = match &self.segs[i] {
                Seg::Buf(r) => &self.buf[r.clone()],
                Seg::Val(r) => &r[..],
            };
            let k = (s.len() - off).min(left);
            dst.extend_from_slice(&s[off..off + k]);
            left -= k;
            i += 1;
            off = 0;
        }
        let done = n.min(self.pending);
        self.advance(done);
        if self.pending == 0 {
            self.reset();
        }
        done
    }

    /// Writes as much as the socket takes. Returns the bytes written;
    /// `Ok` with data still pending means the socket is full.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        self.flush_some(w, usize::MAX).map(|(n, _)| n)
    }

    /// Writes up to `limit` bytes, or as much as the socket takes. Returns
    /// the bytes written and whether the socket is full (with data still
    /// pending and no `full`, the limit stopped it).
    pub fn flush_some<W: Write>(&mut self, w: &mut W, limit: usize) -> io::Result<(usize, bool)> {
        let mut total = 0;
        while self.pending > 0 {
            if total >= limit {
                return Ok((total, false));
            }
            let mut room = limit - total;
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, seg) in self.segs[self.head..].iter().enumerate() {
                if n == MAX_IOV || room == 0 {
                    break;
                }
                let s = match seg {
                    Seg::Buf(r) => &self.buf[r.clone()],
                    Seg::Val(r) => &r[..],
                };
                let s = if i == 0 { &s[self.off..] } else { s };
                let s = &s[..s.len().min(room)];
                room -= s.len();
                iov[n] = IoSlice::new(s);
                n += 1;
            }
            let written = match w.write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((total, true));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += written;
            self.advance(written);
        }
        self.reset();
        Ok((total, false))
    }

    fn advance(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let len = match &self.segs[self.head] {
                Seg::Buf(r) => r.len(),
                Seg::Val(r) => r.len(),
            } - self.off;
            if n >= len {
                n -= len;
                self.segs[self.head] = Seg::Buf(0..0);
                self.head += 1;
                self.off = 0;
            } else {
                self.off += n;
                n = 0;
            }
        }
    }

    fn reset(&mut self) {
        self.segs.clear();
        self.mark = 0;
        self.head = 0;
        self.off = 0;
        self.pending = 0;
        self.since_commit = 0;
        self.resps = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Takes the buffers of an idle connection (nothing pending), for
    /// the worker's pool: an idle connection holds none.
    pub fn release(&mut self) -> Option<Spare> {
        if !self.is_empty() || self.buf.capacity() == 0 {
            return None;
        }
        self.reset();
        let mut spare = Spare {
            buf: std::mem::take(&mut self.buf),
            segs: std::mem::take(&mut self.segs),
        };
        if spare.segs.capacity() > KEEP_SEGS {
            spare.segs = Vec::with_capacity(8);
        }
        (spare.buf.capacity() <= KEEP_CAPACITY).then_some(spare)
    }

    /// Whether the buffers were released (a pooled pair can be adopted).
    pub fn released(&self) -> bool {
        self.buf.capacity() == 0
    }

    /// Takes pooled buffers (or fresh ones) in place of released ones, so
    /// a connection that goes idle between batches does not grow its
    /// reply buffer from nothing every batch.
    pub fn adopt(&mut self, spare: Option<Spare>) {
        let Spare { buf, segs } = spare.unwrap_or_else(|| Spare {
            buf: Vec::with_capacity(INITIAL_CAPACITY),
            segs: Vec::with_capacity(8),
        });
        debug_assert!(buf.is_empty() && segs.is_empty());
        self.buf = buf;
        self.segs = segs;
    }
}

/// An idle connection's empty reply buffers, kept by its worker for the
/// next connection that has replies to compose.
pub struct Spare {
    buf: Vec<u8>,
    segs: Vec<Seg>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call, then blocks after
    /// `budget` bytes in all.
    struct Slow {
        got: Vec<u8>,
        max: usize,
        budget: usize,
    }

    impl Slow {
        fn new(max: usize, budget: usize) -> Slow {
            Slow {
                got: Vec::new(),
                max,
                budget,
            }
        }
    }

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.max).min(self.budget);
            self.got.extend_from_slice(&b[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A turn's limit stops the send short of a full socket, and says so;
    /// the rest follows in order.
    #[test]
    fn sends_stop_at_the_turn_limit() {
        let mut o = Output::default();
        for i in 0..100 {
            o.line(&format!("line {i:04}"));
        }
        let total = o.pending();
        let mut w = Slow::new(1 << 20, 1 << 20);
        assert_eq!(o.flush_some(&mut w, 100).unwrap(), (100, false));
        assert_eq!(o.pending(), total - 100);
        let mut full = Slow::new(1 << 20, 50);
        assert_eq!(o.flush_some(&mut full, 1000).unwrap(), (50, true));
        w.got.extend_from_slice(&full.got);
        assert_eq!(
            o.flush_some(&mut w, usize::MAX).unwrap(),
            (total - 150, false)
        );
        assert!(o.is_empty());
        let want: String = (0..100).map(|i| format!("line {i:04}\r\n")).collect();
        assert_eq!(String::from_utf8(w.got).unwrap(), want);
    }

    #[test]
    fn partial_writes_keep_order() {
        use memcrab_store::{Clock, Config, DeleteOutcome, DeleteReq, Mode, Store, StoreReq};
        let store = Store::new(Config::default(), std::sync::Arc::new(Clock::new()));
        let big = vec![b'x'; 5000];
        store.store(&StoreReq {
            mode: Mode::Set,
            key: b"k",
            flags: 0,
            exptime: 0,
            value: &big,
            cas: 0,
            ..StoreReq::default()
        });
        let mut o = Output::default();
        o.line("VALUE k 0 5000");
        store.get_with(b"k", None, |f| o.data_block(f)).unwrap();
        // The value is held, not copied: deleting the item changes nothing.
        let del = DeleteReq {
            key: b"k",
            ..DeleteReq::default()
        };
        assert_eq!(store.delete(&del), DeleteOutcome::Deleted);
        o.line("END");
        let total = o.pending();
        let mut w = Slow::new(7, 100);
        o.flush(&mut w).unwrap();
        assert_eq!(w.got.len(), 100);
        assert!(!o.is_empty());
        w.budget = usize::MAX;
        o.flush(&mut w).unwrap();
        assert!(o.is_empty());
        assert_eq!(w.got.len(), total);
        let mut want = b"VALUE k 0 5000\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\nEND\r\n");
        assert_eq!(w.got, want);
    }

    #[test]
    fn discard_keeps_committed_replies() {
        let mut o = Output::default();
        o.line("VALUE");
        o.commit();
        o.line("STORED");
        o.discard_unsent();
        o.line("CLIENT_ERROR x");
        let mut w = Slow::new(100, 100);
        o.flush(&mut w).unwrap();
        assert_eq!(w.got, b"VALUE\r\nCLIENT_ERROR x\r\n");
    }

    #[test]
    fn discard_drops_everything_unsent() {
        let mut o = Output::default();
        o.line("STORED");
        o.line("VALUE");
        o.discard_unsent();
        assert!(o.is_empty());
        o.line("CLIENT_ERROR x");
        let mut w = Slow::new(100, 100);
        o.flush(&mut w).unwrap();
        assert_eq!(w.got, b"CLIENT_ERROR x\r\n");
    }

    #[test]
    fn uncommitted_is_the_unsent_tail_since_the_last_commit() {
        let mut o = Output::default();
        o.line("VALUE"); // 7 bytes
        o.commit();
        assert_eq!(o.uncommitted(), 0);
        o.line("STORED"); // 8 bytes
        assert_eq!((o.pending(), o.uncommitted()), (15, 8));
        // Sending part of the committed bytes leaves the tail held.
        let mut w = Slow::new(100, 5);
        o.flush(&mut w).unwrap();
        assert_eq!((o.pending(), o.uncommitted()), (10, 8));
        // Sending into the tail shrinks it.
        let mut w = Slow::new(100, 6);
        o.flush(&mut w).unwrap();
        assert_eq!((o.pending(), o.uncommitted()), (4, 4));
        o.commit();
        assert_eq!(o.uncommitted(), 0);
    }

    #[test]
    fn released_buffers_come_back_empty() {
        let mut o = Output::default();
        assert!(o.release().is_none(), "nothing to give back");
        o.line("STORED");
        assert!(o.release().is_none(), "replies are pending");
        let mut w = Slow::new(100, 100);
        o.flush(&mut w).unwrap();
        let spare = o.release().expect("idle: buffers go to the pool");
        assert!(o.released());
        let mut p = Output::default();
        p.adopt(Some(spare));
        assert!(!p.released() && p.is_empty());
        p.line("END");
        let mut w = Slow::new(100, 100);
        p.flush(&mut w).unwrap();
        assert_eq!(w.got, b"END\r\n");
    }
}
