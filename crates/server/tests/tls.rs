//! TLS (`-Z`): certificates made here with rcgen (no private key is
//! checked in), clients made with rustls. Compared with Debian's
//! memcached started with `-Z` and the same files where the behaviour is
//! memcached's; memcrab's own promises (a counter for failed handshakes,
//! bounded memory under garbage) against their bounds.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{require_memcached, s, stat_in, Rng, Server, MEMCRAB};
use rcgen::{BasicConstraints, CertificateParams, CertifiedKey, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A CA and the files a server or client is given.
struct Pki {
    dir: PathBuf,
    ca: CertifiedKey,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("memcrab-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("memcrab test CA {name}"));
        let cert = params.self_signed(&key).unwrap();
        let pki = Pki {
            dir,
            ca: CertifiedKey {
                cert,
                key_pair: key,
            },
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.cert.pem()).unwrap();
        pki
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    /// A certificate for `names` signed by the CA, written as
    /// `<file>.pem` and `<file>.key`; returns the certificate's DER.
    fn issue(&self, file: &str, names: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params
            .signed_by(&key, &self.ca.cert, &self.ca.key_pair)
            .unwrap();
        std::fs::write(self.path(&format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    fn server_args(&self, file: &str) -> Vec<String> {
        vec![
            "-Z".into(),
            "-o".into(),
            format!(
                "ssl_chain_cert={},ssl_key={}",
                self.path(&format!("{file}.pem")).display(),
                self.path(&format!("{file}.key")).display()
            ),
        ]
    }

    /// A client that trusts this CA, optionally with a certificate.
    fn client(&self, cert: Option<&str>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.cert.der().clone()).unwrap();
        let b = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        Arc::new(match cert {
            None => b.with_no_client_auth(),
            Some(f) => {
                let chain = vec![CertificateDer::from_pem_file(
                    self.path(&format!("{f}.pem")),
                )];
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{f}.key")));
                b.with_client_auth_cert(chain, key).unwrap()
            }
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

trait FromPem: Sized {
    fn from_pem_file(p: PathBuf) -> Self;
}
impl FromPem for CertificateDer<'static> {
    fn from_pem_file(p: PathBuf) -> Self {
        use rustls::pki_types::pem::PemObject;
        <CertificateDer<'static> as PemObject>::from_pem_file(p).unwrap()
    }
}
impl FromPem for PrivateKeyDer<'static> {
    fn from_pem_file(p: PathBuf) -> Self {
        use rustls::pki_types::pem::PemObject;
        <PrivateKeyDer<'static> as PemObject>::from_pem_file(p).unwrap()
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection, handshake done (or its error).
fn try_connect(port: u16, cfg: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.set_nodelay(true)?;
    let conn =
        ClientConnection::new(Arc::clone(cfg), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut t = StreamOwned::new(conn, sock);
    while t.conn.is_handshaking() {
        t.conn.complete_io(&mut t.sock)?;
    }
    Ok(t)
}

fn connect(port: u16, cfg: &Arc<ClientConfig>) -> Tls {
    try_connect(port, cfg).expect("TLS handshake")
}

/// Sends `req`, reads until the reply ends with `end`.
fn call(t: &mut Tls, req: &[u8], end: &[u8]) -> Vec<u8> {
    t.write_all(req).unwrap();
    t.flush().unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !out.ends_with(end) {
        match t.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn stats(t: &mut Tls) -> String {
    s(&call(t, b"stats\r\n", b"END\r\n"))
}

/// Every text command (and a meta one) over TLS, with a value larger
/// than a TLS record and a pipelined batch: the replies are memcached's,
/// byte for byte, over TLS too.
#[test]
fn text_commands_over_tls_match_memcached() {
    let pki = Pki::new("text");
    pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mc = Server::start(&require_memcached(), &args);
    let mr = Server::memcrab(&args);
    let cfg = pki.client(None);
    let big = vec![b'x'; 300_000];
    let mut script: Vec<(Vec<u8>, &[u8])> = vec![
        (b"set a 5 0 3\r\nabc\r\n".to_vec(), b"\r\n"),
        (b"get a\r\n".to_vec(), b"END\r\n"),
        (b"add a 0 0 1\r\nz\r\n".to_vec(), b"\r\n"),
        (b"append a 0 0 2\r\nde\r\n".to_vec(), b"\r\n"),
        (b"prepend a 0 0 2\r\n_0\r\n".to_vec(), b"\r\n"),
        (b"replace b 0 0 1\r\nz\r\n".to_vec(), b"\r\n"),
        (b"get a b\r\n".to_vec(), b"END\r\n"),
        (b"set n 0 0 2\r\n10\r\n".to_vec(), b"\r\n"),
        (b"incr n 5\r\n".to_vec(), b"\r\n"),
        (b"decr n 20\r\n".to_vec(), b"\r\n"),
        (b"touch n 100\r\n".to_vec(), b"\r\n"),
        (b"gat 0 n\r\n".to_vec(), b"END\r\n"),
        (b"delete n\r\n".to_vec(), b"\r\n"),
        (b"delete n\r\n".to_vec(), b"\r\n"),
        (b"bogus\r\n".to_vec(), b"\r\n"),
        (b"get\r\n".to_vec(), b"\r\n"),
        (b"version\r\n".to_vec(), b"\r\n"),
        (b"verbosity 0\r\n".to_vec(), b"\r\n"),
        (b"ms m 2 T0\r\nhi\r\nmg m v f\r\nmn\r\n".to_vec(), b"MN\r\n"),
        (b"refresh_certs\r\n".to_vec(), b"\r\n"),
    ];
    let mut set_big = b"set big 1 0 300000\r\n".to_vec();
    set_big.extend_from_slice(&big);
    set_big.extend_from_slice(b"\r\n");
    script.push((set_big, b"\r\n"));
    script.push((b"get big\r\n".to_vec(), b"END\r\n"));
    // 200 gets in one write: many replies in one batch of records.
    let mut pipelined = Vec::new();
    for _ in 0..200 {
        pipelined.extend_from_slice(b"get a\r\n");
    }
    script.push((pipelined, b"END\r\n"));
    script.push((b"flush_all\r\n".to_vec(), b"\r\n"));
    script.push((b"get a\r\n".to_vec(), b"END\r\n"));
    let run = |port: u16| -> Vec<Vec<u8>> {
        let mut t = connect(port, &cfg);
        script
            .iter()
            .map(|(req, end)| {
                if req.starts_with(b"get a\r\nget a") {
                    // Read all 200 replies.
                    let mut out = Vec::new();
                    t.write_all(req).unwrap();
                    while out.windows(5).filter(|w| w == b"END\r\n").count() < 200 {
                        let mut buf = [0u8; 65536];
                        let n = t.read(&mut buf).unwrap();
                        assert!(n > 0);
                        out.extend_from_slice(&buf[..n]);
                    }
                    out
                } else {
                    call(&mut t, req, end)
                }
            })
            .collect()
    };
    let want = run(mc.port);
    let got = run(mr.port);
    for (((req, _), w), g) in script.iter().zip(&want).zip(&got) {
        assert_eq!(s(g), s(w), "reply to {:?}", s(&req[..req.len().min(40)]));
    }
    assert!(got[21].len() > 300_000, "the large value came back whole");
}

/// The binary protocol over TLS.
#[test]
fn binary_protocol_over_tls() {
    let pki = Pki::new("binary");
    pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mr = Server::memcrab(&args);
    let mut t = connect(mr.port, &pki.client(None));
    // SET k = "v" (extras: flags, exptime), then GET k.
    let mut set = vec![0x80, 0x01, 0, 1, 8, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0];
    set.extend_from_slice(&[0; 8]);
    set.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, b'k', b'v']);
    let get = [
        0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'k',
    ];
    t.write_all(&set).unwrap();
    t.write_all(&get).unwrap();
    let mut reply = vec![0u8; 24 + 24 + 4 + 1];
    t.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[..2], &[0x81, 0x01], "set's response");
    assert_eq!(&reply[6..8], &[0, 0], "set succeeded");
    assert_eq!(&reply[24..26], &[0x81, 0x00], "get's response");
    assert_eq!(&reply[30..32], &[0, 0], "get found it");
    assert_eq!(reply[52], b'v');
}

/// `ssl_verify_mode=2` with `ssl_ca_cert`: a client without a
/// certificate is refused, one with a certificate the CA signed is
/// served, one signed by another CA refused: as memcached.
#[test]
fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new("mtls");
    pki.issue("server", &["localhost"]);
    pki.issue("client", &["client"]);
    let other = Pki::new("mtls-other");
    other.issue("client", &["client"]);
    let mut args = pki.server_args("server");
    args.push("-o".into());
    args.push(format!(
        "ssl_verify_mode=2,ssl_ca_cert={}",
        pki.path("ca.pem").display()
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for bin in [require_memcached(), MEMCRAB.to_string()] {
        let srv = Server::start(&bin, &args);
        let mut t = connect(srv.port, &pki.client(Some("client")));
        assert_eq!(
            call(&mut t, b"version\r\n", b"\r\n"),
            b"VERSION 1.6.18\r\n",
            "{bin}"
        );
        // Without a certificate: the handshake or the first exchange fails
        // (TLS 1.3 clients learn it on their first read).
        let refused = |cfg: Arc<ClientConfig>| match try_connect(srv.port, &cfg) {
            Err(_) => true,
            Ok(mut t) => call(&mut t, b"version\r\n", b"\r\n").is_empty(),
        };
        assert!(refused(pki.client(None)), "{bin}: no certificate");
        // A certificate from a CA the server does not trust: refused.
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.cert.der().clone()).unwrap();
        let chain = vec![CertificateDer::from_pem_file(other.path("client.pem"))];
        let key = PrivateKeyDer::from_pem_file(other.path("client.key"));
        let foreign = Arc::new(
            ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
        );
        assert!(refused(foreign), "{bin}: a foreign CA's certificate");
        // Still serving.
        let mut t = connect(srv.port, &pki.client(Some("client")));
        assert_eq!(call(&mut t, b"version\r\n", b"\r\n"), b"VERSION 1.6.18\r\n");
    }
}

/// `-l notls:<ip>:<port>` is plain beside a TLS listener; the TLS one
/// refuses plain text.
#[test]
fn notls_listener_beside_a_tls_one() {
    let pki = Pki::new("notls");
    pki.issue("server", &["localhost"]);
    let plain = free_port();
    let mut args = pki.server_args("server");
    args.push("-l".into());
    args.push(format!("notls:127.0.0.1:{plain}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for bin in [require_memcached(), MEMCRAB.to_string()] {
        let srv = Server::start(&bin, &args);
        let mut c = common::Client::connect(plain);
        assert_eq!(
            c.call(b"set p 0 0 1\r\nq\r\n", b"\r\n"),
            b"STORED\r\n",
            "{bin}"
        );
        let mut t = connect(srv.port, &pki.client(None));
        assert_eq!(
            call(&mut t, b"get p\r\n", b"END\r\n"),
            b"VALUE p 0 1\r\nq\r\nEND\r\n",
            "{bin}"
        );
        // Plain text on the TLS port gets no memcached reply.
        let mut c = common::Client::connect(srv.port);
        c.send(b"version\r\n");
        let r = c.read_until(b"\r\n");
        assert!(!r.starts_with(b"VERSION"), "{bin}: {r:?}");
        drop(srv);
        // The port is free again for the next server.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `refresh_certs` and SIGHUP: new connections get the new certificate,
/// open ones go on; a refresh that fails keeps the old one and says why.
#[test]
fn refresh_certs_switches_certificates_for_new_connections() {
    let pki = Pki::new("refresh");
    let first = pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::memcrab(&args);
    let cfg = pki.client(None);
    let mut old = connect(srv.port, &cfg);
    let peer = |t: &Tls| t.conn.peer_certificates().unwrap()[0].clone();
    assert_eq!(peer(&old), first);
    let second = pki.issue("server", &["localhost"]);
    assert_ne!(first, second);
    assert_eq!(call(&mut old, b"refresh_certs\r\n", b"\r\n"), b"OK\r\n");
    let mut new = connect(srv.port, &cfg);
    assert_eq!(peer(&new), second);
    assert_eq!(
        call(&mut old, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
    assert_eq!(
        call(&mut new, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
    // A broken file: the error, and the certificate in use stays.
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    let r = s(&call(&mut new, b"refresh_certs\r\n", b"\r\n"));
    assert!(
        r.starts_with("Error loading the certificate chain: "),
        "{r}"
    );
    assert_eq!(peer(&connect(srv.port, &cfg)), second);
    // SIGHUP reloads too.
    let third = pki.issue("server", &["localhost"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while peer(&connect(srv.port, &cfg)) != third {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = stats(&mut new);
    assert!(stat_in(&st, "time_since_server_cert_refresh") <= 5);
    // Without -Z, memcached's answer.
    let plain = Server::memcrab(&[]);
    let mut c = plain.connect();
    assert_eq!(
        c.call(b"refresh_certs\r\n", b"\r\n"),
        b"Error TLS not enabled\r\n"
    );
}

/// Reads until the server closes (a TLS alert may come first): true when
/// it did within `wait`.
fn closed_within(c: &mut common::Client, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut b = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        c.s.set_read_timeout(Some(left)).unwrap();
        match c.s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A client that sends garbage instead of a ClientHello, or stops half
/// way through a handshake and leaves, costs one closed connection and a
/// counter; a port probe (connect, close) is no handshake error.
#[test]
fn bad_handshakes_cost_a_closed_connection_and_a_counter() {
    let pki = Pki::new("garbage");
    pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::memcrab(&args);
    let cfg = pki.client(None);
    let mut probe = connect(srv.port, &cfg);
    let st = stats(&mut probe);
    assert_eq!(stat_in(&st, "ssl_handshake_errors"), 0);
    let conns = stat_in(&st, "curr_connections");
    let mut c = common::Client::connect(srv.port);
    c.send(b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        closed_within(&mut c, Duration::from_secs(5)),
        "garbage: closed"
    );
    // The first bytes of a ClientHello, then silence: the server waits
    // for the rest (it is not closed), then the client leaves.
    let mut c = common::Client::connect(srv.port);
    c.send(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ]);
    assert!(!closed_within(&mut c, Duration::from_millis(200)));
    drop(c);
    drop(TcpStream::connect(("127.0.0.1", srv.port)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = stats(&mut probe);
        if stat_in(&st, "ssl_handshake_errors") == 2 && stat_in(&st, "curr_connections") == conns {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        call(&mut probe, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
}

/// 10,000 connections that send random bytes (half of them after a
/// plausible record header), 100 at a time: garbage is refused at once, a
/// plausible but unfinished record waits until the client leaves, each
/// connection costs exactly one handshake error, the server keeps serving
/// a TLS client throughout, and its memory does not grow with them.
#[test]
fn ten_thousand_random_handshakes() {
    let pki = Pki::new("random");
    pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["-c", "4096"]);
    let srv = Server::memcrab(&args);
    let cfg = pki.client(None);
    let mut probe = connect(srv.port, &cfg);
    assert_eq!(
        call(&mut probe, b"set k 0 0 1\r\nv\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    let conns = stat_in(&stats(&mut probe), "curr_connections");
    let rss_before = common::rss_kb(srv.pid());
    let mut rng = Rng(0x7e57_5eed);
    let (mut garbage, mut refused) = (0, 0);
    for round in 0..100 {
        let mut socks = Vec::new();
        for _ in 0..100 {
            let mut c = common::Client::connect(srv.port);
            let mut junk: Vec<u8> = (0..1 + rng.below(600)).map(|_| rng.next() as u8).collect();
            let plausible = rng.chance(50);
            if plausible {
                // A handshake record header first: the parser gets further.
                junk.splice(
                    0..0,
                    [0x16, 0x03, 0x01, (rng.below(0x40)) as u8, rng.next() as u8],
                );
            }
            let _ = c.s.write_all(&junk);
            socks.push((c, plausible));
        }
        for (mut c, plausible) in socks {
            if !plausible {
                garbage += 1;
                if closed_within(&mut c, Duration::from_secs(1)) {
                    refused += 1;
                }
            }
        }
        if round % 10 == 0 {
            assert_eq!(
                call(&mut probe, b"get k\r\n", b"END\r\n"),
                b"VALUE k 0 1\r\nv\r\nEND\r\n",
                "served during round {round}"
            );
        }
    }
    assert!(
        refused * 100 >= garbage * 99,
        "garbage refused at once: {refused} of {garbage}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = stats(&mut probe);
        if stat_in(&st, "curr_connections") == conns
            && stat_in(&st, "ssl_handshake_errors") == 10_000
        {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss_after = common::rss_kb(srv.pid());
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew from {rss_before} KB to {rss_after} KB"
    );
}

/// Bad options: memcached's messages, exit status 64.
#[test]
fn tls_options_are_checked_at_start() {
    let pki = Pki::new("options");
    pki.issue("server", &["localhost"]);
    let cert = pki.path("server.pem");
    let key = pki.path("server.key");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(MEMCRAB)
            .args(["-l", "127.0.0.1", "-p", "-1"])
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), s(&out.stderr))
    };
    let (code, err) = run(&["-Z"]);
    assert_eq!(code, Some(64));
    assert!(
        err.starts_with("Error loading the certificate chain: (null) : "),
        "{err}"
    );
    let (code, err) = run(&["-Z", "-o", "ssl_chain_cert=/nonexistent.pem"]);
    assert_eq!(code, Some(64));
    assert!(
        err.starts_with("Error loading the certificate chain: /nonexistent.pem : "),
        "{err}"
    );
    let (_, err) = run(&["-o", "ssl_verify_mode=9"]);
    assert_eq!(
        err,
        "Invalid ssl_verify_mode. Use help to see valid options.\n"
    );
    let (_, err) = run(&["-o", "ssl_min_version=x"]);
    assert_eq!(err, "could not parse argument to ssl_min_version\n");
    let (_, err) = run(&["-o", "ssl_chain_cert"]);
    assert_eq!(err, "Missing ssl_chain_cert argument\n");
    let both = format!(
        "ssl_chain_cert={},ssl_key={}",
        cert.display(),
        key.display()
    );
    let (code, err) = run(&["-Z", "-p", "0", "-o", &both]);
    assert_eq!(code, Some(64));
    assert_eq!(err, "ERROR: You cannot enable SSL without a TCP port.\n");
    let (code, err) = run(&["-Z", "-o", &format!("{both},ssl_keyformat=2")]);
    assert_eq!(code, Some(64));
    assert!(err.contains("PEM"), "{err}");
    let (code, err) = run(&["-Z", "-o", &format!("{both},ssl_verify_mode=2")]);
    assert_eq!(code, Some(64));
    assert!(err.contains("ssl_ca_cert"), "{err}");
    let (code, err) = run(&["-Z", "-o", &format!("{both},ssl_ciphers=RC4-MD5")]);
    assert_eq!(code, Some(64));
    assert_eq!(err, "Error setting the provided cipher(s): RC4-MD5\n");
    // A key that is not the certificate's.
    pki.issue("other", &["localhost"]);
    let mismatch = format!(
        "ssl_chain_cert={},ssl_key={}",
        cert.display(),
        pki.path("other.key").display()
    );
    let (code, err) = run(&["-Z", "-o", &mismatch]);
    assert_eq!(code, Some(64));
    assert!(
        err.starts_with("Error validating the certificate: "),
        "{err}"
    );
    let (code, err) = run(&["-l", "notls:127.0.0.1:1"]);
    assert_eq!(code, Some(71));
    assert!(
        err.starts_with("'notls' option is valid only when SSL is enabled\n"),
        "{err}"
    );
}

/// `stats settings` shows the `ssl_*` options as memcached does, and
/// `stats` the counters memcached shows under `-Z`.
#[test]
fn tls_stats_match_memcached() {
    let pki = Pki::new("stats");
    pki.issue("server", &["localhost"]);
    let mut args = pki.server_args("server");
    args.push("-o".into());
    args.push(format!(
        "ssl_session_cache,ssl_verify_mode=1,ssl_ca_cert={},ssl_wbuf_size=32,ssl_min_version=3,ssl_ciphers=HIGH",
        pki.path("ca.pem").display()
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pick = |st: &str, prefix: &str| -> Vec<String> {
        st.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let mut want = None;
    for bin in [require_memcached(), MEMCRAB.to_string()] {
        let srv = Server::start(&bin, &args);
        let mut t = connect(srv.port, &pki.client(None));
        let set = s(&call(&mut t, b"stats settings\r\n", b"END\r\n"));
        let ssl: Vec<String> = set
            .lines()
            .filter(|l| l.starts_with("STAT ssl_"))
            .map(str::to_string)
            .collect();
        let st = stats(&mut t);
        let names = pick(&st, "STAT ssl_");
        let got = (ssl, names, stat_in(&st, "ssl_new_sessions") >= 1);
        match &want {
            None => want = Some(got),
            Some(w) => assert_eq!(&got, w),
        }
    }
}

/// Values at every size around the stream's boundaries (the 2 KB slice
/// gathering, the 16 KB record payload, the 16 KB read buffer a record
/// must grow) go in and come back whole, one at a time, in one multiget,
/// and pipelined with small requests between them.
#[test]
fn values_across_record_boundaries() {
    let pki = Pki::new("sizes");
    pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["-I", "2m", "-m", "128"]);
    let srv = Server::memcrab(&args);
    let cfg = pki.client(None);
    let mut t = connect(srv.port, &cfg);
    let sizes = [
        0usize, 1, 511, 512, 513, 2047, 2048, 2049, 16_383, 16_384, 16_385, 16_640, 40_000,
        100_000, 1_000_000,
    ];
    let value = |n: usize| -> Vec<u8> { (0..n).map(|i| b'a' + (i * 7 % 26) as u8).collect() };
    for &n in &sizes {
        let mut req = format!("set v{n} 0 0 {n}\r\n").into_bytes();
        req.extend_from_slice(&value(n));
        req.extend_from_slice(b"\r\n");
        assert_eq!(
            call(&mut t, &req, b"\r\n"),
            b"STORED\r\n",
            "set of {n} bytes"
        );
    }
    let expect = |n: usize| -> Vec<u8> {
        let mut e = format!("VALUE v{n} 0 {n}\r\n").into_bytes();
        e.extend_from_slice(&value(n));
        e.extend_from_slice(b"\r\n");
        e
    };
    for &n in &sizes {
        let mut want = expect(n);
        want.extend_from_slice(b"END\r\n");
        let got = call(&mut t, format!("get v{n}\r\n").as_bytes(), b"END\r\n");
        assert!(got == want, "get of {n} bytes: {} bytes back", got.len());
    }
    let keys: Vec<String> = sizes.iter().map(|n| format!("v{n}")).collect();
    let mut want: Vec<u8> = sizes.iter().flat_map(|&n| expect(n)).collect();
    want.extend_from_slice(b"END\r\n");
    let got = call(
        &mut t,
        format!("get {}\r\n", keys.join(" ")).as_bytes(),
        b"END\r\n",
    );
    assert!(
        got == want,
        "multiget: {} bytes, wanted {}",
        got.len(),
        want.len()
    );
    // Pipelined: every value with a miss and a version between them.
    let mut req = Vec::new();
    let mut want = Vec::new();
    for &n in &sizes {
        req.extend_from_slice(format!("get v{n}\r\nget nokey\r\nmn\r\n").as_bytes());
        want.extend_from_slice(&expect(n));
        want.extend_from_slice(b"END\r\nEND\r\nMN\r\n");
    }
    req.extend_from_slice(b"version\r\n");
    want.extend_from_slice(b"VERSION 1.6.18\r\n");
    let got = call(&mut t, &req, b"VERSION 1.6.18\r\n");
    assert!(
        got == want,
        "pipelined: {} bytes, wanted {}",
        got.len(),
        want.len()
    );
}

/// An idle TLS connection gives its buffers back: 500 connections that
/// each sent a 100 KB value (growing the stream's input and output
/// buffers) and read it back leave the server at a few KB each once idle.
#[test]
fn idle_tls_connections_give_their_buffers_back() {
    let pki = Pki::new("idle");
    pki.issue("server", &["localhost"]);
    let args = pki.server_args("server");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["-c", "1000"]);
    let srv = Server::memcrab(&args);
    let cfg = pki.client(None);
    let mut probe = connect(srv.port, &cfg);
    let big = vec![b'x'; 100_000];
    let mut req = b"set big 0 0 100000\r\n".to_vec();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n");
    assert_eq!(call(&mut probe, &req, b"\r\n"), b"STORED\r\n");
    std::thread::sleep(Duration::from_millis(1500));
    let before = common::rss_kb(srv.pid());
    let n = 500;
    let mut conns = Vec::new();
    for _ in 0..n {
        let mut t = connect(srv.port, &cfg);
        assert_eq!(call(&mut t, &req, b"\r\n"), b"STORED\r\n");
        let got = call(&mut t, b"get big\r\n", b"END\r\n");
        assert_eq!(got.len(), 100_000 + 27, "get big");
        conns.push(t);
    }
    // The worker pools keep what was used in the last second.
    std::thread::sleep(Duration::from_millis(2500));
    let after = common::rss_kb(srv.pid());
    let per = (after.saturating_sub(before)) * 1024 / n;
    // rustls keeps about 4 KB of state per connection; its own buffers
    // (which it kept, 8 KB and more) and the stream's are gone.
    assert!(
        per < 6 * 1024,
        "{per} B per idle TLS connection ({before} -> {after} KB)"
    );
    assert_eq!(
        call(&mut probe, b"version\r\n", b"\r\n"),
        b"VERSION 1.6.18\r\n"
    );
}
