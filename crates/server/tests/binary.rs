//! The binary protocol against Debian's memcached 1.6: a seeded random
//! stream of binary requests (every opcode, quiet variants, CAS values
//! handed out earlier, malformed headers, values past -I) and a list of
//! fixed cases go to both servers, and the answers must be the same
//! bytes. CAS values in responses are compared by order of appearance;
//! a request quoting "the n-th CAS value seen" gets each server's own.
//! Also: SASL PLAIN (`-S`), ASCII auth tokens (`-Y`), `-B`, and what a
//! malformed header can make memcrab allocate.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{require_memcached, rss_kb, Rng, Server, MEMCRAB};

const MARK: u32 = 0xfeed_face;

/// The CAS value a request carries.
#[derive(Clone, Copy)]
enum Cas {
    Value(u64),
    /// The n-th distinct CAS value this server has answered with.
    Seen(usize),
}

struct Req {
    opcode: u8,
    extras: Vec<u8>,
    key: Vec<u8>,
    value: Vec<u8>,
    opaque: u32,
    cas: Cas,
    /// Lengths as sent, when they lie.
    key_len: Option<u16>,
    body_len: Option<u32>,
    magic: u8,
    /// Bytes sent after the request (what memcached will swallow).
    trailer: Vec<u8>,
}

fn req(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Req {
    Req {
        opcode,
        extras: extras.to_vec(),
        key: key.to_vec(),
        value: value.to_vec(),
        opaque: 0,
        cas: Cas::Value(0),
        key_len: None,
        body_len: None,
        magic: 0x80,
        trailer: Vec::new(),
    }
}

impl Req {
    fn opaque(mut self, o: u32) -> Req {
        self.opaque = o;
        self
    }
    fn cas(mut self, c: Cas) -> Req {
        self.cas = c;
        self
    }
    fn body_len(mut self, n: u32) -> Req {
        self.body_len = Some(n);
        self
    }
    fn magic(mut self, m: u8) -> Req {
        self.magic = m;
        self
    }
    fn trailer(mut self, t: &[u8]) -> Req {
        self.trailer = t.to_vec();
        self
    }

    fn bytes(&self, seen: &[u64]) -> Vec<u8> {
        let cas = match self.cas {
            Cas::Value(v) => v,
            Cas::Seen(n) => seen.get(n).copied().unwrap_or(1),
        };
        let body = self.extras.len() + self.key.len() + self.value.len();
        let mut b = vec![self.magic, self.opcode];
        b.extend_from_slice(&self.key_len.unwrap_or(self.key.len() as u16).to_be_bytes());
        b.push(self.extras.len() as u8);
        b.extend_from_slice(&[0, 0, 0]);
        b.extend_from_slice(&self.body_len.unwrap_or(body as u32).to_be_bytes());
        b.extend_from_slice(&self.opaque.to_be_bytes());
        b.extend_from_slice(&cas.to_be_bytes());
        b.extend_from_slice(&self.extras);
        b.extend_from_slice(&self.key);
        b.extend_from_slice(&self.value);
        b.extend_from_slice(&self.trailer);
        b
    }
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn set_extras(flags: u32, exptime: u32) -> Vec<u8> {
    let mut e = be32(flags);
    e.extend_from_slice(&be32(exptime));
    e
}

fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&be32(exptime));
    e
}

/// One server, one connection, the CAS values it handed out.
struct Side {
    server: Server,
    conn: TcpStream,
    seen: Vec<u64>,
}

/// A response, its CAS value replaced by its order of appearance.
fn responses(mut b: &[u8], seen: &mut Vec<u64>) -> Vec<String> {
    let mut out = Vec::new();
    while b.len() >= 24 {
        let body = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
        if b.len() < 24 + body {
            break;
        }
        let cas = u64::from_be_bytes(b[16..24].try_into().unwrap());
        let cas = if cas == 0 {
            "0".to_string()
        } else {
            let n = seen.iter().position(|&c| c == cas).unwrap_or_else(|| {
                seen.push(cas);
                seen.len() - 1
            });
            format!("#{n}")
        };
        out.push(format!(
            "{:02x?} cas={cas} body={}",
            &b[..16],
            String::from_utf8_lossy(&b[24..24 + body])
        ));
        b = &b[24 + body..];
    }
    if !b.is_empty() {
        out.push(format!("partial {:02x?}", b));
    }
    out
}

impl Side {
    fn new(bin: &str, args: &[&str]) -> Side {
        let server = Server::start(bin, args);
        let conn = connect(server.port);
        Side {
            server,
            conn,
            seen: Vec::new(),
        }
    }

