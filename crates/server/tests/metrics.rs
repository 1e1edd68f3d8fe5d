//! memcrab's own introspection (issue 19, second part): the Prometheus
//! endpoint (`-o metrics_port`), its latency histograms, and hot keys
//! (`-o hot_keys`, `stats hotkeys`). memcached has neither, so these are
//! checked against what was sent, and the page against `promtool`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{Client, Rng, Server};

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `req` to the metrics port and returns (status line, body).
fn http(port: u16, req: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(req).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("the whole answer");
    let text = String::from_utf8(all).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, body.len(), "{head}");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

fn scrape(port: u16) -> String {
    let (status, body) = http(port, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

/// The value of the sample `name` (with its labels, as written).
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
        .parse()
        .unwrap()
}

/// `promtool check metrics` (Debian's prometheus package; the README's
/// test command installs it) on the page: format and naming lint.
fn promtool(page: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; scripts/test does it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        common::s(&out.stdout),
        common::s(&out.stderr)
    );
}

fn stats(c: &mut Client, group: &str) -> Vec<(String, String)> {
    let r = common::s(&c.call(format!("stats {group}\r\n").as_bytes(), b"END\r\n"));
    r.lines()
        .filter_map(|l| {
            let mut p = l.strip_prefix("STAT ")?.splitn(2, ' ');
            Some((p.next()?.to_string(), p.next()?.to_string()))
        })
        .collect()
}

