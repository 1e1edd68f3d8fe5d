//! A whole session against a real store: arbitrary bytes (text, meta or
//! binary, chosen by the first byte as `-B auto` does) fed in pieces of
//! arbitrary sizes through the real session code, as a connection feeds
//! them, against a store under `-m 1` (so that stores evict and pages
//! fill). After every piece: the store's counts agree (its item count is
//! the sum of its classes', every used chunk holds an item, the memory
//! taken stays within the limit); at the end, the replies are well formed
//! for the protocol spoken.
#![no_main]

use std::sync::Arc;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use memcrab_server::config::{Args, Settings};
use memcrab_server::session::Feeder;
use memcrab_server::shared::Shared;
use memcrab_server::stats::WorkerStats;
use memcrab_store::{Clock, Store};

fn shared() -> Shared {
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
    let settings = Settings::from_args(args).unwrap();
    let store = Store::new(settings.store_config(), Arc::new(Clock::new()));
    Shared::new(settings, store, Vec::new(), Vec::new(), Vec::new())
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
    assert!(st.total_malloced <= sh.settings.maxbytes.max(1 << 20) * 2);
}

/// Text and meta replies: lines, and data blocks of the length their
/// header line gives, each followed by `\r\n`.
fn check_text(mut out: &[u8]) {
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
    while at < input.len() {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let piece = (rng as usize % 64 + 1).min(input.len() - at);
        let open = feeder.push(&sh, &stats, &input[at..at + piece], &mut sent);
        at += piece;
        check_store(&sh);
        if !open {
            break;
        }
    }
    feeder.finish(&sh);
    if input.first() == Some(&0x80) {
        check_binary(&sent);
    } else {
        check_text(&sent);
    }
    check_store(&sh);
});
