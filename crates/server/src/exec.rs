//! Command execution: a parsed `Request` and the store in, reply bytes
//! appended to the connection's output. Never touches a socket.

use memcrab_proto::num::{safe_strtoull, write_u64};
use memcrab_proto::text::{BAD_EXPTIME, BAD_FORMAT, KEY_MAX_LENGTH};
use memcrab_proto::{Keys, Request, StatsGroup, StoreCommand, StoreMode};
use memcrab_store::{DeltaOutcome, Missed, Mode, StoreOutcome};

use crate::config::MEMCACHED_VERSION;
use crate::output::Output;
use crate::shared::Shared;
use crate::stats::{self, Counter, WorkerStats};

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send what is queued, then close.
    Close,
}

pub struct Cx<'a> {
    pub sh: &'a Shared,
    pub stats: &'a WorkerStats,
    pub out: &'a mut Output,
    /// The connection's descriptor, for `-vv` logs.
    pub fd: i32,
}

impl Cx<'_> {
    fn reply(&mut self, line: &str, noreply: bool) {
        if !noreply {
            self.out.line(line);
        }
    }
}

fn mode(m: StoreMode) -> Mode {
    match m {
        StoreMode::Set => Mode::Set,
        StoreMode::Add => Mode::Add,
        StoreMode::Replace => Mode::Replace,
        StoreMode::Append => Mode::Append,
        StoreMode::Prepend => Mode::Prepend,
        StoreMode::Cas => Mode::Cas,
    }
}

/// Checks a store command before its data is read: a value over `-I` is
/// refused at once, and the bytes of its data block to swallow returned,
/// as memcached does.
pub fn store_head(h: &StoreCommand<'_>, cx: &mut Cx<'_>) -> Option<u64> {
    let store = &cx.sh.store;
    if store.item_size_ok(h.key.len(), h.flags, h.data_len as usize) {
        return None;
    }
    cx.stats.incr(Counter::StoreTooLarge);
    if h.mode == StoreMode::Set {
        // memcached drops the old value rather than leave it stale.
        store.unlink_key(h.key);
    }
    cx.reply("SERVER_ERROR object too large for cache", h.noreply);
    Some(u64::from(h.data_len) + 2)
}

/// Runs a store command whose `data` (value plus its two terminator
/// bytes) has arrived.
pub fn store_data(h: &StoreCommand<'_>, data: &[u8], cx: &mut Cx<'_>) {
    let store = &cx.sh.store;
    let (value, end) = data.split_at(h.data_len as usize);
    if end != b"\r\n" {
        store.note_set_attempt(h.key, h.flags, value.len());
        cx.reply("CLIENT_ERROR bad data chunk", h.noreply);
        return;
    }
    let outcome = store.store(mode(h.mode), h.key, h.flags, h.exptime, value, h.cas_unique);
    let line = match outcome {
        StoreOutcome::Stored => "STORED",
        StoreOutcome::NotStored => "NOT_STORED",
        StoreOutcome::Exists => "EXISTS",
        StoreOutcome::NotFound => {
            cx.stats.incr(Counter::CasMisses);
            "NOT_FOUND"
        }
        StoreOutcome::TooLarge => {
            cx.stats.incr(Counter::StoreTooLarge);
            "SERVER_ERROR object too large for cache"
        }
        StoreOutcome::OutOfMemory => {
            cx.stats.incr(Counter::StoreNoMemory);
            "SERVER_ERROR out of memory storing object"
        }
    };
    cx.reply(line, h.noreply);
}

