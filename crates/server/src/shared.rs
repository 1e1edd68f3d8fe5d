//! State shared by every thread: settings, the store, the workers' stats
//! and the registry of open connections (for `-c` and `stats conns`).
//!
//! Lock order: `ConnRegistry::map` is taken alone (never while holding
//! the store's lock, and the store is never called while holding it).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use memcrab_store::Store;
use parking_lot::Mutex;

use crate::cmd::crawler::Crawler;
use crate::cmd::hook::Observer;
use crate::config::Settings;
use crate::prefix::PrefixStats;
use crate::stats::WorkerStats;

/// A listening socket, for `stats conns`.
pub struct ListenerInfo {
    pub fd: i32,
    pub addr: String,
}

/// A worker's UDP socket, for `stats conns` (memcached lists each as a
/// connection in `conn_read` while it waits for a datagram).
pub struct UdpInfo {
    pub fd: i32,
    /// The socket's own address, `udp:ip:port`.
    pub addr: String,
    last_cmd: AtomicU32,
    /// Whom the datagram being handled came from; none while idle.
    peer: Mutex<Option<SocketAddr>>,
}

impl UdpInfo {
    pub fn new(fd: i32, addr: String, now: u32) -> Self {
        UdpInfo {
            fd,
            addr,
            last_cmd: AtomicU32::new(now),
            peer: Mutex::new(None),
        }
    }

    pub fn last_cmd(&self) -> u32 {
        self.last_cmd.load(Ordering::Relaxed)
    }

    pub fn touch(&self, now: u32) {
        if self.last_cmd.load(Ordering::Relaxed) != now {
            self.last_cmd.store(now, Ordering::Relaxed);
        }
    }

    /// A datagram from `peer` is being handled (None: done).
    pub fn set_peer(&self, peer: Option<SocketAddr>) {
        *self.peer.lock() = peer;
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        *self.peer.lock()
    }
}

/// What memcached calls a connection's state, as `stats conns` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Accepted, nothing read yet (memcached's `conn_new_cmd`).
    New = 0,
    /// Waiting for input (memcached waits in `conn_read`).
    Waiting = 1,
    ParseCmd = 2,
    Nread = 3,
    Swallow = 4,
    Mwrite = 5,
    /// A watcher (memcached's `conn_watch`).
    Watch = 6,
}

/// One client connection's public face: only what `stats conns` and
/// `-o idle_timeout` need that the descriptor cannot tell (its addresses
/// are asked of the socket when listed, as memcached asks for its own
/// address), so that an idle connection costs little.
pub struct ConnInfo {
    pub fd: i32,
    last_cmd: AtomicU32,
    state: AtomicU8,
}

impl ConnInfo {
    pub fn new(fd: i32, now: u32) -> Self {
        ConnInfo {
            fd,
            last_cmd: AtomicU32::new(now),
            state: AtomicU8::new(ConnState::New as u8),
        }
    }

    pub fn last_cmd(&self) -> u32 {
        self.last_cmd.load(Ordering::Relaxed)
    }

    pub fn touch(&self, now: u32) {
        if self.last_cmd.load(Ordering::Relaxed) != now {
            self.last_cmd.store(now, Ordering::Relaxed);
        }
    }

    pub fn set_state(&self, s: ConnState) {
        let old = self.state.load(Ordering::Relaxed);
        if old != s as u8 {
            self.state.store(s as u8, Ordering::Relaxed);
            if TRACE_STATES.load(Ordering::Relaxed) {
                // -vvv, in memcached's words: memcrab's own state changes
                // (fewer than memcached's state machine makes).
                eprintln!(
                    "{}: going from {} to {}",
                    self.fd,
                    state_name(old),
                    state_name(s as u8)
                );
            }
        }
    }

    /// Between requests: memcached's `conn_new_cmd` or `conn_read` (a
    /// partial request line is read in `conn_read` too).
    pub fn waiting(&self) -> bool {
        let s = self.state.load(Ordering::Relaxed);
        s == ConnState::New as u8 || s == ConnState::Waiting as u8
    }

