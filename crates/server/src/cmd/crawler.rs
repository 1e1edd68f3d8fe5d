//! `lru_crawler`: memcached's crawler commands. memcrab reaps expired
//! items from its expiry wheel as their second comes, so `crawl` has
//! nothing left to do and says so as memcached says it started; `tocrawl`
//! and `sleep` are kept for `stats settings`; `enable`/`disable` gate
//! `crawl` and `metadump` as in memcached. `metadump` lists every live
//! item in memcached's line format, streamed: [`Listing`] fills the
//! connection's output a bounded piece at a time, each piece under one
//! shard lock held for a bounded number of slots or items.
//!
//! ```text
//!  lru_crawler metadump all ─► Listing { shard, slot, ids }
//!    conn: output empty? ─► Listing::fill ─► Store::list_ids (≤ 1,024 slots, one lock)
//!                                         ─► Store::list_meta (≤ ids, one lock) ─► "key=.. exp=.. ..\n"
//!    ... until every shard is done ─► "END\r\n"
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use memcrab_proto::num::write_u64;
use memcrab_proto::text::{Classes, LruCrawler};
use memcrab_store::ListedItem;

use super::Ctx;
use crate::output::Output;
use crate::shared::Shared;

/// Index slots read under one shard lock.
const SLOTS_PER_STEP: usize = 1024;
/// Output composed per fill before the socket gets it.
const FILL_BYTES: usize = 128 * 1024;

/// The crawler's settings, changed at run time.
pub struct Crawler {
    enabled: AtomicBool,
    sleep: AtomicU32,
    tocrawl: AtomicU32,
}

impl Crawler {
    pub fn new(enabled: bool, sleep: u32, tocrawl: u32) -> Self {
        Crawler {
            enabled: AtomicBool::new(enabled),
            sleep: AtomicU32::new(sleep),
            tocrawl: AtomicU32::new(tocrawl),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn sleep(&self) -> u32 {
        self.sleep.load(Ordering::Relaxed)
    }

    pub fn tocrawl(&self) -> u32 {
        self.tocrawl.load(Ordering::Relaxed)
    }
}

/// What an `lru_crawler` command answers.
pub enum Reply {
    Line(&'static str),
    /// A listing starts: its lines follow, then `END`.
    Listing(Box<Listing>),
}

/// Runs an `lru_crawler` command. `stacked`: replies to earlier commands
/// of the same read are still unsent (memcached refuses a metadump then).
pub fn lru_crawler(cx: &Ctx<'_>, req: &LruCrawler<'_>, stacked: bool) -> Reply {
    let c = &cx.sh.crawler;
    let line = match req {
        LruCrawler::Crawl(_) | LruCrawler::Metadump(_) if !c.enabled() => {
            "CLIENT_ERROR lru crawler disabled"
        }
        LruCrawler::Crawl(classes) => match classes {
            Classes::All => "OK",
            Classes::Hash => "ERROR an unknown error happened",
            Classes::Bad => "BADCLASS invalid class id",
            Classes::Ids(ids) if ids.is_empty() => "NOTSTARTED no items to crawl",
            Classes::Ids(_) => "OK",
        },
        LruCrawler::Metadump(_) if !cx.sh.settings.dump_enabled => "ERROR metadump not allowed",
        LruCrawler::Metadump(_) if stacked => {
            "ERROR cannot pipeline other commands before metadump"
        }
        LruCrawler::Metadump(classes) => match classes {
            Classes::Bad => "BADCLASS invalid class id",
            Classes::Ids(ids) if ids.is_empty() => "NOTSTARTED no items to crawl",
            Classes::Ids(ids) => return Reply::Listing(Box::new(Listing::new(Some(ids)))),
            Classes::All | Classes::Hash => return Reply::Listing(Box::new(Listing::new(None))),
        },
        LruCrawler::Tocrawl(Some(n)) => {
            c.tocrawl.store(*n, Ordering::Relaxed);
            "OK"
        }
        LruCrawler::Sleep(Some(n)) if *n > 1_000_000 => {
            "CLIENT_ERROR sleep must be one second or less"
        }
        LruCrawler::Sleep(Some(n)) => {
            c.sleep.store(*n, Ordering::Relaxed);
            "OK"
        }
        LruCrawler::Tocrawl(None) | LruCrawler::Sleep(None) => {
            "CLIENT_ERROR bad command line format"
        }
        // memcached starts its crawler thread, refusing when it runs.
        LruCrawler::Enable => {
            if c.enabled.swap(true, Ordering::Relaxed) {
                "ERROR failed to start lru crawler thread"
            } else {
                "OK"
            }
        }
        LruCrawler::Disable => {
            c.enabled.store(false, Ordering::Relaxed);
            "OK"
        }
        LruCrawler::Unknown(_) => "ERROR",
    };
    Reply::Line(line)
}

/// A metadump on its way out.
pub struct Listing {
    /// Classes listed (`None`: all).
    classes: Option<[bool; 64]>,
    shard: usize,
    /// Where the shard's index walk goes on (`None` once it is done).
    slot: Option<usize>,
    ids: Vec<u32>,
    /// Bytes of a key being URI-encoded (reused).
    key: Vec<u8>,
}

impl Listing {
    fn new(ids: Option<&[u8]>) -> Self {
        let classes = ids.map(|ids| {
            let mut c = [false; 64];
            for &i in ids {
                c[usize::from(i)] = true;
            }
            c
        });
        Listing {
            classes,
            shard: 0,
            slot: Some(0),
            ids: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Appends the next piece of the listing to `out` (about
    /// `FILL_BYTES`); true once `END` is written.
    pub fn fill(&mut self, sh: &Shared, out: &mut Output) -> bool {
        let store = &sh.store;
        let start = out.pending();
        while out.pending() - start < FILL_BYTES {
            if self.shard == store.shard_count() {
                out.bytes(b"END\r\n");
                return true;
            }
            let Some(slot) = self.slot else {
                self.shard += 1;
                self.slot = Some(0);
                continue;
            };
            self.ids.clear();
            self.slot = store.list_ids(self.shard, slot, SLOTS_PER_STEP, &mut self.ids);
            let (classes, key) = (&self.classes, &mut self.key);
            out.with_buf(|b| {
                store.list_meta(self.shard, &self.ids, |it| {
                    if classes.is_none_or(|c| c.get(it.class).copied().unwrap_or(false)) {
                        line(b, key, it);
                    }
                });
            });
        }
        false
    }
}

/// `key=%s exp=%ld la=%llu cas=%llu fetch=%s cls=%u size=%lu\n`, the key
/// URI-encoded as memcached encodes it.
fn line(b: &mut Vec<u8>, key: &mut Vec<u8>, it: &ListedItem<'_>) {
    key.clear();
    crate::watch::uri_encode(it.key, key);
    b.extend_from_slice(b"key=");
    b.extend_from_slice(key);
    b.extend_from_slice(b" exp=");
    match it.exptime {
        Some(e) => write_u64(b, e),
        None => b.extend_from_slice(b"-1"),
    }
    b.extend_from_slice(b" la=");
    write_u64(b, it.last_access);
    b.extend_from_slice(b" cas=");
    write_u64(b, it.cas);
    b.extend_from_slice(if it.fetched {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    write_u64(b, it.class as u64);
    b.extend_from_slice(b" size=");
    write_u64(b, it.size as u64);
    b.push(b'\n');
}
