//! `touch <key> <exptime>` and binary Touch: a lookup that sets a new
//! exptime and sends no value. memcached runs it through its get path,
//! and counts it as a touching get (see [`get::get`](super::get::get)).

use memcrab_store::Missed;

use super::hook::Op;
use super::{get, Ctx};

/// Gives `key` a new exptime if it is live.
pub fn touch(cx: &Ctx<'_>, key: &[u8], exptime: i32) -> Result<(), Missed> {
    get::get_as(cx, key, Some(exptime), Some(Op::Touch), |_| ())
}
