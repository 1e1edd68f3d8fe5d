//! The load generator: connections spread over client threads, each
//! thread one mio event loop. Closed loop (keep `pipeline` requests in
//! flight) or open loop (send on a fixed schedule; latency is measured
//! from the *intended* send time, so a stalled server is not hidden).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

use crate::dist::{self, Popularity, Rng, SizeRange};
use crate::hist::Latency;
use crate::reply::{self, Expect, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// How keys are chosen.
#[derive(Debug, Clone)]
pub enum KeyMode {
    /// From `keys` by popularity.
    Random,
    /// Every request a new key: connection c writes start+c, start+c+C,
    /// ... up to `end` if given (sets only).
    Sequential { start: u64, end: Option<u64> },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: SocketAddr,
    pub transport: Transport,
    pub duration: Duration,
    pub connections: usize,
    pub threads: usize,
    pub pipeline: usize,
    pub get_ratio: f64,
    /// Keys per get (1 = plain get).
    pub multiget: usize,
    pub keys: u64,
    pub popularity: Popularity,
    pub key_mode: KeyMode,
    pub key_size: SizeRange,
    pub value_size: SizeRange,
    /// Exptime for sets, seconds (0 = none).
    pub ttl: SizeRange,
    /// Open loop: total requests per second.
    pub rate: Option<f64>,
    pub verify: bool,
    /// Stop once this many key+value bytes were written (fills).
    pub max_set_bytes: Option<u64>,
    /// Sets carry `noreply` (fills): no reply is awaited, and each
    /// connection ends with a `version` round trip so the server has read
    /// everything before the run counts as done.
    pub noreply: bool,
    pub client_cpus: Option<Vec<usize>>,
    pub progress: bool,
    pub seed: u64,
    /// Count the sets by the unix second their item expires in
    /// (`Outcome::expiries`), for relative TTLs.
    pub track_expiry: bool,
    /// Also keep a latency histogram per unix second of intended send
    /// (`Outcome::by_second`).
    pub latency_by_second: bool,
    /// Speak the meta protocol: a get is `mg <key> v f t c` (a multiget:
    /// `mg <key> v f t c k q` per key, then `mn`), a set `ms`.
    pub meta: bool,
    /// Speak the binary protocol: a get is GetKQ for all keys but the
    /// last and GetK for the last; a set is Set (SetQ with `noreply`).
    pub binary: bool,
    /// TCP connections speak TLS (rustls).
    pub tls: Option<crate::tls::ClientTls>,
}

/// A binary request header and body.
fn binary_request(out: &mut Vec<u8>, opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) {
    out.extend_from_slice(&[0x80, opcode]);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    out.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: "127.0.0.1:11211".parse().expect("literal"),
            transport: Transport::Tcp,
            duration: Duration::from_secs(10),
            connections: 50,
            threads: 1,
            pipeline: 1,
            get_ratio: 0.9,
            multiget: 1,
            keys: 100_000,
            popularity: Popularity::Uniform,
            key_mode: KeyMode::Random,
            key_size: SizeRange { min: 10, max: 10 },
            value_size: SizeRange { min: 100, max: 100 },
            ttl: SizeRange { min: 0, max: 0 },
            rate: None,
            verify: false,
            max_set_bytes: None,
            noreply: false,
            client_cpus: None,
            progress: false,
            seed: 1,
            track_expiry: false,
            latency_by_second: false,
            binary: false,
            meta: false,
            tls: None,
        }
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub gets: u64,
    pub sets: u64,
    /// Keys asked for by gets, and how many were found.
    pub keys_asked: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub verify_failures: u64,
    /// UDP requests whose reply never came.
    pub lost: u64,
    pub set_bytes: u64,
    pub elapsed: Duration,
    pub latency: Latency,
    /// CPU seconds this client used (all threads).
    pub client_cpu: f64,
    /// With `track_expiry`: sets by the unix second their item expires.
    pub expiries: std::collections::BTreeMap<u64, u64>,
    /// With `latency_by_second`: latency by unix second of intended send.
    pub by_second: std::collections::BTreeMap<u64, Latency>,
}

