//! The command layer: one module per memcached operation, shared by every
//! protocol. A session decodes a request into one of these calls, the
//! command applies memcached's rules once (`-I`, `-F`, `-C`, `-M`, CAS,
//! create-on-miss, the counters `stats` reports) against the store, and
//! returns a typed outcome the session encodes. A command never sees a
//! connection, a socket or an output buffer: a lookup hands the found item
//! to the session's closure, which encodes it while the store holds it.
//!
//! ```text
//!  session::text ──┐                    ┌─► get     (get gets gat gats, Get* Gat*, mg, me)
//!  session::binary ┼─► Ctx + typed op ──┼─► touch   (touch, Touch)
//!  session::meta ──┘                    ├─► store   (set … cas, Set* … Prepend*, ms)
//!                                       ├─► delete  (delete, Delete*, md)
//!                                       ├─► arith   (incr decr, Increment* Decrement*, ma)
//!                                       ├─► flush   (flush_all, Flush*)
//!                                       ├─► stats   (stats <group>, Stat)
//!                                       └─► admin   (version, verbosity, slabs, shutdown)
//!                 each ──► memcrab_store::Store ──► outcome ──► session encodes
//!                 each ──► hook::record (per-prefix stats and watch attach here)
//! ```
//!
//! Where memcached's own rules differ by protocol, the command reads
//! [`Ctx::proto`] and the difference is written next to the rule: a
//! refused text `flush_all` is counted in `cmd_flush`, a refused binary
//! Flush is not (`flush.rs`); text and meta count `store_too_large` and
//! `store_no_memory`, binary never does, and a meta set too large drops
//! the old value whatever its mode (`store.rs`); a meta delete whose CAS
//! value differs counts a miss (`delete.rs`); binary Add with a CAS value
//! compares it, meta's does not (`store.rs`).

pub mod admin;
pub mod arith;
pub mod crawler;
pub mod delete;
pub mod flush;
pub mod get;
pub mod hook;
pub mod stats;
pub mod store;
pub mod touch;

use crate::shared::Shared;
use crate::stats::WorkerStats;

/// The protocol a command came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Text,
    Binary,
    /// The meta commands (on a text connection).
    Meta,
}

/// What every command runs with: the server's shared state, the counters
/// of the worker running it, and the protocol of the request.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    pub proto: Proto,
    /// A value that has not all arrived may be received into its item as
    /// it comes (a stream; a datagram is whole or nothing).
    pub receive: bool,
    /// The connection's descriptor (`watch` lines name it).
    pub fd: i32,
}
