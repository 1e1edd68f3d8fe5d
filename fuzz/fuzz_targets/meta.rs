//! The meta protocol's parser: the first byte picks the command (as the
//! second letter of `mX`), the rest is the line; any bytes parse to a
//! command or memcached's refusal. base64 keys decode into their buffer
//! and encode back to what was decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcrab_proto::meta::{self, base64_decode, base64_encode, Kind, Scratch};

fuzz_target!(|data: &[u8]| {
    let Some((&letter, line)) = data.split_first() else {
        return;
    };
    if let Some(kind) = Kind::from_letter(letter) {
        let mut scratch = Scratch::default();
        let parsed = meta::parse(kind, line, &mut scratch);
        let shown = format!("{parsed:?}");
        assert!(!shown.is_empty());
    }
    let mut out = [0u8; 512];
    let take = line.len().min(340);
    let n = base64_decode(&line[..take], &mut out);
    assert!(n <= out.len());
    let mut enc = Vec::new();
    base64_encode(&out[..n], &mut enc);
    let mut back = [0u8; 512];
    let m = base64_decode(&enc, &mut back);
    assert_eq!(&back[..m], &out[..n]);
});