impl Outcome {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, o: Outcome) {
        self.ops += o.ops;
        self.gets += o.gets;
        self.sets += o.sets;
        self.keys_asked += o.keys_asked;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.verify_failures += o.verify_failures;
        self.lost += o.lost;
        self.set_bytes += o.set_bytes;
        self.latency.merge(&o.latency);
        for (t, n) in o.expiries {
            *self.expiries.entry(t).or_default() += n;
        }
        for (t, l) in o.by_second {
            self.by_second.entry(t).or_default().merge(&l);
        }
    }

    /// Errors (including failed checks and lost replies) per request.
    pub fn error_rate(&self) -> f64 {
        (self.errors + self.verify_failures + self.lost) as f64 / (self.ops.max(1)) as f64
    }
}

pub fn cpu_seconds_self() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => 0.0,
    }
}

/// Runs the load and returns what it measured.
pub fn run(cfg: &Config) -> io::Result<Outcome> {
    let threads = cfg.threads.clamp(1, cfg.connections.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let done_ops = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds_self();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns: Vec<usize> = (0..cfg.connections).filter(|c| c % threads == t).collect();
        let cfg = cfg.clone();
        let stop = Arc::clone(&stop);
        let done_ops = Arc::clone(&done_ops);
        handles.push(std::thread::spawn(move || {
            if let Some(cpus) = &cfg.client_cpus {
                pin(cpus);
            }
            Worker::new(&cfg, conns, stop, done_ops).and_then(|w| w.run(start))
        }));
    }
    let bar = progress_bar(cfg);
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(b) = &bar {
            b.set_position(start.elapsed().as_millis() as u64);
            b.set_message(format!("{} ops", done_ops.load(Ordering::Relaxed)));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut total = Outcome::default();
    for h in handles {
        let o = h
            .join()
            .map_err(|_| io::Error::other("client thread panicked"))??;
        total.merge(o);
    }
    // A timed run is measured over its duration (the drain after the
    // deadline only collects replies already counted as sent); a fill
    // that ends early is measured over the time it took.
    total.elapsed = start.elapsed().min(cfg.duration);
    total.client_cpu = cpu_seconds_self() - cpu0;
    Ok(total)
}

fn progress_bar(cfg: &Config) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !cfg.progress || !io::stderr().is_terminal() || cfg.duration < Duration::from_secs(3) {
        return None;
    }
    let b = indicatif::ProgressBar::new(cfg.duration.as_millis() as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}

/// Pins the calling thread to `cpus`.
pub fn pin(cpus: &[usize]) {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    for &c in cpus {
        let _ = set.set(c);
    }
    let _ = sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

struct Pending {
    expect: Expect,
    /// Key indices asked (gets, for verification).
    keys: Vec<u64>,
    is_get: bool,
    intended: Instant,
    /// UDP request id.
    id: u16,
    /// The closing `version` of a noreply fill: not a measured request.
    sync: bool,
}

enum Sock {
    Tcp(TcpStream),
    Udp(UdpSocket),
    Tls(Box<crate::tls::TlsSock>),
}

struct Conn {
    sock: Sock,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    inflight: VecDeque<Pending>,
    rng: Rng,
    next_send: Instant,
    interval: Option<Duration>,
    seq: u64,
    set_bytes: u64,
    done: bool,
    udp_id: u16,
    /// UDP reply reassembly: datagrams received for the current id.
    udp_parts: Vec<Option<Vec<u8>>>,
}

struct Worker {
    poll: Poll,
    conns: Vec<Conn>,
    ids: Vec<usize>,
    cfg: Config,
    stop: Arc<AtomicBool>,
    done_ops: Arc<AtomicU64>,
    out: Outcome,
    key_buf: Vec<u8>,
    val_buf: Vec<u8>,
}

/// Open loop: at most this many requests wait per connection before the
/// generator stops adding (the backlog still counts in latency).
const OPEN_LOOP_CAP: usize = 10_000;
const UDP_TIMEOUT: Duration = Duration::from_millis(250);

impl Worker {
    fn new(
        cfg: &Config,
        ids: Vec<usize>,
        stop: Arc<AtomicBool>,
        done_ops: Arc<AtomicU64>,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let mut conns = Vec::new();
        let now = Instant::now();
        let per_conn_rate = cfg.rate.map(|r| r / cfg.connections.max(1) as f64);
        for (slot, &id) in ids.iter().enumerate() {
            let mut sock = match cfg.transport {
                Transport::Tcp => {
                    let s = std::net::TcpStream::connect(cfg.server)?;
                    s.set_nodelay(true)?;
                    s.set_nonblocking(true)?;
                    match &cfg.tls {
                        None => Sock::Tcp(TcpStream::from_std(s)),
                        Some(t) => Sock::Tls(Box::new(crate::tls::TlsSock::new(
                            TcpStream::from_std(s),
                            t,
                        )?)),
                    }
                }
                Transport::Udp => {
                    let bind: SocketAddr = if cfg.server.is_ipv4() {
                        "0.0.0.0:0".parse().expect("literal")
                    } else {
                        "[::]:0".parse().expect("literal")
                    };
                    let s = std::net::UdpSocket::bind(bind)?;
                    s.connect(cfg.server)?;
                    s.set_nonblocking(true)?;
                    Sock::Udp(UdpSocket::from_std(s))
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            match &mut sock {
                Sock::Tcp(s) => poll.registry().register(s, Token(slot), interest)?,
                Sock::Udp(s) => poll.registry().register(s, Token(slot), interest)?,
                Sock::Tls(s) => poll
                    .registry()
                    .register(&mut s.sock, Token(slot), interest)?,
            }
            let mut rng = Rng::new(cfg.seed ^ dist::mix(id as u64 + 1));
            let interval = per_conn_rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-6)));
            // Spread the connections' schedules over one interval.
            let offset = interval.map(|i| i.mul_f64(rng.unit())).unwrap_or_default();
            conns.push(Conn {
                sock,
                rbuf: Vec::with_capacity(64 * 1024),
                wbuf: Vec::with_capacity(16 * 1024),
                wpos: 0,
                inflight: VecDeque::new(),
                rng,
                next_send: now + offset,
                interval,
                seq: 0,
                set_bytes: 0,
                done: false,
                udp_id: (id as u16).wrapping_mul(1000),
                udp_parts: Vec::new(),
            });
        }
        Ok(Worker {
            poll,
            conns,
            ids,
            cfg: cfg.clone(),
            stop,
            done_ops,
            out: Outcome::default(),
            key_buf: Vec::new(),
            val_buf: Vec::new(),
        })
    }

    fn run(mut self, start: Instant) -> io::Result<Outcome> {
        let deadline = start + self.cfg.duration;
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let over = now >= deadline || self.stop.load(Ordering::Relaxed);
            if over {
                // Stop sending; give what is in flight a moment to land.
                if self.conns.iter().all(|c| c.inflight.is_empty())
                    || now >= deadline + Duration::from_secs(2)
                {
                    break;
                }
            }
            for i in 0..self.conns.len() {
                if !over {
                    self.generate(i, now);
                }
                self.write(i)?;
            }
            if self.conns.iter().all(|c| c.done && c.inflight.is_empty()) {
                break;
            }
            let timeout = self
                .conns
                .iter()
                .filter(|c| c.interval.is_some() && !c.done)
                .map(|c| c.next_send.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(10))
                .min(Duration::from_millis(10));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if ev.is_readable() {
                    self.read(i)?;
                }
            }
            if self.cfg.transport == Transport::Udp {
                self.expire_udp();
            }
        }
        // Whatever never came back counts as lost (UDP) or an error (TCP).
        for c in &self.conns {
            match self.cfg.transport {
                Transport::Udp => self.out.lost += c.inflight.len() as u64,
                Transport::Tcp => self.out.errors += c.inflight.len() as u64,
            }
            self.out.set_bytes += c.set_bytes;
        }
        Ok(self.out)
    }

    fn may_send(&self, c: &Conn, now: Instant) -> bool {
        if c.done {
            return false;
        }
        if self.cfg.noreply && c.interval.is_none() {
            return c.wbuf.len() < 256 * 1024;
        }
        match c.interval {
            None => c.inflight.len() < self.cfg.pipeline.max(1),
            Some(_) => c.next_send <= now && c.inflight.len() < OPEN_LOOP_CAP,
        }
    }

    /// Queues requests: up to the pipeline depth (closed loop) or all that
    /// are due (open loop).
    fn generate(&mut self, i: usize, now: Instant) {
        // UDP: one request at a time per socket.
        let udp = self.cfg.transport == Transport::Udp;
        while (!udp || self.conns[i].inflight.is_empty()) && self.may_send(&self.conns[i], now) {
            let intended = match self.conns[i].interval {
                Some(iv) => {
                    let t = self.conns[i].next_send;
                    self.conns[i].next_send += iv;
                    t
                }
                None => now,
            };
            self.build(i, intended);
        }
    }

    fn build(&mut self, i: usize, intended: Instant) {
        let cfg = &self.cfg;
        let nconns = cfg.connections.max(1) as u64;
        let id = self.ids[i] as u64;
        let c = &mut self.conns[i];
        let is_get = match cfg.key_mode {
            KeyMode::Sequential { .. } => false,
            KeyMode::Random => c.rng.unit() < cfg.get_ratio,
        };
        let mut req = Vec::with_capacity(64);
        let mut keys = Vec::new();
        if is_get && cfg.binary {
            let n = cfg.multiget.max(1);
            for j in 0..n {
                let k = cfg.popularity.pick(&mut c.rng, cfg.keys);
                dist::key(k, cfg.key_size, &mut self.key_buf);
                let op = if j + 1 == n { 0x0c } else { 0x0d };
                binary_request(&mut req, op, &[], &self.key_buf, &[]);
                keys.push(k);
            }
        } else if is_get && cfg.meta {
            let n = cfg.multiget.max(1);
            for _ in 0..n {
                let k = cfg.popularity.pick(&mut c.rng, cfg.keys);
                dist::key(k, cfg.key_size, &mut self.key_buf);
                req.extend_from_slice(b"mg ");
                req.extend_from_slice(&self.key_buf);
                req.extend_from_slice(if n > 1 {
                    b" v f t c k q\r\n"
                } else {
                    b" v f t c\r\n"
                });
                keys.push(k);
            }
            if n > 1 {
                req.extend_from_slice(b"mn\r\n");
            }
        } else if is_get {
            req.extend_from_slice(b"get");
            for _ in 0..cfg.multiget.max(1) {
                let k = cfg.popularity.pick(&mut c.rng, cfg.keys);
                dist::key(k, cfg.key_size, &mut self.key_buf);
                req.push(b' ');
                req.extend_from_slice(&self.key_buf);
                keys.push(k);
            }
            req.extend_from_slice(b"\r\n");
        } else {
            let k = match cfg.key_mode {
                KeyMode::Random => cfg.popularity.pick(&mut c.rng, cfg.keys),
                KeyMode::Sequential { start, end } => {
                    let k = start + id + c.seq * nconns;
                    if end.is_some_and(|e| k >= e) {
                        self.finish(i, intended);
                        return;
                    }
                    k
                }
            };
            c.seq += 1;
            dist::key(k, cfg.key_size, &mut self.key_buf);
            dist::value(k, cfg.value_size, &mut self.val_buf);
            let ttl = cfg.ttl.pick(c.rng.next_u64());
            if cfg.track_expiry && ttl > 0 {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                *self.out.expiries.entry(now + ttl as u64).or_default() += 1;
            }
            if cfg.meta {
                req.extend_from_slice(b"ms ");
                req.extend_from_slice(&self.key_buf);
                let q = if cfg.noreply { " q" } else { "" };
                req.extend_from_slice(format!(" {} T{ttl}{q}\r\n", self.val_buf.len()).as_bytes());
                req.extend_from_slice(&self.val_buf);
                req.extend_from_slice(b"\r\n");
            } else if cfg.binary {
                let mut extras = [0u8; 8];
                extras[4..].copy_from_slice(&(ttl as u32).to_be_bytes());
                let op = if cfg.noreply { 0x11 } else { 0x01 };
                binary_request(&mut req, op, &extras, &self.key_buf, &self.val_buf);
            } else {
                req.extend_from_slice(b"set ");
                req.extend_from_slice(&self.key_buf);
                let nr = if cfg.noreply { " noreply" } else { "" };
                req.extend_from_slice(
                    format!(" 0 {ttl} {}{nr}\r\n", self.val_buf.len()).as_bytes(),
                );
                req.extend_from_slice(&self.val_buf);
                req.extend_from_slice(b"\r\n");
            }
            c.set_bytes += (self.key_buf.len() + self.val_buf.len()) as u64;
            if let Some(max) = cfg.max_set_bytes {
                if c.set_bytes * nconns >= max {
                    c.done = true;
                }
            }
        }
        let done = c.done;
        let mut udp_id = 0;
        if cfg.transport == Transport::Udp {
            c.udp_id = c.udp_id.wrapping_add(1);
            udp_id = c.udp_id;
            let mut frame = Vec::with_capacity(8 + req.len());
            frame.extend_from_slice(&udp_id.to_be_bytes());
            frame.extend_from_slice(&0u16.to_be_bytes());
            frame.extend_from_slice(&1u16.to_be_bytes());
            frame.extend_from_slice(&0u16.to_be_bytes());
            frame.extend_from_slice(&req);
            req = frame;
            c.udp_parts.clear();
        }
        c.wbuf.extend_from_slice(&req);
        if cfg.noreply && !is_get {
            self.out.sets += 1;
            self.out.ops += 1;
            if done {
                self.finish(i, intended);
            }
            return;
        }
        c.inflight.push_back(Pending {
            expect: match (cfg.binary, cfg.meta, is_get) {
                (true, _, _) => Expect::Binary,
                (_, true, true) => Expect::Meta {
                    until_mn: cfg.multiget > 1,
                },
                (_, true, false) => Expect::Meta { until_mn: false },
                (false, false, true) => Expect::Values,
                (false, false, false) => Expect::Line,
            },
            keys,
            is_get,
            intended,
            id: udp_id,
            sync: false,
        });
    }

    /// Ends a connection's part of the run: with noreply sets, a final
    /// `version` round trip shows the server has read them all.
    fn finish(&mut self, i: usize, intended: Instant) {
        let c = &mut self.conns[i];
        c.done = true;
        if self.cfg.noreply {
            let expect = if self.cfg.binary {
                binary_request(&mut c.wbuf, 0x0b, &[], &[], &[]);
                Expect::Binary
            } else {
                c.wbuf.extend_from_slice(b"version\r\n");
                Expect::Line
            };
            c.inflight.push_back(Pending {
                expect,
                keys: Vec::new(),
                is_get: false,
                intended,
                id: 0,
                sync: true,
            });
        }
    }

    fn write(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.conns[i];
        if let Sock::Tls(s) = &mut c.sock {
            // Records (handshake or requests) the socket had no room for.
            s.send_records()?;
        }
        while c.wpos < c.wbuf.len() {
            let r = match &mut c.sock {
                Sock::Tcp(s) => s.write(&c.wbuf[c.wpos..]),
                Sock::Udp(s) => s.send(&c.wbuf[c.wpos..]),
                Sock::Tls(s) => s.write(&c.wbuf[c.wpos..]),
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    c.wpos += match c.sock {
                        Sock::Udp(_) => c.wbuf.len() - c.wpos,
                        Sock::Tcp(_) | Sock::Tls(_) => n,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // UDP: nobody listening; the request will time out.
                    c.wpos = c.wbuf.len();
                }
                Err(e) => return Err(e),
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
        }
        Ok(())
    }

    fn read(&mut self, i: usize) -> io::Result<()> {
        let mut buf = [0u8; 65536];
        loop {
            let c = &mut self.conns[i];
            let r = match &mut c.sock {
                Sock::Tcp(s) => s.read(&mut buf),
                Sock::Udp(s) => s.recv(&mut buf),
                Sock::Tls(s) => s.read(&mut buf),
            };
            match r {
                Ok(0) if !matches!(c.sock, Sock::Udp(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "server closed the connection",
                    ))
                }
                Ok(n) => match c.sock {
                    Sock::Tcp(_) | Sock::Tls(_) => {
                        c.rbuf.extend_from_slice(&buf[..n]);
                        self.consume(i);
                    }
                    Sock::Udp(_) => self.udp_datagram(i, &buf[..n]),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes every complete reply off the connection's buffer.
    fn consume(&mut self, i: usize) {
        let mut pos = 0;
        loop {
            let c = &mut self.conns[i];
            let Some(front) = c.inflight.front() else {
                break;
            };
            let Some((reply, n)) = reply::parse(&c.rbuf[pos..], front.expect, self.cfg.verify)
            else {
                break;
            };
            pos += n;
            let p = c.inflight.pop_front().expect("front exists");
            self.account(p, reply);
        }
        self.conns[i].rbuf.drain(..pos);
    }

    fn udp_datagram(&mut self, i: usize, d: &[u8]) {
        if d.len() < 8 {
            self.out.errors += 1;
            return;
        }
        let id = u16::from_be_bytes([d[0], d[1]]);
        let seq = u16::from_be_bytes([d[2], d[3]]) as usize;
        let total = u16::from_be_bytes([d[4], d[5]]).max(1) as usize;
        let c = &mut self.conns[i];
        if c.inflight.front().map(|p| p.id) != Some(id) {
            return; // a late reply to a request already counted lost
        }
        if c.udp_parts.len() != total {
            c.udp_parts = vec![None; total];
        }
        if seq < total {
            c.udp_parts[seq] = Some(d[8..].to_vec());
        }
        if c.udp_parts.iter().all(Option::is_some) {
            let whole: Vec<u8> = c.udp_parts.drain(..).flatten().flatten().collect();
            let p = c.inflight.pop_front().expect("front exists");
            match reply::parse(&whole, p.expect, self.cfg.verify) {
                Some((reply, _)) => self.account(p, reply),
                None => self.out.errors += 1,
            }
        }
    }

    fn expire_udp(&mut self) {
        let now = Instant::now();
        for c in &mut self.conns {
            if let Some(p) = c.inflight.front() {
                if now.duration_since(p.intended) > UDP_TIMEOUT {
                    c.inflight.pop_front();
                    c.udp_parts.clear();
                    self.out.lost += 1;
                    self.out.ops += 1;
                }
            }
        }
    }

    fn account(&mut self, p: Pending, reply: Reply) {
        if p.sync {
            return;
        }
        let o = &mut self.out;
        o.ops += 1;
        self.done_ops.fetch_add(1, Ordering::Relaxed);
        let us = p.intended.elapsed().as_micros() as u64;
        o.latency.record_us(us);
        if self.cfg.latency_by_second {
            let sent = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0)
                .saturating_sub(us);
            o.by_second
                .entry(sent / 1_000_000)
                .or_default()
                .record_us(us);
        }
        if p.is_get {
            o.gets += 1;
            o.keys_asked += p.keys.len() as u64;
        } else {
            o.sets += 1;
        }
        match reply {
            Reply::Error(_) => o.errors += 1,
            Reply::Line(l) => {
                if !p.is_get && l != b"STORED" {
                    o.errors += 1;
                }
            }
            Reply::Values(values) => {
                o.hits += values.len() as u64;
                o.misses += (p.keys.len() - values.len().min(p.keys.len())) as u64;
                if self.cfg.verify {
                    for (key, data) in values {
                        // A meta get of one key echoes none.
                        let only = (key.is_empty() && p.keys.len() == 1).then_some(&p.keys[0]);
                        let Some(&k) = only.or_else(|| {
                            p.keys.iter().find(|&&k| {
                                dist::key(k, self.cfg.key_size, &mut self.key_buf);
                                self.key_buf == key
                            })
                        }) else {
                            o.verify_failures += 1;
                            continue;
                        };
                        dist::value(k, self.cfg.value_size, &mut self.val_buf);
                        if self.val_buf != data {
                            o.verify_failures += 1;
                        }
                    }
                }
            }
        }
    }
}