    /// Sends the requests and a marked NoOp; returns what came back until
    /// that NoOp's answer, or until the server hung up ("EOF").
    fn run(&mut self, reqs: &[Req]) -> Vec<String> {
        let mut bytes = Vec::new();
        for r in reqs {
            bytes.extend_from_slice(&r.bytes(&self.seen));
        }
        bytes.extend_from_slice(&req(0x0a, &[], &[], &[]).opaque(MARK).bytes(&[]));
        // MEMCRAB_BIN_RAW=file keeps the bytes sent (for fuzz seeds).
        if let Some(f) = std::env::var_os("MEMCRAB_BIN_RAW") {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .unwrap();
            f.write_all(&(bytes.len() as u32).to_be_bytes()).unwrap();
            f.write_all(&bytes).unwrap();
        }
        let _ = self.conn.write_all(&bytes);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut eof = false;
        let marker_at = |g: &[u8]| -> bool {
            // The marked NoOp answer ends the stream when it is a whole
            // response at the end.
            g.len() >= 24
                && g[g.len() - 24] == 0x81
                && g[g.len() - 12..g.len() - 8] == MARK.to_be_bytes()
        };
        while !marker_at(&got) {
            match self.conn.read(&mut buf) {
                Ok(0) | Err(_) => {
                    eof = true;
                    break;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let mut r = responses(&got, &mut self.seen);
        if eof {
            r.push("EOF".into());
            self.conn = connect(self.server.port);
        }
        r
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A random request (sometimes a few pipelined), as memcached's binary
/// clients and broken ones send them.
/// (`flush`: whether flushes may be sent. Under -C memcached counts an item
/// stored in the same second as a flush as flushed, and the two servers'
/// clocks turn their seconds at different moments.)
fn unit(g: &mut Rng, seen: usize, flush: bool) -> Vec<Req> {
    let key = |g: &mut Rng| -> Vec<u8> {
        match g.below(60) {
            0 => vec![b'K'; 250],
            1 => b"k\x00\xff".to_vec(),
            _ => format!("k{}", g.below(30)).into_bytes(),
        }
    };
    let cas = |g: &mut Rng| -> Cas {
        match g.below(10) {
            0..=2 if seen > 0 => Cas::Seen(seen - 1 - g.below(seen.min(4) as u64) as usize),
            3 => Cas::Value(999_999_999),
            _ => Cas::Value(0),
        }
    };
    let quiet = |g: &mut Rng, loud: u8, q: u8| if g.chance(35) { q } else { loud };
    let n = if g.chance(20) { 2 + g.below(4) } else { 1 };
    let mut reqs = Vec::new();
    for _ in 0..n {
        let opaque = g.below(1000) as u32;
        let mut pick = g.below(100);
        if n > 1 && (93..=97).contains(&pick) {
            // A request that closes the connection comes alone: after
            // earlier ones in the same unit, whether their replies were
            // written before the hang-up depends on how the bytes were
            // split into reads, on either server.
            pick = 84;
        }
        let r = match pick {
            0..=19 => {
                let op = [0x00, 0x09, 0x0c, 0x0d][g.below(4) as usize];
                req(op, &[], &key(g), &[])
            }
            20..=39 => {
                let op = [(0x01, 0x11), (0x02, 0x12), (0x03, 0x13)][g.below(3) as usize];
                let op = quiet(g, op.0, op.1);
                let len = match g.below(20) {
                    0 => 1500 + g.below(3000) as usize,
                    1 => 0,
                    _ => g.below(80) as usize,
                };
                let v: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                let flags = [0, 1, 0xffff_ffff][g.below(3) as usize];
                let exptime = if g.chance(10) { 1000 } else { 0 };
                let c = cas(g);
                req(op, &set_extras(flags, exptime), &key(g), &v).cas(c)
            }
            40..=47 => {
                let op = [(0x0e, 0x19), (0x0f, 0x1a)][g.below(2) as usize];
                let op = quiet(g, op.0, op.1);
                let c = if g.chance(20) { cas(g) } else { Cas::Value(0) };
                req(op, &[], &key(g), b"xy").cas(c)
            }
            48..=55 => {
                let op = quiet(g, 0x04, 0x14);
                let c = if g.chance(25) { cas(g) } else { Cas::Value(0) };
                req(op, &[], &key(g), &[]).cas(c)
            }
            56..=69 => {
                let op = [(0x05, 0x15), (0x06, 0x16)][g.below(2) as usize];
                let op = quiet(g, op.0, op.1);
                let delta = [0, 1, 7, 1 << 40, u64::MAX][g.below(5) as usize];
                let initial = g.below(100);
                let exptime = [0, 0, 1000, u32::MAX][g.below(4) as usize];
                // (A get of the same key earlier in a pipelined unit holds
                // memcached's item, and its incr then makes a new item
                // instead of padding the old one in place: n-keys are
                // never read, k-keys only in single-request units.)
                let k = if n > 1 || g.chance(80) {
                    format!("n{}", g.below(6)).into_bytes()
                } else {
                    key(g)
                };
                let c = if g.chance(15) { cas(g) } else { Cas::Value(0) };
                req(op, &arith_extras(delta, initial, exptime), &k, &[]).cas(c)
            }
            70..=79 => {
                let op = [0x1c, 0x1d, 0x1e, 0x23, 0x24][g.below(5) as usize];
                let t = [0, 1000, 2_592_000][g.below(3) as usize];
                req(op, &be32(t), &key(g), &[])
            }
            80..=83 => req(0x0b, &[], &[], &[]),
            84..=86 => req(0x0a, &[], &[], &[]),
            87 if flush => req(quiet(g, 0x08, 0x18), &[], &[], &[]),
            87 => req(0x0a, &[], &[], &[]),
            88 => req(0x10, &[], b"bogus", &[]),
            // Unknown opcodes and Verbosity: memcached discards extras,
            // key and body_len more bytes; they are sent so that the
            // stream stays in step.
            89 => req(0x1b, &be32(1), &[], &[]).trailer(&[0x80; 4]),
            90 => req(0x30 + g.below(16) as u8, &[], b"abc", b"12").trailer(&[0x80; 3]),
            91 => req(0x20, &[], &[], &[]),
            92 => req(0x21, &[], b"PLAIN", b"\0u\0p"),
            // Malformed: the connection is closed.
            93 => req(0x00, &be32(1), b"k1", &[]),
            94 => req(0x01, &set_extras(0, 0), b"k1", b"").body_len(3),
            95 => req(0x00, &[], &[b'L'; 251], &[]),
            96 => req(0x0a, &[], &[], &[]).magic(0x81),
            97 => req(quiet(g, 0x07, 0x17), &[], &[], &[]),
            // Past -I: refused, the value swallowed.
            _ => req(
                0x01,
                &set_extras(0, 0),
                &key(g),
                &vec![b'v'; (1 << 20) + 10],
            ),
        };
        reqs.push(r.opaque(opaque));
    }
    reqs
}

fn differential(seed: u64, units: usize, flags: &[&str]) {
    let memcached = require_memcached();
    let mut a = Side::new(&memcached, flags);
    let mut b = Side::new(MEMCRAB, flags);
    let mut g = Rng(seed);
    for i in 0..units {
        let reqs = unit(&mut g, a.seen.len(), !flags.contains(&"-C"));
        let want = a.run(&reqs);
        let got = b.run(&reqs);
        if std::env::var_os("MEMCRAB_BIN_TRACE").is_some() {
            for r in &reqs {
                eprintln!(
                    "{i}: {:02x} {:?} {:?}",
                    r.opcode,
                    String::from_utf8_lossy(&r.key),
                    r.extras
                );
            }
            eprintln!("   => {want:?}");
        }
        if got != want {
            let mut c = connect(a.server.port);
            let _ = c.write_all(b"stats\r\nstats items\r\n");
            std::thread::sleep(Duration::from_millis(200));
            let mut buf = vec![0u8; 1 << 16];
            let n = c.read(&mut buf).unwrap_or(0);
            let st = String::from_utf8_lossy(&buf[..n]).into_owned();
            let st: Vec<&str> = st
                .lines()
                .filter(|l| {
                    l.contains("evict")
                        || l.contains("reclaim")
                        || l.contains("expired")
                        || l.contains("moved")
                        || l.contains("items")
                })
                .collect();
            panic!("seed {seed} unit {i}: opcodes {:02x?}\nmemcrab:   {got:?}\nmemcached: {want:?}\nmemcached stats: {st:?}", reqs.iter().map(|r| r.opcode).collect::<Vec<_>>());
        }
        assert_eq!(a.seen.len(), b.seen.len());
    }
    common::same_command_counters(a.server.port, b.server.port);
    // The same stat names in binary form, as memcached's.
    for group in ["", "settings"] {
        let want = stat_names(a.server.port, group);
        let got = stat_names(b.server.port, group);
        assert!(want.len() > 30, "{want:?}");
        assert_eq!(got, want, "binary stat {group:?}");
    }
    eprintln!("seed {seed}: {units} units identical");
}

#[test]
fn binary_stream_agrees_with_memcached() {
    differential(1, 3000, &["-m", "1024"]);
}

#[test]
fn binary_stream_agrees_with_memcached_seed_2_no_cas() {
    differential(2, 2000, &["-m", "1024", "-C"]);
}

/// The keys of a binary Stat answer, in order.
fn stat_names(port: u16, group: &str) -> Vec<String> {
    let mut c = connect(port);
    c.write_all(&req(0x10, &[], group.as_bytes(), &[]).bytes(&[]))
        .unwrap();
    let mut got = Vec::new();
    let mut names = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // Whole responses so far; the one with an empty key ends it.
        let mut at = 0;
        names.clear();
        let mut done = false;
        while got.len() >= at + 24 {
            let klen = u16::from_be_bytes([got[at + 2], got[at + 3]]) as usize;
            let body = u32::from_be_bytes(got[at + 8..at + 12].try_into().unwrap()) as usize;
            if got.len() < at + 24 + body {
                break;
            }
            if klen == 0 {
                done = true;
                break;
            }
            names.push(String::from_utf8_lossy(&got[at + 24..at + 24 + klen]).into_owned());
            at += 24 + body;
        }
        if done {
            return names;
        }
        match c.read(&mut buf) {
            Ok(0) | Err(_) => panic!("stat answer cut short: {names:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Cases one at a time, each on a fresh pair of connections.
#[test]
fn fixed_cases_agree_with_memcached() {
    let memcached = require_memcached();
    let mut a = Side::new(&memcached, &["-m", "1024"]);
    let mut b = Side::new(MEMCRAB, &["-m", "1024"]);
    let f = set_extras(5, 0);
    let big = vec![b'x'; 1 << 20];
    let cases: Vec<(&str, Vec<Req>)> = vec![
        (
            "set get getk",
            vec![
                req(0x01, &f, b"k", b"v1").opaque(7),
                req(0x00, &[], b"k", &[]).opaque(8),
                req(0x0c, &[], b"k", &[]),
            ],
        ),
        (
            "misses",
            vec![
                req(0x00, &[], b"no", &[]).opaque(3),
                req(0x0c, &[], b"no", &[]),
                req(0x09, &[], b"no", &[]),
                req(0x0d, &[], b"no", &[]),
            ],
        ),
        (
            "add replace",
            vec![
                req(0x01, &f, b"a", b"x"),
                req(0x02, &f, b"a", b"y"),
                req(0x03, &f, b"zz", b"y"),
                req(0x12, &f, b"a", b"y"),
            ],
        ),
        (
            "append prepend",
            vec![
                req(0x0e, &[], b"qq", b"x"),
                req(0x0f, &[], b"a", b"P"),
                req(0x19, &[], b"a", b"S"),
                req(0x00, &[], b"a", &[]),
            ],
        ),
        (
            "cas",
            vec![
                req(0x01, &f, b"c", b"v"),
                req(0x01, &f, b"c", b"w").cas(Cas::Value(12345)),
                req(0x01, &f, b"c", b"w").cas(Cas::Seen(0)),
                req(0x02, &f, b"cn", b"w").cas(Cas::Value(5)),
            ],
        ),
        (
            "delete cas",
            vec![
                req(0x01, &f, b"d", b"v"),
                req(0x04, &[], b"d", &[]).cas(Cas::Value(1)),
                req(0x14, &[], b"d", &[]),
                req(0x14, &[], b"d", &[]),
            ],
        ),
        (
            "incr",
            vec![
                req(0x05, &[], b"n", &[]),
                req(0x05, &arith_extras(5, 10, 0), b"n", &[]),
                req(0x05, &arith_extras(5, 10, 0), b"n", &[]),
                req(0x06, &arith_extras(5, 10, u32::MAX), b"m", &[]),
                req(0x05, &arith_extras(1, 0, 0), b"a", &[]),
            ],
        ),
        (
            "incr wrap and pad",
            vec![
                req(0x01, &f, b"w", b"18446744073709551615"),
                req(0x05, &arith_extras(2, 0, 0), b"w", &[]),
                req(0x06, &arith_extras(100, 0, 0), b"w", &[]),
                req(0x15, &arith_extras(1, 0, 0), b"w", &[]),
                req(0x00, &[], b"w", &[]),
            ],
        ),
        (
            "touch gat",
            vec![
                req(0x01, &f, b"t", b"vv"),
                req(0x1c, &be32(100), b"t", &[]),
                req(0x1d, &be32(100), b"t", &[]),
                req(0x23, &be32(100), b"t", &[]),
                req(0x1c, &be32(100), b"tx", &[]),
                req(0x23, &be32(100), b"tx", &[]),
                req(0x1e, &be32(0), b"tx", &[]),
                req(0x24, &be32(0), b"t", &[]),
            ],
        ),
        (
            "too large",
            vec![
                req(0x01, &f, b"big", &big),
                req(0x00, &[], b"big", &[]),
                req(0x11, &f, b"big", &big),
            ],
        ),
        (
            "append too large",
            vec![
                req(0x01, &f, b"ap", &vec![b'x'; 1_000_000]),
                req(0x0e, &[], b"ap", &vec![b'y'; 100_000]),
                req(0x0e, &[], b"ap2", &big),
            ],
        ),
        (
            "chained value",
            vec![
                req(0x01, &f, b"bv", &vec![b'z'; 700_000]),
                req(0x0c, &[], b"bv", &[]),
            ],
        ),
        (
            "empty value, no flags",
            vec![
                req(0x01, &set_extras(0, 0), b"e", &[]),
                req(0x00, &[], b"e", &[]),
            ],
        ),
        (
            "version stat",
            vec![
                req(0x0b, &[], &[], &[]).opaque(9),
                req(0x10, &[], b"bogus", &[]),
                req(0x10, &[], b"conns", &[]),
                req(0x10, &[], b"reset", &[]),
            ],
        ),
        (
            "flush",
            vec![
                req(0x01, &f, b"fl", b"v"),
                req(0x08, &[], &[], &[]),
                req(0x00, &[], b"fl", &[]),
                req(0x18, &be32(0), &[], &[]),
            ],
        ),
        (
            "sasl without -S",
            vec![
                req(0x20, &[], &[], &[]),
                req(0x21, &[], b"PLAIN", b"\0a\0b"),
                req(0x22, &[], b"PLAIN", b"x"),
            ],
        ),
        (
            "unknown swallows into the next header",
            vec![req(0x30, &[], b"abc", b"12345"), req(0x0a, &[], &[], &[])],
        ),
        (
            "unknown with a long body",
            vec![req(0x40, &[], &[], &[]).body_len(30).trailer(&[b'a'; 30])],
        ),
        (
            "bad magic",
            vec![
                req(0x0a, &[], &[], &[]),
                req(0x00, &[], b"k", &[]).magic(0x82),
            ],
        ),
        (
            "body shorter than key",
            vec![req(0x00, &[], b"k", &[]).body_len(0)],
        ),
        ("get with extras", vec![req(0x00, &be32(1), b"k", &[])]),
        ("get with a value", vec![req(0x00, &[], b"k", b"abc")]),
        ("set without extras", vec![req(0x01, &[], b"kk", b"val")]),
        ("noop with a key", vec![req(0x0a, &[], b"x", &[])]),
        (
            "flush with 8 extras",
            vec![req(0x08, b"12345678", &[], &[])],
        ),
        ("gat without exptime", vec![req(0x1d, &[], b"g", &[])]),
        ("empty key", vec![req(0x00, &[], &[], &[])]),
        ("key of 251", vec![req(0x00, &[], &[b'k'; 251], &[])]),
        (
            "key of 250",
            vec![
                req(0x01, &f, &[b'k'; 250], b"v"),
                req(0x0c, &[], &[b'k'; 250], &[]),
            ],
        ),
        ("quit", vec![req(0x07, &[], &[], &[]).opaque(5)]),
        ("quitq", vec![req(0x17, &[], &[], &[])]),
        (
            "huge body on a set",
            vec![req(0x01, &f, b"h", &[]).body_len(0xffff_fff0)],
        ),
        (
            "huge body on an unknown opcode",
            vec![req(0x50, &[], &[], &[]).body_len(0x8000_0000)],
        ),
    ];
    for (name, reqs) in cases {
        let want = a.run(&reqs);
        let got = b.run(&reqs);
        assert_eq!(got, want, "{name}");
        // A fresh connection for the next case.
        a.conn = connect(a.server.port);
        b.conn = connect(b.server.port);
    }
}

/// Runs raw bytes on a fresh connection; the responses, then "EOF" if
/// the server hung up.
fn exchange(port: u16, bytes: &[u8], wait_ms: u64) -> (Vec<u8>, bool) {
    let mut c = connect(port);
    c.set_read_timeout(Some(Duration::from_millis(wait_ms)))
        .unwrap();
    c.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn response(
    opcode: u8,
    status: u16,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) -> Vec<u8> {
    let mut b = vec![0x81, opcode];
    b.extend_from_slice(&(key.len() as u16).to_be_bytes());
    b.push(extras.len() as u8);
    b.push(0);
    b.extend_from_slice(&status.to_be_bytes());
    b.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    b.extend_from_slice(&opaque.to_be_bytes());
    b.extend_from_slice(&cas.to_be_bytes());
    b.extend_from_slice(extras);
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}

fn users_file(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("memcrab-{}-{name}", std::process::id()));
    std::fs::write(&p, "alice:secret\nbob:hunter2\n").unwrap();
    p
}

/// memcached 1.6.18 with Cyrus SASL (sasldb holding alice/secret) answers
/// these bytes; memcrab reads its users from a user:password file.
#[test]
fn sasl_plain_logs_in_and_refuses_everything_else() {
    let pw = users_file("sasl");
    let srv = Server::memcrab(&["-S", "-o", &format!("sasl_file={}", pw.display())]);
    let p = srv.port;
    let auth = |data: &[u8]| req(0x21, &[], b"PLAIN", data).bytes(&[]);
    let fail = |op| response(op, 0x20, 0, 0, &[], &[], b"Auth failure.");
    let noop = req(0x0a, &[], &[], &[]).bytes(&[]);
    // The mechanisms; then anything but SASL and Version is refused and
    // the connection closed.
    let (got, eof) = exchange(
        p,
        &[req(0x20, &[], &[], &[]).opaque(3).bytes(&[]), noop.clone()].concat(),
        2000,
    );
    assert_eq!(
        got,
        [response(0x20, 0, 3, 0, &[], &[], b"PLAIN"), fail(0x0a)].concat()
    );
    assert!(eof);
    let (got, eof) = exchange(
        p,
        &[
            req(0x0b, &[], &[], &[]).bytes(&[]),
            req(0x00, &[], b"k", &[]).bytes(&[]),
        ]
        .concat(),
        2000,
    );
    assert_eq!(
        got,
        [response(0x0b, 0, 0, 0, &[], &[], b"1.6.18"), fail(0x00)].concat()
    );
    assert!(eof);
    // A good login, then commands work; a failed login logs out again.
    let set = req(0x01, &set_extras(5, 0), b"k", b"v").bytes(&[]);
    let get = req(0x00, &[], b"k", &[]).bytes(&[]);
    let (got, eof) = exchange(
        p,
        &[
            auth(b"\0alice\0secret"),
            set,
            get,
            auth(b"\0alice\0bad"),
            noop.clone(),
        ]
        .concat(),
        2000,
    );
    let mut want = response(0x21, 0, 0, 0, &[], &[], b"Authenticated");
    assert!(got.starts_with(&want), "{got:02x?}");
    want = fail(0x21);
    want.extend_from_slice(&fail(0x0a));
    assert!(got.ends_with(&want), "{got:02x?}");
    assert!(eof);
    // Wrong password, unknown user, another authzid, a mechanism other
    // than PLAIN, a step without a start: refused, connection kept.
    for bad in [
        auth(b"\0alice\0wrong"),
        auth(b"\0carol\0secret"),
        auth(b"bob\0alice\0secret"),
        auth(b"alicesecret"),
        req(0x21, &[], b"CRAM-MD5", &[]).bytes(&[]),
        req(0x22, &[], b"PLAIN", b"\0alice\0secret").bytes(&[]),
    ] {
        let op = bad[1];
        let (got, _) = exchange(p, &[bad, req(0x0b, &[], &[], &[]).bytes(&[])].concat(), 500);
        assert_eq!(
            got,
            [fail(op), response(0x0b, 0, 0, 0, &[], &[], b"1.6.18")].concat()
        );
    }
    // An authzid equal to the user, a lower-case mechanism, and an empty
    // start answered with "continue", then the step.
    for good in [
        auth(b"bob\0bob\0hunter2"),
        req(0x21, &[], b"plain", b"\0bob\0hunter2").bytes(&[]),
        [
            auth(b""),
            req(0x22, &[], b"PLAIN", b"\0bob\0hunter2").bytes(&[]),
        ]
        .concat(),
    ] {
        let (got, eof) = exchange(p, &[good, noop.clone()].concat(), 500);
        assert!(
            got.ends_with(
                &[
                    response(
                        0x21 + u8::from(got.len() > 80),
                        0,
                        0,
                        0,
                        &[],
                        &[],
                        b"Authenticated"
                    ),
                    response(0x0a, 0, 0, 0, &[], &[], &[])
                ]
                .concat()
            ),
            "{got:02x?}"
        );
        assert!(!eof);
    }
    // A mechanism name over 32 bytes: invalid, its data swallowed.
    let (got, _) = exchange(
        p,
        &[
            req(0x21, &[], &[b'P'; 40], b"\0alice\0secret").bytes(&[]),
            req(0x0b, &[], &[], &[]).bytes(&[]),
        ]
        .concat(),
        500,
    );
    assert_eq!(
        got,
        [
            response(0x21, 4, 0, 0, &[], &[], b"Invalid arguments"),
            response(0x0b, 0, 0, 0, &[], &[], b"1.6.18")
        ]
        .concat()
    );
    // The text protocol is refused: -S serves binary only.
    let (got, eof) = exchange(p, b"get k\r\nxxxxxxxxxxxxxxxxxxxxxxxxx", 2000);
    assert!(got.is_empty() && eof);
    // auth_cmds / auth_errors counted, and the settings say so.
    let (got, _) = exchange(
        p,
        &[
            auth(b"\0alice\0secret"),
            req(0x10, &[], &[], &[]).bytes(&[]),
            req(0x10, &[], b"settings", &[]).bytes(&[]),
        ]
        .concat(),
        500,
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("auth_cmds"), "{text}");
    let stat = |name: &str| -> String {
        let at = got
            .windows(name.len())
            .position(|w| w == name.as_bytes())
            .unwrap();
        let start = at + name.len();
        let hdr = at - 24;
        let body = u32::from_be_bytes(got[hdr + 8..hdr + 12].try_into().unwrap()) as usize;
        String::from_utf8_lossy(&got[start..hdr + 24 + body]).into_owned()
    };
    assert_eq!(stat("auth_cmds"), "13");
    assert_eq!(stat("auth_errors"), "7");
    assert_eq!(stat("auth_enabled_sasl"), "yes");
    assert_eq!(stat("binding_protocol"), "binary");
    let _ = std::fs::remove_file(pw);
}

#[test]
fn sasl_and_auth_file_flags_are_checked_as_memcached_does() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = std::process::Command::new(MEMCRAB);
        c.args(["-p", "0", "-U", "0"])
            .args(args)
            .env_remove("MEMCACHED_SASL_PWDB")
            .env_remove("SASL_CONF_PATH");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["-S", "-B", "ascii"], &[]);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("You cannot allow the ASCII protocol while using SASL."),
        "{err}"
    );
    let (_, err) = run(&["-S", "-B", "auto"], &[]);
    assert!(
        err.contains("You cannot allow the ASCII protocol while using SASL."),
        "{err}"
    );
    let pw = users_file("flags");
    let pws = pw.display().to_string();
    let (_, err) = run(&["-Y", &pws, "-B", "auto"], &[]);
    assert!(
        err.contains(
            "You cannot allow the BINARY protocol while using ascii authentication tokens."
        ),
        "{err}"
    );
    let (_, err) = run(&["-Y", "/nonexistent/file"], &[]);
    assert!(
        err.contains("Could not open authfile [/nonexistent/file] for reading"),
        "{err}"
    );
    let (code, err) = run(&["-S"], &[]);
    assert_eq!(code, Some(64));
    assert!(err.contains("Error initializing sasl"), "{err}");
    // SASL_CONF_PATH: memcached.conf's sasldb_path names the user file.
    let dir = std::env::temp_dir().join(format!("memcrab-sasl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("memcached.conf"),
        format!("mech_list: plain\nsasldb_path: {pws}\n"),
    )
    .unwrap();
    let dirs = dir.display().to_string();
    for env in [
        [("SASL_CONF_PATH", dirs.as_str())],
        [("MEMCACHED_SASL_PWDB", pws.as_str())],
    ] {
        let mut c = std::process::Command::new(MEMCRAB);
        c.args(["-l", "127.0.0.1", "-p", "0", "-U", "0", "-S"])
            .env_remove("SASL_CONF_PATH")
            .env_remove("MEMCACHED_SASL_PWDB")
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let status = child.try_wait().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(status.is_none(), "{env:?}: exited {status:?}");
    }
    std::fs::write(dir.join("memcached.conf"), "mech_list: cram-md5\n").unwrap();
    let (code, err) = run(&["-S"], &[("SASL_CONF_PATH", dirs.as_str())]);
    assert_eq!(code, Some(64));
    assert!(err.contains("no PLAIN"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(pw);
}

/// `-Y`: memcached's ASCII auth tokens, compared byte for byte (one batch
/// per case: memcached writes each auth reply over the one before it in
/// the same batch, and memcrab does the same).
#[test]
fn ascii_auth_tokens_agree_with_memcached() {
    let memcached = require_memcached();
    let pw = users_file("authfile");
    let pws = pw.display().to_string();
    let a = Server::start(&memcached, &["-Y", &pws]);
    let b = Server::memcrab(&["-Y", &pws]);
    let cases: &[&[u8]] = &[
        b"get k\r\n",
        b"version\r\nversion\r\n",
        b"set x 0 0 12\r\nalice secret\r\nset k 0 0 1\r\nv\r\nget k\r\n",
        b"set x 0 0 11\r\nalice wrong\r\n",
        b"set x 0 0 11\r\nalice wrong\r\nversion\r\n",
        b"set x 0 0 12 noreply\r\nalice secret\r\nversion\r\n",
        b"set x 0 0 5\r\nalice\r\n",
        b"set x 0 0 3\r\nalice secret\r\nversion\r\n",
        b"add x 0 0 12\r\nalice secret\r\nversion\r\n",
        b"set x 0 0 11\r\nbob hunter2\r\nversion\r\n",
        b"set x 0 0 12\r\nalice secret\rX",
        b"set x 0 0 17\r\nalice secret junk\r\n",
        b"set x 0 0 14\r\n alice  secret\r\n",
        b"set x 0 0 12 7 8\r\nalice secret\r\n",
        b"set x 0 0 12\r\nalice secret\r\nset x 0 0 11\r\nalice wrong\r\nget x\r\n",
        b"set x 0 0 -1\r\n",
    ];
    for case in cases {
        let want = exchange(a.port, case, 400);
        let got = exchange(b.port, case, 400);
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(case));
    }
    // A 3000-byte line without a newline: both hang up.
    let long = vec![b'x'; 3000];
    assert!(exchange(b.port, &long, 2000).1);
    assert!(exchange(a.port, &long, 2000).1);
    let _ = std::fs::remove_file(pw);
}

/// `-B binary` refuses text (a bad magic closes the connection), `-B
/// ascii` reads a binary request as text, as memcached does.
#[test]
fn protocol_flag_forces_one_protocol() {
    let memcached = require_memcached();
    for flag in ["binary", "ascii"] {
        let a = Server::start(&memcached, &["-B", flag]);
        let b = Server::memcrab(&["-B", flag]);
        for case in [
            b"version\r\nversion\r\nversion\r\n".to_vec(),
            req(0x0b, &[], &[], &[]).bytes(&[]),
            [req(0x0b, &[], &[], &[]).bytes(&[]), b"version\r\n".to_vec()].concat(),
        ] {
            let want = exchange(a.port, &case, 500);
            let got = exchange(b.port, &case, 500);
            assert_eq!(got, want, "-B {flag} {case:02x?}");
        }
    }
}

/// Headers that claim huge lengths get their answer before any body is
/// read, and memcrab's memory stays where it was: a value past -I is
/// swallowed as it streams by, never buffered.
#[test]
fn malformed_headers_never_make_memcrab_allocate() {
    let mut srv = Server::memcrab(&["-m", "64"]);
    let p = srv.port;
    let before = rss_kb(srv.pid());
    let f = set_extras(0, 0);
    // A 2 GB set: "Too large." at once; the connection stays open and
    // swallows what comes.
    let mut c = connect(p);
    c.write_all(&req(0x01, &f, b"k", &[]).body_len(0x7fff_fff0).bytes(&[]))
        .unwrap();
    let too_large = response(0x01, 3, 0, 0, &[], &[], b"Too large.");
    let mut r = [0u8; 34];
    c.read_exact(&mut r).unwrap();
    assert_eq!(&r[..], &too_large[..]);
    let chunk = vec![0x80u8; 1 << 20];
    for _ in 0..64 {
        c.write_all(&chunk).unwrap();
    }
    // A 4 GB one: memcached's count of bytes to swallow is an int, so it
    // swallows nothing and reads on; memcrab does the same.
    let (got, _) = exchange(
        p,
        &[
            req(0x01, &f, b"k", &[]).body_len(u32::MAX).bytes(&[]),
            req(0x0b, &[], &[], &[]).bytes(&[]),
        ]
        .concat(),
        500,
    );
    assert_eq!(
        got,
        [too_large, response(0x0b, 0, 0, 0, &[], &[], b"1.6.18")].concat()
    );
    // Key lengths up to 65535, extras lengths up to 255, bodies up to
    // 4 GB, every opcode: refused from the header.
    let mut g = Rng(7);
    for _ in 0..500 {
        let mut h = req(g.below(256) as u8, &[], &[], &[]).bytes(&[]);
        h[2..4].copy_from_slice(&(g.below(65536) as u16).to_be_bytes());
        h[4] = g.below(256) as u8;
        h[8..12].copy_from_slice(&(g.next() as u32).to_be_bytes());
        let mut c = connect(p);
        let _ = c.write_all(&h);
        c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let _ = c.read(&mut [0u8; 256]);
    }
    assert!(srv.exited().is_none(), "memcrab died");
    let after = rss_kb(srv.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    // Still serving.
    let (got, _) = exchange(p, &req(0x0b, &[], &[], &[]).bytes(&[]), 500);
    assert_eq!(got, response(0x0b, 0, 0, 0, &[], &[], b"1.6.18"));
}

/// Starts `bin` with -vv, stderr piped; returns the child (the caller
/// kills and waits for it), its port and the stderr reader.
#[allow(clippy::zombie_processes)]
fn start_vv(bin: &str) -> (std::process::Child, u16, std::process::ChildStderr) {
    start_verbose(bin, "-vv")
}

/// [`start_vv`] with another verbosity flag.
#[allow(clippy::zombie_processes)]
fn start_verbose(bin: &str, flag: &str) -> (std::process::Child, u16, std::process::ChildStderr) {
    // One file per start: tests run in parallel in this process.
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let port_file = std::env::temp_dir().join(format!(
        "memcrab-vv-{}-{}.port",
        std::process::id(),
        STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&port_file);
    let mut cmd = std::process::Command::new(bin);
    cmd.args([flag, "-l", "127.0.0.1", "-p", "-1", "-U", "0"])
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if bin.contains("memcached") {
        cmd.args(["-u", "root"]);
    }
    let mut child = cmd.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(port) = std::fs::read_to_string(&port_file).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("TCP INET: "))
                .and_then(|p| p.trim().parse().ok())
        }) {
            let _ = std::fs::remove_file(&port_file);
            return (child, port, err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{bin} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a child's stderr to its end, on a thread.
fn read_all(mut err: std::process::ChildStderr) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// The log lines `keep` selects, each line's descriptor after its `<` or
/// `>` replaced by N.
fn masked_lines(text: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    text.lines()
        .filter(|l| keep(l))
        .map(|l| {
            let dir = &l[..1];
            let rest = l[1..].trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{dir}N{rest}")
        })
        .collect()
}

/// `-vv` dumps binary headers as memcached does (descriptors aside).
#[test]
fn vv_dumps_binary_traffic_as_memcached_does() {
    let memcached = require_memcached();
    let mut logs = Vec::new();
    for bin in [memcached.as_str(), MEMCRAB] {
        let (mut child, port, err) = start_vv(bin);
        let reader = read_all(err);
        let bytes = [
            req(0x01, &set_extras(5, 0), b"k", b"v").bytes(&[]),
            req(0x00, &[], b"k", &[]).opaque(7).bytes(&[]),
            req(0x00, &[], b"zz", &[]).bytes(&[]),
        ]
        .concat();
        let (got, _) = exchange(port, &bytes, 300);
        assert_eq!(got.len(), 3 * 24 + 5 + 9);
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill();
        let _ = child.wait();
        let text = reader.join().unwrap();
        // The dump lines, the descriptor taken out.
        let lines = masked_lines(&text, |l| {
            l.contains("0x") || l.contains("Writing") || l.contains("Read binary")
        });
        logs.push(lines);
    }
    assert!(logs[0].len() >= 6 * 7, "{:?}", logs[0]);
    assert_eq!(logs[1], logs[0]);
}

/// `-vv` on a text session: the request lines and memcached's reply
/// lines (`>N STORED`, `>N sending key k`, `>N END`, `>N NOREPLY ...`),
/// line for line with memcached (descriptors aside).
#[test]
fn vv_logs_a_text_session_as_memcached_does() {
    verbose_session_agrees("-vv");
}

/// `-vvv` adds a line per internal fetch (`> FOUND KEY k`, `> NOT FOUND
/// k`, `-nuked by expire|flush`): the same as memcached's. (Its state
/// changes, `N: going from A to B`, are memcrab's own and left out.)
#[test]
fn vvv_logs_fetches_as_memcached_does() {
    verbose_session_agrees("-vvv");
}

fn verbose_session_agrees(flag: &str) {
    let memcached = require_memcached();
    let mut logs = Vec::new();
    for bin in [memcached.as_str(), MEMCRAB] {
        let (mut child, port, err) = start_verbose(bin, flag);
        let reader = read_all(err);
        let mut c = common::Client::connect(port);
        for (req, end) in [
            (&b"set a 0 0 1\r\nx\r\n"[..], &b"\r\n"[..]),
            (b"get a nope\r\n", b"END\r\n"),
            (b"gets a\r\n", b"END\r\n"),
            (b"gat 10 a\r\n", b"END\r\n"),
            (b"delete a\r\n", b"\r\n"),
            (b"delete a\r\n", b"\r\n"),
            (b"incr n 1\r\n", b"\r\n"),
            (b"set n 0 0 1 noreply\r\n5\r\nincr n 2\r\n", b"\r\n"),
            (b"incr n 1 noreply\r\ndecr n 1\r\n", b"\r\n"),
            (b"touch n 10\r\n", b"\r\n"),
            (b"append nope 0 0 1\r\nx\r\n", b"\r\n"),
            (b"cas n 0 0 1 1\r\ny\r\n", b"\r\n"),
            (b"bogus\r\n", b"\r\n"),
            (b"set k 0 0 notanumber\r\n", b"\r\n"),
            (b"version\r\n", b"\r\n"),
            (b"verbosity 2\r\n", b"\r\n"),
            (b"flush_all\r\n", b"\r\n"),
            (b"stats reset\r\n", b"\r\n"),
            (b"stats\r\n", b"END\r\n"),
            (b"mn\r\n", b"\r\n"),
            (b"set e 0 -1 1\r\nx\r\nget e\r\n", b"END\r\n"),
        ] {
            c.call(req, end);
        }
        c.send(b"quit\r\n");
        assert!(c.is_closed(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill();
        let _ = child.wait();
        let text = reader.join().unwrap();
        let lines = masked_lines(&text, |l| {
            (l.starts_with('<') || l.starts_with('>')) && !l.contains("server listening")
        });
        logs.push(lines);
    }
    assert!(logs[0].len() > 40, "{:#?}", logs[0]);
    assert_eq!(logs[1], logs[0]);
}
