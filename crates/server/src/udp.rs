//! UDP, memcached's datagram transport: each worker has its own socket on
//! the port (SO_REUSEPORT: the kernel spreads senders over them), reads
//! datagrams in batches and answers in batches.
//!
//! ```text
//!  socket ─recvmmsg─► [8-byte frame | request bytes] × up to 32
//!     frame: request id, sequence, datagram count (must be 1), reserved
//!     request bytes ─► text or binary session (first byte), step by step
//!                  ─► Output (tracking memcached's response objects)
//!                  ─► Msg per response object: (id, peer, length)
//!  Msg ─► datagrams of ≤ 1400 bytes: [id, seq, count, 0] + ≤ 1392 bytes
//!      ─sendmmsg─► socket
//! ```
//!
//! memcached reads every request in a datagram as text, or every one as
//! binary, by the datagram's first byte (0x80: binary).
//!
//! memcached sends each response object as its own datagram sequence
//! (numbered from 0, with its own count): a command's reply, and each key
//! of a multiget (END rides on the last key's). A response object with
//! nothing in it goes out as a bare 8-byte header with count 0 when it
//! heads what is written at once, and is folded into the write otherwise.
//! memcached writes out after every get, `mn`, a binary NoOp or error, every
//! `-R` + 1 commands, and at the end of the datagram; [`Replies`] replays
//! those rules from what the sessions record in the [`Output`].
//!
//! A request the datagram does not hold whole (a data block, a binary
//! body, bytes to swallow) is dropped with the replies not yet written:
//! memcached would wait for the next datagram from anyone to finish it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use memcrab_proto::binary::{HEADER_LEN, REQ_MAGIC};

use crate::output::{Output, Track};
use crate::session::{self, binary::Binary, text::Text, Step};
use crate::shared::{Shared, UdpInfo};
use crate::stats::{Counter, WorkerStats};
use crate::sys::{self, MmsgHeaders, Received};

/// The frame header's size.
pub const HEADER: usize = 8;
/// memcached's largest reply datagram, header included.
pub const MAX_DATAGRAM: usize = 1400;
/// Reply bytes per datagram.
pub const PAYLOAD: usize = MAX_DATAGRAM - HEADER;
/// A request datagram's room (memcached reads into 64 KB).
const SLOT: usize = 65536;
/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 32;
/// Datagrams per `sendmmsg`.
const SEND_BATCH: usize = 64;
/// Datagrams read per readiness before the worker's other sockets get a
/// turn.
const RECV_BUDGET: usize = 4 * RECV_BATCH;

/// What the worker does with the socket next.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// Read everything: wait for the next datagram.
    Wait,
    /// More may be waiting: run again after the others.
    Yield,
    /// Replies wait for room in the socket: watch for writability.
    Blocked,
}

/// One response object to send: `len` bytes of the output, to `peer`,
/// framed with request id `id` (len 0: a bare header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Msg {
    len: usize,
    id: u16,
    peer: SocketAddr,
}

/// The replies to the datagrams of one batch, and the rules that decide
/// how memcached would have framed them.
pub struct Replies {
    out: Output,
    msgs: Vec<Msg>,
    /// `msgs` before this were written out as memcached would have.
    committed: usize,
    /// Something was sent since the last write point (an empty response
    /// object is then folded in, not sent).
    after_send: bool,
    /// Framing: the message being cut into datagrams, bytes of it cut,
    /// next sequence number.
    cur: usize,
    cur_off: usize,
    seq: u16,
    text: Text,
    binary: Binary,
    /// What the output recorded about the request just run.
    track: Track,
}

impl Default for Replies {
    fn default() -> Self {
        Replies {
            out: Output::tracking(),
            msgs: Vec::new(),
            committed: 0,
            after_send: false,
            cur: 0,
            cur_off: 0,
            seq: 0,
            text: Text::default(),
            binary: Binary::default(),
            track: Track::default(),
        }
    }
}

impl Replies {
    /// A write point: what is recorded so far goes out.
    fn write_point(&mut self) {
        self.committed = self.msgs.len();
        self.after_send = false;
    }

    /// The output dropped what it had not written: so do the messages.
    fn discarded(&mut self) {
        self.msgs.truncate(self.committed);
        self.after_send = false;
    }

    fn push(&mut self, len: usize, id: u16, peer: SocketAddr) {
        if len == 0 && self.after_send {
            return;
        }
        self.msgs.push(Msg { len, id, peer });
        self.after_send = true;
    }

