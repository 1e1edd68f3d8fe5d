//! Per-prefix stats (`stats detail on|off|dump`, `-D <char>`), as
//! memcached 1.6.18 keeps them: a key's prefix is what comes before the
//! first delimiter (a key without one is not counted); each prefix counts
//! gets, hits, sets and deletes. Fed from the command layer's hook
//! (`cmd::hook`), so the rules below are written once for every protocol.
//!
//! ```text
//!  cmd::hook::record ─► PrefixStats::observe (when on) ─► table[murmur3(prefix) % 256]
//!  stats detail dump ◄─ buckets 0..256, newest prefix first in each (memcached's order)
//! ```
//!
//! What memcached counts (and so memcrab): text `get`/`gets`/`gat`/`gats`
//! per key, binary Get/GetK/GetQ/GetKQ/Gat/Touch, as a get (a hit when the
//! item was live); every text and binary store command as a set, when its
//! line is read (refused or not); text and binary deletes, found or not.
//! Not counted: the meta commands, incr/decr, text `touch`.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::cmd::hook::{Event, Op};
use crate::cmd::Proto;

/// memcached's table size; the dump walks it in order.
const BUCKETS: usize = 256;

struct Entry {
    prefix: Box<[u8]>,
    gets: u64,
    hits: u64,
    sets: u64,
    dels: u64,
}

/// The counters, and whether they are being kept.
pub struct PrefixStats {
    on: AtomicBool,
    delimiter: u8,
    /// Lock order: taken alone (no other lock is held while it is).
    table: Mutex<Vec<Vec<Entry>>>,
}

impl PrefixStats {
    pub fn new(delimiter: u8, on: bool) -> Self {
        PrefixStats {
            on: AtomicBool::new(on),
            delimiter,
            table: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// `stats detail on` / `off`: the counts kept so far stay.
    pub fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// `stats reset`: every prefix forgotten.
    pub fn clear(&self) {
        self.table.lock().clear();
    }

    /// Counts what a command did, as memcached would.
    pub fn observe(&self, proto: Proto, e: &Event<'_>) {
        let (get, set, del) = match (proto, e.op) {
            (Proto::Meta, _) | (_, Op::Incr | Op::Decr) => return,
            (Proto::Text, Op::Touch) => return,
            (_, Op::Get | Op::Gat | Op::Touch) => (true, false, false),
            (_, Op::Store(_)) => (false, true, false),
            (_, Op::Delete) => (false, false, true),
        };
        // memcached stops at a NUL byte as at the end of the key.
        let key = e.key.split(|&b| b == 0).next().unwrap_or(&[]);
        let Some(len) = key.iter().position(|&b| b == self.delimiter) else {
            return;
        };
        let prefix = &key[..len];
        let mut table = self.table.lock();
        if table.is_empty() {
            table.resize_with(BUCKETS, Vec::new);
        }
        let bucket = &mut table[murmur3_32(prefix) as usize % BUCKETS];
        let i = match bucket.iter().position(|en| &*en.prefix == prefix) {
            Some(i) => i,
            None => {
                bucket.push(Entry {
                    prefix: prefix.into(),
                    gets: 0,
                    hits: 0,
                    sets: 0,
                    dels: 0,
                });
                bucket.len() - 1
            }
        };
        let en = &mut bucket[i];
        if get {
            en.gets += 1;
            en.hits += u64::from(e.hit);
        }
        en.sets += u64::from(set);
        en.dels += u64::from(del);
    }

    /// `stats detail dump`: a `PREFIX` line per prefix and `END`.
    pub fn dump(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let table = self.table.lock();
        for bucket in table.iter() {
            // memcached puts a new prefix at the head of its bucket.
            for en in bucket.iter().rev() {
                out.extend_from_slice(b"PREFIX ");
                out.extend_from_slice(&en.prefix);
                out.extend_from_slice(
                    format!(
                        " get {} hit {} set {} del {}\r\n",
                        en.gets, en.hits, en.sets, en.dels
                    )
                    .as_bytes(),
                );
            }
        }
        out.extend_from_slice(b"END\r\n");
        out
    }
}

/// MurmurHash3 (x86, 32-bit, seed 0): memcached's default hash, which
/// places prefixes in its table and so orders its dump.
pub fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    let mut k: u32 = 0;
    for (i, &b) in tail.iter().enumerate() {
        k ^= u32::from(b) << (8 * i);
    }
    if !tail.is_empty() {
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_values() {
        // The reference implementation's values for seed 0.
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn prefixes_as_memcached_counts_them() {
        let p = PrefixStats::new(b':', true);
        let ev = |op, key: &'static [u8], hit| Event { op, key, hit };
        p.observe(Proto::Text, &ev(Op::Get, b"a:1", true));
        p.observe(Proto::Text, &ev(Op::Get, b"a:2", false));
        p.observe(Proto::Binary, &ev(Op::Touch, b"a:3", true));
        p.observe(Proto::Text, &ev(Op::Touch, b"a:3", true));
        p.observe(Proto::Meta, &ev(Op::Get, b"a:3", true));
        p.observe(Proto::Text, &ev(Op::Incr, b"a:3", true));
        p.observe(Proto::Text, &ev(Op::Delete, b"a:3", false));
        p.observe(Proto::Text, &ev(Op::Get, b"nodelimiter", true));
        let d = String::from_utf8(p.dump()).unwrap();
        assert_eq!(d, "PREFIX a get 3 hit 2 set 0 del 1\r\nEND\r\n");
        p.clear();
        assert_eq!(p.dump(), b"END\r\n");
    }
}
