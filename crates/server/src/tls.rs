//! TLS (`-Z`): the rustls server configuration built from memcached's
//! `ssl_*` options, its reload (`refresh_certs`, SIGHUP), the counters
//! `stats` shows, and [`TlsStream`], the transport a connection on a TLS
//! listener reads and writes through.
//!
//! ```text
//!  socket ─read─► In (a pooled read buffer) ─process_tls_records─► rustls
//!     (unbuffered: decrypts, or has handshake records to encode) ─► Conn's read buffer
//!  Conn's Output ─writev─► TlsStream::write_vectored ─► small slices gathered,
//!     WriteTraffic::encrypt ─► Out (at most ssl_wbuf_size pending) ─write─► socket
//! ```
//!
//! A handshake advances as bytes arrive, like any read: a worker never
//! waits on one client. Records the socket had no room for stay in `Out`
//! ([`TlsStream::has_pending`]) and the connection waits for the writable
//! edge as it does for its own replies. The buffers are held only while
//! they hold bytes: an idle connection gives them back (`release`).

use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

use crate::config::SslOptions;

/// Sessions the cache keeps with `ssl_session_cache` (OpenSSL's default
/// size, which memcached leaves as it is).
const SESSION_CACHE: usize = 20 * 1024;
/// TLS 1.3 tickets sent after each handshake with `ssl_session_cache`
/// (OpenSSL's number, and rustls').
const TLS13_TICKETS: usize = 2;

/// The server's TLS state: the configuration new connections take, and
/// the figures `stats` reports.
pub struct Tls {
    opts: SslOptions,
    /// Swapped whole by a refresh; a connection keeps the one it began with.
    config: RwLock<Arc<ServerConfig>>,
    /// When the certificates were last loaded.
    refreshed: Mutex<Instant>,
    /// Shared with every stream (counted as handshakes end).
    pub counts: Arc<TlsCounts>,
}

#[derive(Default)]
pub struct TlsCounts {
    /// memcached's `ssl_handshake_errors`: handshakes that failed (bad
    /// records, refused certificates, a peer that left half-way).
    pub handshake_errors: AtomicU64,
    /// memcached's `ssl_new_sessions`: full handshakes that made a session
    /// the cache keeps (only with `ssl_session_cache`).
    pub new_sessions: AtomicU64,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("opts", &self.opts).finish()
    }
}

impl Tls {
    /// Loads the certificates and builds the configuration; the error is
    /// memcached's message for what failed.
    pub fn new(opts: SslOptions) -> Result<Tls, String> {
        let config = build(&opts)?;
        Ok(Tls {
            opts,
            config: RwLock::new(config),
            refreshed: Mutex::new(Instant::now()),
            counts: Arc::default(),
        })
    }

    pub fn options(&self) -> &SslOptions {
        &self.opts
    }

    /// `refresh_certs` and SIGHUP: reads the files again; connections made
    /// from now on use them, open ones keep theirs. On an error the old
    /// configuration stays.
    pub fn refresh(&self) -> Result<(), String> {
        let config = build(&self.opts)?;
        *self.config.write() = config;
        *self.refreshed.lock() = Instant::now();
        Ok(())
    }

    /// Seconds since the certificates were (re)loaded.
    pub fn since_refresh(&self) -> u64 {
        self.refreshed.lock().elapsed().as_secs()
    }

    /// A server side for a connection accepted on a TLS listener.
    pub fn accept(&self, sock: mio::net::TcpStream) -> io::Result<TlsStream> {
        let config = Arc::clone(&self.config.read());
        let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            conn,
            input: In::default(),
            out: Out::default(),
            plain: Plain::default(),
            stage: Vec::new(),
            wbuf_size: self.opts.wbuf_size.max(1) as usize,
            counts: Arc::clone(&self.counts),
            session_cache: self.opts.session_cache,
            state: Handshake::Fresh,
        })
    }
}

/// Where a stream's handshake is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// No byte has come yet (a closed probe is not a failed handshake).
    Fresh,
    Started,
    Done,
    /// Counted as an error already.
    Failed,
}

/// The most ciphertext a stream buffers: a handshake message may span
/// records up to rustls' limit on one (64 KB), plus a record.
const IN_MAX: usize = 80 * 1024;
/// A TLS record's payload at most.
const RECORD_PAYLOAD: usize = 16 * 1024;
/// Slices shorter than this are gathered into one record with their
/// neighbours (a reply's lines and small values); longer ones are
/// encrypted where they lie.
const GATHER_MAX: usize = 2048;