    /// Runs the requests in one datagram's payload (frame removed).
    pub fn serve(&mut self, payload: &[u8], id: u16, peer: SocketAddr, cx: &mut Cx<'_>) {
        let sh = cx.sh;
        let now = sh.store.clock().now();
        let mut pos = 0;
        let mut left = sh.settings.reqs_per_event + 1;
        // memcached picks the protocol by the datagram's first byte, for
        // every request in it, whatever -B says.
        let binary = payload.first() == Some(&REQ_MAGIC);
        while pos < payload.len() {
            if left == 0 {
                // memcached writes out after -R + 1 commands, then -R.
                self.out.commit();
                self.out.take_track(&mut self.track);
                self.write_point();
                cx.stats.incr(Counter::ConnYields);
                left = sh.settings.reqs_per_event;
            }
            let avail = &payload[pos..];
            let before = self.out.pending();
            let mut scx = session::Cx {
                receive: false,
                takeover: None,
                waker: None,
                quit: false,
                sh,
                stats: cx.stats,
                out: &mut self.out,
                fd: cx.fd,
                cmd: crate::latency::Cmd::Other,
            };
            let step = if binary {
                self.binary.step(avail, &mut scx)
            } else {
                self.text.step(avail, &mut scx)
            };
            let scx_cmd = scx.cmd;
            self.out.take_track(&mut self.track);
            let start = match self.track.discarded {
                Some(base) => {
                    self.discarded();
                    base
                }
                None => before,
            };
            let (used, swallow, close) = match step {
                Step::Need(_) => {
                    // An incomplete line or header: memcached writes what
                    // it has and waits. An incomplete data block or body:
                    // it waits without writing.
                    let in_block = if binary {
                        avail.len() >= HEADER_LEN
                    } else {
                        memchr::memchr(b'\n', avail).is_some()
                    };
                    if in_block {
                        self.drop_unwritten();
                    }
                    break;
                }
                Step::Done {
                    used,
                    swallow,
                    close,
                } => (used, swallow, close),
                // Never asked for (`receive: false`); a datagram is whole.
                Step::Receive { .. } => {
                    self.drop_unwritten();
                    break;
                }
            };
            cx.info.touch(now);
            if let Some(p) = cx.pending.as_deref_mut() {
                p.add(scx_cmd);
            }
            let end = self.out.pending();
            if self.track.breaks.is_empty() && end == start {
                // Text noreply and meta q mark their response object to be
                // skipped; binary quiet commands leave theirs empty, as
                // does text `quit` (an empty one can still be sent).
                if (binary || close) && self.track.discarded.is_none() {
                    self.push(0, id, peer);
                }
            } else {
                let mut prev = start;
                for i in 0..=self.track.breaks.len() {
                    let b = self.track.breaks.get(i).copied().unwrap_or(end);
                    self.push(b - prev, id, peer);
                    prev = b;
                }
            }
            if self.track.commits > 0 {
                self.write_point();
            }
            pos += used;
            if close {
                break;
            }
            if swallow > 0 {
                if swallow <= (payload.len() - pos) as u64 {
                    pos += swallow as usize;
                } else {
                    self.drop_unwritten();
                    break;
                }
            }
            left -= 1;
        }
        self.out.commit();
        self.out.take_track(&mut self.track);
        self.write_point();
    }

    fn drop_unwritten(&mut self) {
        self.out.discard_unsent();
        self.out.take_track(&mut self.track);
        self.discarded();
    }

    /// Cuts the next reply datagram into `dst` (header and payload) and
    /// returns its destination; none when all are cut.
    pub fn next_datagram(&mut self, dst: &mut Vec<u8>) -> Option<SocketAddr> {
        let m = *self.msgs.get(self.cur)?;
        let count = m.len.div_ceil(PAYLOAD).min(usize::from(u16::MAX)) as u16;
        dst.extend_from_slice(&m.id.to_be_bytes());
        dst.extend_from_slice(&self.seq.to_be_bytes());
        dst.extend_from_slice(&count.to_be_bytes());
        dst.extend_from_slice(&[0, 0]);
        self.cur_off += self.out.copy_out(dst, (m.len - self.cur_off).min(PAYLOAD));
        // A reply past 65,535 datagrams keeps counting, modulo 2^16, as
        // memcached's 16-bit counter does; its count says 65,535.
        self.seq = self.seq.wrapping_add(1);
        if self.cur_off >= m.len {
            self.cur += 1;
            self.cur_off = 0;
            self.seq = 0;
        }
        if self.cur == self.msgs.len() {
            self.msgs.clear();
            self.cur = 0;
            self.committed = 0;
        }
        Some(m.peer)
    }
}

/// What a datagram's requests borrow from the worker.
pub struct Cx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    pub info: &'a UdpInfo,
    pub fd: i32,
    /// Requests handled, by command, while latency is kept.
    pub pending: Option<&'a mut crate::latency::Pending>,
}

/// A worker's socket on one UDP address.
pub struct UdpPort {
    pub sock: mio::net::UdpSocket,
    pub info: Arc<UdpInfo>,
    pub watching_writes: bool,
    replies: Replies,
    rx: Vec<u8>,
    received: Vec<Received>,
    hdrs: MmsgHeaders,
    /// Datagrams cut and not yet sent: their bytes, one after another.
    tx: Vec<u8>,
    tx_dgrams: Vec<(usize, usize, SocketAddr)>,
    tx_sent: usize,
}