    /// Waiting for input again after a request or its replies; one that
    /// has read nothing yet stays new (memcached's `conn_new_cmd` until
    /// its first request), one in the middle of a value or of discarding
    /// one stays so (`conn_nread`, `conn_swallow`).
    pub fn set_waiting(&self) {
        let s = self.state.load(Ordering::Relaxed);
        if s == ConnState::ParseCmd as u8 || s == ConnState::Mwrite as u8 {
            self.set_state(ConnState::Waiting);
        }
    }

    pub fn state(&self) -> &'static str {
        state_name(self.state.load(Ordering::Relaxed))
    }
}

/// memcached's name for a state.
fn state_name(s: u8) -> &'static str {
    match s {
        0 => "conn_new_cmd",
        1 => "conn_read",
        2 => "conn_parse_cmd",
        3 => "conn_nread",
        4 => "conn_swallow",
        6 => "conn_watch",
        _ => "conn_mwrite",
    }
}

/// `-vvv`: connection state changes are logged (set at start and by
/// `verbosity`, which memcached caps at 2, turning it off).
static TRACE_STATES: AtomicBool = AtomicBool::new(false);

/// A client connection as `stats conns` lists it.
pub struct ClientView {
    pub fd: i32,
    pub addr: String,
    pub listen_addr: String,
    pub state: &'static str,
    pub last_cmd: u32,
}

/// Counts of connections, memcached style: listeners and UDP sockets are
/// connections too, and `current` leaves one out (memcached reports its
/// count less one).
pub struct ConnCounts {
    pub current: u64,
    pub total: u64,
    pub rejected: u64,
    pub structures: u64,
}

#[derive(Default)]
pub struct ConnRegistry {
    /// Open client connections by descriptor (a descriptor is removed
    /// before it is closed, so one listed here is open while this is held).
    map: Mutex<Vec<Option<Arc<ConnInfo>>>>,
    clients: AtomicUsize,
    total: AtomicU64,
    rejected: AtomicU64,
    listeners: AtomicUsize,
    /// The descriptor memcached would give its first client: stdin,
    /// stdout and stderr, three for its main event base (epoll and a
    /// pipe), four per worker thread (eventfd, epoll, notify pipe) and
    /// one per listening socket (one per UDP address, which its threads
    /// share). Like memcached with
    /// `maxconns_fast`, a client whose descriptor would reach `-c` - 1
    /// is refused, so `-c` admits as many clients as memcached admits.
    fd_base: AtomicUsize,
    /// memcached's `reserved_fds`: five per worker thread (its event base
    /// and notify pipe).
    reserved: AtomicUsize,
    /// Times accepting stopped for want of descriptors, for how long in
    /// all (microseconds), and whether it is stopped now.
    listen_disabled: AtomicU64,
    listen_disabled_us: AtomicU64,
    not_accepting: std::sync::atomic::AtomicBool,
    /// The most connections open at once, listeners included (memcached's
    /// `connection_structures`: it keeps a structure per descriptor used).
    peak: AtomicUsize,
}

impl ConnRegistry {
    /// `n` listening connections as memcached counts them (a UDP socket
    /// once per thread), on `sockets` descriptors, with `threads` workers.
    pub fn set_listeners(&self, n: usize, sockets: usize, threads: usize) {
        let reserved = 5 * threads;
        self.reserved.store(reserved, Ordering::Relaxed);
        self.fd_base
            .store(3 + 3 + 4 * threads + sockets, Ordering::Relaxed);
        self.listeners.store(n, Ordering::Relaxed);
        self.total.store(n as u64, Ordering::Relaxed);
        self.peak.fetch_max(n, Ordering::Relaxed);
    }

    pub fn accepting_stopped(&self) {
        self.listen_disabled.fetch_add(1, Ordering::Relaxed);
        self.not_accepting.store(true, Ordering::Relaxed);
    }

    pub fn accepting_again(&self, after: std::time::Duration) {
        self.listen_disabled_us
            .fetch_add(after.as_micros() as u64, Ordering::Relaxed);
        self.not_accepting.store(false, Ordering::Relaxed);
    }

    /// `accepting_conns`, `listen_disabled_num`,
    /// `time_in_listen_disabled_us`.
    pub fn listen_state(&self) -> (bool, u64, u64) {
        (
            !self.not_accepting.load(Ordering::Relaxed),
            self.listen_disabled.load(Ordering::Relaxed),
            self.listen_disabled_us.load(Ordering::Relaxed),
        )
    }