/// Ciphertext from the socket: `buf[start..end]` is what rustls has not
/// discarded yet (it may have looked at part of it: the same bytes must
/// be at the front of the next call's input). A pooled read buffer,
/// grown for a large record or handshake message.
#[derive(Default)]
struct In {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl In {
    fn unprocessed(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
}

/// Records for the socket: `buf[pos..end]` not yet sent.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Out {
    fn pending(&self) -> usize {
        self.end - self.pos
    }

    /// Room for `n` more bytes of records.
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        if self.buf.len() < self.end + n {
            self.buf.resize(self.end + n, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Encodes a handshake record rustls has ready.
    fn encode(&mut self, e: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>) {
        let mut need = 2048;
        loop {
            match e.encode(self.room(need)) {
                Ok(n) => {
                    self.end += n;
                    return;
                }
                Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
                Err(EncodeError::AlreadyEncoded) => return,
            }
        }
    }

    /// Writes what waits to `sock`.
    fn send(&mut self, sock: &mut mio::net::TcpStream) -> io::Result<()> {
        while self.pos < self.end {
            match sock.write(&self.buf[self.pos..self.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pos = 0;
        self.end = 0;
        Ok(())
    }
}

/// Decrypted bytes no read had room for: `buf[pos..]`.
#[derive(Default)]
struct Plain {
    buf: Vec<u8>,
    pos: usize,
}

impl Plain {
    /// Moves what is kept into `dst`.
    fn take(&mut self, dst: &mut [u8]) -> usize {
        let left = &self.buf[self.pos..];
        let k = left.len().min(dst.len());
        dst[..k].copy_from_slice(&left[..k]);
        self.pos += k;
        if self.pos == self.buf.len() {
            *self = Plain::default();
        }
        k
    }
}

/// A TCP connection with rustls over it, in rustls' unbuffered mode:
/// the stream owns the buffers (ciphertext is read into a pooled read
/// buffer, records are encrypted straight into the output buffer), each
/// held only while it has bytes in it, so an idle TLS connection keeps
/// rustls' state and nothing else.
pub struct TlsStream {
    pub sock: mio::net::TcpStream,
    conn: UnbufferedServerConnection,
    input: In,
    out: Out,
    plain: Plain,
    /// Small slices gathered for one record.
    stage: Vec<u8>,
    /// `ssl_wbuf_size`: records waiting for the socket at most (more
    /// replies wait in the connection's queue).
    wbuf_size: usize,
    counts: Arc<TlsCounts>,
    session_cache: bool,
    state: Handshake,
}

/// Where driving rustls over the buffered ciphertext stopped.
#[derive(PartialEq, Eq)]
enum Stop {
    /// The read's buffer is full.
    Full,
    /// rustls needs more bytes (the handshake, or the next record).
    Blocked,
    /// No input left to act on; application data may be sent.
    Writable,
    /// The peer sent close_notify.
    Eof,
}

impl TlsStream {
    /// Encrypted bytes wait for room in the socket.
    pub fn has_pending(&self) -> bool {
        self.out.pending() > 0
    }

    /// Sends the records waiting; `WouldBlock` when the socket filled
    /// first.
    pub fn send_pending(&mut self) -> io::Result<()> {
        self.out.send(&mut self.sock)
    }

    /// Takes a pooled read buffer to read ciphertext into, if it has none.
    pub fn lend(&mut self, pool: &mut Vec<Vec<u8>>) {
        if self.input.buf.is_empty() {
            self.input.buf = pool.pop().unwrap_or_else(|| vec![0; crate::conn::READ_BUF]);
        }
    }

    /// Gives the buffers back when they hold nothing (the connection is
    /// idle): a pooled-size read buffer to `pool`, the rest to the
    /// allocator.
    pub fn release(&mut self, pool: &mut Vec<Vec<u8>>) {
        if self.input.start != self.input.end
            || self.out.pending() > 0
            || !self.plain.buf.is_empty()
        {
            return;
        }
        let buf = std::mem::take(&mut self.input).buf;
        if buf.len() == crate::conn::READ_BUF && pool.len() < crate::conn::POOL_MAX {
            pool.push(buf);
        }
        self.out = Out::default();
        self.stage = Vec::new();
    }

    /// Sessions a finished handshake added to the cache, counted as
    /// memcached (OpenSSL) counts them: each TLS 1.3 ticket is one, a
    /// TLS 1.2 session one, a resumed TLS 1.2 session none.
    fn new_sessions(&self) -> u64 {
        match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => TLS13_TICKETS as u64,
            _ if matches!(
                self.conn.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed)
            ) =>
            {
                0
            }
            _ => 1,
        }
    }

    /// The handshake ended badly: counted once.
    fn failed(&mut self) {
        if matches!(self.state, Handshake::Started) {
            self.counts.handshake_errors.fetch_add(1, Ordering::Relaxed);
            self.state = Handshake::Failed;
        }
    }

    /// Reads from the socket into the ciphertext buffer. Returns the
    /// bytes read (0: end of stream) and whether the read came back short
    /// (the socket is drained).
    fn fill_in(&mut self) -> io::Result<(usize, bool)> {
        let b = &mut self.input;
        if b.buf.is_empty() {
            b.buf = vec![0; crate::conn::READ_BUF];
        }
        if b.start == b.end {
            b.start = 0;
            b.end = 0;
        } else if b.end == b.buf.len() && b.start > 0 {
            b.buf.copy_within(b.start..b.end, 0);
            b.end -= b.start;
            b.start = 0;
        }
        if b.end == b.buf.len() {
            // A record (or a handshake message) larger than the buffer.
            if b.buf.len() >= IN_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS input past its bound",
                ));
            }
            let grown = (b.buf.len() * 2).min(IN_MAX);
            b.buf.resize(grown, 0);
        }
        let asked = b.buf.len() - b.end;
        let n = self.sock.read(&mut b.buf[b.end..])?;
        b.end += n;
        if n > 0 && self.state == Handshake::Fresh {
            self.state = Handshake::Started;
        }
        Ok((n, n < asked))
    }