impl UdpPort {
    pub fn new(sock: std::net::UdpSocket, info: Arc<UdpInfo>) -> Self {
        UdpPort {
            sock: mio::net::UdpSocket::from_std(sock),
            info,
            watching_writes: false,
            replies: Replies::default(),
            rx: Vec::new(),
            received: Vec::with_capacity(RECV_BATCH),
            hdrs: MmsgHeaders::new(SEND_BATCH.max(RECV_BATCH)),
            tx: Vec::new(),
            tx_dgrams: Vec::with_capacity(SEND_BATCH),
            tx_sent: 0,
        }
    }

    /// Handles readiness: sends what waits, then reads, answers and sends
    /// until the socket is empty or the budget is spent.
    pub fn run(
        &mut self,
        sh: &Shared,
        stats: &WorkerStats,
        mut pending: Option<&mut crate::latency::Pending>,
    ) -> Status {
        let fd = self.sock.as_raw_fd();
        let mut budget = RECV_BUDGET;
        loop {
            if !self.send(stats) {
                return Status::Blocked;
            }
            if budget == 0 {
                return Status::Yield;
            }
            if self.rx.is_empty() {
                // Untouched pages cost no memory: only what datagrams
                // fill becomes resident.
                self.rx = vec![0; RECV_BATCH * SLOT];
            }
            let n =
                match sys::recv_batch(fd, &mut self.hdrs, &mut self.rx, SLOT, &mut self.received) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Status::Wait,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if sh.verbose() > 0 {
                            eprintln!("memcrab: UDP receive failed: {e}");
                        }
                        return Status::Wait;
                    }
                };
            let arrived = pending.is_some().then(std::time::Instant::now);
            let mut cx = Cx {
                sh,
                stats,
                info: &self.info,
                fd,
                pending: pending.as_deref_mut(),
            };
            for (i, r) in self.received.iter().enumerate() {
                let d = &self.rx[i * SLOT..i * SLOT + r.len.min(SLOT)];
                datagram(&mut self.replies, d, r, &mut cx);
            }
            budget = budget.saturating_sub(n);
            let sent = self.send(stats);
            if let (Some(t0), Some(p)) = (arrived, pending.as_deref_mut()) {
                if !p.is_empty() {
                    stats.lat.record(p, t0.elapsed());
                }
            }
            if n < RECV_BATCH {
                // The socket was emptied: the next datagram is a new edge.
                return if sent { Status::Wait } else { Status::Blocked };
            }
        }
    }

    /// Cuts and sends reply datagrams; false when the socket is full.
    fn send(&mut self, stats: &WorkerStats) -> bool {
        let fd = self.sock.as_raw_fd();
        loop {
            if self.tx_sent == self.tx_dgrams.len() {
                self.tx.clear();
                self.tx_dgrams.clear();
                self.tx_sent = 0;
                while self.tx_dgrams.len() < SEND_BATCH {
                    let start = self.tx.len();
                    let Some(peer) = self.replies.next_datagram(&mut self.tx) else {
                        break;
                    };
                    self.tx_dgrams.push((start, self.tx.len(), peer));
                }
                if self.tx_dgrams.is_empty() {
                    return true;
                }
                // Counted before they leave, so that a client that has its
                // answer also finds it in `stats` (memcached counts after).
                stats.add(Counter::BytesWritten, self.tx.len() as u64);
            }
            let mut batch: [(&[u8], SocketAddr); SEND_BATCH] =
                [(&[][..], SocketAddr::from(([0, 0, 0, 0], 0))); SEND_BATCH];
            let pending = &self.tx_dgrams[self.tx_sent..];
            for (slot, &(s, e, peer)) in batch.iter_mut().zip(pending) {
                *slot = (&self.tx[s..e], peer);
            }
            match sys::send_batch(fd, &mut self.hdrs, &batch[..pending.len()]) {
                Ok(k) => self.tx_sent += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // memcached drops a reply the kernel refuses (an address it
                // cannot reach) and goes on.
                Err(_) => {
                    let (s, e, _) = self.tx_dgrams[self.tx_sent];
                    stats.sub(Counter::BytesWritten, (e - s) as u64);
                    self.tx_sent += 1;
                }
            }
        }
    }
}

/// One received datagram: memcached's checks on the frame, then the
/// requests.
pub fn datagram(replies: &mut Replies, d: &[u8], r: &Received, cx: &mut Cx<'_>) {
    // memcached ignores a datagram of 8 bytes or fewer, and (after
    // counting its bytes) one whose datagram count is not 1. The sequence
    // number and reserved bytes are not looked at.
    let Some(peer) = r.peer else { return };
    if d.len() <= HEADER {
        return;
    }
    cx.stats.add(Counter::BytesRead, d.len() as u64);
    if d[4] != 0 || d[5] != 1 || r.truncated {
        return;
    }
    let id = u16::from_be_bytes([d[0], d[1]]);
    cx.info.set_peer(Some(peer));
    replies.serve(&d[HEADER..], id, peer, cx);
    cx.info.set_peer(None);
}
