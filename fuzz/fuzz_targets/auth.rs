//! The login parsers: SASL PLAIN's message (`authzid\0user\0pass`), `-Y`'s
//! ASCII token line (`set <any> <any> <any> <len>\r\n` then `user pass`)
//! and the `user:password` file both read. Any bytes give a verdict, never
//! a panic; what PLAIN returns lies inside the message; every entry a file
//! yields logs in with its own password.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use memcrab_server::auth::{ascii_token, plain, Users};

fuzz_target!(|data: &[u8]| {
    if let Some((user, pass)) = plain(data) {
        let r = data.as_ptr_range();
        for part in [user, pass] {
            assert!(r.start <= part.as_ptr() && part.as_ptr_range().end <= r.end);
        }
        assert!(!user.contains(&0));
    }
    let verdict = ascii_token(data);
    let shown = format!("{verdict:?}");
    assert!(!shown.is_empty());
    if let Ok(users) = Users::parse(data, Path::new("fuzz")) {
        for line in data.split(|&b| b == b'\n') {
            let line = line.split(|&b| b == b'\r').next().unwrap_or_default();
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                assert!(users.check(&line[..colon], &line[colon + 1..]));
            }
        }
    }
});
