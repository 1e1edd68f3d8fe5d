//! Many clients at once on several server threads; every value read back
//! is checked against what that client wrote.

mod common;

use common::{s, Server};
use std::time::Duration;

#[test]
fn many_clients_read_back_their_own_writes() {
    let srv = Server::memcrab(&["-t", "4"]);
    let port = srv.port;
    let threads: Vec<_> = (0..32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = common::Client::connect(port);
                for i in 0..300u32 {
                    let key = format!("c{t}-k{}", i % 37);
                    let value = format!("{t}:{i}:{}", "v".repeat((i % 50) as usize));
                    let req = format!("set {key} {t} 0 {}\r\n{value}\r\n", value.len());
                    assert_eq!(c.roundtrip(req.as_bytes()), b"STORED\r\n");
                    let got = s(&c.roundtrip(format!("get {key}\r\n").as_bytes()));
                    let want = format!("VALUE {key} {t} {}\r\n{value}\r\nEND\r\n", value.len());
                    assert_eq!(got, want);
                }
                // A shared counter: every increment must be counted once.
                for _ in 0..100 {
                    let r = s(&c.roundtrip(b"incr shared 1\r\n"));
                    assert!(r.trim().parse::<u64>().is_ok(), "{r}");
                }
            })
        })
        .collect();
    let mut c = srv.connect();
    assert_eq!(c.roundtrip(b"set shared 0 0 1\r\n0\r\n"), b"STORED\r\n");
    for t in threads {
        t.join().unwrap();
    }
    let r = s(&c.roundtrip(b"get shared\r\n"));
    assert!(r.contains("\r\n3200"), "{r}");
    let st = s(&c.call(b"stats\r\n", b"END\r\n"));
    assert!(st.contains("STAT cmd_set 9601\r\n"), "{st}");
    assert!(st.contains("STAT incr_hits 3200\r\n"), "{st}");
}

#[test]
fn pipelined_clients_in_parallel() {
    let srv = Server::memcrab(&["-t", "3", "-R", "4"]);
    let port = srv.port;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = common::Client::connect(port);
                let mut req = Vec::new();
                let mut want = Vec::new();
                for i in 0..200 {
                    let v = format!("{t}-{i}");
                    req.extend_from_slice(
                        format!("set p{t}_{i} 0 0 {}\r\n{v}\r\nget p{t}_{i}\r\n", v.len())
                            .as_bytes(),
                    );
                    want.extend_from_slice(
                        format!("STORED\r\nVALUE p{t}_{i} 0 {}\r\n{v}\r\nEND\r\n", v.len())
                            .as_bytes(),
                    );
                }
                assert_eq!(s(&c.roundtrip(&req)), s(&want));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A binary request: header, extras, key, value.
fn bin(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, opcode];
    b.extend_from_slice(&(key.len() as u16).to_be_bytes());
    b.extend_from_slice(&[extras.len() as u8, 0, 0, 0]);
    b.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(extras);
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}

