//! State shared by every thread: settings, the store, the workers' stats
//! and the registry of open connections (for `-c` and `stats conns`).
//!
//! Lock order: `ConnRegistry::map` is taken alone (never while holding
//! the store's lock, and the store is never called while holding it).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use memcrab_store::Store;
use parking_lot::Mutex;

use crate::cmd::hook::Observer;
use crate::config::Settings;
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
    Waiting = 0,
    ParseCmd = 1,
    Nread = 2,
    Swallow = 3,
    Mwrite = 4,
}

/// One client connection's public face.
pub struct ConnInfo {
    pub fd: i32,
    pub addr: String,
    pub listen_addr: Option<String>,
    last_cmd: AtomicU32,
    state: AtomicU8,
}

impl ConnInfo {
    pub fn new(fd: i32, addr: String, listen_addr: Option<String>, now: u32) -> Self {
        ConnInfo {
            fd,
            addr,
            listen_addr,
            last_cmd: AtomicU32::new(now),
            state: AtomicU8::new(ConnState::Waiting as u8),
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
        self.state.store(s as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> &'static str {
        match self.state.load(Ordering::Relaxed) {
            0 => "conn_waiting",
            1 => "conn_parse_cmd",
            2 => "conn_nread",
            3 => "conn_swallow",
            _ => "conn_mwrite",
        }
    }
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
    map: Mutex<BTreeMap<i32, Arc<ConnInfo>>>,
    clients: AtomicUsize,
    total: AtomicU64,
    rejected: AtomicU64,
    listeners: AtomicUsize,
    /// The most connections open at once, listeners included (memcached's
    /// `connection_structures`: it keeps a structure per descriptor used).
    peak: AtomicUsize,
}

impl ConnRegistry {
    pub fn set_listeners(&self, n: usize) {
        self.listeners.store(n, Ordering::Relaxed);
        self.total.store(n as u64, Ordering::Relaxed);
        self.peak.fetch_max(n, Ordering::Relaxed);
    }

    /// Claims a connection slot unless `max` clients are already open.
    pub fn try_admit(&self, max: usize) -> bool {
        let mut cur = self.clients.load(Ordering::Relaxed);
        loop {
            if cur >= max {
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
        self.map.lock().insert(info.fd, info);
    }

    /// Forgets a connection and frees its slot.
    pub fn remove(&self, fd: i32) {
        self.map.lock().remove(&fd);
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    /// Frees a slot claimed by `try_admit` for a connection that never
    /// got registered.
    pub fn remove_slot(&self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn list(&self) -> Vec<Arc<ConnInfo>> {
        self.map.lock().values().cloned().collect()
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
    }
}

/// The bytes connections may hold in input buffers beyond their pooled
/// `READ_BUF` each (a value on its way in, a long multiget line): one
/// limit for the process, so that what clients send or hold back cannot
/// take memory past `-m` + the index + this. A store whose value does not
/// fit is refused as memcached refuses one when item memory is full
/// (`SERVER_ERROR out of memory storing object`, the value swallowed);
/// read-ahead past it waits; a request that cannot be held otherwise (a
/// long multiget line) closes the connection and counts `read_buf_oom`,
/// as memcached does when its read buffers run out.
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
        let automove = AtomicU32::new(settings.ext.slab_automove);
        let conns = ConnRegistry::default();
        conns.set_listeners(listeners.len() + udp.len());
        let started = store.clock().now();
        let budget = ConnBudget::new(settings.conn_budget());
        Shared {
            budget,
            settings,
            store,
            worker_stats,
            conns,
            listeners,
            udp,
            started,
            observers: Vec::new(),
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
    }

    /// `stats reset`.
    pub fn reset_stats(&self) {
        for w in &self.worker_stats {
            w.reset();
        }
        self.store.reset_stats();
        self.conns.reset_counts();
    }
}
