//! memcrab-proto: bytes in, typed requests out; responses out as bytes.
//!
//! ```text
//!  socket bytes ──► server::conn (finds the line) ──► text::trim_line
//!        ──► text::parse ──► Request<'_> (borrows the line, no copy)
//!        ──► server::exec ──► store ──► reply lines ──► conn output
//!
//!  socket bytes ──► server::binconn ──► binary::Header::parse
//!        ──► binary::check (refusals from the header alone)
//!        ──► binary::decode ──► binary::Request<'_> ──► store
//!        ──► binary::Response::write
//! ```
//!
//! Everything here is pure: no sockets, no threads, no clocks, no unsafe.
//! The parsers follow memcached 1.6's acceptance rules exactly (see
//! `num.rs` for its number rules) so that clients see the same answers.
#![forbid(unsafe_code)]

pub mod binary;
pub mod num;
pub mod text;

pub use text::{Keys, Request, StatsGroup, StoreCommand, StoreMode};
