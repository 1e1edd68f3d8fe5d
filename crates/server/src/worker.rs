//! Worker threads: each owns a mio `Poll`, the connections handed to it
//! by the acceptor (run until they close) and its own UDP socket on each
//! `-U` address.

use std::collections::VecDeque;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use crate::conn::{Conn, Io, Status, WorkerCx};
use crate::output::Spare;
use crate::shared::{ConnInfo, Shared, UdpInfo};
use crate::stats::{Gauge, WorkerStats};
use crate::stream::Stream;
use crate::udp::{self, UdpPort};

const WAKER: Token = Token(usize::MAX);
/// Tokens from here on name the worker's UDP sockets.
const UDP_TOKENS: usize = usize::MAX / 2;
/// A poll that returns within this found its events already waiting.
const BUSY_POLL: Duration = Duration::from_micros(30);
/// New connections a worker takes (and serves a first turn) per loop
/// turn; more wait for the next turn, after the connections already
/// ready, and a crowded worker (more workers than CPUs) gives up its core
/// between turns. A burst of 8,000 connections, each with a get of 100
/// keys whose reply it does not read, otherwise kept the others waiting
/// while a worker served all it had been handed in one go (another
/// client's get: 676 ms worst). Worst and p99 of that get, medians of 4
/// runs (`connection-burst`, BENCHMARKS.md): 16 a turn 38 / 12 ms without
/// the yield; 4 a turn 8.6 / 4.4 ms, 1 a turn 8.0 / 2.2 ms with it.
const NEW_PER_TURN: usize = 1;

/// An accepted connection on its way to a worker.
pub struct NewConn {
    pub stream: Stream,
    /// Accepted on a TLS listener: the worker puts rustls over it.
    pub tls: bool,
}

/// The acceptor's handle on a worker.
pub struct WorkerHandle {
    tx: Sender<NewConn>,
    waker: Arc<Waker>,
}

impl WorkerHandle {
    /// Hands a connection over without waking the worker (see
    /// [`wake`](Self::wake)); false if the worker is gone.
    pub fn send(&self, c: NewConn) -> bool {
        self.tx.send(c).is_ok()
    }

    /// Wakes the worker for the connections handed over since the last
    /// wake: one system call for a batch.
    pub fn wake(&self) -> bool {
        self.waker.wake().is_ok()
    }
}

pub fn spawn(
    id: usize,
    sh: Arc<Shared>,
    stats: Arc<WorkerStats>,
    udp: Vec<(std::net::UdpSocket, Arc<UdpInfo>)>,
) -> io::Result<(WorkerHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let wake = Arc::clone(&waker);
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            let mut w = Worker::new(poll, rx, sh, stats, wake);
            for (k, (sock, info)) in udp.into_iter().enumerate() {
                let mut port = UdpPort::new(sock, info);
                if let Err(e) = w.poll.registry().register(
                    &mut port.sock,
                    Token(UDP_TOKENS + k),
                    Interest::READABLE,
                ) {
                    eprintln!("memcrab: cannot watch a UDP socket: {e}");
                    continue;
                }
                w.udp.push(port);
            }
            w.run()
        })?;
    Ok((WorkerHandle { tx, waker }, thread))
}

struct Worker {
    poll: Poll,
    rx: Receiver<NewConn>,
    sh: Arc<Shared>,
    stats: Arc<WorkerStats>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    ready: VecDeque<usize>,
    pool: Vec<Vec<u8>>,
    out_pool: Vec<Spare>,
    /// Boxed as connections hold them: a box moves into a connection
    /// that has work and back here when it is idle, with no allocation.
    #[allow(clippy::vec_box)]
    io_pool: Vec<Box<Io>>,
    /// The fewest entries each pool held since the last sweep: what it
    /// held beyond that went unused for a second and is freed then.
    low: [usize; 3],
    /// Connections closed since the last sweep.
    closed: usize,
    /// What the connections hold in buffers (`Conn::holding`, summed).
    mem: [i64; crate::conn::HOLDING],
    udp: Vec<UdpPort>,
    /// UDP sockets that stopped with datagrams possibly left.
    udp_ready: Vec<usize>,
    /// Wakes the poll: new connections, and lines for a watcher.
    waker: Arc<Waker>,
    /// Connections that are watchers (`watch`): run when woken.
    watching: Vec<usize>,
    /// New connections may be waiting past the last turn's share.
    more_new: bool,
    /// Requests of the batch being handled, by command (latency kept
    /// under `-o metrics_port` only).
    pending: crate::latency::Pending,
    timed: bool,
}

