//! The command line, `-o` above all: arbitrary option strings (and a few
//! flags with arbitrary values) give settings or memcached's message,
//! never a panic. clap is parsed once; each input sets the fields its
//! flags fill, so the fuzzing time goes to memcrab's own checks.
#![no_main]

use std::sync::OnceLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use memcrab_server::config::{Args, Settings};

fn defaults() -> &'static Args {
    static ARGS: OnceLock<Args> = OnceLock::new();
    ARGS.get_or_init(|| Args::try_parse_from(["memcrab"]).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut args = defaults().clone();
    // Each piece, split at NUL, is a flag's value; its first character
    // (as a number) picks the flag.
    for piece in text.split('\0') {
        let mut chars = piece.chars();
        let Some(pick) = chars.next() else { continue };
        let v = chars.as_str().to_string();
        match pick as u32 % 16 {
            0..=2 => args.extended.push(v),
            3 => args.memory_limit = v,
            4 => args.conn_limit = v,
            5 => args.threads = v,
            6 => args.max_item_size = v,
            7 => args.growth_factor = v,
            8 => args.slab_min_size = v,
            9 => args.reqs_per_event = v,
            10 => args.backlog = v,
            11 => args.listen.push(v),
            12 => args.port = Some(v),
            13 => args.udp_port = v,
            14 => args.protocol = Some(v),
            _ => args.unix_mask = v,
        }
    }
    if let Ok(s) = Settings::from_args(args) {
        let _ = s.store_config();
        let _ = s.conn_budget();
    }
});