/// Runs every command but the data-carrying ones.
pub fn execute(req: Request<'_>, cx: &mut Cx<'_>) -> Flow {
    match req {
        Request::Get { keys, cas, touch } => get(keys, cas, touch, cx),
        // The connection handles these with store_head and store_data,
        // since their data block is not part of the line; one arriving here
        // is a bug, answered without taking the worker down.
        Request::Store(_) => {
            cx.out.line("SERVER_ERROR store command without its data");
            return Flow::Close;
        }
        Request::Delete { key, noreply } => {
            if cx.sh.store.delete(key) {
                cx.reply("DELETED", noreply);
            } else {
                cx.stats.incr(Counter::DeleteMisses);
                cx.reply("NOT_FOUND", noreply);
            }
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => match cx.sh.store.arith(key, incr, delta, safe_strtoull) {
            DeltaOutcome::Value(v) => {
                if !noreply {
                    cx.out.with_buf(|b| {
                        write_u64(b, v);
                        b.extend_from_slice(b"\r\n");
                    });
                }
            }
            DeltaOutcome::NotFound => {
                cx.stats.incr(if incr {
                    Counter::IncrMisses
                } else {
                    Counter::DecrMisses
                });
                cx.reply("NOT_FOUND", noreply);
            }
            DeltaOutcome::NonNumeric => cx.reply(
                "CLIENT_ERROR cannot increment or decrement non-numeric value",
                noreply,
            ),
            DeltaOutcome::OutOfMemory => cx.reply("SERVER_ERROR out of memory", noreply),
            // Only a CAS check (binary protocol) gives this.
            DeltaOutcome::Exists => cx.reply("EXISTS", noreply),
        },
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            cx.stats.incr(Counter::TouchCmds);
            if cx.sh.store.touch(key, exptime) {
                cx.reply("TOUCHED", noreply);
            } else {
                cx.stats.incr(Counter::TouchMisses);
                cx.reply("NOT_FOUND", noreply);
            }
        }
        Request::FlushAll { delay, noreply } => {
            cx.stats.incr(Counter::FlushCmds);
            if !cx.sh.settings.flush_enabled {
                cx.reply("CLIENT_ERROR flush_all not allowed", noreply);
            } else if let Some(delay) = delay {
                cx.sh.store.flush_all(delay);
                cx.reply("OK", noreply);
            } else {
                cx.reply(BAD_EXPTIME, noreply);
            }
        }
        Request::Version => {
            cx.out.with_buf(|b| {
                b.extend_from_slice(b"VERSION ");
                b.extend_from_slice(MEMCACHED_VERSION.as_bytes());
                b.extend_from_slice(b"\r\n");
            });
        }
        Request::Verbosity { level, noreply } => {
            cx.sh.set_verbose(level);
            cx.reply("OK", noreply);
        }
        Request::SlabsReassign { .. } if !cx.sh.settings.ext.slab_reassign => {
            cx.out.line("CLIENT_ERROR slab reassignment disabled");
        }
        Request::SlabsReassign { src, dst } => {
            use memcrab_store::ReassignError as E;
            cx.out.line(match cx.sh.store.reassign(src, dst) {
                Ok(()) => "OK",
                Err(E::Busy) => "BUSY currently processing reassign request",
                Err(E::BadClass) => "BADCLASS invalid src or dst class id",
                Err(E::NoSpare) => "NOSPARE source class has no spare pages",
                Err(E::Same) => "SAME src and dst class are identical",
            });
        }
        Request::SlabsAutomove { mode, noreply } => {
            cx.sh.set_automove(mode);
            cx.reply("OK", noreply);
        }
        Request::Quit => return Flow::Close,
        Request::Shutdown { graceful } => {
            if !cx.sh.settings.shutdown_command {
                cx.out.line("ERROR: shutdown not enabled");
            } else {
                crate::shutdown::request(graceful);
                return Flow::Close;
            }
        }
        Request::ShutdownInvalid => {
            if cx.sh.settings.shutdown_command {
                cx.out.line("CLIENT_ERROR invalid shutdown mode");
            } else {
                cx.out.line("ERROR: shutdown not enabled");
            }
        }
        Request::Stats(group) => stats_cmd(group, cx),
        Request::MetaNoop => {
            cx.out.line("MN");
            cx.out.commit();
        }
        Request::Error { reply, noreply } => cx.reply(reply, noreply),
        Request::Close => {
            // An HTTP request: memcached hangs up without its pending replies.
            cx.out.discard_unsent();
            return Flow::Close;
        }
    }
    Flow::Continue
}