impl Worker {
    fn new(
        poll: Poll,
        rx: Receiver<NewConn>,
        sh: Arc<Shared>,
        stats: Arc<WorkerStats>,
        waker: Arc<Waker>,
    ) -> Self {
        Worker {
            timed: sh.settings.ext.metrics_port.is_some(),
            poll,
            rx,
            sh,
            stats,
            conns: Vec::new(),
            free: Vec::new(),
            ready: VecDeque::new(),
            pool: Vec::new(),
            out_pool: Vec::new(),
            io_pool: Vec::new(),
            low: [0; 3],
            closed: 0,
            mem: [0; crate::conn::HOLDING],
            udp: Vec::new(),
            udp_ready: Vec::new(),
            waker,
            watching: Vec::new(),
            more_new: false,
            pending: crate::latency::Pending::default(),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(512);
        let mut last_sweep = self.sh.store.clock().now();
        // Rechecked each second: an operator may pin the process later.
        let mut crowded = self.crowded();
        loop {
            let timeout = if self.ready.is_empty() && self.udp_ready.is_empty() && !self.more_new {
                Duration::from_millis(1000)
            } else {
                Duration::ZERO
            };
            let polled = Instant::now();
            let r = self.poll.poll(&mut events, Some(timeout));
            let busy = polled.elapsed() < BUSY_POLL;
            if let Err(e) = r {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("memcrab: worker poll failed: {e}");
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {
                        self.take_new();
                        for i in self.watching.clone() {
                            self.drive(i);
                        }
                    }
                    Token(i) if i >= UDP_TOKENS => self.drive_udp(i - UDP_TOKENS),
                    Token(i) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            if let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) {
                                c.readable(ev.is_read_closed() || ev.is_error());
                            }
                        }
                        self.drive(i)
                    }
                }
            }
            for _ in 0..self.ready.len() {
                if let Some(i) = self.ready.pop_front() {
                    self.drive(i);
                }
            }
            for k in std::mem::take(&mut self.udp_ready) {
                self.drive_udp(k);
            }
            if self.more_new {
                self.take_new();
            }
            // A loop that finds events ready every time it polls never
            // sleeps, and with more workers than cores it then keeps its
            // core for a whole time slice while the other workers' clients
            // wait (p99 went from 0.4 ms to 8 ms with -t 4 on one core).
            // Giving the core up after such a busy round lets them in.
            // Yielding only after 50, 100 or 250 us of busy rounds cut the
            // context switches per request at -t 4 on one core from 0.082
            // to 0.076, 0.039 and 0.023 but raised p99 from 0.38 ms to
            // 1.8, 1.3 and 1.7 ms (BENCHMARKS.md, issue 15).
            // With no more workers than CPUs to run them there is no one
            // to let in, and the yield is a system call for nothing. New
            // connections waiting (a burst) yield too: their first turns
            // keep a worker busy without its poll ever waiting.
            if crowded && ((busy && !events.is_empty()) || self.more_new) {
                std::thread::yield_now();
            }
            let now = self.sh.store.clock().now();
            if now != last_sweep {
                last_sweep = now;
                self.close_idle(now);
                self.trim();
                crowded = self.crowded();
            }
        }
    }

    /// Whether the workers outnumber the CPUs this thread may run on.
    fn crowded(&self) -> bool {
        let cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .count()
            })
            .unwrap_or(1);
        self.sh.settings.threads > cpus.max(1)
    }

    /// Takes up to `NEW_PER_TURN` new connections and serves each a first
    /// turn; `more_new` says whether more may wait.
    fn take_new(&mut self) {
        self.more_new = false;
        for _ in 0..NEW_PER_TURN {
            let Ok(nc) = self.rx.try_recv() else {
                return;
            };
            let now = self.sh.store.clock().now();
            let mut stream = match (nc.stream, &self.sh.settings.tls) {
                (Stream::Tcp(sock), Some(tls)) if nc.tls => match tls.accept(sock) {
                    Ok(t) => Stream::Tls(Box::new(t)),
                    Err(e) => {
                        eprintln!("memcrab: cannot start TLS on a connection: {e}");
                        self.sh.conns.remove_slot();
                        continue;
                    }
                },
                (s, _) => s,
            };
            let fd = stream.fd();
            let info = Arc::new(ConnInfo::new(fd, now));
            let slot = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut stream, Token(slot), Interest::READABLE)
            {
                eprintln!("memcrab: cannot watch a new connection: {e}");
                self.free.push(slot);
                self.sh.conns.remove_slot();
                continue;
            }
            self.sh.conns.register(Arc::clone(&info));
            if self.sh.verbose() > 1 {
                // memcached's words (a period after two of them, not the first).
                match self.sh.settings.protocol {
                    crate::config::Protocol::Auto => {
                        eprintln!("<{fd} new auto-negotiating client connection")
                    }
                    crate::config::Protocol::Ascii => {
                        eprintln!("<{fd} new ascii client connection.")
                    }
                    crate::config::Protocol::Binary => {
                        eprintln!("<{fd} new binary client connection.")
                    }
                }
            }
            let tcp = !matches!(stream, Stream::Unix(_));
            self.sh.watch.log(crate::watch::CONNEVENTS, |b| {
                let peer = crate::listen::conn_event_peer(fd, tcp);
                b.extend(format!("type=conn_new {peer} cfd={fd}\n").bytes());
            });
            self.conns[slot] = Some(Conn::new(stream, info));
            self.drive(slot);
        }
        self.more_new = true;
    }

    fn drive(&mut self, i: usize) {
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut cx = WorkerCx {
            sh: &self.sh,
            stats: &self.stats,
            pool: &mut self.pool,
            out_pool: &mut self.out_pool,
            io_pool: &mut self.io_pool,
            mem: &mut self.mem,
            waker: &self.waker,
            pending: self.timed.then_some(&mut self.pending),
        };
        let status = conn.run(&mut cx);
        if conn.is_watching() && !self.watching.contains(&i) {
            self.watching.push(i);
        }
        if status != Status::Close && conn.blocked_on_write() != conn.watching_writes {
            // Watch for room in the socket only while replies wait for it:
            // a writable edge after every reply would wake the loop twice
            // per request.
            let want = conn.blocked_on_write();
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(i), interest)
                .is_err()
            {
                self.close(i);
                return;
            }
            conn.watching_writes = want;
        }
        match status {
            Status::Wait => {}
            Status::Yield => self.ready.push_back(i),
            Status::Close => self.close(i),
        }
        self.low[0] = self.low[0].min(self.pool.len());
        self.low[1] = self.low[1].min(self.out_pool.len());
        self.low[2] = self.low[2].min(self.io_pool.len());
        self.publish();
    }

    /// The buffer gauges `stats` reads.
    fn publish(&self) {
        let st = &self.stats;
        let v = |i: usize| self.mem[i].max(0) as u64;
        st.set_gauge(Gauge::ReadBufs, v(0));
        st.set_gauge(Gauge::ReadBufBytes, v(1));
        st.set_gauge(Gauge::ReplyBufs, v(2));
        st.set_gauge(Gauge::ReplyBufBytes, v(3));
        st.set_gauge(Gauge::ReadBufsFree, self.pool.len() as u64);
    }

    /// Memory goes back after a burst: pooled buffers unused for a whole
    /// second are freed (a worker that had no use for them for a second
    /// is idle, and a fresh buffer is one allocation), the connection table
    /// drops the free slots at its end, and the allocator is asked to give
    /// its free pages back once much was freed.
    fn trim(&mut self) {
        fn cut<T>(pool: &mut Vec<T>, unused: usize) {
            let spare = unused.min(pool.len());
            if spare > 0 {
                pool.truncate(pool.len() - spare);
                if pool.capacity() > 4 * pool.len() {
                    pool.shrink_to_fit();
                }
            }
        }
        let before = self.pool.len() * crate::conn::READ_BUF;
        cut(&mut self.pool, self.low[0]);
        cut(&mut self.out_pool, self.low[1]);
        cut(&mut self.io_pool, self.low[2]);
        let freed = before - self.pool.len() * crate::conn::READ_BUF;
        self.low = [self.pool.len(), self.out_pool.len(), self.io_pool.len()];
        let live = self.conns.len();
        while matches!(self.conns.last(), Some(None)) {
            self.conns.pop();
        }
        if self.conns.len() < live {
            let end = self.conns.len();
            self.free.retain(|&i| i < end);
            if self.conns.capacity() > 2 * end + 64 {
                self.conns.shrink_to(end + end / 2);
                self.free.shrink_to(self.free.len() * 2);
            }
        }
        if self.ready.is_empty() && self.ready.capacity() > 1024 {
            self.ready.shrink_to_fit();
        }
        self.publish();
        if freed > 0 || self.closed >= 64 {
            crate::sys::trim_heap();
        }
        self.closed = 0;
    }

    fn drive_udp(&mut self, k: usize) {
        let Some(port) = self.udp.get_mut(k) else {
            return;
        };
        let status = port.run(
            &self.sh,
            &self.stats,
            self.timed.then_some(&mut self.pending),
        );
        let want = status == udp::Status::Blocked;
        if want != port.watching_writes {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) =
                self.poll
                    .registry()
                    .reregister(&mut port.sock, Token(UDP_TOKENS + k), interest)
            {
                eprintln!("memcrab: cannot watch a UDP socket: {e}");
            }
            port.watching_writes = want;
        }
        if status == udp::Status::Yield && !self.udp_ready.contains(&k) {
            self.udp_ready.push(k);
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut conn) = self.conns[i].take() {
            self.watching.retain(|&w| w != i);
            let fd = conn.info.fd;
            let tcp = !matches!(conn.stream, Stream::Unix(_));
            let reason = conn.close_reason.name();
            self.sh.watch.log(crate::watch::CONNEVENTS, |b| {
                let peer = crate::listen::conn_event_peer(fd, tcp);
                b.extend(format!("type=conn_close {peer} reason={reason} cfd={fd}\n").bytes());
            });
            let _ = self.poll.registry().deregister(&mut conn.stream);
            conn.release(&self.sh);
            for (m, h) in self.mem.iter_mut().zip(conn.holding()) {
                *m -= h;
            }
            // Forget the descriptor before closing it: the acceptor may
            // reuse the number at once.
            self.sh.conns.remove(conn.info.fd);
            if self.sh.verbose() > 1 {
                eprintln!("<{} connection closed.", conn.info.fd);
            }
            drop(conn);
            self.free.push(i);
            self.closed += 1;
        }
    }

    /// `-o idle_timeout`: closes connections silent for longer.
    fn close_idle(&mut self, now: u32) {
        let limit = self.sh.settings.ext.idle_timeout;
        if limit == 0 {
            return;
        }
        let idle: Vec<(usize, i32, bool)> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    .filter(|c| now.saturating_sub(c.info.last_cmd()) > limit)
                    .map(|c| (i, c.info.fd, c.info.waiting()))
            })
            .collect();
        for (i, fd, waiting) in idle {
            // As memcached: only a connection waiting for a request is
            // kicked, not one in the middle of a value or a reply.
            if !waiting {
                if self.sh.verbose() > 1 {
                    eprintln!("fd {fd} wants to timeout, but isn't in read state");
                }
                continue;
            }
            if self.sh.verbose() > 1 {
                eprintln!("Closing idle fd {fd}");
            }
            self.stats.incr(crate::stats::Counter::IdleKicks);
            if let Some(c) = self.conns[i].as_mut() {
                c.close_reason = crate::conn::CloseReason::IdleTimeout;
            }
            self.close(i);
        }
    }
}