    pub fn reserved_fds(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Whether `-c` leaves no room for any client (memcached refuses to
    /// start then: "Maxconns setting is too low").
    pub fn too_few(&self, max: usize) -> bool {
        self.listeners.load(Ordering::Relaxed) + self.reserved_fds() + 1 >= max
    }

    /// Claims a connection slot unless the client would take a descriptor
    /// memcached keeps back under `-c` `max`.
    pub fn try_admit(&self, max: usize) -> bool {
        let base = self.fd_base.load(Ordering::Relaxed);
        let mut cur = self.clients.load(Ordering::Relaxed);
        loop {
            if base + cur + 1 >= max {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            match self.clients.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.total.fetch_add(1, Ordering::Relaxed);
                    self.peak.fetch_max(
                        cur + 1 + self.listeners.load(Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    return true;
                }
                Err(c) => cur = c,
            }
        }
    }

    pub fn register(&self, info: Arc<ConnInfo>) {
        let Ok(fd) = usize::try_from(info.fd) else {
            return;
        };
        let mut map = self.map.lock();
        if map.len() <= fd {
            map.resize(fd + 1, None);
        }
        map[fd] = Some(info);
    }

    /// Forgets a connection and frees its slot (before its descriptor is
    /// closed: the number may be reused at once).
    pub fn remove(&self, fd: i32) {
        let mut map = self.map.lock();
        if let Some(slot) = usize::try_from(fd).ok().and_then(|fd| map.get_mut(fd)) {
            *slot = None;
        }
        while matches!(map.last(), Some(None)) {
            map.pop();
        }
        if map.capacity() > 2 * map.len() + 64 {
            let keep = map.len() + map.len() / 2;
            map.shrink_to(keep);
        }
        drop(map);
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    /// Frees a slot claimed by `try_admit` for a connection that never
    /// got registered.
    pub fn remove_slot(&self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    /// The open client connections, their addresses asked of their
    /// sockets while none can be closed (memcached shows a UNIX-domain
    /// client, which has no address, as `?:<AF 0>`).
    pub fn list(&self) -> Vec<ClientView> {
        let map = self.map.lock();
        map.iter()
            .flatten()
            .map(|c| ClientView {
                fd: c.fd,
                addr: crate::listen::peer_name(c.fd),
                listen_addr: crate::listen::local_name(c.fd),
                state: c.state(),
                last_cmd: c.last_cmd(),
            })
            .collect()
    }

    /// How many client connections are in each state (memcached's names),
    /// without asking the sockets anything.
    pub fn states(&self) -> Vec<(&'static str, u64)> {
        let map = self.map.lock();
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for c in map.iter().flatten() {
            let s = c.state();
            match out.iter_mut().find(|(n, _)| *n == s) {
                Some((_, k)) => *k += 1,
                None => out.push((s, 1)),
            }
        }
        out.sort_unstable();
        out
    }

    pub fn snapshot_counts(&self) -> ConnCounts {
        let open = self.clients.load(Ordering::Relaxed) + self.listeners.load(Ordering::Relaxed);
        ConnCounts {
            current: open.saturating_sub(1) as u64,
            total: self.total.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            structures: self.peak.load(Ordering::Relaxed).max(open) as u64,
        }
    }

    pub fn reset_counts(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.rejected.store(0, Ordering::Relaxed);
        self.listen_disabled.store(0, Ordering::Relaxed);
        self.listen_disabled_us.store(0, Ordering::Relaxed);
    }
}

/// The bytes connections may hold in buffers beyond their pooled ones
/// (`READ_BUF` for input, `KEEP_CAPACITY` for replies): a long multiget
/// line, replies composed for a client that does not read them. One limit
/// for the process, as memcached's `read_buf_mem_limit` covers its read
/// buffers and response objects, so that what clients send or hold back
/// cannot take memory past `-m` + the index + this. A value on its way in
/// is not here: longer than a pooled buffer, it is read into its item
/// (item memory, under `-m`, as memcached reads it). A request that cannot
/// be held otherwise (a long multiget line) closes the connection and
/// counts `read_buf_oom`, as memcached does when its read buffers run
/// out; a connection whose replies do not fit handles no more requests
/// until they are sent (no reply is refused).
pub struct ConnBudget {
    limit: usize,
    used: AtomicUsize,
}

impl ConnBudget {
    pub fn new(limit: usize) -> Self {
        ConnBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Raises what a connection holds (`held`) to `want` bytes; false, and
    /// nothing taken, when the budget cannot give the difference.
    pub fn hold(&self, held: &Cell<usize>, want: usize) -> bool {
        let have = held.get();
        if want <= have {
            return true;
        }
        let more = want - have;
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                (u + more <= self.limit).then_some(u + more)
            })
            .is_ok();
        if ok {
            held.set(want);
        }
        ok
    }

    /// Gives back all a connection holds.
    pub fn release(&self, held: &Cell<usize>) {
        let have = held.replace(0);
        if have > 0 {
            self.used.fetch_sub(have, Ordering::AcqRel);
        }
    }
}

pub struct Shared {
    pub settings: Settings,
    /// Input buffer memory past each connection's pooled buffer.
    pub budget: ConnBudget,
    /// `Settings::resp_buffers_per_worker`, worked out once.
    pub resp_buffers: Option<u32>,
    pub store: Store,
    pub worker_stats: Vec<Arc<WorkerStats>>,
    pub conns: ConnRegistry,
    pub listeners: Vec<ListenerInfo>,
    /// Every worker's UDP sockets.
    pub udp: Vec<Arc<UdpInfo>>,
    /// When the server started (the store clock's seconds).
    pub started: u32,
    /// What sees every key command (`cmd::hook`); fixed at start.
    pub observers: Vec<Box<dyn Observer>>,
    /// `stats detail`: per-prefix counts, fed by the same hook.
    pub prefix: PrefixStats,
    /// `lru_crawler` settings changed at run time.
    pub crawler: Crawler,
    /// `watch`: the live log's watchers.
    pub watch: Arc<crate::watch::Watch>,
    verbose: AtomicU8,
    /// `slabs automove` mode (0, 1, 2), from `-o slab_automove` at start.
    automove: AtomicU32,
}

impl Shared {
    pub fn new(
        settings: Settings,
        store: Store,
        worker_stats: Vec<Arc<WorkerStats>>,
        listeners: Vec<ListenerInfo>,
        udp: Vec<Arc<UdpInfo>>,
    ) -> Self {
        let verbose = AtomicU8::new(settings.verbose);
        TRACE_STATES.store(settings.verbose > 2, Ordering::Relaxed);
        let automove = AtomicU32::new(settings.ext.slab_automove);
        let conns = ConnRegistry::default();
        let udp_sockets = udp.len() / settings.threads.max(1);
        conns.set_listeners(
            listeners.len() + udp.len(),
            listeners.len() + udp_sockets,
            settings.threads,
        );
        let started = store.clock().now();
        let budget = ConnBudget::new(settings.conn_budget());
        let (delimiter, detail) = (settings.prefix_delimiter, settings.detail_enabled);
        let watch = Arc::new(crate::watch::Watch::new(
            !settings.disable_watch,
            settings.ext.watcher_logbuf_size as usize,
        ));
        let crawler = Crawler::new(
            settings.ext.lru_crawler,
            settings.ext.lru_crawler_sleep,
            settings.ext.lru_crawler_tocrawl,
        );
        Shared {
            budget,
            resp_buffers: settings.resp_buffers_per_worker(),
            settings,
            store,
            worker_stats,
            conns,
            listeners,
            udp,
            started,
            observers: Vec::new(),
            prefix: PrefixStats::new(delimiter, detail),
            crawler,
            watch,
            verbose,
            automove,
        }
    }

    pub fn automove(&self) -> u32 {
        self.automove.load(Ordering::Relaxed)
    }

    pub fn set_automove(&self, mode: u32) {
        self.automove.store(mode, Ordering::Relaxed);
    }

    pub fn verbose(&self) -> u8 {
        self.verbose.load(Ordering::Relaxed)
    }

    /// `verbosity N`: memcached caps the level at its maximum (2).
    pub fn set_verbose(&self, level: u32) {
        self.verbose.store(level.min(2) as u8, Ordering::Relaxed);
        TRACE_STATES.store(false, Ordering::Relaxed);
    }

    /// `stats reset`.
    pub fn reset_stats(&self) {
        for w in &self.worker_stats {
            w.reset();
        }
        self.store.reset_stats();
        self.conns.reset_counts();
        self.prefix.clear();
    }
}
