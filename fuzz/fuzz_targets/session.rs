//! A whole session against a real store: arbitrary bytes (text, meta or
//! binary, chosen by the first byte as `-B auto` does) fed in pieces of
//! arbitrary sizes through the real session code, as a connection feeds
//! them, against a store under `-m 1` (so that stores evict and pages
//! fill). The store's counts must agree (its item count is the sum of
//! its classes', every used chunk holds an item, the memory taken stays
//! within the limit but for a first page per class) after the first
//! piece that finishes a command and every 32nd after, and at the end;
//! at the end, the replies must be well formed for the protocol spoken,
//! and (text and meta) every value read back must be bytes the client
//! sent or a number `incr` made.
#![no_main]

use std::sync::{Arc, OnceLock};

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use memcrab_server::config::{Args, Settings};
use memcrab_server::session::Feeder;
use memcrab_server::shared::Shared;
use memcrab_server::stats::WorkerStats;
use memcrab_store::{Clock, Store};

fn shared() -> Shared {
    static SETTINGS: OnceLock<Settings> = OnceLock::new();
    let settings = SETTINGS.get_or_init(settings).clone();
    let store = Store::new(settings.store_config(), Arc::new(Clock::new()));
    Shared::new(settings, store, Vec::new(), Vec::new(), Vec::new())
}

fn settings() -> Settings {
    let args = Args::try_parse_from([
        "memcrab",
        "-m",
        "1",
        "-I",
        "64k",
        "-o",
        "slab_chunk_max=16384",
        "-o",
        "hashpower=12",
    ])
    .unwrap();
    Settings::from_args(args).unwrap()
}

fn check_store(sh: &Shared) {
    let st = sh.store.stats();
    let items: u64 = st.classes.iter().map(|c| u64::from(c.items)).sum();
    assert_eq!(items, st.curr_items, "item count against the classes'");
    for c in &st.classes {
        assert!(c.used_chunks >= c.items, "class {}: {c:?}", c.id);
        assert!(
            u64::from(c.used_chunks) <= u64::from(c.pages) * u64::from(c.per_page),
            "class {}: {c:?}",
            c.id
        );
    }
    // As memcached, a class may take its first page past the limit, and
    // only its first.
    let page = 1u64 << 20;
    let classes = st.classes.iter().filter(|c| c.pages > 0).count() as u64;
    assert!(
        st.total_malloced <= sh.settings.maxbytes.max(page) + classes * page,
        "{} bytes in pages, {classes} classes with pages",
        st.total_malloced
    );
}

/// Whether `v` could have been read back: bytes the client sent, or a
/// number (`incr` leaves trailing spaces where the number got shorter).
/// Appends make values the input does not hold whole, so with them in the
/// input anything goes.
fn written(input: &[u8], v: &[u8]) -> bool {
    let has = |h: &[u8], n: &[u8]| n.is_empty() || h.windows(n.len()).any(|w| w == n);
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    (digits > 0 && v[digits..].iter().all(|&b| b == b' '))
        || has(input, v)
        || [&b"append"[..], b"prepend", b" MA", b" Ma", b" MP", b" Mp"]
            .iter()
            .any(|a| has(input, a))
}

/// Text and meta replies: lines, and data blocks of the length their
/// header line gives, each followed by `\r\n` and holding a value that
/// was written.
fn check_text(input: &[u8], mut out: &[u8]) {
    while !out.is_empty() {
        let nl = out
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "a reply line without CRLF: {:?}",
                    String::from_utf8_lossy(out)
                )
            });
        let line = &out[..nl];
        out = &out[nl + 2..];
        let toks: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let len = match toks[0] {
            b"VALUE" if toks.len() >= 4 => toks[3],
            b"VA" if toks.len() >= 2 => toks[1],
            _ => continue,
        };
        let n: usize = std::str::from_utf8(len).unwrap().parse().unwrap();
        assert!(out.len() >= n + 2, "a data block cut short");
        assert_eq!(&out[n..n + 2], b"\r\n", "a data block without CRLF");
        assert!(
            written(input, &out[..n]),
            "a value nobody wrote: {:?}",
            String::from_utf8_lossy(&out[..n])
        );
        out = &out[n + 2..];
    }
}

/// Binary replies: whole response packets.
fn check_binary(mut out: &[u8]) {
    while !out.is_empty() {
        assert!(out.len() >= 24, "a response header cut short");
        assert_eq!(out[0], 0x81, "response magic");
        let body = u32::from_be_bytes([out[8], out[9], out[10], out[11]]) as usize;
        let key = usize::from(u16::from_be_bytes([out[2], out[3]]));
        let extras = usize::from(out[4]);
        assert!(key + extras <= body);
        assert!(out.len() >= 24 + body, "a response body cut short");
        out = &out[24 + body..];
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (seed, input) = (u16::from_be_bytes([data[0], data[1]]), &data[2..]);
    let sh = shared();
    let stats = WorkerStats::default();
    let mut feeder = Feeder::default();
    let mut sent = Vec::new();
    let mut rng = u32::from(seed) | 1;
    let mut at = 0;
    let mut replied = 0u32;
    while at < input.len() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let piece = (rng as usize % 64 + 1).min(input.len() - at);
        let before = sent.len();
        let open = feeder.push(&sh, &stats, &input[at..at + piece], &mut sent);
        at += piece;
        if sent.len() != before {
            // Commands finished (noreply ones are checked with the next).
            // Reading the store's counts costs more than most inputs do
            // (half the campaign's time when it was every eighth), so
            // every 32nd time.
            replied += 1;
            if replied % 32 == 1 {
                check_store(&sh);
            }
        }
        if !open {
            break;
        }
    }
    drop(feeder); // a value still arriving gives its memory back
    if input.first() == Some(&0x80) {
        check_binary(&sent);
    } else {
        check_text(input, &sent);
    }
    check_store(&sh);
});
