//! TLS for the load generator (rustls clients) and the TLS scenarios of
//! `compare`: a throwaway CA and server certificate made with rcgen for
//! both servers, a full handshake per connection, idle TLS connections.
//!
//! ```text
//!  TestPki ─► ca.pem, server.pem, server.key (temp dir, removed on drop)
//!          └► ClientTls (trusts the CA, name "localhost")
//!  load:   Sock::Tls(TlsSock) = mio TcpStream + rustls ClientConnection,
//!          non-blocking Read/Write like a plain socket
//! ```

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::compare::{fig, start_side, Better, Ctx, Figures, RunResult};
use crate::hist::Latency;
use crate::servers::ServerSpec;

/// A client's TLS settings: the rustls configuration and the name asked
/// for.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl ClientTls {
    /// `ca`: verify the server against it (else accept any certificate);
    /// `cert_key`: a client certificate; `resume`: reuse sessions (off:
    /// every connection a full handshake).
    pub fn new(
        ca: Option<&Path>,
        cert_key: Option<(&Path, &Path)>,
        name: &str,
        resume: bool,
    ) -> Result<ClientTls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let b = match ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("{}: {e}", ca.display()))?
                {
                    roots
                        .add(c.map_err(|e| format!("{}: {e}", ca.display()))?)
                        .map_err(|e| format!("{}: {e}", ca.display()))?;
                }
                b.with_root_certificates(roots)
            }
            None => b
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider))),
        };
        let mut config = match cert_key {
            None => b.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("{}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: {e}", key.display()))?;
                b.with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
        };
        if !resume {
            config.resumption = Resumption::disabled();
        }
        let name = ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))?;
        Ok(ClientTls {
            config: Arc::new(config),
            name,
        })
    }

    fn connection(&self) -> io::Result<ClientConnection> {
        ClientConnection::new(Arc::clone(&self.config), self.name.clone()).map_err(io::Error::other)
    }
}

/// Accepts any server certificate (`load --tls` without `--tls-ca`): the
/// handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A non-blocking TLS client connection: reads and writes behave like a
/// plain non-blocking socket's (`WouldBlock` when nothing can move).
pub struct TlsSock {
    pub sock: mio::net::TcpStream,
    tls: ClientConnection,
}

impl TlsSock {
    pub fn new(sock: mio::net::TcpStream, cfg: &ClientTls) -> io::Result<TlsSock> {
        Ok(TlsSock {
            sock,
            tls: cfg.connection()?,
        })
    }

    /// Sends the records rustls holds until the socket is full.
    pub fn send_records(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Read for TlsSock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.tls.read_tls(&mut self.sock)? == 0 {
                return Ok(0);
            }
            self.tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // The handshake's next flight, or a key update.
            self.send_records()?;
        }
    }
}

impl Write for TlsSock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tls.writer().write(buf)?;
        self.send_records()?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_records()
    }
}

