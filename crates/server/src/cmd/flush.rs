//! `flush_all [delay]` and binary Flush: every item stored so far (or by
//! `delay` seconds from now) becomes invalid. `-F` refuses it.

use super::{Ctx, Proto};
use crate::stats::Counter;

/// Why a flush did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `-F`.
    Disabled,
    /// The delay did not parse (text).
    BadDelay,
}

/// Flushes now, or in `delay` seconds (`None`: the text delay did not
/// parse; memcached checks `-F` first). memcached counts `cmd_flush` for a
/// text `flush_all` before `-F` refuses it, and for a binary Flush only
/// once it has flushed.
pub fn flush(cx: &Ctx<'_>, delay: Option<i32>) -> Result<(), Refused> {
    let count = || cx.stats.incr(Counter::FlushCmds);
    if cx.proto == Proto::Text {
        count();
    }
    if !cx.sh.settings.flush_enabled {
        return Err(Refused::Disabled);
    }
    let delay = delay.ok_or(Refused::BadDelay)?;
    cx.sh.store.flush_all(delay);
    if cx.proto != Proto::Text {
        count();
    }
    Ok(())
}