    /// Drives rustls over the buffered ciphertext: decrypted bytes go to
    /// `dst` (until it is full) or, without one, are kept for the next
    /// read; handshake records go to the output buffer and the socket.
    fn drive(&mut self, mut dst: Option<(&mut [u8], &mut usize)>) -> io::Result<Stop> {
        loop {
            let status = self.conn.process_tls_records(self.input.unprocessed());
            let mut discard = status.discard;
            let mut transmit = false;
            let mut failure = None;
            let stop = match status.state {
                Err(e) => {
                    failure = Some(e);
                    None
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(rec) => {
                                discard += rec.discard;
                                let mut p = rec.payload;
                                if let Some((d, got)) = &mut dst {
                                    let k = p.len().min(d.len() - **got);
                                    d[**got..**got + k].copy_from_slice(&p[..k]);
                                    **got += k;
                                    p = &p[k..];
                                }
                                self.plain.buf.extend_from_slice(p);
                            }
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    match &dst {
                        Some((d, got)) if **got == d.len() => Some(Stop::Full),
                        _ => None,
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    self.out.encode(&mut e);
                    None
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // The records wait in the output buffer until the
                    // socket takes them.
                    t.done();
                    transmit = true;
                    None
                }
                Ok(ConnectionState::WriteTraffic(_)) => Some(Stop::Writable),
                Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => Some(Stop::Eof),
                // BlockedHandshake; early data is never enabled.
                Ok(_) => Some(Stop::Blocked),
            };
            self.input.start += discard;
            if let Some(e) = failure {
                self.send_alert();
                self.failed();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if transmit {
                match self.send_pending() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                        self.failed();
                        return Err(e);
                    }
                    _ => {}
                }
            }
            if let Some(stop) = stop {
                if self.state == Handshake::Started && !self.conn.is_handshaking() {
                    self.state = Handshake::Done;
                    if self.session_cache {
                        self.counts
                            .new_sessions
                            .fetch_add(self.new_sessions(), Ordering::Relaxed);
                    }
                }
                return Ok(stop);
            }
        }
    }

    /// After a failure: the alert rustls queued, if the socket takes it.
    /// rustls hands a queued record out before it looks at the input
    /// again, so one call gets the alert; a second would run the bad
    /// input through again (and raise a second fatal alert, which rustls
    /// asserts never happens).
    fn send_alert(&mut self) {
        let status = self.conn.process_tls_records(self.input.unprocessed());
        if let Ok(ConnectionState::EncodeTlsData(mut e)) = status.state {
            self.out.encode(&mut e);
            let _ = self.send_pending();
        }
    }