fn get(keys: Keys<'_>, cas: bool, touch: Option<i32>, cx: &mut Cx<'_>) {
    let store = &cx.sh.store;
    for key in keys {
        if key.len() > KEY_MAX_LENGTH {
            // memcached culls every unsent response, then reports the key.
            cx.out.discard_unsent();
            cx.out.line(BAD_FORMAT);
            return;
        }
        cx.stats.incr(Counter::GetCmds);
        if touch.is_some() {
            cx.stats.incr(Counter::TouchCmds);
        }
        let out = &mut *cx.out;
        let found = store.get_with(key, touch, |f| {
            out.with_buf(|b| {
                b.extend_from_slice(b"VALUE ");
                b.extend_from_slice(key);
                b.push(b' ');
                write_u64(b, u64::from(f.flags));
                b.push(b' ');
                write_u64(b, f.value_len as u64);
                if cas {
                    b.push(b' ');
                    write_u64(b, f.cas);
                }
                b.extend_from_slice(b"\r\n");
            });
            out.data_block(f);
        });
        if let Err(missed) = found {
            count_miss(cx.stats, touch.is_some(), missed);
        }
    }
    cx.out.bytes(b"END\r\n");
    // memcached writes a get's answer out before the next command.
    cx.out.commit();
}

/// Counts a get's (or gat's) miss, and why, as memcached does.
pub fn count_miss(stats: &WorkerStats, touch: bool, missed: Missed) {
    stats.incr(if touch {
        Counter::TouchMisses
    } else {
        Counter::GetMisses
    });
    match missed {
        Missed::Expired => stats.incr(Counter::GetExpired),
        Missed::Flushed => stats.incr(Counter::GetFlushed),
        Missed::Miss => {}
    }
}

fn stats_cmd(group: StatsGroup, cx: &mut Cx<'_>) {
    let sh = cx.sh;
    match group {
        StatsGroup::General => cx.out.with_buf(|b| stats::general(sh, b)),
        StatsGroup::Settings => cx.out.with_buf(|b| stats::settings(sh, b)),
        StatsGroup::Items => cx.out.with_buf(|b| stats::items(sh, b)),
        StatsGroup::Slabs => cx.out.with_buf(|b| stats::slabs(sh, b)),
        StatsGroup::Sizes => cx.out.with_buf(stats::sizes),
        StatsGroup::Conns => cx.out.with_buf(|b| stats::conns(sh, b)),
        StatsGroup::Reset => {
            sh.reset_stats();
            cx.out.line("RESET");
        }
        StatsGroup::CacheDump { class, limit } => {
            if !sh.settings.dump_enabled {
                cx.out.line("CLIENT_ERROR stats cachedump not allowed");
                return;
            }
            let entries = sh.store.dump(class as usize, limit as usize, 2 << 20);
            cx.out.with_buf(|b| {
                for e in entries {
                    b.extend_from_slice(b"ITEM ");
                    b.extend_from_slice(&e.key);
                    b.extend_from_slice(b" [");
                    write_u64(b, e.value_len as u64);
                    b.extend_from_slice(b" b; ");
                    write_u64(b, e.exptime);
                    b.extend_from_slice(b" s]\r\n");
                }
                b.extend_from_slice(b"END\r\n");
            });
        }
        StatsGroup::DetailUsage => cx.out.line("CLIENT_ERROR usage: stats detail on|off|dump"),
        StatsGroup::DetailOn | StatsGroup::DetailOff | StatsGroup::DetailDump => cx
            .out
            .line("SERVER_ERROR per-prefix stats (stats detail) are not supported by memcrab"),
    }
}