/// Every `stats`, `stats slabs` and `stats items` figure is on the page
/// under its Prometheus name; requests of each protocol land in their
/// command's histogram, counted once per request; the page passes
/// promtool.
#[test]
fn the_page_has_every_stat_and_a_histogram_per_command() {
    let mport = free_port();
    let opt = format!("metrics_port={mport},hot_keys=5,hot_keys_sample=1");
    let srv = Server::memcrab(&["-o", &opt, "-U", "-1"]);
    let mut c = srv.connect();
    for i in 0..20 {
        c.call(format!("set k{i} 0 0 2\r\n{i:02}\r\n").as_bytes(), b"\r\n");
    }
    for i in 0..30 {
        // Multi-key gets are one request each.
        c.call(
            format!("get k{} k{} nope\r\n", i % 20, i % 3).as_bytes(),
            b"END\r\n",
        );
    }
    for _ in 0..10 {
        c.call(b"mg k1 v\r\n", b"\r\n");
    }
    c.call(b"ms m 1\r\nx\r\n", b"\r\n");
    c.call(b"incr k5 1\r\ndecr k5 1\r\n", b"\r\n");
    c.call(b"gat 10 k1\r\n", b"END\r\n");
    c.call(b"touch k1 10\r\n", b"\r\n");
    c.call(b"delete k19\r\n", b"\r\n");
    c.call(b"flush_all 100\r\n", b"OK\r\n");
    // Binary: a GetK and a Set.
    let mut b = srv.connect();
    let mut getk = vec![0x80, 0x0c, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0];
    getk.extend([0; 8]);
    getk.extend(b"k1");
    b.send(&getk);
    let mut got = [0u8; 24 + 4 + 2 + 2];
    b.s.read_exact(&mut got).unwrap();
    assert_eq!(got[6..8], [0, 0], "GetK k1 hit");
    // A UDP get.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut d = vec![0, 1, 0, 0, 0, 1, 0, 0];
    d.extend(b"get k2\r\n");
    u.send_to(&d, ("127.0.0.1", srv.udp_port.unwrap())).unwrap();
    let mut buf = [0u8; 1500];
    let n = u.recv(&mut buf).unwrap();
    assert!(buf[8..n].ends_with(b"END\r\n"));

    let general = stats(&mut c, "");
    let slabs = stats(&mut c, "slabs");
    let items = stats(&mut c, "items");
    let h = "memcrab_request_duration_seconds";
    // A request is timed when its reply has been handed to the socket, so
    // the client can read the last `stats` reply a moment before the
    // worker counts it: scrape until it is counted (bounded).
    let other = format!("{h}_count{{command=\"other\"}}");
    let mut page = scrape(mport);
    for _ in 0..100 {
        if sample(&page, &other) >= 3.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        page = scrape(mport);
    }
    promtool(&page);

    // Requests: 30 text gets + 10 mg + the GetK + the UDP get; the three
    // stats requests before the scrape are "other".
    let counts = [
        ("get", 42.0),
        ("set", 21.0),
        ("incr_decr", 2.0),
        ("gat", 1.0),
        ("touch", 1.0),
        ("delete", 1.0),
        ("flush_all", 1.0),
        ("other", 3.0),
    ];
    for (cmd, n) in counts {
        let count = sample(&page, &format!("{h}_count{{command=\"{cmd}\"}}"));
        let inf = sample(
            &page,
            &format!("{h}_bucket{{command=\"{cmd}\",le=\"+Inf\"}}"),
        );
        assert_eq!((count, inf), (n, n), "{cmd}");
    }
    let sum = sample(&page, &format!("{h}_sum{{command=\"get\"}}"));
    assert!(sum > 0.0 && sum < 42.0, "{sum}");
    // Buckets never fall.
    let mut last = 0.0;
    for l in page
        .lines()
        .filter(|l| l.starts_with(&format!("{h}_bucket{{command=\"get\"")))
    {
        let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(v >= last, "{l}");
        last = v;
    }

    // Every numeric `stats` field, by its Prometheus name; those no
    // request since can have moved, equal.
    let moving = [
        "uptime",
        "time",
        "rusage_user",
        "rusage_system",
        "bytes_read",
        "bytes_written",
        "total_connections",
        "curr_connections",
        "connection_structures",
    ];
    for (name, value) in &general {
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        let metric = match name.as_str() {
            "time_in_listen_disabled_us" => "memcrab_time_in_listen_disabled_seconds_total".into(),
            "rusage_user" | "rusage_system" => format!("memcrab_{name}_seconds_total"),
            "uptime" | "time" => format!("memcrab_{name}_seconds"),
            "total_items" => "memcrab_items_total".into(),
            "total_connections" => "memcrab_connections_total".into(),
            "response_obj_count" => "memcrab_response_objs".into(),
            "read_buf_count" => "memcrab_read_bufs".into(),
            n if page.contains(&format!("\nmemcrab_{n}_total ")) => format!("memcrab_{n}_total"),
            n => format!("memcrab_{n}"),
        };
        let got = sample(&page, &metric);
        if moving.contains(&name.as_str())
            || name.starts_with("read_buf")
            || name.starts_with("response_obj")
        {
            assert!(got >= v * 0.99, "{name} {v} vs {metric} {got}");
        } else {
            assert_eq!(got, v, "{name} vs {metric}");
        }
    }
    // 30 x 3 keys, 10 mg, the GetK, the UDP get (a text gat counts in
    // cmd_touch only, as memcached counts it).
    assert_eq!(sample(&page, "memcrab_cmd_get_total"), 102.0);
    for (name, value) in slabs.iter().chain(&items) {
        let name = name.strip_prefix("items:").unwrap_or(name);
        let Some((class, field)) = name.split_once(':') else {
            let got = sample(&page, &format!("memcrab_slabs_{name}"));
            assert_eq!(got.to_string(), *value, "{name}");
            continue;
        };
        let family = if slabs.iter().any(|(n, _)| n == name) {
            "slab"
        } else {
            "items"
        };
        let labels = format!("{{slab_class=\"{class}\"}}");
        let plain = format!("memcrab_{family}_{field}{labels}");
        let total = format!("memcrab_{family}_{field}_total{labels}");
        let got = if page.contains(&format!("\n{plain} ")) {
            sample(&page, &plain)
        } else {
            sample(&page, &total)
        };
        if field != "age" {
            assert_eq!(got.to_string(), *value, "{name}");
        }
    }
    let clients: f64 = page
        .lines()
        .filter(|l| l.starts_with("memcrab_client_connections{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(clients, 2.0);
    assert!(page.contains("memcrab_info{version=\"1.6.18\""));
    // k1 was asked for most (the gets, mg, gat, touch, GetK).
    assert!(
        page.contains("memcrab_hot_key_requests{key=\"k1\"} "),
        "{page}"
    );
}

/// The ten hottest keys of a Zipf load over four connections (so four
/// workers' counts are merged), as `stats hotkeys` and the page name them.
#[test]
fn hot_keys_finds_the_ten_hottest_of_a_zipf_load() {
    let mport = free_port();
    // Every request counted: the exact ten (sampled, as by default, the
    // ranks near the tenth would be a matter of chance at this load).
    let opt = format!("metrics_port={mport},hot_keys=10,hot_keys_sample=1");
    let srv = Server::memcrab(&["-t", "4", "-o", &opt]);
    // Zipf (s = 1) over 2,000 keys by inverse transform.
    const KEYS: usize = 2000;
    let weights: Vec<f64> = (1..=KEYS).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(KEYS);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let mut rng = Rng(19);
    let mut truth: HashMap<String, u64> = HashMap::new();
    let mut streams = vec![Vec::new(); 4];
    for i in 0..200_000usize {
        let u = rng.below(1 << 53) as f64 / (1u64 << 53) as f64;
        let r = cdf.partition_point(|&c| c < u).min(KEYS - 1);
        // Keys named so that rank and name differ.
        let key = format!("user:{}", (r * 7919) % 100_003);
        *truth.entry(key.clone()).or_default() += 1;
        let s = &mut streams[i % 4];
        if i % 50 == 0 {
            s.extend(format!("set {key} 0 0 1\r\nv\r\n").bytes());
        } else {
            s.extend(format!("mg {key} v\r\n").bytes());
        }
    }
    let handles: Vec<_> = streams
        .into_iter()
        .map(|s| {
            let port = srv.port;
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut reader = c.s.try_clone().unwrap();
                let t = std::thread::spawn(move || {
                    // Drain replies while sending.
                    let mut buf = vec![0u8; 1 << 16];
                    let mut tail = Vec::new();
                    loop {
                        let n = reader.read(&mut buf).unwrap();
                        assert!(n > 0);
                        tail.extend_from_slice(&buf[..n]);
                        if tail.ends_with(b"MN\r\n") {
                            return;
                        }
                        let keep = tail.len().saturating_sub(8);
                        tail.drain(..keep);
                    }
                });
                c.send(&s);
                c.send(b"mn\r\n");
                t.join().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut ranked: Vec<(&String, &u64)> = truth.iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    // The seed gives a clear gap between the 10th and the 11th.
    assert!(*ranked[9].1 > ranked[10].1 + 50, "{:?}", &ranked[..12]);
    let want: Vec<&str> = ranked[..10].iter().map(|(k, _)| k.as_str()).collect();

    let mut c = srv.connect();
    let st = stats(&mut c, "hotkeys");
    assert_eq!(st[0], ("hot_keys".into(), "10".into()));
    let got: Vec<(String, u64)> = st
        .iter()
        .filter_map(|(n, v)| Some((n.strip_prefix("hotkey:")?.to_string(), v.parse().ok()?)))
        .collect();
    assert_eq!(got.len(), 10, "{st:?}");
    let mut got_keys: Vec<String> = got.iter().map(|(k, _)| k.replace("%3A", ":")).collect();
    let mut want_sorted: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    // The hottest is first; the set is the true top ten.
    assert_eq!(got_keys[0], want_sorted[0]);
    got_keys.sort();
    want_sorted.sort();
    assert_eq!(got_keys, want_sorted);
    // Estimates never undercount, and here are close.
    for (k, n) in &got {
        let t = truth[&k.replace("%3A", ":")];
        assert!(*n >= t && *n <= t + t / 20, "{k}: {n} vs {t}");
    }
    let page = scrape(mport);
    for k in &want {
        let enc = k.replace(':', "%3A");
        assert!(
            page.contains(&format!("memcrab_hot_key_requests{{key=\"{enc}\"}} ")),
            "{k}"
        );
    }
}

/// Scrapes while clients load the cache, next to scrapers that misbehave:
/// each scrape answers, the cache keeps serving, memory stays put.
#[test]
fn scrapes_under_load_and_misbehaving_scrapers() {
    let mport = free_port();
    let opt = format!("metrics_port={mport},hot_keys=10");
    let srv = Server::memcrab(&["-o", &opt]);
    let port = srv.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = format!("t{t}k{}", n % 500);
                    c.call(
                        format!("set {k} 0 0 3\r\nabc\r\nget {k}\r\n").as_bytes(),
                        b"END\r\n",
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    // A scraper that connects and says nothing, one that sends too much,
    // a wrong method, a wrong path: none of them stops the next scrape.
    let mut silent = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    let (st, _) = http(
        mport,
        &[b"GET /metrics HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat(),
    );
    assert_eq!(st, "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(
        http(mport, b"POST /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        http(mport, b"GET /x HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    // (The silent one held the thread until its read timed out, 5 s.)
    let (st, body) = http(mport, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(body.contains("memcrab_cmd_get_total"));
    let mut silent_buf = Vec::new();
    let _ = silent.read_to_end(&mut silent_buf);
    assert!(silent_buf.is_empty(), "the silent scraper got nothing");
    let rss0 = common::rss_kb(srv.pid());
    let mut last_get = 0.0;
    for _ in 0..40 {
        let page = scrape(mport);
        let g = sample(&page, "memcrab_cmd_get_total");
        assert!(g >= last_get);
        last_get = g;
    }
    let rss1 = common::rss_kb(srv.pid());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done: u64 = loaders.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        done > 100,
        "the clients were served during the scrapes: {done}"
    );
    assert!(
        rss1 < rss0 + 4096,
        "RSS {rss0} -> {rss1} kB over 40 scrapes"
    );
    promtool(&scrape(mport));
}

/// The options' refusals, and what `stats hotkeys` says with none kept.
#[test]
fn options_and_hotkeys_off() {
    for (opt, msg) in [
        ("metrics_port=0", "metrics_port must be a TCP port"),
        ("metrics_port=70000", "Invalid value for metrics_port"),
        ("hot_keys=1001", "hot_keys must be at most 1000"),
        ("hot_keys_window=0", "hot_keys_window must be at least 1"),
        (
            "hot_keys_sample=0",
            "hot_keys_sample must be between 1 and 1048576",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_memcrab"))
            .args(["-p", "0", "-o", opt])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{opt}");
        assert!(
            common::s(&out.stderr).contains(msg),
            "{opt}: {}",
            common::s(&out.stderr)
        );
    }
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    c.call(b"get a\r\n", b"END\r\n");
    assert_eq!(
        common::s(&c.call(b"stats hotkeys\r\n", b"END\r\n")),
        "STAT hot_keys 0\r\nSTAT hot_keys_window 60\r\nSTAT hot_keys_sample 64\r\nEND\r\n"
    );
    // A port someone holds: memcrab says so and does not start.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = held.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_memcrab"))
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-o",
            &format!("metrics_port={p}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        common::s(&out.stderr).contains(&format!("failed to listen on metrics port {p}")),
        "{}",
        common::s(&out.stderr)
    );
}