/// Reads binary responses until one with `last_opcode`; returns them as
/// (opcode, status, key, value).
fn bin_responses(c: &mut common::Client, last_opcode: u8) -> Vec<(u8, u16, Vec<u8>, Vec<u8>)> {
    use std::io::Read;
    let mut got = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        while got.len() >= 24 {
            let klen = u16::from_be_bytes([got[2], got[3]]) as usize;
            let elen = got[4] as usize;
            let body = u32::from_be_bytes(got[8..12].try_into().unwrap()) as usize;
            if got.len() < 24 + body {
                break;
            }
            let op = got[1];
            let status = u16::from_be_bytes([got[6], got[7]]);
            let key = got[24 + elen..24 + elen + klen].to_vec();
            let value = got[24 + elen + klen..24 + body].to_vec();
            got.drain(..24 + body);
            out.push((op, status, key, value));
            if op == last_opcode {
                return out;
            }
        }
        let n = c.s.read(&mut buf).expect("read");
        assert!(n > 0, "closed after {out:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn binary_clients_in_parallel() {
    let srv = Server::memcrab(&["-t", "4"]);
    let port = srv.port;
    let mut c = srv.connect();
    c.send(&bin(0x01, &[0; 8], b"bshared", b"0"));
    assert_eq!(bin_responses(&mut c, 0x01)[0].1, 0);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = common::Client::connect(port);
                for round in 0..20u32 {
                    // 50 quiet sets, then a NoOp that answers for them all.
                    let mut req = Vec::new();
                    let mut want = Vec::new();
                    for i in 0..50u32 {
                        let key = format!("b{t}-{i}").into_bytes();
                        let value = format!("{t}:{round}:{}", "x".repeat((i * 37 % 3000) as usize))
                            .into_bytes();
                        let mut extras = (t as u32).to_be_bytes().to_vec();
                        extras.extend_from_slice(&[0; 4]);
                        req.extend_from_slice(&bin(0x11, &extras, &key, &value));
                        want.push((key, value));
                    }
                    req.extend_from_slice(&bin(0x0a, &[], &[], &[]));
                    c.send(&req);
                    let r = bin_responses(&mut c, 0x0a);
                    assert_eq!(r.len(), 1, "quiet sets answered: {r:?}");
                    // A multiget: GetKQ for all but the last key, GetK last.
                    let mut req = Vec::new();
                    for (i, (k, _)) in want.iter().enumerate() {
                        req.extend_from_slice(&bin(if i == 49 { 0x0c } else { 0x0d }, &[], k, &[]));
                    }
                    c.send(&req);
                    let r = bin_responses(&mut c, 0x0c);
                    assert_eq!(r.len(), 50);
                    for ((op, status, k, v), (wk, wv)) in r.iter().zip(&want) {
                        assert_eq!((*status, k, v), (0, wk, wv), "opcode {op:#x}");
                    }
                }
                for _ in 0..100 {
                    let mut extras = 1u64.to_be_bytes().to_vec();
                    extras.extend_from_slice(&[0; 12]);
                    c.send(&bin(0x05, &extras, b"bshared", &[]));
                    assert_eq!(bin_responses(&mut c, 0x05)[0].1, 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    c.send(&bin(0x00, &[], b"bshared", &[]));
    let r = bin_responses(&mut c, 0x00);
    assert_eq!(r[0].3, b"1600");
}

fn curr_connections(c: &mut common::Client) -> u64 {
    let st = s(&c.call(b"stats\r\n", b"END\r\n"));
    st.lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("curr_connections")
}

/// A worker stops reading at a short read and waits for the next readable
/// edge; a close that arrives with the request, or just after it, must
/// still be seen at once (EPOLLRDHUP), on every worker.
#[test]
fn clients_that_close_at_once_leave_no_connection() {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    let srv = Server::memcrab(&["-t", "4"]);
    let port = srv.port;
    let mut admin = srv.connect();
    assert_eq!(admin.roundtrip(b"set k 0 0 1\r\nv\r\n"), b"STORED\r\n");
    let before = curr_connections(&mut admin);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..500u32 {
                    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    match (t + i) % 3 {
                        // Request and hang-up at once, the reply unread.
                        0 => c.write_all(b"get k\r\n").unwrap(),
                        // Half of a request, then hang-up.
                        1 => c.write_all(b"set x 0 0 5\r\nab").unwrap(),
                        // Request and shutdown of the sending side: the
                        // answer still comes, then the server closes.
                        _ => {
                            c.write_all(b"get k\r\n").unwrap();
                            c.shutdown(Shutdown::Write).unwrap();
                            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut got = Vec::new();
                            c.read_to_end(&mut got).unwrap();
                            assert_eq!(got, b"VALUE k 0 1\r\nv\r\nEND\r\n");
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every hang-up was seen: nothing is left but the admin connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = curr_connections(&mut admin);
        if now == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now} connections open, {before} before the hang-ups"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        admin.roundtrip(b"get k\r\n"),
        b"VALUE k 0 1\r\nv\r\nEND\r\n"
    );
}