    /// Reads and decrypts what the socket holds: returns when `buf` is
    /// full, the socket is empty (`WouldBlock` if nothing came) or at
    /// end-of-stream, so that a short read means the socket was drained,
    /// as for a plain socket.
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut got = self.plain.take(buf);
        // The last socket read came back short: the socket is empty, and
        // once the buffered records are decrypted there is nothing to
        // wait for (a plain socket's rule; saves the read that would say
        // WouldBlock).
        let mut drained = false;
        loop {
            if got == buf.len() {
                return Ok(got);
            }
            match self.drive(Some((&mut *buf, &mut got)))? {
                Stop::Eof | Stop::Full => return Ok(got),
                Stop::Blocked | Stop::Writable if drained && got > 0 => return Ok(got),
                Stop::Blocked | Stop::Writable => {}
            }
            match self.fill_in() {
                Ok((0, _)) => {
                    if got > 0 {
                        return Ok(got);
                    }
                    // The peer closed without close_notify.
                    self.failed();
                    return Ok(0);
                }
                Ok((_, short)) => drained = short,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.failed();
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Encrypts `data` into the output buffer as one or more records.
    /// False when rustls cannot send application data (before the
    /// handshake is done, or after close_notify went).
    fn seal(&mut self, data: &[u8]) -> io::Result<bool> {
        let mut need = data.len() + 64;
        for _ in 0..8 {
            let status = self.conn.process_tls_records(self.input.unprocessed());
            let discard = status.discard;
            let sealed = match status.state {
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    match w.encrypt(data, self.out.room(need)) {
                        Ok(n) => {
                            self.out.end += n;
                            Some(true)
                        }
                        Err(EncryptError::InsufficientSize(s)) => {
                            need = s.required_size;
                            None
                        }
                        Err(e) => return Err(io::Error::other(e)),
                    }
                }
                _ => Some(false),
            };
            self.input.start += discard;
            match sealed {
                Some(true) => return Ok(true),
                // Not writable straight away: settle what rustls has to do
                // first (records to send, input to take), then again.
                Some(false) if self.drive(None)? != Stop::Writable => return Ok(false),
                _ => {}
            }
        }
        Ok(false)
    }

    /// Encrypts the gathered small slices.
    fn seal_stage(&mut self) -> io::Result<bool> {
        if self.stage.is_empty() {
            return Ok(true);
        }
        let stage = std::mem::take(&mut self.stage);
        let r = self.seal(&stage);
        self.stage = stage;
        self.stage.clear();
        r
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_plain(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Takes at most `ssl_wbuf_size` bytes more than the socket has taken
    /// (records waiting count), so that a client that does not read
    /// holds the server's replies in the connection's queue, where the
    /// connection budget sees them, not here. Small slices are gathered
    /// into records of up to 16 KB; large ones are encrypted in place.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.send_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        let mut room = self.wbuf_size.saturating_sub(self.out.pending());
        let mut taken = 0;
        for b in bufs {
            if room == 0 {
                break;
            }
            let b = &b[..b.len().min(room)];
            if b.len() >= GATHER_MAX {
                if !self.seal_stage()? || !self.seal(b)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
            } else {
                if self.stage.len() + b.len() > RECORD_PAYLOAD && !self.seal_stage()? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                self.stage.extend_from_slice(b);
            }
            room -= b.len();
            taken += b.len();
        }
        if !self.seal_stage()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.send_pending() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TlsStream {
    /// memcached shuts TLS down before it closes: a close_notify, if the
    /// socket takes it now.
    fn drop(&mut self) {
        if self.state != Handshake::Done {
            return;
        }
        let status = self.conn.process_tls_records(self.input.unprocessed());
        if let Ok(ConnectionState::WriteTraffic(mut w)) = status.state {
            if let Ok(n) = w.queue_close_notify(self.out.room(64)) {
                self.out.end += n;
            }
        }
        let _ = self.send_pending();
    }
}

/// What `ssl_kernel_tls` gets: the record layer stays in rustls. The
/// kernel's `tls` module must be loaded for an offload at all
/// (`tcp_available_ulp`); memcrab does not hand records to it yet.
pub fn kernel_tls_note() -> String {
    let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap_or_default();
    if ulps.split_whitespace().any(|u| u == "tls") {
        "memcrab does not offload TLS to the kernel yet; records stay in user space (rustls)".into()
    } else {
        format!(
            "this kernel has no tls module (tcp_available_ulp: {}); records stay in user space (rustls)",
            ulps.trim()
        )
    }
}

/// Builds the configuration the options describe.
fn build(o: &SslOptions) -> Result<Arc<ServerConfig>, String> {
    let chain_name = path_name(o.chain_cert.as_deref());
    let certs = match &o.chain_cert {
        None => Err("no certificate file given (-o ssl_chain_cert)".to_string()),
        Some(p) => read_certs(p),
    }
    .map_err(|e| format!("Error loading the certificate chain: {chain_name} : {e}"))?;
    // Without ssl_key the key is looked for in the chain file, as
    // memcached's help says.
    let key_path = o.key.as_ref().or(o.chain_cert.as_ref());
    let key_name = path_name(key_path.map(PathBuf::as_path));
    if o.keyformat != 1 {
        return Err(format!(
            "Error loading the key: {key_name} : ssl_keyformat {} is not supported: memcrab reads PEM keys only (ssl_keyformat=1)",
            o.keyformat
        ));
    }
    let key = key_path
        .ok_or_else(|| "no key file given (-o ssl_key)".to_string())
        .and_then(|p| PrivateKeyDer::from_pem_file(p).map_err(pem_error))
        .map_err(|e| format!("Error loading the key: {key_name} : {e}"))?;
    let suites = cipher_suites(o.ciphers.as_deref())?;
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..aws_lc_rs::default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if o.min_version >= 3 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("Error setting the TLS versions: {e}"))?;
    let builder = if o.verify_mode == 0 {
        builder.with_no_client_auth()
    } else {
        let ca = o.ca_cert.as_ref().ok_or_else(|| {
            format!(
                "ssl_verify_mode={} checks client certificates: it needs -o ssl_ca_cert (the CAs that sign them)",
                o.verify_mode
            )
        })?;
        let ca_name = ca.display();
        let mut roots = RootCertStore::empty();
        for c in read_certs(ca)
            .map_err(|e| format!("Error loading the CA certificate: {ca_name} : {e}"))?
        {
            roots
                .add(c)
                .map_err(|e| format!("Error loading the CA certificate: {ca_name} : {e}"))?;
        }
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        // 1 asks for a certificate and checks one if given; 2 and 3 refuse
        // a client without one (3, "once", differs only on renegotiation,
        // which TLS 1.3 and memcrab do not have).
        let v = if o.verify_mode == 1 {
            v.allow_unauthenticated()
        } else {
            v
        };
        builder.with_client_cert_verifier(
            v.build()
                .map_err(|e| format!("Error loading the CA certificate: {ca_name} : {e}"))?,
        )
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("Error validating the certificate: {e}"))?;
    if o.session_cache {
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        config.send_tls13_tickets = TLS13_TICKETS;
    } else {
        // No resumption: no tickets to make and send either.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// memcached prints a missing path as C's `(null)`.
fn path_name(p: Option<&Path>) -> String {
    p.map_or_else(|| "(null)".to_string(), |p| p.display().to_string())
}

fn read_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(p)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM item of that kind in the file".into()
        }
        e => format!("bad PEM: {e:?}"),
    }
}

/// The TLS 1.2 suites an OpenSSL cipher list (`ssl_ciphers`) selects;
/// TLS 1.3's suites are not set by it (as with OpenSSL, where they have a
/// list of their own). Understands the suites' OpenSSL and IANA names,
/// the usual keywords (`ALL`, `DEFAULT`, `HIGH`, `ECDHE`, `AESGCM`,
/// `AES128`, `AES256`, `CHACHA20`, `ECDSA`, `RSA`), `+` to combine them
/// and `!`/`-` to take suites out. Unknown names select nothing; a list
/// that selects no suite is refused as memcached refuses it.
fn cipher_suites(list: Option<&str>) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = aws_lc_rs::default_provider().cipher_suites;
    let Some(list) = list else {
        return Ok(all);
    };
    let (tls13, tls12): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|s| matches!(s, SupportedCipherSuite::Tls13(_)));
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut banned: Vec<SupportedCipherSuite> = Vec::new();
    for token in list
        .split([':', ',', ' '])
        .filter(|t| !t.is_empty() && !t.starts_with('@'))
    {
        let (op, body) = match token.as_bytes()[0] {
            b'!' => ('!', &token[1..]),
            b'-' => ('-', &token[1..]),
            b'+' => ('+', &token[1..]),
            _ => (' ', token),
        };
        for s in tls12.iter().filter(|s| suite_matches(s, body)) {
            let has = |v: &Vec<SupportedCipherSuite>| v.iter().any(|x| x.suite() == s.suite());
            match op {
                '!' => {
                    chosen.retain(|x| x.suite() != s.suite());
                    if !has(&banned) {
                        banned.push(*s);
                    }
                }
                '-' => chosen.retain(|x| x.suite() != s.suite()),
                _ => {
                    if !has(&chosen) && !has(&banned) {
                        chosen.push(*s);
                    }
                }
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!("Error setting the provided cipher(s): {list}"));
    }
    Ok(tls13.into_iter().chain(chosen).collect())
}

/// OpenSSL's name of a TLS 1.2 suite.
fn openssl_name(s: &SupportedCipherSuite) -> String {
    let iana = format!("{:?}", s.suite());
    let body = iana.trim_start_matches("TLS_");
    let (kx, rest) = body.split_once("_WITH_").unwrap_or(("", body));
    let auth = kx.trim_start_matches("ECDHE_");
    let cipher = rest
        .replace("AES_128_GCM", "AES128-GCM")
        .replace("AES_256_GCM", "AES256-GCM")
        .replace("CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305")
        .replace('_', "-");
    format!("ECDHE-{auth}-{cipher}")
}

fn suite_matches(s: &SupportedCipherSuite, expr: &str) -> bool {
    let iana = format!("{:?}", s.suite());
    let ossl = openssl_name(s);
    expr.split('+').all(|part| {
        part.eq_ignore_ascii_case(&iana)
            || part.eq_ignore_ascii_case(&ossl)
            || match part {
                "ALL" | "DEFAULT" | "HIGH" | "TLSv1.2" | "ECDHE" | "EECDH" | "kECDHE"
                | "kEECDH" | "AEAD" => true,
                "AESGCM" | "AES" => iana.contains("_AES_"),
                "AES128" => iana.contains("AES_128"),
                "AES256" => iana.contains("AES_256"),
                "CHACHA20" => iana.contains("CHACHA20"),
                "ECDSA" | "aECDSA" => iana.contains("ECDSA"),
                "RSA" | "aRSA" => iana.contains("_RSA_"),
                "SHA256" => iana.ends_with("SHA256"),
                "SHA384" => iana.ends_with("SHA384"),
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &str) -> Vec<String> {
        cipher_suites(Some(list))
            .unwrap()
            .iter()
            .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
            .map(openssl_name)
            .collect()
    }

    #[test]
    fn openssl_cipher_lists() {
        assert_eq!(
            names("ECDHE-RSA-AES128-GCM-SHA256"),
            ["ECDHE-RSA-AES128-GCM-SHA256"]
        );
        assert_eq!(names("HIGH:!CHACHA20:!ECDSA").len(), 2);
        assert_eq!(names("ECDHE+AESGCM:-AES256").len(), 2);
        assert_eq!(names("ALL").len(), 6);
        assert_eq!(
            names("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
            ["ECDHE-ECDSA-CHACHA20-POLY1305"]
        );
        // TLS 1.3's suites stay whatever the list says.
        let all = cipher_suites(Some("ECDHE-RSA-AES128-GCM-SHA256")).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            cipher_suites(Some("RC4-MD5:NONSENSE")).unwrap_err(),
            "Error setting the provided cipher(s): RC4-MD5:NONSENSE"
        );
    }

    #[test]
    fn missing_files_give_memcacheds_messages() {
        let e = build(&SslOptions::default()).unwrap_err();
        assert!(
            e.starts_with("Error loading the certificate chain: (null) : "),
            "{e}"
        );
        let o = SslOptions {
            chain_cert: Some("/nonexistent/cert.pem".into()),
            ..SslOptions::default()
        };
        let e = build(&o).unwrap_err();
        assert!(
            e.starts_with("Error loading the certificate chain: /nonexistent/cert.pem : "),
            "{e}"
        );
        assert!(e.contains("No such file"), "{e}");
    }
}
