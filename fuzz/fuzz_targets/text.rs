//! The text protocol's line parser: any line, with or without its
//! newline, parses to a request or a refusal, never a panic; the keys of a
//! get are non-empty, hold no space and lie inside the line; a meta line
//! goes on to the meta parser as the session sends it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcrab_proto::meta::{self, Scratch};
use memcrab_proto::text::{may_be_long_get, parse, trim_line, Request};

fuzz_target!(|data: &[u8]| {
    let _ = may_be_long_get(data);
    let line = match data.iter().position(|&c| c == b'\n') {
        Some(nl) => &data[..nl],
        None => data,
    };
    let line = trim_line(line);
    let range = line.as_ptr_range();
    match parse(line) {
        Request::Get { keys, .. } => {
            for k in keys {
                assert!(!k.is_empty() && !k.contains(&b' '));
                assert!(range.start <= k.as_ptr() && k.as_ptr_range().end <= range.end);
            }
        }
        Request::Store(s) => {
            let shown = format!("{s:?}");
            assert!(!shown.is_empty());
        }
        Request::Meta { kind, line } => {
            let mut scratch = Scratch::default();
            let _ = meta::parse(kind, line, &mut scratch);
        }
        other => {
            let shown = format!("{other:?}");
            assert!(!shown.is_empty());
        }
    }
});
