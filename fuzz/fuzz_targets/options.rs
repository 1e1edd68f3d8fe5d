//! The command line, `-o` above all: arbitrary option strings (and a few
//! flags with arbitrary values) give settings or memcached's message,
//! never a panic.
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use memcrab_server::config::{Args, Settings};

const FLAGS: &[&str] = &[
    "-o", "-o", "-o", "-m", "-c", "-t", "-I", "-f", "-n", "-R", "-B", "-l", "-p", "-U", "-b", "-D",
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut argv = vec!["memcrab".to_string()];
    // Each piece, split at NUL, is a flag's value; the byte before it
    // (as a number) picks the flag.
    for piece in text.split('\0') {
        let mut chars = piece.chars();
        let Some(pick) = chars.next() else { continue };
        argv.push(FLAGS[pick as usize % FLAGS.len()].to_string());
        argv.push(chars.as_str().to_string());
    }
    if let Ok(args) = Args::try_parse_from(&argv) {
        if let Ok(s) = Settings::from_args(args) {
            let _ = s.store_config();
            let _ = s.conn_budget();
        }
    }
});
