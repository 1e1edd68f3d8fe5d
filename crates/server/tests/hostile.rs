//! Hostile clients, each against the bound memcrab promises. Every test
//! starts memcrab, stores known keys, connects a probe (a well-behaved
//! client doing a set and a get every 10 ms from before the attack to after
//! it), attacks, then checks:
//!
//! ```text
//!   peak RSS (VmHWM)  <= the test's bound: 16 MB for the server and what
//!                        it stores, plus the connection budget (8 MB where
//!                        a test sets it; 24 MB in all where it does not,
//!                        32 MB for random commands, which store values),
//!                        or -m where values in flight fill item memory
//!   probe             every round trip answered right, none slower than 2 s
//!   known keys        unchanged (the attack never touches them)
//!   afterwards        the server answers a new client; connections gone
//! ```
//!
//! and prints one line: `hostile <name>: peak RSS .. MB (bound ..), probe
//! .. round trips, worst .. ms`. Counts and times are small enough for
//! CI; `MEMCRAB_HOSTILE_SCALE=10` (scripts/hostile) multiplies the
//! attackers. The tests run one at a time (a lock), so that one attack's
//! load does not slow another's probe.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{s, stat, stat_in, Rng, Server};

const MB: u64 = 1 << 20;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The start of every test: the lock, the server with `flags`, and an
/// admin connection that has stored the known keys.
fn prepare(flags: &[&str]) -> (MutexGuard<'static, ()>, Server, common::Client) {
    let one = one_at_a_time();
    let srv = Server::memcrab(flags);
    let mut admin = srv.connect();
    set_known(&mut admin);
    (one, srv, admin)
}

/// Stores `n` values of `size` bytes as `<prefix>:<i>`; returns the `get`
/// line that asks for all of them.
fn set_many(admin: &mut common::Client, prefix: &str, n: usize, size: usize) -> String {
    let value = vec![b'v'; size];
    for i in 0..n {
        let mut req = format!("set {prefix}:{i} 0 0 {size}\r\n").into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        assert_eq!(admin.roundtrip(&req), b"STORED\r\n");
    }
    let keys: String = (0..n).map(|i| format!(" {prefix}:{i}")).collect();
    format!("get{keys}\r\n")
}

fn scale() -> usize {
    std::env::var("MEMCRAB_HOSTILE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn known_value(i: usize) -> Vec<u8> {
    format!("known value {i} ").repeat(8).into_bytes()
}

const KNOWN: usize = 200;

fn set_known(c: &mut common::Client) {
    let mut req = Vec::new();
    for i in 0..KNOWN {
        let v = known_value(i);
        req.extend_from_slice(format!("set known:{i} {i} 0 {}\r\n", v.len()).as_bytes());
        req.extend_from_slice(&v);
        req.extend_from_slice(b"\r\n");
    }
    let got = c.roundtrip(&req);
    assert_eq!(got, b"STORED\r\n".repeat(KNOWN));
}

fn check_known(c: &mut common::Client) {
    for i in 0..KNOWN {
        let v = known_value(i);
        let mut want = format!("VALUE known:{i} {i} {}\r\n", v.len()).into_bytes();
        want.extend_from_slice(&v);
        want.extend_from_slice(b"\r\nEND\r\n");
        let got = c.call(format!("get known:{i}\r\n").as_bytes(), b"END\r\n");
        assert_eq!(s(&got), s(&want), "known key {i} changed");
    }
}

/// A client that keeps doing a set and a get while an attack goes on.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, Duration, Vec<String>)>,
}

impl Probe {
    fn start(srv: &Server) -> Probe {
        let mut c = srv.connect();
        assert_eq!(c.roundtrip(b"version\r\n"), b"VERSION 1.6.18\r\n");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut trips, mut worst, mut failures) = (0u64, Duration::ZERO, Vec::new());
            while !flag.load(Ordering::Relaxed) || trips == 0 {
                let v = format!("{:08}", trips % 100_000_000);
                let k = trips % 16;
                let req = format!("set probe:{k} 0 0 8\r\n{v}\r\nget probe:{k}\r\n");
                let want = format!("STORED\r\nVALUE probe:{k} 0 8\r\n{v}\r\nEND\r\n");
                let t = Instant::now();
                let got = c.call(req.as_bytes(), b"END\r\n");
                let took = t.elapsed();
                worst = worst.max(took);
                if got != want.as_bytes() && failures.len() < 5 {
                    failures.push(format!("round trip {trips}: {:?}", s(&got)));
                }
                trips += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            (trips, worst, failures)
        });
        Probe { stop, thread }
    }

    /// Stops the probe, checks it was served throughout, and prints the
    /// test's line.
    fn finish(self, name: &str, srv: &Server, bound: u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (trips, worst, failures) = self.thread.join().unwrap();
        let peak = peak_rss(srv.pid());
        eprintln!(
            "hostile {name}: peak RSS {:.1} MB (bound {:.1} MB), probe {trips} round trips, worst {} ms",
            peak as f64 / MB as f64,
            bound as f64 / MB as f64,
            worst.as_millis()
        );
        assert!(failures.is_empty(), "{name}: the probe got {failures:?}");
        assert!(
            worst < Duration::from_secs(2),
            "{name}: a probe waited {worst:?}"
        );
        assert!(peak <= bound, "{name}: peak RSS {peak} past {bound}");
        let mut c = srv.connect();
        check_known(&mut c);
        assert_eq!(c.roundtrip(b"set after 0 0 2\r\nok\r\n"), b"STORED\r\n");
    }
}

