//! The commands that change the server rather than an item: `version`,
//! `verbosity`, `slabs reassign`, `slabs automove`, `shutdown`,
//! `refresh_certs`.

use memcrab_store::ReassignError;

use super::Ctx;
use crate::config::MEMCACHED_VERSION;

/// `cache_memlimit <MB>`: the item memory limit changed at run time, with
/// memcached's answers (`None`: not a number, answered `ERROR`).
pub fn cache_memlimit(cx: &Ctx<'_>, mb: Option<u32>) -> &'static str {
    let Some(mb) = mb else { return "ERROR" };
    if mb < 8 {
        return "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";
    }
    if mb > 1_000_000_000 {
        return "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes";
    }
    if !cx.sh.store.set_mem_limit(u64::from(mb) << 20) {
        return "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust";
    }
    if cx.sh.verbose() > 0 {
        eprintln!("maxbytes adjusted to {mb}m");
    }
    "OK"
}

/// The version memcrab reports: the memcached protocol it implements.
pub fn version() -> &'static str {
    MEMCACHED_VERSION
}

/// `verbosity N` (memcached caps the level at 2).
pub fn verbosity(cx: &Ctx<'_>, level: u32) {
    cx.sh.set_verbose(level);
}

/// Why `slabs reassign` did not move a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassignRefused {
    /// `-o no_slab_reassign`.
    Disabled,
    Store(ReassignError),
}

/// `slabs reassign <src> <dst>`.
pub fn slabs_reassign(cx: &Ctx<'_>, src: i32, dst: i32) -> Result<(), ReassignRefused> {
    if !cx.sh.settings.ext.slab_reassign {
        return Err(ReassignRefused::Disabled);
    }
    cx.sh
        .store
        .reassign(src, dst)
        .map_err(ReassignRefused::Store)
}

/// `slabs automove <0|1|2>`.
pub fn slabs_automove(cx: &Ctx<'_>, mode: u32) {
    cx.sh.set_automove(mode);
}

/// `shutdown` is off unless `-A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownDisabled;

/// `shutdown [graceful]`: asks the main thread to stop the server (the
/// session then closes the connection).
pub fn shutdown(cx: &Ctx<'_>, graceful: bool) -> Result<(), ShutdownDisabled> {
    if !cx.sh.settings.shutdown_command {
        return Err(ShutdownDisabled);
    }
    crate::shutdown::request(graceful);
    Ok(())
}

/// Whether `shutdown` is on (a bad shutdown mode is refused with a
/// different line when it is).
pub fn shutdown_enabled(cx: &Ctx<'_>) -> bool {
    cx.sh.settings.shutdown_command
}

/// `refresh_certs`: the TLS certificates read again for new connections;
/// the error is memcached's message.
pub fn refresh_certs(cx: &Ctx<'_>) -> Result<(), String> {
    match &cx.sh.settings.tls {
        Some(tls) => tls.refresh(),
        None => Err("Error TLS not enabled".into()),
    }
}
