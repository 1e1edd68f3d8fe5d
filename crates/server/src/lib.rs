//! memcrab: a memcached 1.6 compatible cache server.
//!
//! ```text
//!            ┌────────────┐   NewConn (channel + waker)   ┌──────────────┐
//!  clients ─►│  acceptor  │──────── round robin ─────────►│ worker × -t  │
//!            │ listen.rs  │   (-c enforced here)          │ mio Poll     │
//!            └────────────┘                               │ worker.rs    │
//!                                                         └──────┬───────┘
//!  transport  conn.rs: read buffer, -R, swallow, Output ─writev─► socket
//!             udp.rs: a socket per worker (-U), 8-byte frames, replies
//!             cut into datagrams; recvmmsg/sendmmsg (sys.rs)
//!                │ bytes                                  ▲ replies
//!  session    session/: the protocol (first byte or -B), its framing and
//!             login (-Y, SASL); text.rs | binary.rs: decode → cmd → encode
//!                │ typed operation                        │ outcome
//!  command    cmd/: get touch store delete arith flush stats admin — the
//!             rules (-I -F -C -M, CAS, counters) once; hook.rs for observers
//!                │ request structs                        │
//!  store      memcrab_store::Store (its own map: crates/store/src/lib.rs)
//!
//!  stats.rs: per-worker counters; every stats group as (name, value) pairs
//!  latency.rs, hotkeys.rs: per-worker histograms and top-K (off unless asked)
//!  metrics thread (metrics.rs): Prometheus text over HTTP (-o metrics_port)
//!  maintainer thread: advances the store clock, steps slab automove
//!  expiry thread: frees expired and flushed items once a second
//!  main thread: signals (SIGINT/SIGTERM, and `shutdown`) end the process
//! ```
//!
//! docs/ARCHITECTURE.md traces a request through these, function by
//! function. `unsafe` only in sys.rs (batched datagram calls); the other
//! OS calls go through nix and socket2.
#![deny(unsafe_code)]

pub mod auth;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod hotkeys;
pub mod latency;
pub mod listen;
pub mod metrics;
pub mod output;
pub mod prefix;
pub mod session;
pub mod shared;
pub mod shutdown;
pub mod stats;
pub mod stream;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
pub mod udp;
pub mod watch;
pub mod worker;
