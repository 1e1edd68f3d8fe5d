//! Seeing inside the cache (issue 19), against Debian's memcached 1.6.18:
//! per-prefix stats (`stats detail`, `-D`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

/// Sends each chunk followed by `mn` and returns what came back before
/// `MN` for each.
fn exchange(port: u16, chunks: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut c = common::Client::connect(port);
    chunks
        .iter()
        .map(|chunk| {
            let mut req = chunk.clone();
            req.extend_from_slice(b"mn\r\n");
            let mut out = c.call(&req, b"MN\r\n");
            assert!(out.ends_with(b"MN\r\n"), "{}", common::s(&out));
            out.truncate(out.len() - 4);
            out
        })
        .collect()
}

/// What each protocol's commands count, per prefix, the dump's order
/// (memcached's hash table), `on`/`off`/`reset` and the usage error:
/// the same bytes from both servers, with the default delimiter and `-D`.
#[test]
fn stats_detail_agrees_with_memcached() {
    let memcached = common::require_memcached();
    let mut body = Vec::new();
    for i in 0..60 {
        let k = format!("p{}:k{i}", i % 23);
        body.extend(format!("set {k} 0 0 1\r\nx\r\nget {k} nop:x q\r\n").bytes());
        if i % 3 == 0 {
            body.extend(format!("delete {k}\r\n").bytes());
        }
        if i % 5 == 0 {
            body.extend(format!("touch {k} 10\r\ngat 10 {k}\r\ngats 10 {k}\r\n").bytes());
        }
        if i % 7 == 0 {
            body.extend(format!("incr {k} 1\r\nmg {k} v\r\nms {k} 1\r\ny\r\nmd {k} q\r\n").bytes());
        }
    }
    // A store refused as too large still counts as a set; keys with an
    // empty prefix, only a delimiter, no delimiter.
    body.extend(b"set a:b 0 0 1100000\r\n");
    body.extend(vec![b'v'; 1_100_000]);
    body.extend(b"\r\nget ::x :y plain\r\nappend p1:k1 0 0 1\r\nz\r\n");
    body.extend(b"cas p2:k2 0 0 1 999\r\nw\r\nprepend p/q 0 0 1\r\nz\r\nget p/q\r\n");
    let script: Vec<Vec<u8>> = [
        &b"stats detail dump\r\n"[..],
        b"stats detail on\r\n",
        &body,
        b"stats detail dump\r\n",
        b"stats detail off\r\nget p1:zz\r\nstats detail dump\r\n",
        b"stats detail\r\nstats detail foo\r\n",
        b"stats reset\r\nstats detail dump\r\n",
    ]
    .iter()
    .map(|c| c.to_vec())
    .collect();
    for flags in [&[][..], &["-D", "/"][..]] {
        let a = Server::memcrab(flags);
        let b = Server::start(&memcached, flags);
        let got = exchange(a.port, &script);
        let want = exchange(b.port, &script);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "{flags:?} step {i}:\nmemcrab:   {}\nmemcached: {}",
                common::s(g),
                common::s(w)
            );
        }
        let (prefix, d) = if flags.is_empty() {
            ("PREFIX p12 get 5 hit 5 set 3 del 1", ":")
        } else {
            ("PREFIX p get 1 hit 0 set 1 del 0", "/")
        };
        assert!(
            common::s(&got[3]).contains(prefix),
            "{}",
            common::s(&got[3])
        );
        let mut c = a.connect();
        let st = common::s(&c.call(b"stats settings\r\n", b"END\r\n"));
        assert!(
            st.contains(&format!("STAT stat_key_prefix {d}\r\n")),
            "{st}"
        );
    }
}

/// A binary request: magic, opcode, key length, body.
fn bin(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut r = vec![0x80, opcode];
    r.extend((key.len() as u16).to_be_bytes());
    r.push(extras.len() as u8);
    r.extend([0, 0, 0]);
    r.extend(((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    r.extend([0; 12]);
    r.extend(extras);
    r.extend(key);
    r.extend(value);
    r
}

/// Reads binary responses until one with an empty key and body after a
/// Stat (the list's end) or a NoOp's.
fn read_until_noop(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // A NoOp response: magic 0x81, opcode 0x0a.
        let mut i = 0;
        let mut done = false;
        while i + 24 <= out.len() {
            let body =
                u32::from_be_bytes([out[i + 8], out[i + 9], out[i + 10], out[i + 11]]) as usize;
            if out[i + 1] == 0x0a {
                done = true;
            }
            i += 24 + body;
        }
        if done && i == out.len() {
            return out;
        }
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed");
        out.extend_from_slice(&buf[..n]);
    }
}

/// Binary `Stat` with `detail on`, `detail dump` (the text dump as one
/// stat named `detailed`), `detail off` and a bad subcommand, and what
/// binary commands count: the same bytes from both servers.
#[test]
fn binary_stats_detail_agrees_with_memcached() {
    let memcached = common::require_memcached();
    let extras = [0u8, 0, 0, 0, 0, 0, 0, 0];
    let mut req = bin(0x10, b"detail on", &[], &[]);
    for i in 0..20u8 {
        let k = format!("b{}:k{i}", i % 4);
        req.extend(bin(0x01, k.as_bytes(), &extras, b"v")); // Set
        req.extend(bin(0x0c, k.as_bytes(), &[], &[])); // GetK
        req.extend(bin(0x09, b"miss:x", &[], &[])); // GetQ
        if i % 3 == 0 {
            req.extend(bin(0x04, k.as_bytes(), &[], &[])); // Delete
            req.extend(bin(0x1c, k.as_bytes(), &[0, 0, 0, 10], &[])); // Touch
            req.extend(bin(0x0e, k.as_bytes(), &[], b"a")); // Append
            req.extend(bin(0x05, k.as_bytes(), &[0; 20], &[])); // Increment
        }
    }
    req.extend(bin(0x10, b"detail dump", &[], &[]));
    req.extend(bin(0x10, b"detail off", &[], &[]));
    req.extend(bin(0x10, b"detail what", &[], &[]));
    req.extend(bin(0x0a, &[], &[], &[]));
    let mut got = Vec::new();
    for bin_path in [common::MEMCRAB, memcached.as_str()] {
        let srv = Server::start(bin_path, &[]);
        let mut s = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&req).unwrap();
        got.push(read_until_noop(&mut s));
    }
    assert!(
        got[0] == got[1],
        "memcrab:   {:?}\nmemcached: {:?}",
        String::from_utf8_lossy(&got[0]),
        String::from_utf8_lossy(&got[1])
    );
    assert!(String::from_utf8_lossy(&got[0]).contains("PREFIX b1 get"));
}
