//! The ASCII (text) protocol: one command line in, one typed [`Request`] out.
//!
//! The rules follow memcached 1.6's `proto_text.c` as observed on the wire:
//! a line ends at `\n`, one `\r` before it is dropped, the line stops at a
//! NUL byte, tokens are separated by spaces only, and token counts are
//! checked per command before any argument is parsed (a wrong count is a
//! plain `ERROR`). Errors that memcached reports after it has looked at
//! `noreply` carry the `noreply` flag so the server can suppress them just
//! as memcached does.

use crate::num::{safe_strtol, safe_strtoul, safe_strtoull};
use crate::{StatsGroup, StoreMode, KEY_MAX_LENGTH};

/// memcached's tokenizer stops splitting after this many tokens (including
/// the terminating empty one); the rest of the line stays in the last.
const MAX_TOKENS: usize = 24;
/// Without a newline in this many bytes a line may only be a `get`/`gets`.
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// A store command's line: its data block (`data_len` bytes and `\r\n`)
/// follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCommand<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: i32,
    pub data_len: u32,
    /// Only read for `cas`.
    pub cas_unique: u64,
    pub noreply: bool,
}

/// The keys of a `get`-family command, split lazily so that a long
/// multiget costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    rest: &'a [u8],
}

impl<'a> Keys<'a> {
    pub fn new(rest: &'a [u8]) -> Self {
        Keys { rest }
    }
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`, `gets`, `gat`, `gats`. Keys are checked for length while they
    /// are served: memcached serves the keys before a too-long one.
    Get {
        keys: Keys<'a>,
        cas: bool,
        /// `gat`/`gats`: the exptime as the client sent it.
        touch: Option<i32>,
    },
    /// A store command; `data_len` bytes plus `\r\n` follow the line.
    Store(StoreCommand<'a>),
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i32,
        noreply: bool,
    },
    /// `delay` is None when it did not parse: memcached checks `-F`
    /// before it looks at the delay.
    FlushAll {
        delay: Option<i32>,
        noreply: bool,
    },
    Version,
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Quit,
    Shutdown {
        graceful: bool,
    },
    /// `shutdown` with an unknown mode.
    ShutdownInvalid,
    /// `refresh_certs`: reload the TLS certificates (any further words
    /// are ignored, a last `noreply` honoured).
    RefreshCerts {
        noreply: bool,
    },
    Stats(StatsGroup),
    /// `slabs reassign <src> <dst>`.
    SlabsReassign {
        src: i32,
        dst: i32,
    },
    /// `slabs automove <0|1|2>`.
    SlabsAutomove {
        mode: u32,
        noreply: bool,
    },
    /// `watch [types...]`: the whole line (the types are the words after
    /// `watch`).
    Watch {
        line: &'a [u8],
    },
    /// `cache_memlimit <megabytes> [noreply]`; `None`: not a number.
    CacheMemlimit {
        mb: Option<u32>,
        noreply: bool,
    },
    /// `lru_crawler <subcommand> ...` (memcached's words; no `noreply`).
    LruCrawler(LruCrawler<'a>),
    /// `mn`: flush marker of the meta protocol.
    MetaNoop,
    /// A meta command (`mg ms md ma me`): `meta::parse` reads the line.
    Meta {
        kind: crate::meta::Kind,
        line: &'a [u8],
    },
    /// A line memcached answers with an error line; `noreply` suppresses it
    /// where memcached suppresses it.
    Error {
        reply: &'static str,
        noreply: bool,
    },
    /// Lines memcached answers by closing the connection (an HTTP request).
    Close,
}

/// `lru_crawler` subcommands, read as memcached 1.6.18 reads them: the
/// subcommand and its argument must be the whole line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LruCrawler<'a> {
    /// `crawl <classes>`: reap expired items (`all`, `hash`, or class ids
    /// separated by commas).
    Crawl(Classes),
    /// `metadump <classes>`: list every live item's key and metadata.
    Metadump(Classes),
    /// `tocrawl <n>`; `None`: not a number.
    Tocrawl(Option<u32>),
    /// `sleep <microseconds>`; `None`: not a number.
    Sleep(Option<u32>),
    Enable,
    Disable,
    /// Anything else: `ERROR`.
    Unknown(&'a [u8]),
}

/// The classes an `lru_crawler` request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classes {
    All,
    /// memcached's hash-table walk (`hash`).
    Hash,
    /// Class ids (each 1 to 63); empty when the list named none.
    Ids(Vec<u8>),
    /// An id that is not a class (`BADCLASS invalid class id`).
    Bad,
}

impl Classes {
    fn parse(arg: &[u8]) -> Classes {
        match arg {
            b"all" => Classes::All,
            b"hash" => Classes::Hash,
            _ => {
                let mut ids = Vec::new();
                for p in arg.split(|&b| b == b',').filter(|p| !p.is_empty()) {
                    match safe_strtoul(p) {
                        Some(id) if (1..64).contains(&id) => ids.push(id as u8),
                        _ => return Classes::Bad,
                    }
                }
                Classes::Ids(ids)
            }
        }
    }
}

fn parse_lru_crawler<'a>(t: &Tokens<'a>) -> Request<'a> {
    let sub = t.value(1).unwrap_or(b"");
    let c = match t.n() {
        4 => match sub {
            b"crawl" => LruCrawler::Crawl(Classes::parse(t.get(2))),
            b"metadump" => LruCrawler::Metadump(Classes::parse(t.get(2))),
            b"tocrawl" => LruCrawler::Tocrawl(safe_strtoul(t.get(2))),
            b"sleep" => LruCrawler::Sleep(safe_strtoul(t.get(2))),
            _ => LruCrawler::Unknown(sub),
        },
        3 => match sub {
            b"enable" => LruCrawler::Enable,
            b"disable" => LruCrawler::Disable,
            _ => LruCrawler::Unknown(sub),
        },
        _ => LruCrawler::Unknown(sub),
    };
    Request::LruCrawler(c)
}

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const DELETE_USAGE: &str =
    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";

fn err(reply: &'static str) -> Request<'static> {
    Request::Error {
        reply,
        noreply: false,
    }
}

/// Tokens of one line, memcached style: `n` counts the terminating empty
/// token, and `rest` is the unsplit remainder when the line had more
/// tokens than the tokenizer takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens<'a> {
    tok: [&'a [u8]; MAX_TOKENS],
    /// Number of real tokens (without the terminator).
    len: usize,
    rest: Option<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    /// Inlined: into `parse`, the request path, it saved a text get about
    /// 70 instructions of ~3,100 (callgrind), and `parse_store_line` calls
    /// it too.
    #[inline(always)]
    pub(crate) fn split(line: &'a [u8]) -> Self {
        let mut tok: [&'a [u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
        let mut len = 0;
        let mut start = 0;
        let mut rest = None;
        let mut i = 0;
        while i < line.len() {
            if line[i] == b' ' {
                if start != i {
                    tok[len] = &line[start..i];
                    len += 1;
                    if len == MAX_TOKENS - 1 {
                        if i + 1 < line.len() {
                            rest = Some(&line[i + 1..]);
                        }
                        start = line.len();
                        break;
                    }
                }
                start = i + 1;
            }
            i += 1;
        }
        if start < line.len() {
            tok[len] = &line[start..];
            len += 1;
        }
        Tokens { tok, len, rest }
    }

    /// memcached's `ntokens`: real tokens plus the terminator.
    pub(crate) fn n(&self) -> usize {
        self.len + 1
    }

    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        self.tok[i]
    }

    /// The token at `i` if it exists; `None` stands for memcached's NULL
    /// terminal token value.
    pub(crate) fn value(&self, i: usize) -> Option<&'a [u8]> {
        if i < self.len {
            Some(self.tok[i])
        } else if i == self.len {
            self.rest
        } else {
            None
        }
    }

    /// `set_noreply_maybe`: the last real token is "noreply".
    fn noreply(&self) -> bool {
        self.value(self.n() - 2) == Some(b"noreply")
    }

    /// Everything from token `i` on, for multigets.
    fn from(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        if i < self.len {
            let off = self.tok[i].as_ptr() as usize - line.as_ptr() as usize;
            &line[off..]
        } else {
            self.rest.unwrap_or(&[])
        }
    }
}

/// Strips the line terminator the way memcached does: `line` is what came
/// before `\n`; one trailing `\r` is dropped unless it is the whole line.
/// The command then ends at the first NUL byte (memcached uses C strings).
pub fn trim_line(line: &[u8]) -> &[u8] {
    let line = if line.len() > 1 && line[line.len() - 1] == b'\r' {
        &line[..line.len() - 1]
    } else {
        line
    };
    match memchr::memchr(0, line) {
        Some(n) => &line[..n],
        None => line,
    }
}

/// Whether a line with no newline yet may keep growing: memcached allows
/// only a `get`/`gets` (after at most 100 leading spaces) to exceed
/// [`MAX_LINE_WITHOUT_NEWLINE`], and closes the connection otherwise.
pub fn may_be_long_get(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    if spaces > 100 {
        return false;
    }
    let rest = &buf[spaces..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}

/// A store command's line, its first token one of the store commands.
#[inline(always)]
fn store_line<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.n();
    let mode = match t.get(0) {
        b"set" => StoreMode::Set,
        b"add" => StoreMode::Add,
        b"replace" => StoreMode::Replace,
        b"append" => StoreMode::Append,
        b"prepend" => StoreMode::Prepend,
        b"cas" => {
            if n != 7 && n != 8 {
                return err(ERROR);
            }
            return parse_store(t, StoreMode::Cas);
        }
        _ => return err(ERROR),
    };
    if n != 6 && n != 7 {
        return err(ERROR);
    }
    parse_store(t, mode)
}

/// A store command's line parsed again, as [`parse`] parses it, once its
/// value has been received apart (a large value read into its item): the
/// store commands and `ms`; anything else is `ERROR`. Kept apart from
/// `parse` so that the request path's one call of `parse` stays inlined
/// (a second call site cost a text get 85 instructions, callgrind).
#[cold]
pub fn parse_store_line(line: &[u8]) -> Request<'_> {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let word = &line[start..];
    if word.starts_with(b"ms") && (word.len() == 2 || word[2] == b' ') {
        return Request::Meta {
            kind: crate::meta::Kind::Set,
            line,
        };
    }
    let t = Tokens::split(line);
    if t.n() < 2 {
        return err(ERROR);
    }
    store_line(&t)
}

/// Parses one command line (already passed through [`trim_line`]).
pub fn parse(line: &[u8]) -> Request<'_> {
    // memcached tells a meta command by its two letters before anything
    // (the meta parser splits the rest itself).
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let word = &line[start..];
    if word.len() >= 2 && word[0] == b'm' && (word.len() == 2 || word[2] == b' ') {
        return match (word[1], crate::meta::Kind::from_letter(word[1])) {
            (b'n', _) => Request::MetaNoop,
            (_, Some(kind)) => Request::Meta { kind, line },
            (_, None) => err(ERROR),
        };
    }
    let t = Tokens::split(line);
    let n = t.n();
    if n < 2 || t.get(0).len() < 2 {
        return err(ERROR);
    }
    let cmd = t.get(0);
    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" => {
            if n < 3 {
                return err(ERROR);
            }
            let cas = cmd == b"gets" || cmd == b"gats";
            if cmd[1] == b'a' {
                let Some(exptime) = safe_strtol(t.get(1)) else {
                    return err(BAD_EXPTIME);
                };
                Request::Get {
                    keys: Keys::new(t.from(line, 2)),
                    cas,
                    touch: Some(exptime),
                }
            } else {
                Request::Get {
                    keys: Keys::new(t.from(line, 1)),
                    cas,
                    touch: None,
                }
            }
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => store_line(&t),
        b"incr" | b"decr" => {
            if n != 4 && n != 5 {
                return err(ERROR);
            }
            let noreply = t.noreply();
            let key = t.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return Request::Error {
                    reply: BAD_FORMAT,
                    noreply,
                };
            }
            match safe_strtoull(t.get(2)) {
                Some(delta) => Request::Arith {
                    incr: cmd == b"incr",
                    key,
                    delta,
                    noreply,
                },
                None => Request::Error {
                    reply: BAD_DELTA,
                    noreply,
                },
            }
        }
        b"delete" => {
            if !(3..=5).contains(&n) {
                return err(ERROR);
            }
            let mut noreply = false;
            if n > 3 {
                let hold_is_zero = t.get(2) == b"0";
                noreply = t.noreply();
                let valid =
                    (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
                if !valid {
                    return Request::Error {
                        reply: DELETE_USAGE,
                        noreply,
                    };
                }
            }
            let key = t.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return Request::Error {
                    reply: BAD_FORMAT,
                    noreply,
                };
            }
            Request::Delete { key, noreply }
        }
        b"touch" => {
            if n != 4 && n != 5 {
                return err(ERROR);
            }
            let noreply = t.noreply();
            let key = t.get(1);
            if key.len() > KEY_MAX_LENGTH {
                return Request::Error {
                    reply: BAD_FORMAT,
                    noreply,
                };
            }
            match safe_strtol(t.get(2)) {
                Some(exptime) => Request::Touch {
                    key,
                    exptime,
                    noreply,
                },
                None => Request::Error {
                    reply: BAD_EXPTIME,
                    noreply,
                },
            }
        }
        b"flush_all" => {
            if !(2..=4).contains(&n) {
                return err(ERROR);
            }
            let noreply = t.noreply();
            let delay = if n != if noreply { 3 } else { 2 } {
                safe_strtol(t.get(1))
            } else {
                Some(0)
            };
            Request::FlushAll { delay, noreply }
        }
        b"version" => Request::Version,
        b"quit" => Request::Quit,
        b"verbosity" => {
            if n != 3 && n != 4 {
                return err(ERROR);
            }
            let noreply = t.noreply();
            match safe_strtoul(t.get(1)) {
                Some(level) => Request::Verbosity { level, noreply },
                None => Request::Error {
                    reply: BAD_FORMAT,
                    noreply,
                },
            }
        }
        b"shutdown" => {
            if n == 2 {
                Request::Shutdown { graceful: false }
            } else if n == 3 && t.get(1) == b"graceful" {
                Request::Shutdown { graceful: true }
            } else {
                Request::ShutdownInvalid
            }
        }
        b"stats" => parse_stats(&t),
        b"slabs" => parse_slabs(&t),
        b"lru_crawler" => parse_lru_crawler(&t),
        b"watch" => Request::Watch { line },
        b"cache_memlimit" => {
            if n != 3 && n != 4 {
                return err(ERROR);
            }
            Request::CacheMemlimit {
                mb: safe_strtoul(t.get(1)),
                noreply: t.noreply(),
            }
        }
        b"refresh_certs" => Request::RefreshCerts {
            noreply: t.noreply(),
        },
        _ => {
            if t.value(n - 2).is_some_and(|v| v.starts_with(b"HTTP/")) {
                Request::Close
            } else {
                err(ERROR)
            }
        }
    }
}

/// `slabs reassign <src> <dst>` (exactly) and `slabs automove <mode>`
/// (further words ignored, a last `noreply` honoured), as memcached 1.6.
fn parse_slabs<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.n();
    let bad = |noreply| Request::Error {
        reply: BAD_FORMAT,
        noreply,
    };
    if n == 5 && t.get(1) == b"reassign" {
        return match (safe_strtol(t.get(2)), safe_strtol(t.get(3))) {
            (Some(src), Some(dst)) => Request::SlabsReassign { src, dst },
            _ => bad(false),
        };
    }
    if n >= 4 && t.get(1) == b"automove" {
        let noreply = t.noreply();
        return match safe_strtoul(t.get(2)) {
            Some(mode) if mode <= 2 => Request::SlabsAutomove { mode, noreply },
            Some(_) => Request::Error {
                reply: ERROR,
                noreply,
            },
            None => bad(noreply),
        };
    }
    err(ERROR)
}

fn parse_store<'a>(t: &Tokens<'a>, mode: StoreMode) -> Request<'a> {
    let noreply = t.noreply();
    let bad = Request::Error {
        reply: BAD_FORMAT,
        noreply,
    };
    let key = t.get(1);
    if key.len() > KEY_MAX_LENGTH {
        return bad;
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        safe_strtoul(t.get(2)),
        safe_strtol(t.get(3)),
        safe_strtol(t.get(4)),
    ) else {
        return bad;
    };
    let mut cas_unique = 0;
    if mode == StoreMode::Cas {
        match safe_strtoull(t.get(5)) {
            Some(c) => cas_unique = c,
            None => return bad,
        }
    }
    if !(0..=i32::MAX - 2).contains(&vlen) {
        return bad;
    }
    Request::Store(StoreCommand {
        mode,
        key,
        flags,
        exptime,
        data_len: vlen as u32,
        cas_unique,
        noreply,
    })
}

fn parse_stats<'a>(t: &Tokens<'a>) -> Request<'a> {
    let n = t.n();
    if n == 2 {
        return Request::Stats(StatsGroup::General);
    }
    let group = match t.get(1) {
        b"reset" => StatsGroup::Reset,
        b"settings" => StatsGroup::Settings,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"conns" => StatsGroup::Conns,
        b"memcrab" => StatsGroup::Memcrab,
        b"hotkeys" => StatsGroup::HotKeys,
        b"detail" => {
            if n < 4 {
                StatsGroup::DetailUsage
            } else {
                match t.get(2) {
                    b"on" => StatsGroup::DetailOn,
                    b"off" => StatsGroup::DetailOff,
                    b"dump" => StatsGroup::DetailDump,
                    _ => StatsGroup::DetailUsage,
                }
            }
        }
        b"cachedump" => {
            if n < 5 {
                return err(ERROR);
            }
            let (Some(class), Some(limit)) = (safe_strtoul(t.get(2)), safe_strtoul(t.get(3)))
            else {
                return err(ERROR);
            };
            StatsGroup::CacheDump { class, limit }
        }
        _ => return err(ERROR),
    };
    Request::Stats(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Request<'_> {
        parse(trim_line(s.as_bytes()))
    }

    fn keys(r: &Request<'_>) -> Vec<Vec<u8>> {
        match r {
            Request::Get { keys, .. } => keys.map(|k| k.to_vec()).collect(),
            other => panic!("not a get: {other:?}"),
        }
    }

    #[test]
    fn slabs_commands_as_memcached_reads_them() {
        assert!(matches!(
            p("slabs reassign 1 2"),
            Request::SlabsReassign { src: 1, dst: 2 }
        ));
        assert!(matches!(
            p("slabs reassign -1 0"),
            Request::SlabsReassign { src: -1, dst: 0 }
        ));
        // 64-bit strtol, then memcached's int truncation
        assert!(matches!(
            p("slabs reassign 4294967297 2"),
            Request::SlabsReassign { src: 1, dst: 2 }
        ));
        for (line, reply) in [
            ("slabs reassign x y", BAD_FORMAT),
            ("slabs reassign 1 2 3", ERROR),
            ("slabs reassign 1", ERROR),
            ("slabs", ERROR),
            ("slabs foo", ERROR),
            ("slabs automove", ERROR),
            ("slabs automove 3", ERROR),
            ("slabs automove -1", BAD_FORMAT),
            ("slabs automove x", BAD_FORMAT),
        ] {
            match p(line) {
                Request::Error { reply: r, .. } => assert_eq!(r, reply, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(matches!(
            p("slabs automove 2"),
            Request::SlabsAutomove {
                mode: 2,
                noreply: false
            }
        ));
        assert!(matches!(
            p("slabs automove 1 2"),
            Request::SlabsAutomove {
                mode: 1,
                noreply: false
            }
        ));
        assert!(matches!(
            p("slabs automove 0 noreply"),
            Request::SlabsAutomove {
                mode: 0,
                noreply: true
            }
        ));
    }

    #[test]
    fn trims_like_memcached() {
        assert_eq!(trim_line(b"get a\r"), b"get a");
        assert_eq!(trim_line(b"\r"), b"\r");
        assert_eq!(trim_line(b"get a\0b\r"), b"get a");
        assert_eq!(trim_line(b"get a\r\r"), b"get a\r");
    }

    #[test]
    fn get_family() {
        let r = p("get a bb  ccc");
        assert_eq!(
            keys(&r),
            vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
        assert!(matches!(
            p("gets a"),
            Request::Get {
                cas: true,
                touch: None,
                ..
            }
        ));
        let r = p("gat 10 a b");
        assert!(matches!(
            r,
            Request::Get {
                cas: false,
                touch: Some(10),
                ..
            }
        ));
        assert_eq!(keys(&r).len(), 2);
        assert_eq!(keys(&p("gat 10")).len(), 0);
        assert_eq!(p("gat x a"), err(BAD_EXPTIME));
        assert_eq!(p("get"), err(ERROR));
        assert_eq!(p("getx a"), err(ERROR));
    }

    #[test]
    fn long_multiget_keeps_every_key() {
        let ks: Vec<String> = (0..100).map(|i| format!("k{i}")).collect();
        let line = format!("get {}", ks.join(" "));
        let got = keys(&p(&line));
        assert_eq!(got.len(), 100);
        assert_eq!(got[99], b"k99");
    }

    #[test]
    fn store_commands() {
        assert_eq!(
            p("set k 5 10 3"),
            Request::Store(StoreCommand {
                mode: StoreMode::Set,
                key: b"k",
                flags: 5,
                exptime: 10,
                data_len: 3,
                cas_unique: 0,
                noreply: false
            })
        );
        assert!(matches!(
            p("cas k 0 0 3 77 noreply"),
            Request::Store(StoreCommand {
                mode: StoreMode::Cas,
                cas_unique: 77,
                noreply: true,
                ..
            })
        ));
        // An unknown sixth token is ignored, as memcached ignores it.
        assert!(matches!(
            p("append k 0 0 1 foo"),
            Request::Store(StoreCommand {
                mode: StoreMode::Append,
                noreply: false,
                ..
            })
        ));
        assert_eq!(p("set k 0 0"), err(ERROR));
        assert_eq!(p("set k 0 0 1 2 3"), err(ERROR));
        assert_eq!(p("cas k 0 0 1"), err(ERROR));
        assert_eq!(p("set k x 0 1"), err(BAD_FORMAT));
        assert_eq!(p("set k 0 0 -1"), err(BAD_FORMAT));
        assert_eq!(p("set k -1 0 1"), err(BAD_FORMAT));
        assert_eq!(p("cas k 0 0 1 -1"), err(BAD_FORMAT));
        assert_eq!(
            p("set k 0 0 x noreply"),
            Request::Error {
                reply: BAD_FORMAT,
                noreply: true
            }
        );
        let long = format!("set {} 0 0 1", "k".repeat(251));
        assert_eq!(p(&long), err(BAD_FORMAT));
        let ok = format!("set {} 0 0 1", "k".repeat(250));
        assert!(matches!(p(&ok), Request::Store(_)));
        // Flags above 32 bits are truncated, as memcached 1.6.18 does.
        assert!(matches!(
            p("set k 4294967296 0 1"),
            Request::Store(StoreCommand { flags: 0, .. })
        ));
    }

    #[test]
    fn delete_rules() {
        assert_eq!(
            p("delete k"),
            Request::Delete {
                key: b"k",
                noreply: false
            }
        );
        assert_eq!(
            p("delete k 0"),
            Request::Delete {
                key: b"k",
                noreply: false
            }
        );
        assert_eq!(
            p("delete k noreply"),
            Request::Delete {
                key: b"k",
                noreply: true
            }
        );
        assert_eq!(
            p("delete k 0 noreply"),
            Request::Delete {
                key: b"k",
                noreply: true
            }
        );
        assert_eq!(p("delete k 5"), err(DELETE_USAGE));
        assert_eq!(
            p("delete k 5 noreply"),
            Request::Error {
                reply: DELETE_USAGE,
                noreply: true
            }
        );
        assert_eq!(p("delete"), err(ERROR));
    }

    #[test]
    fn arithmetic_touch_flush_verbosity() {
        assert_eq!(
            p("incr k 5"),
            Request::Arith {
                incr: true,
                key: b"k",
                delta: 5,
                noreply: false
            }
        );
        assert_eq!(p("decr k -1"), err(BAD_DELTA));
        assert_eq!(p("incr k"), err(ERROR));
        assert_eq!(
            p("touch k -1 noreply"),
            Request::Touch {
                key: b"k",
                exptime: -1,
                noreply: true
            }
        );
        assert_eq!(p("touch k x"), err(BAD_EXPTIME));
        assert_eq!(
            p("flush_all"),
            Request::FlushAll {
                delay: Some(0),
                noreply: false
            }
        );
        assert_eq!(
            p("flush_all 10 noreply"),
            Request::FlushAll {
                delay: Some(10),
                noreply: true
            }
        );
        assert_eq!(
            p("flush_all foo"),
            Request::FlushAll {
                delay: None,
                noreply: false
            }
        );
        assert_eq!(p("flush_all 1 2 3"), err(ERROR));
        assert_eq!(p("verbosity"), err(ERROR));
        assert_eq!(p("verbosity foo"), err(BAD_FORMAT));
        assert_eq!(
            p("verbosity noreply"),
            Request::Error {
                reply: BAD_FORMAT,
                noreply: true
            }
        );
        assert_eq!(
            p("verbosity 1 2"),
            Request::Verbosity {
                level: 1,
                noreply: false
            }
        );
    }

    #[test]
    fn misc_commands() {
        assert_eq!(p(""), err(ERROR));
        assert_eq!(p("\r"), err(ERROR));
        assert_eq!(p("x"), err(ERROR));
        assert_eq!(p("version extra"), Request::Version);
        assert_eq!(p("quit"), Request::Quit);
        assert_eq!(p("shutdown"), Request::Shutdown { graceful: false });
        assert_eq!(p("shutdown graceful"), Request::Shutdown { graceful: true });
        assert_eq!(p("shutdown now"), Request::ShutdownInvalid);
        assert_eq!(p("refresh_certs"), Request::RefreshCerts { noreply: false });
        assert_eq!(
            p("refresh_certs x noreply"),
            Request::RefreshCerts { noreply: true }
        );
        assert_eq!(p("stats"), Request::Stats(StatsGroup::General));
        assert_eq!(p("stats reset x"), Request::Stats(StatsGroup::Reset));
        assert_eq!(p("stats nope"), err(ERROR));
        assert_eq!(p("stats detail"), Request::Stats(StatsGroup::DetailUsage));
        assert_eq!(
            p("stats cachedump 1 2"),
            Request::Stats(StatsGroup::CacheDump { class: 1, limit: 2 })
        );
        assert_eq!(p("GET / HTTP/1.1"), Request::Close);
        assert_eq!(p("mn"), Request::MetaNoop);
        assert_eq!(p("mn whatever"), Request::MetaNoop);
        assert_eq!(
            p("mg k v"),
            Request::Meta {
                kind: crate::meta::Kind::Get,
                line: b"mg k v"
            }
        );
        assert_eq!(p("mx k"), err(ERROR));
        assert_eq!(p("mx k HTTP/1.1"), err(ERROR), "meta letters come first");
        assert_eq!(p("mgg k"), err(ERROR));
    }

    #[test]
    fn too_many_tokens_is_an_error_for_fixed_commands() {
        let line = format!("set k 0 0 1 {}", vec!["x"; 30].join(" "));
        assert_eq!(p(&line), err(ERROR));
    }

    #[test]
    fn long_lines_without_newline() {
        assert!(may_be_long_get(b"get aaaa"));
        assert!(may_be_long_get(b"   gets aaaa"));
        assert!(!may_be_long_get(b"set aaaa"));
        assert!(!may_be_long_get(&[b' '; 101]));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let alphabet = b"getsa 0123-+nory\r\0xHTTP/";
            let line: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 8)) as usize + i) % alphabet.len()])
                .collect();
            let _ = parse(trim_line(&line));
        }
    }
}
