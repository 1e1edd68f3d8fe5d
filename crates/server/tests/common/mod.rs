//! Starting real servers (memcrab or Debian's memcached) on 127.0.0.1 with
//! an ephemeral port, and talking raw bytes to them.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const MEMCRAB: &str = env!("CARGO_BIN_EXE_memcrab");

pub struct Server {
    child: Child,
    pub port: u16,
    /// The UDP port, when started with `-U -1`.
    pub udp_port: Option<u16>,
    port_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.port_file);
    }
}

static N: AtomicUsize = AtomicUsize::new(0);

/// Finds memcached: on PATH, or where Debian installs it.
pub fn memcached_path() -> Option<String> {
    for p in ["/usr/bin/memcached", "/usr/local/bin/memcached"] {
        if std::path::Path::new(p).exists() {
            return Some(p.to_string());
        }
    }
    None
}

/// memcached, or a clear failure: the tests that compare with it are not
/// optional (README's test command installs it).
pub fn require_memcached() -> String {
    memcached_path()
        .expect("Debian's memcached is needed: apt-get install memcached (bash .ci/run does it)")
}

impl Server {
    /// Starts `bin` with `args` plus `-l 127.0.0.1 -p -1` (an ephemeral port), and waits until
    /// it reports its port through MEMCACHED_PORT_FILENAME.
    pub fn start(bin: &str, args: &[&str]) -> Server {
        let port_file = std::env::temp_dir().join(format!(
            "memcrab-test-{}-{}.port",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&port_file);
        // memcached refuses clients by descriptor number under `-c`, so
        // it starts with no descriptor but the standard three, whatever
        // the test runner leaves open (CI and a terminal differ).
        let mut cmd = if bin.contains("memcached") {
            let mut c = Command::new("bash");
            c.args([
                "-c",
                r#"for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@""#,
                "sh",
                bin,
            ]);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(["-l", "127.0.0.1", "-p", "-1", "-U", "0"])
            .args(args)
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if bin.contains("memcached") {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let find = |prefix: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(prefix))
                        .and_then(|p| p.trim().parse().ok())
                };
                if let Some(port) = find("TCP INET: ") {
                    return Server {
                        child,
                        port,
                        udp_port: find("UDP INET: "),
                        port_file,
                    };
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{bin} exited early: {status}");
            }
            assert!(Instant::now() < deadline, "{bin} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn memcrab(args: &[&str]) -> Server {
        Server::start(MEMCRAB, args)
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub struct Client {
    pub s: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Client { s }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send");
    }

    /// Reads until the reply ends with `end` (or EOF / timeout).
    pub fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !out.ends_with(end) {
            match self.s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    }

    /// Sends `req` and reads the reply up to `end`.
    pub fn call(&mut self, req: &[u8], end: &[u8]) -> Vec<u8> {
        self.send(req);
        self.read_until(end)
    }

    /// Sends `req` followed by `mn` and returns the reply without `MN`.
    pub fn roundtrip(&mut self, req: &[u8]) -> Vec<u8> {
        let mut r = req.to_vec();
        r.extend_from_slice(b"mn\r\n");
        let mut out = self.call(&r, b"MN\r\n");
        if out.ends_with(b"MN\r\n") {
            out.truncate(out.len() - 4);
        }
        out
    }

    /// Whether the server closed the connection (EOF within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        closed
    }
}

/// A value in the text of a `stats` reply.
pub fn stat_in(st: &str, name: &str) -> u64 {
    st.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {st}"))
}

/// One `stats` value, asked of the server.
pub fn stat(c: &mut Client, name: &str) -> u64 {
    stat_in(&s(&c.call(b"stats\r\n", b"END\r\n")), name)
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// splitmix64: the seeded streams of the differential tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// The command counters of `stats` whose values memcached and memcrab
/// must agree on after the same stream. `get_expired` and `get_flushed`
/// are left out: which misses they split off depends on when each
/// server's background reaping ran (their sum is in `get_misses`).
pub const COMMAND_COUNTERS: &[&str] = &[
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "store_too_large",
    "store_no_memory",
    "auth_cmds",
    "auth_errors",
    "cmd_meta",
];

/// [`COMMAND_COUNTERS`] as a server reports them (text `stats` on a new
/// connection).
pub fn command_counters(port: u16) -> Vec<(String, u64)> {
    let mut c = Client::connect(port);
    let reply = s(&c.call(b"stats\r\n", b"END\r\n"));
    COMMAND_COUNTERS
        .iter()
        .map(|name| {
            let v = reply
                .lines()
                .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
                .unwrap_or_else(|| panic!("no {name} in stats"));
            (name.to_string(), v.trim().parse().unwrap())
        })
        .collect()
}

/// Asserts that two servers counted the same commands the same way.
pub fn same_command_counters(memcached: u16, memcrab: u16) {
    let want = command_counters(memcached);
    let got = command_counters(memcrab);
    let differ: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|((name, w), (_, g))| format!("{name}: memcached {w}, memcrab {g}"))
        .collect();
    assert!(differ.is_empty(), "counters differ: {differ:#?}");
    eprintln!("{} command counters as memcached", want.len());
}

/// A process's resident memory (VmRSS), in kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
