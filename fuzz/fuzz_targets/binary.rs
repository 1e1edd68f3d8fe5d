//! The binary protocol's framing and decoding: a header from any 24
//! bytes, memcached's refusals judged from it, and a request decoded from
//! the extras and key that follow, as the session does it (only after
//! `check` passed and the bytes arrived). A stream of several requests is
//! walked the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memcrab_proto::binary::{check, decode, Header, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let Ok(h) = Header::parse(rest) else {
            return;
        };
        let body = &rest[HEADER_LEN..];
        if !h.lengths_ok() {
            return;
        }
        assert!(h.ext_key_len() <= h.body_len as usize);
        assert_eq!(h.ext_key_len() + h.value_len(), h.body_len as usize);
        let Ok(op) = check(&h) else {
            return;
        };
        if body.len() < h.ext_key_len() {
            return;
        }
        let req = decode(op, &h, &body[..h.ext_key_len()]);
        let shown = format!("{req:?}");
        assert!(!shown.is_empty());
        let total = (h.body_len as usize).min(body.len());
        rest = &body[total..];
    }
});