/// Waits until `stats curr_connections` is at most `n` (the attackers
/// have gone), or fails after 10 s.
fn connections_settle(srv: &Server, n: u64) {
    let mut c = srv.connect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = stat(&mut c, "curr_connections");
        if now <= n {
            return;
        }
        assert!(Instant::now() < deadline, "{now} connections left");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rounds of an attack: at least `min`, and on for 2 s (times the scale)
/// so that the probe sees it.
fn rounds(min: usize) -> impl Iterator<Item = usize> {
    let until = Instant::now() + Duration::from_secs(2 * scale() as u64);
    (0..).take_while(move |&r| r < min * scale() || Instant::now() < until)
}

fn connect_raw(port: u16) -> Option<TcpStream> {
    TcpStream::connect(("127.0.0.1", port)).ok()
}

/// `-c 100`: 20 clients a round, for 2 s, connect past the limit and
/// each sends a request; those over it get memcached's refusal and are
/// closed. The admitted ones hold their slots, so the flood never ends
/// while the probe is served.
#[test]
fn flood_past_the_connection_limit() {
    let (_one, srv, mut admin) = prepare(&["-c", "100", "-m", "64"]);
    let probe = Probe::start(&srv);
    let mut held = Vec::new();
    let (mut refused, mut served) = (0, 0);
    for _ in rounds(20) {
        for _ in 0..20 {
            let Some(mut c) = connect_raw(srv.port) else {
                continue;
            };
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = c.write_all(b"version\r\n");
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).unwrap_or(0);
            match &buf[..n] {
                b"VERSION 1.6.18\r\n" => {
                    served += 1;
                    held.push(c);
                }
                b"ERROR Too many open connections\r\n" => refused += 1,
                // Refused and closed before it read our request: the close
                // may come as a reset, which can take the message with it.
                b"" => refused += 1,
                other => panic!("a flooding client got {:?}", s(other)),
            }
        }
    }
    assert!(
        refused > 0 && served > 0,
        "{served} served, {refused} refused"
    );
    assert_eq!(stat(&mut admin, "rejected_connections"), refused);
    drop(held);
    drop(admin);
    connections_settle(&srv, 3);
    probe.finish("flood past -c", &srv, 24 * MB);
}

