//! Many clients at once on several server threads; every value read back
//! is checked against what that client wrote.

mod common;

use common::{s, Server};

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
