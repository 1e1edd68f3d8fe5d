//! The slab engine seen from a client: the class table `-vv` prints,
//! `-L`, the `-m` ceiling, `slabs reassign` / `slabs automove`, and values
//! held by a slow reader while their item is replaced and memory churned.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{s, Server, MEMCRAB};

#[test]
fn vv_prints_the_class_table() {
    let mut child = Command::new(MEMCRAB)
        .args([
            "-vv",
            "-p",
            "-1",
            "-U",
            "0",
            "-l",
            "127.0.0.1",
            "-n",
            "48",
            "-f",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    // Whatever it prints, the server is stopped within 10 s, so a missing
    // line fails the test instead of hanging it.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        })
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Up to the end of class 13's line (a read may stop inside it).
    let complete = |t: &str| {
        t.find("slab class  13:")
            .is_some_and(|i| t[i..].contains('\n'))
    };
    while !complete(&s(&got)) {
        let n = err.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let text = s(&got);
    assert!(
        text.starts_with("slab class   1: chunk size        72 perslab   14563\n"),
        "{text}"
    );
    assert!(
        text.contains("slab class   2: chunk size       144 perslab    7281\n"),
        "{text}"
    );
    assert!(
        text.contains("slab class  13: chunk size    524288 perslab       2\n"),
        "{text}"
    );
}

#[test]
fn memory_limit_ceiling_is_refused_with_a_reason() {
    let out = Command::new(MEMCRAB)
        .args(["-m", "262145", "-p", "-1", "-U", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        s(&out.stderr).contains("not supported"),
        "{}",
        s(&out.stderr)
    );
}

#[test]
fn largest_memory_limit_and_large_pages_start_and_serve() {
    for args in [&["-m", "262144"][..], &["-L", "-m", "16"][..]] {
        let srv = Server::memcrab(args);
        let mut c = srv.connect();
        assert_eq!(
            s(&c.roundtrip(b"set a 0 0 1\r\nx\r\nget a\r\n")),
            "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
            "{args:?}"
        );
    }
}

#[test]
fn slabs_commands() {
    let srv = Server::memcrab(&["-m", "8"]);
    let mut c = srv.connect();
    // Fill a small class past one page.
    let mut req = Vec::new();
    for i in 0..30_000 {
        req.extend_from_slice(format!("set k{i} 0 0 10 noreply\r\n0123456789\r\n").as_bytes());
    }
    c.send(&req);
    let st = s(&c.call(b"stats slabs\r\n", b"END\r\n"));
    let class = st
        .lines()
        .find_map(|l| {
            l.strip_prefix("STAT ")
                .and_then(|l| l.strip_suffix(":total_pages 3"))
        })
        .unwrap_or_else(|| panic!("a class with 3 pages: {st}"))
        .to_string();
    for (cmd, want) in [
        (
            format!("slabs reassign {class} {class}"),
            "SAME src and dst class are identical",
        ),
        (
            format!("slabs reassign {class} 99"),
            "BADCLASS invalid src or dst class id",
        ),
        (
            "slabs reassign 30 1".into(),
            "NOSPARE source class has no spare pages",
        ),
        (
            "slabs reassign x 1".into(),
            "CLIENT_ERROR bad command line format",
        ),
        ("slabs reassign 1".into(), "ERROR"),
        ("slabs automove 3".into(), "ERROR"),
        ("slabs automove 0".into(), "OK"),
        (format!("slabs reassign {class} 30"), "OK"),
    ] {
        assert_eq!(
            s(&c.call(format!("{cmd}\r\n").as_bytes(), b"\r\n")),
            format!("{want}\r\n"),
            "{cmd}"
        );
    }
    let st = s(&c.call(b"stats\r\n", b"END\r\n"));
    assert!(st.contains("STAT slabs_moved 1\r\n"), "{st}");
    let slabs = s(&c.call(b"stats slabs\r\n", b"END\r\n"));
    assert!(slabs.contains("STAT 30:total_pages 1\r\n"), "{slabs}");
    assert!(
        slabs.contains(&format!("STAT {class}:total_pages 2\r\n")),
        "{slabs}"
    );
    let set = s(&c.call(b"stats settings\r\n", b"END\r\n"));
    assert!(set.contains("STAT slab_reassign yes\r\n"), "{set}");
    assert!(set.contains("STAT slab_automove 0\r\n"), "{set}");
    // noreply is honoured
    c.send(b"slabs automove 1 noreply\r\n");
    assert_eq!(
        s(&c.call(b"version\r\n", b"\r\n")).split(' ').next(),
        Some("VERSION")
    );
}

#[test]
fn a_value_being_sent_survives_replacement_and_churn() {
    let srv = Server::memcrab(&["-m", "4"]);
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut w = srv.connect();
    let mut req = format!("set big 0 0 {}\r\n", big.len()).into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n");
    assert_eq!(s(&w.roundtrip(&req)), "STORED\r\n");
    // A reader that asks many times and reads nothing yet: the replies
    // wait in memcrab, holding the item.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    // 60 replies of 300 KB (18 MB) are more than the kernel buffers hold.
    slow.write_all(&b"get big\r\n".repeat(60)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Replace it, then churn its class and others well past -m.
    let mut req = b"delete big\r\n".to_vec();
    for i in 0..40 {
        req.extend_from_slice(format!("set churn{i} 0 0 {}\r\n", big.len()).as_bytes());
        req.extend_from_slice(&vec![b'z'; big.len()]);
        req.extend_from_slice(b"\r\n");
    }
    w.send(&req);
    // Replies served before the delete carry the value; later ones miss.
    let header = format!("VALUE big 0 {}\r\n", big.len());
    let one = header.len() + big.len() + 7;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut hits, mut replies, mut pos) = (0, 0, 0);
    while replies < 60 {
        if got[pos..].starts_with(b"END\r\n") {
            pos += 5;
            replies += 1;
            continue;
        }
        if got.len() >= pos + one {
            let r = &got[pos..pos + one];
            assert!(r.starts_with(header.as_bytes()), "{:?}", s(&r[..40]));
            assert!(
                r[header.len()..header.len() + big.len()] == big[..],
                "reply {replies} changed under the reader"
            );
            assert!(r.ends_with(b"\r\nEND\r\n"));
            pos += one;
            hits += 1;
            replies += 1;
            continue;
        }
        let n = slow.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(hits >= 1, "the first get was answered before the delete");
    eprintln!("{hits} of 60 replies carried the value");
    assert_eq!(pos, got.len());
}

#[test]
fn reassign_disabled() {
    let srv = Server::memcrab(&["-o", "no_slab_reassign"]);
    let mut c = srv.connect();
    assert_eq!(
        s(&c.call(b"slabs reassign 1 2\r\n", b"\r\n")),
        "CLIENT_ERROR slab reassignment disabled\r\n"
    );
    assert_eq!(s(&c.call(b"slabs automove 2\r\n", b"\r\n")), "OK\r\n");
    let set = s(&c.call(b"stats settings\r\n", b"END\r\n"));
    assert!(set.contains("STAT slab_reassign no\r\n"), "{set}");
    assert!(set.contains("STAT slab_automove 2\r\n"), "{set}");
}

/// The bytes key `id` carries at length `len`: any reader can check them.
fn pattern(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((id as usize * 7 + len + i) % 26) as u8)
        .collect()
}

#[test]
fn many_clients_under_eviction_and_page_moves_read_only_what_was_written() {
    let srv = Server::memcrab(&["-m", "32", "-t", "4", "-o", "slab_automove=2"]);
    let port = srv.port;
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = common::Client::connect(port);
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                let mut rnd = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let (mut hits, mut oom) = (0u64, 0u64);
                for _ in 0..3000 {
                    let r = rnd();
                    if r % 10 < 4 {
                        let id = (r >> 8) % 10_000;
                        let len = if r % 100 < 5 {
                            100_000 + (r >> 20) as usize % 50_000
                        } else {
                            100 + (r >> 20) as usize % 8_000
                        };
                        let mut req = format!("set k{id} 0 0 {len}\r\n").into_bytes();
                        req.extend_from_slice(&pattern(id, len));
                        req.extend_from_slice(b"\r\n");
                        // Out of memory is allowed: a class of a few large
                        // chunks can have all of them on their way to
                        // readers (memcached fails the same way).
                        let got = c.roundtrip(&req);
                        assert!(
                            got == b"STORED\r\n"
                                || got == b"SERVER_ERROR out of memory storing object\r\n",
                            "{}",
                            s(&got[..got.len().min(80)])
                        );
                        oom += u64::from(got != b"STORED\r\n");
                    } else {
                        let ids: Vec<u64> = (0..3).map(|i| (r >> (8 + 14 * i)) % 10_000).collect();
                        let line = format!("get k{} k{} k{}\r\n", ids[0], ids[1], ids[2]);
                        let reply = c.roundtrip(line.as_bytes());
                        let mut pos = 0;
                        loop {
                            let rest = &reply[pos..];
                            if rest == b"END\r\n" {
                                break;
                            }
                            let nl = rest.windows(2).position(|w| w == b"\r\n").expect("a line");
                            let head = s(&rest[..nl]);
                            let f: Vec<&str> = head.split(' ').collect();
                            assert_eq!(f[0], "VALUE", "{head}");
                            let id: u64 = f[1][1..].parse().unwrap();
                            let len: usize = f[3].parse().unwrap();
                            let data = &rest[nl + 2..nl + 2 + len];
                            assert!(data == &pattern(id, len)[..], "k{id}: {len} bytes differ");
                            assert_eq!(&rest[nl + 2 + len..nl + 4 + len], b"\r\n");
                            pos += nl + 4 + len;
                            hits += 1;
                        }
                    }
                }
                (hits, oom)
            })
        })
        .collect();
    // Meanwhile pages move between classes on command, under the readers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut c = common::Client::connect(port);
            let mut ok = 0;
            let mut dst = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = c.call(format!("slabs reassign -1 {dst}\r\n").as_bytes(), b"\r\n");
                if reply == b"OK\r\n" {
                    ok += 1;
                }
                dst = dst % 30 + 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            ok
        })
    };
    let (hits, oom) = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reassigned = mover.join().unwrap();
    let mut c = srv.connect();
    let st = s(&c.call(b"stats\r\n", b"END\r\n"));
    let stat = |name: &str| common::stat_in(&st, name);
    assert!(hits > 100, "hits {hits}");
    assert!(stat("evictions") > 0, "{st}");
    assert!(
        reassigned > 0 && stat("slabs_moved") > 0,
        "{reassigned} reassigns: {st}"
    );
    // With every reader done, the chunks in use are the items', no more.
    let slabs = s(&c.call(b"stats slabs\r\n", b"END\r\n"));
    let items = s(&c.call(b"stats items\r\n", b"END\r\n"));
    for l in slabs.lines() {
        let Some((id, used)) = l
            .strip_prefix("STAT ")
            .and_then(|l| l.split_once(":used_chunks "))
        else {
            continue;
        };
        let number = items
            .lines()
            .find_map(|l| l.strip_prefix(&format!("STAT items:{id}:number ")))
            .unwrap_or("0");
        assert_eq!(
            used.trim(),
            number.trim(),
            "class {id}: chunks in use vs items"
        );
    }
    eprintln!(
        "{hits} values checked, {oom} sets out of memory, {} evictions, {} pages moved",
        stat("evictions"),
        stat("slabs_moved")
    );
}
