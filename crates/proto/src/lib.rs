//! memcrab-proto: bytes in, typed requests out; responses out as bytes.
//!
//! ```text
//!                 one vocabulary (this file): StoreMode, StatsGroup,
//!                 KEY_MAX_LENGTH, shared by every protocol
//!
//!  text line ──► text::trim_line ──► text::parse ──► text::Request<'_>
//!                (borrows the line: no copy; keys split lazily)
//!
//!  binary    ──► binary::Header::parse ──► binary::check (refusals from
//!                the header alone) ──► binary::decode ──► binary::Request<'_>
//!  replies   ◄── binary::Response::write (header, extras, key)
//!
//!  num: memcached's number rules (strtoul & co.), decimal writing
//! ```
//!
//! Everything here is pure: no sockets, no threads, no clocks, no unsafe.
//! The parsers follow memcached 1.6's acceptance rules exactly (see
//! `num.rs` for its number rules) so that clients see the same answers.
//! The server's sessions call these parsers, hand the typed request to its
//! command layer (`crates/server/src/cmd`) and encode the outcome.
#![forbid(unsafe_code)]

pub mod binary;
pub mod meta;
pub mod num;
pub mod text;

pub use text::{Keys, Request, StoreCommand};

/// The longest key memcached stores, in every protocol.
pub const KEY_MAX_LENGTH: usize = 250;

/// How a store command treats an existing item: memcached's five store
/// commands and `cas`. Text names each; binary has Set/Add/Replace (a
/// compare-and-swap when the request carries a CAS value) and
/// Append/Prepend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreMode {
    #[default]
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

/// What a `stats` request asks for (text `stats <group>`, binary `Stat`
/// with a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroup {
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    Conns,
    /// `stats memcrab`: memcrab's own figures (memcached has none of
    /// them), kept out of `stats` and `stats settings`.
    Memcrab,
    /// memcrab's own: the most requested keys (`-o hot_keys`).
    HotKeys,
    Reset,
    /// `stats cachedump <class> <limit>`.
    CacheDump {
        class: u32,
        limit: u32,
    },
    /// `stats detail` with a wrong or missing argument.
    DetailUsage,
    DetailOn,
    DetailOff,
    DetailDump,
}