/// 400 connections each send a `set` line one byte at a time, 20 ms
/// apart, never finishing it: they hold no more than their small buffers.
#[test]
fn slowloris() {
    let limit = (400 * scale() + 100).to_string();
    let (_one, srv, mut admin) = prepare(&["-m", "64", "-c", &limit]);
    let probe = Probe::start(&srv);
    let mut conns: Vec<TcpStream> = (0..400 * scale())
        .filter_map(|_| connect_raw(srv.port))
        .collect();
    let line = b"set slow 0 0 100000000 and some more tokens";
    for &b in line.iter().take(40) {
        for c in &mut conns {
            let _ = c.write_all(&[b]);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stat(&mut admin, "curr_connections"), conns.len() as u64 + 2);
    drop(conns);
    connections_settle(&srv, 3);
    probe.finish("slowloris", &srv, 24 * MB);
}

/// 200 connections each send the head of a 1 MB value and half of it,
/// then stall. Each value takes its item memory as its bytes come, as in
/// memcached: the stalled halves hold at most `-m` (64 MB), those past it
/// are refused as memcached refuses a value with no memory for it, and
/// the read buffers hold none of it.
#[test]
fn half_sent_values() {
    let (_one, srv, mut admin) = prepare(&["-m", "64", "-o", "read_buf_mem_limit=8"]);
    let probe = Probe::start(&srv);
    let half = vec![b'h'; 500_000];
    let conns: Vec<TcpStream> = (0..200 * scale())
        .filter_map(|i| {
            let mut c = connect_raw(srv.port)?;
            c.write_all(format!("set half:{i} 0 0 1000000\r\n").as_bytes())
                .ok()?;
            c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = c.write_all(&half);
            Some(c)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(stat(&mut admin, "read_buf_bytes") <= 8 * MB);
    drop(conns);
    connections_settle(&srv, 3);
    let mut c = srv.connect();
    let st = s(&c.call(b"stats\r\n", b"END\r\n"));
    let held = stat_in(&st, "read_buf_bytes") - stat_in(&st, "read_buf_bytes_free");
    assert!(held <= 16 * 1024, "{held} bytes of input still held");
    // 100 MB were sent in halves; -m (64 MB) held what it could, the rest
    // was refused; 16 MB for the server itself (memcached: 104 MB).
    probe.finish("half-sent values", &srv, 64 * MB + 16 * MB);
}

/// 50 connections each ask for 100 values of 20 KB (2 MB of replies)
/// and read none of it; with an 8 MB budget the replies owed stay within
/// it. Then each reads its reply slowly, in full and right.
#[test]
fn slow_readers_of_large_multigets() {
    let (_one, srv, mut admin) = prepare(&["-m", "64", "-o", "read_buf_mem_limit=8"]);
    let get = set_many(&mut admin, "big", 100, 20_000);
    let reply_len: usize = (0..100)
        .map(|i| format!("VALUE big:{i} 0 20000\r\n").len() + 20_002)
        .sum::<usize>()
        + 5;
    let probe = Probe::start(&srv);
    let mut conns: Vec<TcpStream> = (0..50 * scale())
        .filter_map(|_| {
            let mut c = connect_small_window(srv.port)?;
            c.write_all(get.as_bytes()).ok()?;
            Some(c)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let owed = stat(&mut admin, "response_obj_bytes");
    assert!(owed <= 8 * MB, "{owed} bytes of replies held");
    for c in conns.iter_mut().take(10) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while got.len() < reply_len {
            let n = c.read(&mut buf).expect("the rest of the reply");
            assert!(n > 0, "closed after {} of {reply_len} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), reply_len);
        assert!(got.ends_with(b"\r\nEND\r\n"));
    }
    drop(conns);
    drop(admin);
    connections_settle(&srv, 2);
    probe.finish("slow multiget readers", &srv, 8 * MB + 16 * MB);
}

/// A connection with a small receive buffer (set before connecting, so
/// the window scale fits it), so that an unread reply stays in the server.
fn connect_small_window(port: u16) -> Option<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    sock.set_recv_buffer_size(4096).ok()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect(&addr.into()).ok()?;
    Some(sock.into())
}

/// 10 rounds of 30 connections that ask for 2 MB of replies, read a
/// little and reset the connection (RST, SO_LINGER 0) in the middle of
/// it. Nothing of theirs is left afterwards: no connection, no reply
/// bytes, RSS back near where it started.
#[test]
fn resets_in_the_middle_of_replies() {
    let (_one, srv, mut admin) = prepare(&["-m", "64"]);
    let get = set_many(&mut admin, "r", 20, 100_000);
    let probe = Probe::start(&srv);
    let before = common::rss_kb(srv.pid());
    for _ in 0..10 * scale() {
        let conns: Vec<TcpStream> = (0..30)
            .filter_map(|_| {
                let mut c = connect_raw(srv.port)?;
                c.write_all(get.as_bytes()).ok()?;
                Some(c)
            })
            .collect();
        for mut c in conns {
            let mut buf = [0u8; 1000];
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = c.read(&mut buf);
            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
        }
    }
    drop(admin);
    connections_settle(&srv, 2);
    let mut c = srv.connect();
    assert_eq!(stat(&mut c, "response_obj_bytes"), 0);
    std::thread::sleep(Duration::from_millis(1500));
    let after = common::rss_kb(srv.pid());
    eprintln!("resets: RSS {before} kB before, {after} kB after");
    assert!(after < before + 16 * 1024, "RSS {before} kB -> {after} kB");
    probe.finish("resets mid-reply", &srv, 24 * MB);
}

/// 16 connections send pieces (2 s, at least 2,000 each) of random bytes and random
/// command tokens (keys from their own names: `known:` is never among
/// them, nor `flush_all`); the known keys must come through unchanged.
#[test]
fn random_bytes_and_tokens_leave_known_keys_alone() {
    let (_one, srv, admin) = prepare(&["-m", "64", "-I", "2m"]);
    let probe = Probe::start(&srv);
    let words: &[&[u8]] = &[
        b"get ",
        b"gets ",
        b"set ",
        b"add ",
        b"replace ",
        b"append ",
        b"prepend ",
        b"cas ",
        b"incr ",
        b"decr ",
        b"delete ",
        b"touch ",
        b"gat ",
        b"gats ",
        b"mg ",
        b"ms ",
        b"md ",
        b"ma ",
        b"mn",
        b"me ",
        b"stats ",
        b"version",
        b"quit",
        b"shutdown",
        b"lru_crawler ",
        b"slabs ",
        b"watch ",
        b"cache_memlimit ",
        b"r:",
        b"x ",
        b"y ",
        b"0 ",
        b"1 ",
        b"-1 ",
        b"4294967296 ",
        b"99999999999999999999 ",
        b"noreply",
        b" ",
        b"\r\n",
        b"\n",
        b"\0",
        b"\x80",
        b"v ",
        b"q ",
        b"T1 ",
        b"N5 ",
        b"MA ",
        b"b ",
    ];
    let threads: Vec<_> = (0..16 * scale())
        .map(|t| {
            let port = srv.port;
            let words = words.to_vec();
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ t as u64);
                let mut c = connect_raw(port).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut drain = c.try_clone().unwrap();
                let reader = std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while matches!(drain.read(&mut buf), Ok(n) if n > 0) {}
                });
                for _ in rounds(2000) {
                    let mut junk = Vec::new();
                    for _ in 0..rng.below(40) {
                        if rng.chance(60) {
                            let w = words[rng.below(words.len() as u64) as usize];
                            junk.extend_from_slice(w);
                        } else {
                            junk.push(rng.next() as u8);
                        }
                    }
                    if c.write_all(&junk).is_err() {
                        // Closed by the server (quit, a bad line): again.
                        c = match connect_raw(port) {
                            Some(n) => n,
                            None => break,
                        };
                        c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                    }
                }
                drop(c);
                let _ = reader;
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(admin);
    probe.finish("random bytes and tokens", &srv, 32 * MB);
}

/// Binary headers that lie: key and extras longer than the body, bodies
/// of 2^31 and 2^32 - 1 bytes, unknown opcodes, a bad magic; with data
/// streamed after the longest. memcrab answers or closes, takes no memory
/// for the claimed lengths, and serves the probe.
#[test]
fn malformed_binary_headers_and_oversized_lengths() {
    let (_one, srv, admin) = prepare(&["-m", "64"]);
    let probe = Probe::start(&srv);
    let header = |magic: u8, op: u8, key: u16, extras: u8, body: u32| {
        let mut h = vec![0u8; 24];
        h[0] = magic;
        h[1] = op;
        h[2..4].copy_from_slice(&key.to_be_bytes());
        h[4] = extras;
        h[8..12].copy_from_slice(&body.to_be_bytes());
        h
    };
    let mut rng = Rng(77);
    let chunk = vec![b'z'; 1 << 20];
    for round in rounds(200) {
        let Some(mut c) = connect_raw(srv.port) else {
            continue;
        };
        c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let h = match round % 6 {
            0 => header(0x80, 0x01, 100, 8, 50),
            1 => header(0x80, 0x01, 10, 8, 1 << 31),
            2 => header(0x80, 0x01, 10, 8, u32::MAX),
            3 => header(
                0x80,
                rng.next() as u8,
                rng.next() as u16,
                rng.next() as u8,
                rng.next() as u32,
            ),
            4 => header(0x80, 0x00, 65535, 255, 100),
            _ => header(rng.next() as u8 | 0x80, 0x01, 1, 0, 1),
        };
        let _ = c.write_all(&h);
        if round % 6 == 2 && round < 20 {
            // Stream 16 MB after a 4 GB claim: swallowed or refused,
            // never held.
            for _ in 0..16 {
                if c.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    }
    // The same in text and meta: lengths past 2^31, 2^32 and 2^64,
    // answered as memcached answers them (4294967296 wraps to 0 in its
    // 32-bit length, so both wait for an empty value).
    let memcached = Server::start(&common::require_memcached(), &[]);
    for line in [
        "set t 0 0 2147483648\r\n",
        "set t 0 0 2147483647\r\n",
        "set t 0 0 4294967295\r\n",
        "set t 0 0 4294967296\r\n",
        "set t 0 0 18446744073709551616\r\n",
        "set t 0 0 -1\r\n",
        "ms t 4294967296\r\n",
        "ms t 2147483648 T0\r\n",
    ] {
        let answer = |srv: &Server| {
            let mut c = srv.connect();
            c.s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            c.call(line.as_bytes(), b"\r\n")
        };
        assert_eq!(s(&answer(&srv)), s(&answer(&memcached)), "{line:?}");
    }
    drop(admin);
    connections_settle(&srv, 2);
    probe.finish("malformed binary headers, oversized lengths", &srv, 24 * MB);
}
