//! What clients send but do not finish, or hold back, cannot take memory
//! past `-m` + the index + the connection budget (`-o
//! read_buf_mem_limit`). A value longer than a read buffer takes its item
//! memory when its header arrives, as memcached's does, and is read
//! straight into it; with no memory for it both answer `SERVER_ERROR out
//! of memory storing object`. The budget covers the rest: long lines,
//! replies a client does not read.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{s, stat, Server};

/// A connection that sent the head of a `size`-byte value and `sent`
/// bytes of it, then stalls.
fn stalled(port: u16, head: &[u8], sent: usize) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(head).unwrap();
    c.write_all(&vec![b'x'; sent]).unwrap();
    c
}

/// What a connection has been answered within `wait` (empty: nothing).
fn answered(c: &mut TcpStream, wait: Duration) -> Vec<u8> {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut got = vec![0u8; 256];
    match c.read(&mut got) {
        Ok(n) => got[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn stalled_values_take_item_memory_within_the_limit() {
    // -M: values in flight fill -m 16 (each takes its chunks as its bytes
    // come) and the rest are refused, as memcached refuses them; nothing
    // evicts a value in flight.
    let srv = Server::memcrab(&["-m", "16", "-M"]);
    let port = srv.port;
    let mut admin = srv.connect();
    assert_eq!(admin.roundtrip(b"set old 0 0 3\r\nabc\r\n"), b"STORED\r\n");
    let before = common::rss_kb(srv.pid());
    let mut conns: Vec<TcpStream> = (0..40)
        .map(|i| {
            stalled(
                port,
                format!("set k{i} 0 0 1000000\r\n").as_bytes(),
                600_000,
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Refused at the header (no memory for the first chunk: counted) or
    // during the read (none for the next), each in memcached's words.
    let (mut at_header, mut reading) = (0, 0);
    for c in &mut conns {
        let got = s(&answered(c, Duration::from_millis(100)));
        match got.as_str() {
            "" => {}
            "SERVER_ERROR out of memory storing object\r\n" => at_header += 1,
            "SERVER_ERROR Out of memory during read\r\n" => reading += 1,
            other => panic!("{other:?}"),
        }
    }
    let refused = at_header + reading;
    assert!((24..=30).contains(&refused), "{refused} of 40 refused");
    assert_eq!(stat(&mut admin, "store_no_memory"), at_header);
    assert!(stat(&mut admin, "read_buf_bytes") <= 40 * 16 * 1024);
    // 40 x 600 KB were sent; what is held is -m's worth.
    let grown = common::rss_kb(srv.pid()).saturating_sub(before);
    assert!(grown < 20 * 1024, "RSS grew {grown} kB");
    // A set of one chunk refused at its header drops the old value, as
    // memcached's does.
    let mut c = stalled(port, b"set old 0 0 400000\r\n", 10);
    assert_eq!(
        s(&answered(&mut c, Duration::from_secs(2))),
        "SERVER_ERROR out of memory storing object\r\n"
    );
    assert_eq!(admin.roundtrip(b"get old\r\n"), b"END\r\n");
    // The swallowed value is not read as commands, and small requests
    // go on being served.
    c.write_all(&vec![b'x'; 400_000 - 10]).unwrap();
    c.write_all(b"\r\nset after 0 0 1\r\nz\r\n").unwrap();
    assert_eq!(s(&answered(&mut c, Duration::from_secs(2))), "STORED\r\n");
    // A chained one fails with its first bytes, as memcached's data
    // chunks do, and keeps the old value; its rest is swallowed too.
    assert_eq!(admin.roundtrip(b"set old 0 0 1\r\na\r\n"), b"STORED\r\n");
    let mut c = stalled(port, b"set old 0 0 1000000\r\n", 10);
    assert_eq!(
        s(&answered(&mut c, Duration::from_secs(2))),
        "SERVER_ERROR Out of memory during read\r\n"
    );
    assert_eq!(
        admin.call(b"get old\r\n", b"END\r\n"),
        b"VALUE old 0 1\r\na\r\nEND\r\n"
    );
    c.write_all(&vec![b'x'; 1_000_000 - 10]).unwrap();
    c.write_all(b"\r\nset after 0 0 1\r\nz\r\n").unwrap();
    assert_eq!(s(&answered(&mut c, Duration::from_secs(2))), "STORED\r\n");
    // Meta and binary refuse with their own words.
    let mut m = stalled(port, b"ms mk 400000 T0\r\n", 10);
    assert_eq!(
        s(&answered(&mut m, Duration::from_secs(2))),
        "SERVER_ERROR out of memory storing object\r\n"
    );
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = vec![0x80, 0x01, 0, 2, 8, 0, 0, 0];
    req.extend_from_slice(&(8u32 + 2 + 400_000).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(&[0; 8]);
    req.extend_from_slice(b"bk");
    b.write_all(&req).unwrap();
    let r = answered(&mut b, Duration::from_secs(2));
    assert!(r.len() >= 24, "{r:?}");
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0x82, "{r:?}");
    // (A new connection: the first still swallows its 400,000 bytes.)
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = vec![0x80, 0x01, 0, 2, 8, 0, 0, 0];
    req.extend_from_slice(&(8u32 + 2 + 1_000_000).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(&[0; 8]);
    req.extend_from_slice(b"bk");
    req.extend_from_slice(&[1; 10]);
    b.write_all(&req).unwrap();
    let r = answered(&mut b, Duration::from_secs(2));
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0x82, "{r:?}");
    assert_eq!(&r[24..], b"Out of memory during read", "{r:?}");
    // Meta `q` keeps an out-of-memory during the read quiet, not one at
    // the header (memcached's answers, compared by hand).
    for (head, len, want) in [
        (&b"ms mq 1000000 q\r\n"[..], 1_000_000, "MN\r\n"),
        (
            b"ms mq2 400000 q\r\n",
            400_000,
            "SERVER_ERROR out of memory storing object\r\nMN\r\n",
        ),
    ] {
        let mut q = stalled(port, head, 10);
        q.write_all(&vec![b'q'; len - 10]).unwrap();
        q.write_all(b"\r\nmn\r\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"MN\r\n") {
            let more = answered(&mut q, Duration::from_secs(2));
            assert!(!more.is_empty(), "{:?}", s(&got));
            got.extend_from_slice(&more);
        }
        assert_eq!(s(&got), want);
    }
    assert_eq!(admin.roundtrip(b"mg mq\r\n"), b"EN\r\n", "not stored");
    // The memory comes back when the stalled clients go.
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let mut big = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = b"set big 0 0 1000000\r\n".to_vec();
    req.extend(std::iter::repeat_n(b'y', 1_000_000));
    req.extend_from_slice(b"\r\n");
    big.write_all(&req).unwrap();
    assert_eq!(s(&answered(&mut big, Duration::from_secs(5))), "STORED\r\n");
    let got = admin.call(b"get big\r\n", b"END\r\n");
    assert_eq!(got.len(), "VALUE big 0 1000000\r\n".len() + 1_000_002 + 5);
}

/// 20 clients each send a 10 MB store at once, in three protocols: all
/// fit `-m`, so all are stored, as memcached stores them (a budget for
/// values in flight refused 15 of 20 such stores before).
#[test]
fn concurrent_large_stores_within_the_limit_are_all_stored() {
    let size = 10_000_000;
    for proto in ["text", "meta", "binary"] {
        let srv = Server::memcrab(&["-m", "256", "-I", "32m"]);
        let threads: Vec<_> = (0..20u8)
            .map(|i| {
                let port = srv.port;
                std::thread::spawn(move || {
                    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let key = format!("{proto}{i}");
                    let head = match proto {
                        "text" => format!("set {key} 0 0 {size}\r\n").into_bytes(),
                        "meta" => format!("ms {key} {size} T0\r\n").into_bytes(),
                        _ => {
                            let mut h = vec![0x80, 0x01, 0, key.len() as u8, 8, 0, 0, 0];
                            h.extend_from_slice(&(8 + key.len() as u32 + size).to_be_bytes());
                            h.extend_from_slice(&[0; 12]);
                            h.extend_from_slice(&[0; 8]);
                            h.extend_from_slice(key.as_bytes());
                            h
                        }
                    };
                    c.write_all(&head).unwrap();
                    // Every header is in before any value is whole.
                    std::thread::sleep(Duration::from_millis(200));
                    c.write_all(&vec![b'a' + i; size as usize]).unwrap();
                    if proto != "binary" {
                        c.write_all(b"\r\n").unwrap();
                    }
                    answered(&mut c, Duration::from_secs(30))
                })
            })
            .collect();
        for t in threads {
            let got = t.join().unwrap();
            match proto {
                "text" => assert_eq!(s(&got), "STORED\r\n"),
                "meta" => assert_eq!(s(&got), "HD\r\n"),
                _ => assert_eq!(u16::from_be_bytes([got[6], got[7]]), 0, "{got:?}"),
            }
        }
        let mut c = srv.connect();
        for i in [0u8, 19] {
            let got = c.call(format!("get {proto}{i}\r\n").as_bytes(), b"END\r\n");
            let head = format!("VALUE {proto}{i} 0 {size}\r\n");
            assert_eq!(got.len(), head.len() + size as usize + 2 + 5, "{proto}{i}");
            assert!(got[head.len()..head.len() + size as usize]
                .iter()
                .all(|&b| b == b'a' + i));
        }
        assert_eq!(stat(&mut c, "store_no_memory"), 0);
    }
}

/// A large value takes its chunks as its bytes come, as memcached's
/// does: four 48 MB values declared at once at `-m 128` are all stored
/// (the first stored ones evicted for the later), and under `-M` a value
/// that finds no memory on its way is answered `SERVER_ERROR Out of
/// memory during read`, its rest swallowed, the next command run.
#[test]
fn large_values_take_memory_as_they_come() {
    let srv = Server::memcrab(&["-m", "128", "-I", "64m"]);
    let size = 48_000_000;
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|i| stalled(srv.port, format!("set v{i} 0 0 {size}\r\n").as_bytes(), 0))
        .collect();
    let mut value = vec![b'v'; size];
    value.extend_from_slice(b"\r\n");
    let senders: Vec<_> = conns
        .iter()
        .map(|c| {
            let mut c = c.try_clone().unwrap();
            let v = value.clone();
            std::thread::spawn(move || c.write_all(&v).unwrap())
        })
        .collect();
    for t in senders {
        t.join().unwrap();
    }
    for c in &mut conns {
        assert_eq!(s(&answered(c, Duration::from_secs(10))), "STORED\r\n");
    }
    let mut admin = srv.connect();
    assert!(stat(&mut admin, "evictions") >= 1);
    drop(srv);

    let srv = Server::memcrab(&["-m", "64", "-I", "32m", "-M"]);
    let mut conns: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut c = stalled(srv.port, format!("set w{i} 0 0 20000000\r\n").as_bytes(), 0);
            c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = c.write_all(&vec![b'w'; 18_000_000]);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut failed = 0;
    for c in &mut conns {
        c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&vec![b'w'; 2_000_000]).unwrap();
        c.write_all(b"\r\nset after 0 0 1\r\nz\r\n").unwrap();
    }
    for c in &mut conns {
        let mut got = Vec::new();
        while got.len() < 16 || !got.ends_with(b"STORED\r\n") {
            let more = answered(c, Duration::from_secs(5));
            assert!(!more.is_empty(), "{:?}", s(&got));
            got.extend_from_slice(&more);
        }
        match s(&got).as_str() {
            "STORED\r\nSTORED\r\n" => {}
            "SERVER_ERROR Out of memory during read\r\nSTORED\r\n" => failed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((1..4).contains(&failed), "{failed} of 4 ran out");
}

/// A client that goes away in the middle of a large value gives its item
/// memory back; a value that does not end in `\r\n` is answered as
/// memcached answers it and not stored. (`idle_timeout` does not close a
/// connection in the middle of a value: memcached 1.6.18 kicks only those
/// waiting for a command, and so does memcrab.)
#[test]
fn a_value_cut_off_gives_its_memory_back() {
    let srv = Server::memcrab(&["-m", "64", "-I", "8m"]);
    let mut admin = srv.connect();
    let used = |c: &mut common::Client| {
        let st = s(&c.call(b"stats slabs\r\n", b"END\r\n"));
        st.lines()
            .filter(|l| l.contains(":used_chunks "))
            .map(|l| l.rsplit(' ').next().unwrap().trim().parse::<u64>().unwrap())
            .sum::<u64>()
    };
    let base = used(&mut admin);
    let a = stalled(srv.port, b"set a 0 0 5000000\r\n", 100_000);
    let b = stalled(srv.port, b"ms b 5000000\r\n", 2_000_000);
    std::thread::sleep(Duration::from_millis(200));
    // Chunks are taken as the bytes come: 1 for a, 4 for b's 2 MB.
    assert!(used(&mut admin) >= base + 5, "the values hold their chunks");
    drop((a, b));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while used(&mut admin) != base {
        assert!(
            std::time::Instant::now() < deadline,
            "memory not given back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = stalled(srv.port, b"set c 0 0 100000\r\n", 100_000);
    c.write_all(b"XXset d 0 0 1\r\nz\r\n").unwrap();
    let got = answered(&mut c, Duration::from_secs(2));
    assert!(
        s(&got).starts_with("CLIENT_ERROR bad data chunk\r\n"),
        "{}",
        s(&got)
    );
    assert_eq!(admin.roundtrip(b"get c\r\n"), b"END\r\n");
    // What follows the block is the next command, as in memcached.
    assert_eq!(
        admin.call(b"get d\r\n", b"END\r\n"),
        b"VALUE d 0 1\r\nz\r\nEND\r\n"
    );
    assert_eq!(used(&mut admin), base + 1);
}

/// A request that cannot be held (a multiget line longer than one buffer)
/// with the budget spent: the connection is closed and `read_buf_oom`
/// counted, as memcached does when it has no read buffer.
#[test]
fn a_long_line_without_budget_closes_the_connection() {
    let srv = Server::memcrab(&["-o", "read_buf_mem_limit=1"]);
    let port = srv.port;
    let mut admin = srv.connect();
    // A multiget line not yet ended holds most of the budget.
    let mut held_line = b"get".to_vec();
    while held_line.len() < 900_000 {
        held_line.extend_from_slice(b" k");
    }
    let _held = stalled(port, &held_line, 0);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = b"get".to_vec();
    while line.len() < 200_000 {
        line.extend_from_slice(b" somekey");
    }
    line.extend_from_slice(b"\r\n");
    let _ = c.write_all(&line);
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 16];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)), "not closed");
    assert_eq!(stat(&mut admin, "read_buf_oom"), 1);
    // With the budget free, the same line is read and answered: with
    // memcached's answer for a multiget of 25,000 keys, past the response
    // objects `read_buf_mem_limit=1` leaves a worker.
    drop(_held);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = srv.connect();
    assert_eq!(
        c.call(&line, b"\r\n"),
        b"SERVER_ERROR out of memory writing get response\r\n"
    );
}

/// `stats` counts the read buffers connections hold and the pool keeps,
/// as memcached counts its read buffer cache, and they go back when the
/// connections have gone.
#[test]
fn read_buffers_are_counted_and_given_back() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    // A multiget line of 50 KB not yet ended (a value that long is read
    // into its item, not a buffer).
    let mut line = b"get".to_vec();
    while line.len() < 50_000 {
        line.extend_from_slice(b" k");
    }
    let a = stalled(srv.port, &line, 0);
    std::thread::sleep(Duration::from_millis(300));
    let count = stat(&mut c, "read_buf_count");
    let bytes = stat(&mut c, "read_buf_bytes");
    assert!(count >= 1, "{count}");
    assert!(bytes >= 50_000, "{bytes}");
    drop(a);
    // Pools unused for a second are freed at the next sweep.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = stat(&mut c, "read_buf_bytes");
        if left <= 16 * 1024 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} bytes kept");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Clients that pipeline multigets and never read their replies are
/// slowed (no more of their requests handled until the replies go out),
/// never refused, and hold little: the reply buffers past their pooled
/// size are charged to the connection budget (1 MB here), so 99 clients
/// each owed 300 replies of 32 KB hold one reply each, not the 20 a
/// batch would compose (about 60 MB).
#[test]
fn unread_replies_wait_for_the_client() {
    let srv = Server::memcrab(&["-o", "read_buf_mem_limit=1", "-c", "300"]);
    let mut c = srv.connect();
    let value = vec![b'v'; 300];
    let mut multiget = b"get".to_vec();
    let mut reply_len = 5; // END
    for k in 0..100 {
        let mut req = format!("set k{k} 0 0 300\r\n").into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        assert_eq!(c.call(&req, b"\r\n"), b"STORED\r\n");
        multiget.extend_from_slice(format!(" k{k}").as_bytes());
        reply_len += format!("VALUE k{k} 0 300\r\n").len() + 302;
    }
    multiget.extend_from_slice(b"\r\n");
    let gets = multiget.repeat(300);
    let before = rss_kb(srv.pid());
    let mut held = Vec::new();
    for _ in 0..99 {
        let mut h = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        h.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        // The server stops reading a client it cannot answer: what is
        // left stays in the socket.
        let _ = h.write_all(&gets);
        held.push(h);
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kb(srv.pid()).saturating_sub(before);
    assert!(grown < 20 * 1024, "grew {grown} KB");
    assert_eq!(stat(&mut c, "response_obj_oom"), 0);
    // Another client is served in full once it reads.
    let mut first = TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    let mut w = first.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&gets).unwrap());
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let want = 300 * reply_len;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while got < want {
        let n = first.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    assert_eq!(got, want);
    writer.join().unwrap();
    drop(held);
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Under `-o read_buf_mem_limit`, response objects run out where
/// memcached's do: its limit, divided by the threads, is a number of
/// 16 KB buffers shared by read buffers and bundles of 13 response
/// objects (one per command reply, one per key of a multiget). A
/// multiget past it is answered `SERVER_ERROR out of memory writing get
/// response`; a connection that stacks more commands than that in one
/// read is closed without its replies. Same answers from both servers,
/// for several limits and thread counts.
#[test]
fn response_objects_run_out_as_in_memcached() {
    let memcached = common::require_memcached();
    for (limit, threads) in [("1", "32"), ("2", "32"), ("1", "4")] {
        let args = [
            "-o",
            &format!("read_buf_mem_limit={limit}"),
            "-t",
            threads,
            "-R",
            "5000",
        ];
        let mut got = Vec::new();
        for bin in [memcached.as_str(), common::MEMCRAB] {
            let srv = Server::start(bin, &args);
            let mut c = srv.connect();
            c.call(b"set foo 0 0 600\r\n", b"");
            c.call(&[vec![b'v'; 600], b"\r\n".to_vec()].concat(), b"STORED\r\n");
            let mut answers = Vec::new();
            for n in [12, 13, 14, 38, 39, 40, 194, 195, 196, 500] {
                let keys = vec!["foo"; n].join(" ");
                let r = c.call(format!("get {keys}\r\n").as_bytes(), b"\r\n");
                let r = if r.starts_with(b"VALUE") {
                    // Read the rest: n values and END.
                    let mut all = r;
                    while !all.ends_with(b"END\r\n") {
                        let more = c.read_until(b"END\r\n");
                        assert!(!more.is_empty(), "{bin}: get of {n} keys cut short");
                        all.extend_from_slice(&more);
                    }
                    format!(
                        "{} values",
                        all.windows(5).filter(|w| w == b"VALUE").count()
                    )
                } else {
                    s(&r)
                };
                answers.push(format!("get x{n}: {r}"));
                // Stacked meta gets on a connection of their own.
                let mut m = srv.connect();
                m.send(&b"mg foo s\r\n".repeat(n));
                let mut replies = Vec::new();
                m.s.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut buf = [0u8; 65536];
                loop {
                    match m.s.read(&mut buf) {
                        Ok(0) => {
                            replies.extend_from_slice(b"<closed>");
                            break;
                        }
                        Ok(k) => replies.extend_from_slice(&buf[..k]),
                        Err(_) => break,
                    }
                }
                let hd = replies.windows(4).filter(|w| w == b"HD s").count();
                let closed = replies.ends_with(b"<closed>");
                answers.push(format!("mg x{n}: {hd} answered, closed {closed}"));
            }
            let st = s(&c.call(b"stats\r\n", b"END\r\n"));
            answers.push(format!(
                "response_obj_oom {}",
                common::stat_in(&st, "response_obj_oom")
            ));
            got.push(answers);
        }
        assert_eq!(got[0], got[1], "-o read_buf_mem_limit={limit} -t {threads}");
        assert!(
            got[1]
                .iter()
                .any(|a| a.contains("out of memory writing get response")),
            "the limit was never reached: {:?}",
            got[1]
        );
    }
}