/// A throwaway CA and a server certificate for localhost (ECDSA P-256,
/// rcgen's default), written to a temporary directory that is removed on
/// drop; both servers get the same files.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    pub fn new() -> Result<TestPki, String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let e = |e: rcgen::Error| e.to_string();
        let dir = std::env::temp_dir().join(format!("memcrab-bench-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "memcrab-bench CA");
        let ca = ca.self_signed(&ca_key).map_err(e)?;
        let key = KeyPair::generate().map_err(e)?;
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .map_err(e)?
            .signed_by(&key, &ca, &ca_key)
            .map_err(e)?;
        let pki = TestPki { dir };
        let write = |f: &str, s: String| {
            std::fs::write(pki.dir.join(f), s).map_err(|e| format!("{f}: {e}"))
        };
        write("ca.pem", ca.pem())?;
        write("server.pem", cert.pem())?;
        write("server.key", key.serialize_pem())?;
        Ok(pki)
    }

    /// `-Z` and the certificate options, the same for both servers.
    pub fn server_flags(&self) -> Vec<String> {
        vec![
            "-Z".into(),
            "-o".into(),
            format!(
                "ssl_chain_cert={},ssl_key={}",
                self.dir.join("server.pem").display(),
                self.dir.join("server.key").display()
            ),
        ]
    }

    pub fn client(&self, resume: bool) -> Result<ClientTls, String> {
        ClientTls::new(Some(&self.dir.join("ca.pem")), None, "localhost", resume)
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A blocking TLS connection: TCP connect, handshake, one `version` round
/// trip.
fn open(
    addr: SocketAddr,
    cfg: &ClientTls,
) -> io::Result<rustls::StreamOwned<ClientConnection, std::net::TcpStream>> {
    let s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut t = rustls::StreamOwned::new(cfg.connection()?, s);
    t.write_all(b"version\r\n")?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while !buf[..got].ends_with(b"\r\n") {
        let n = t.read(&mut buf[got..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
        if got == buf.len() {
            break;
        }
    }
    if !buf.starts_with(b"VERSION ") {
        return Err(io::Error::other(format!(
            "version answered {:?}",
            String::from_utf8_lossy(&buf[..got])
        )));
    }
    Ok(t)
}

/// Handshakes per second: client threads (4 per client CPU, pinned) each
/// open a connection, make a full handshake (no resumption), do one
/// `version` round trip and close, again and again; the server's CPU time
/// per handshake.
pub fn handshake_run(ctx: &Ctx, side: &ServerSpec, pki: &TestPki) -> RunResult {
    let srv = match start_side(ctx, side, &pki.server_flags())? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let cfg = pki.client(false)?;
    let addr = srv.addr;
    let cpus = ctx.client_cpus.clone();
    let threads = 4 * cpus.as_ref().map_or(1, |c| c.len()).max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let duration = Duration::from_secs_f64(ctx.args.duration);
    let cpu0 = srv.cpu_seconds();
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (cfg, stop, done, failed, cpus) = (
                cfg.clone(),
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&failed),
                cpus.clone(),
            );
            std::thread::spawn(move || {
                if let Some(c) = &cpus {
                    crate::load::pin(c);
                }
                let mut lat = Latency::default();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match open(addr, &cfg) {
                        Ok(s) => {
                            drop(s);
                            lat.record_us(t.elapsed().as_micros() as u64);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut lat = Latency::default();
    for h in handles {
        lat.merge(
            &h.join()
                .map_err(|_| "handshake thread panicked".to_string())?,
        );
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = srv.cpu_seconds() - cpu0;
    let n = done.load(Ordering::Relaxed);
    let bad = failed.load(Ordering::Relaxed);
    if n == 0 || bad * 1000 > n {
        return Err(format!(
            "{}: {n} handshakes, {bad} failed: refusing to report",
            side.name
        ));
    }
    let (hwm, _) = srv.rss();
    let l = lat.summary();
    let figures: Figures = vec![
        fig(
            "handshakes per second",
            "/s",
            Better::Higher,
            n as f64 / secs,
        ),
        fig(
            "server CPU per handshake",
            "µs",
            Better::Lower,
            cpu / n as f64 * 1e6,
        ),
        fig("p50 connect+handshake+request", "ms", Better::Lower, l.p50),
        fig("p99 connect+handshake+request", "ms", Better::Lower, l.p99),
        fig(
            "server peak RSS",
            "MB",
            Better::Lower,
            hwm as f64 / 1048576.0,
        ),
    ];
    Ok(Ok((figures, None)))
}

/// `n` TLS connections opened (handshake and one `version` each), then
/// idle: the server's RSS growth per connection.
pub fn idle_run(ctx: &Ctx, side: &ServerSpec, pki: &TestPki, n: u64) -> RunResult {
    let mut flags = pki.server_flags();
    flags.extend(["-c".to_string(), (n + 100).to_string()]);
    let srv = match start_side(ctx, side, &flags)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let cfg = pki.client(false)?;
    let first = open(srv.addr, &cfg).map_err(|e| format!("{}: {e}", side.name))?;
    std::thread::sleep(Duration::from_millis(100));
    let before = srv.rss().1;
    let mut conns = Vec::with_capacity(n as usize);
    for i in 0..n {
        conns
            .push(open(srv.addr, &cfg).map_err(|e| format!("{}: connection {i}: {e}", side.name))?);
    }
    let figures =
        crate::compare::idle_figures("RSS growth per idle TLS connection", &srv, before, n);
    drop(conns);
    drop(first);
    Ok(Ok((figures, None)))
}
