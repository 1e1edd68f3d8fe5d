//! Listening sockets (socket2 for the options memcached sets) and the
//! acceptor thread that enforces `-c` and spreads connections over the
//! workers round-robin; and the UDP sockets, one per worker per address,
//! bound together with SO_REUSEPORT (the kernel spreads the datagrams by
//! their source, each worker answers through its own socket).

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Socket, Type};

use crate::config::Settings;
use crate::shared::{ListenerInfo, Shared};
use crate::stream::Stream;
use crate::worker::{NewConn, WorkerHandle};

pub enum Listener {
    /// With whether its connections speak TLS (`-Z`, unless `-l notls:`).
    Tcp(mio::net::TcpListener, String, bool),
    Unix(mio::net::UnixListener, String),
}

impl Listener {
    pub fn info(&self) -> ListenerInfo {
        match self {
            Listener::Tcp(l, a, _) => ListenerInfo {
                fd: l.as_raw_fd(),
                addr: a.clone(),
            },
            Listener::Unix(l, a) => ListenerInfo {
                fd: l.as_raw_fd(),
                addr: a.clone(),
            },
        }
    }

    fn accept(&self) -> io::Result<NewConn> {
        match self {
            Listener::Tcp(l, _, tls) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(NewConn {
                    stream: Stream::Tcp(s),
                    tls: *tls,
                })
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                Ok(NewConn {
                    stream: Stream::Unix(s),
                    tls: false,
                })
            }
        }
    }
}

/// memcached's name for a client's address, asked of its socket.
pub fn peer_name(fd: i32) -> String {
    sock_name(nix::sys::socket::getpeername(fd).ok())
}

/// A client's address as memcached's `watch connevents` lines give it:
/// `rip=ADDR rport=PORT transport=tcp|local` (`unix`, port 0, for a unix
/// socket; an address the socket cannot give reads as memcached's zeroed
/// one).
pub fn conn_event_peer(fd: i32, tcp: bool) -> String {
    let peer = nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(fd).ok();
    let (ip, port) = match peer.as_ref() {
        Some(a) if a.as_sockaddr_in().is_some() => {
            let v4 = a.as_sockaddr_in().expect("checked");
            (v4.ip().to_string(), v4.port())
        }
        Some(a) if a.as_sockaddr_in6().is_some() => {
            let v6 = a.as_sockaddr_in6().expect("checked");
            (v6.ip().to_string(), v6.port())
        }
        _ if !tcp => ("unix".to_string(), 0),
        _ => (String::new(), 0),
    };
    let transport = if tcp { "tcp" } else { "local" };
    format!("rip={ip} rport={port} transport={transport}")
}

/// memcached's name for the address a client reached (its `listen_addr`).
pub fn local_name(fd: i32) -> String {
    sock_name(nix::sys::socket::getsockname(fd).ok())
}

fn sock_name(a: Option<nix::sys::socket::SockaddrStorage>) -> String {
    if let Some(a) = a {
        if let Some(v4) = a.as_sockaddr_in() {
            return tcp_name(SocketAddr::V4((*v4).into()));
        }
        if let Some(v6) = a.as_sockaddr_in6() {
            return tcp_name(SocketAddr::V6((*v6).into()));
        }
        if let Some(path) = a.as_unix_addr().and_then(|u| u.path()) {
            return format!("unix:{}", path.display());
        }
    }
    // A UNIX-domain client has no address: memcached prints the family
    // of the empty one it keeps.
    "?:<AF 0>".to_string()
}

fn tcp_name(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => format!("tcp:{a}"),
        SocketAddr::V6(a) => format!("tcp6:{a}"),
    }
}

fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<mio::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    sock.set_nonblocking(true)?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

/// The addresses `-l` names: `ip`, `ip:port`, `[ip6]:port` or a host name;
/// without a port, `-p`'s.
fn resolve(spec: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let bare = spec.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    (bare, port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .map_err(|e| format!("getaddrinfo(): {e}"))
}

/// What `bind_all` opened.
pub struct Bound {
    pub listeners: Vec<Listener>,
    /// `-U`: for each worker, its socket on each address.
    pub udp: Vec<Vec<std::net::UdpSocket>>,
}

/// Binds every listener the settings ask for, and the UDP sockets for
/// `workers` workers.
pub fn bind_all(s: &Settings, workers: usize) -> Result<Bound, String> {
    if let Some(path) = &s.unix_socket {
        return Ok(Bound {
            listeners: vec![bind_unix(path, s.unix_mask, s.backlog)?],
            udp: (0..workers).map(|_| Vec::new()).collect(),
        });
    }
    let mut out = Vec::new();
    if let Some(want) = port_wanted(s.port) {
        let mut picked = want;
        for (spec, mut addr, plain) in addresses(s, want)? {
            // Without -l, the IPv6 listener takes the port the IPv4 one got.
            if spec.is_none() {
                addr.set_port(picked);
            }
            let l = match bind_tcp(addr, s.backlog) {
                Ok(l) => l,
                // Without -l, IPv6 as well only where the host has it, as
                // memcached does.
                Err(_) if spec.is_none() && addr.is_ipv6() => continue,
                Err(e) => return Err(format!("failed to listen on TCP port {}: {e}", s.port)),
            };
            let bound = l.local_addr().unwrap_or(addr);
            picked = bound.port();
            out.push(Listener::Tcp(l, tcp_name(bound), s.tls.is_some() && !plain));
        }
    }
    let mut udp: Vec<Vec<std::net::UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    if let Some(want) = port_wanted(s.udp_port) {
        let mut picked = want;
        for (spec, mut addr, _) in addresses(s, want)? {
            if spec.is_none() {
                addr.set_port(picked);
            }
            let group = match bind_udp_group(addr, workers) {
                Ok(g) => g,
                Err(_) if spec.is_none() && addr.is_ipv6() => continue,
                Err(e) => return Err(format!("failed to listen on UDP port {}: {e}", s.udp_port)),
            };
            for (w, sock) in group.into_iter().enumerate() {
                if let Ok(a) = sock.local_addr() {
                    picked = a.port();
                }
                udp[w].push(sock);
            }
        }
    }
    if let Ok(file) = std::env::var("MEMCACHED_PORT_FILENAME") {
        write_port_file(&file, &out, udp.first().map_or(&[][..], |v| &v[..]));
    }
    Ok(Bound {
        listeners: out,
        udp,
    })
}

/// memcached's port numbers: 0 is off, -1 an ephemeral port.
fn port_wanted(p: i32) -> Option<u16> {
    match p {
        0 => None,
        -1 => Some(0),
        p => Some(p as u16),
    }
}

/// The addresses to bind, each with the `-l` spec it came from (none:
/// memcached's default of every IPv4 and IPv6 address) and whether it
/// said `notls:` (plain beside `-Z`). An ephemeral port is picked by the
/// first bind; `fix_port` keeps the rest on it.
fn addresses(s: &Settings, port: u16) -> Result<Vec<(Option<String>, SocketAddr, bool)>, String> {
    if s.listen.is_empty() {
        return Ok(vec![
            (None, SocketAddr::from(([0, 0, 0, 0], port)), false),
            (None, SocketAddr::from(([0u16; 8], port)), false),
        ]);
    }
    let mut out = Vec::new();
    for spec in &s.listen {
        let (plain, host) = match spec.strip_prefix("notls:") {
            Some(rest) => {
                if s.tls.is_none() {
                    return Err(format!(
                        "'notls' option is valid only when SSL is enabled\nfailed to listen on one of interface(s) {spec}: Success"
                    ));
                }
                (true, rest)
            }
            None => (false, spec.as_str()),
        };
        for addr in resolve(host, port)? {
            out.push((Some(spec.clone()), addr, plain));
        }
    }
    Ok(out)
}

/// `-o metrics_port`: a blocking listener on each `-l` address at that
/// port (every address without `-l`; only 127.0.0.1 under `-s`, which
/// opens no network port of its own).
pub fn bind_metrics(s: &Settings, port: u16) -> Result<Vec<std::net::TcpListener>, String> {
    let addrs = if s.unix_socket.is_some() {
        vec![(
            Some(String::new()),
            SocketAddr::from(([127, 0, 0, 1], port)),
            false,
        )]
    } else {
        addresses(s, port)?
    };
    let mut out = Vec::new();
    for (spec, mut addr, _) in addrs {
        addr.set_port(port);
        let bind = || -> io::Result<std::net::TcpListener> {
            let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
            sock.set_reuse_address(true)?;
            if addr.is_ipv6() {
                sock.set_only_v6(true)?;
            }
            sock.bind(&addr.into())?;
            sock.listen(16)?;
            Ok(sock.into())
        };
        match bind() {
            Ok(l) => out.push(l),
            Err(_) if spec.is_none() && addr.is_ipv6() => {}
            Err(e) => {
                return Err(format!(
                    "failed to listen on metrics port {port} ({addr}): {e}"
                ))
            }
        }
    }
    Ok(out)
}

/// One UDP socket per worker on `addr`, all with SO_REUSEPORT. The port
/// is first bound alone, without it, so that a port some other process
/// holds is refused rather than silently shared.
fn bind_udp_group(mut addr: SocketAddr, workers: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let probe = udp_socket(addr, false)?;
    if addr.port() == 0 {
        if let Some(a) = probe.local_addr()?.as_socket() {
            addr.set_port(a.port());
        }
    }
    drop(probe);
    (0..workers)
        .map(|_| udp_socket(addr, true).map(std::net::UdpSocket::from))
        .collect()
}

fn udp_socket(addr: SocketAddr, shared: bool) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if shared {
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        // memcached raises the send buffer as far as the kernel lets it
        // (a multiget's reply leaves in one burst of datagrams); the kernel
        // caps the request at net.core.wmem_max.
        let _ = sock.set_send_buffer_size(256 * 1024 * 1024);
        sock.set_nonblocking(true)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// memcached's MEMCACHED_PORT_FILENAME: the ports actually bound (useful
/// with `-p -1`), a `TCP INET: port` line per listener, then a `UDP ...`
/// line per UDP address.
fn write_port_file(file: &str, ls: &[Listener], udp: &[std::net::UdpSocket]) {
    let mut text = String::new();
    let mut line = |proto: &str, a: SocketAddr| {
        let fam = if a.is_ipv6() { "INET6" } else { "INET" };
        text.push_str(&format!("{proto} {fam}: {}\n", a.port()));
    };
    for l in ls {
        if let Listener::Tcp(l, _, _) = l {
            if let Ok(a) = l.local_addr() {
                line("TCP", a);
            }
        }
    }
    for u in udp {
        if let Ok(a) = u.local_addr() {
            line("UDP", a);
        }
    }
    let tmp = format!("{file}.lck");
    if std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, file))
        .is_err()
    {
        eprintln!("memcrab: cannot write {file}");
    }
}

fn bind_unix(path: &Path, mask: u32, backlog: i32) -> Result<Listener, String> {
    // A stale socket from an earlier run is replaced, anything else kept.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| e.to_string())?;
    let addr = socket2::SockAddr::unix(path).map_err(|e| e.to_string())?;
    sock.bind(&addr)
        .map_err(|e| format!("bind(): {e}: {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask & 0o777))
        .map_err(|e| format!("chmod(): {e}: {}", path.display()))?;
    sock.listen(backlog).map_err(|e| format!("listen(): {e}"))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let std_l: std::os::unix::net::UnixListener = sock.into();
    Ok(Listener::Unix(
        mio::net::UnixListener::from_std(std_l),
        format!("unix:{}", path.display()),
    ))
}

/// Connections handed to one worker before it is woken; the rest of a
/// batch wake it when the acceptor has taken every waiting connection.
const ACCEPT_BATCH: usize = 16;

/// Starts the acceptor thread.
pub fn spawn_acceptor(
    mut listeners: Vec<Listener>,
    workers: Vec<WorkerHandle>,
    sh: Arc<Shared>,
) -> io::Result<JoinHandle<()>> {
    let poll = Poll::new()?;
    for (i, l) in listeners.iter_mut().enumerate() {
        match l {
            Listener::Tcp(l, _, _) => poll.registry().register(l, Token(i), Interest::READABLE)?,
            Listener::Unix(l, _) => poll.registry().register(l, Token(i), Interest::READABLE)?,
        }
    }
    std::thread::Builder::new()
        .name("acceptor".into())
        .spawn(move || accept_loop(poll, listeners, workers, sh))
}

fn accept_loop(
    mut poll: Poll,
    listeners: Vec<Listener>,
    workers: Vec<WorkerHandle>,
    sh: Arc<Shared>,
) {
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    // After an accept error (out of descriptors) retry every listener
    // soon: the edge-triggered poll would not report them again.
    let mut retry = false;
    // Since when accepting stopped for want of descriptors (memcached's
    // listen_disabled_num and time_in_listen_disabled_us).
    let mut disabled: Option<std::time::Instant> = None;
    loop {
        let timeout = retry.then(|| Duration::from_millis(10));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("memcrab: acceptor poll failed: {e}");
                return;
            }
            continue;
        }
        let ids: Vec<usize> = if retry {
            (0..listeners.len()).collect()
        } else {
            events.iter().map(|e| e.token().0).collect()
        };
        retry = false;
        // Workers handed connections since their last wake: woken once a
        // batch (a wake is a system call; one per connection made a burst
        // of 8,000 cost 8,000 of them and as many worker wake-ups).
        let mut handed = vec![0usize; workers.len()];
        for id in ids {
            loop {
                let got = listeners[id].accept();
                if !matches!(&got, Err(e) if e.kind() != io::ErrorKind::WouldBlock) {
                    if let Some(since) = disabled.take() {
                        sh.conns.accepting_again(since.elapsed());
                    }
                }
                match got {
                    Ok(mut nc) => {
                        let max = if sh.settings.ext.maxconns_fast {
                            sh.settings.maxconns
                        } else {
                            // Only the descriptors limit them.
                            usize::MAX
                        };
                        if !sh.conns.try_admit(max) {
                            let _ = nc.stream.write(b"ERROR Too many open connections\r\n");
                            continue;
                        }
                        let k = next % workers.len();
                        next = next.wrapping_add(1);
                        if workers[k].send(nc) {
                            handed[k] += 1;
                            if handed[k] >= ACCEPT_BATCH {
                                workers[k].wake();
                                handed[k] = 0;
                            }
                        } else {
                            sh.conns.remove_slot();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let out_of_fds = matches!(
                            e.raw_os_error(),
                            Some(nix::libc::EMFILE | nix::libc::ENFILE)
                        );
                        if out_of_fds {
                            if disabled.is_none() {
                                disabled = Some(std::time::Instant::now());
                                sh.conns.accepting_stopped();
                            }
                            if sh.verbose() > 0 {
                                eprintln!("Too many open connections");
                            }
                        } else if sh.verbose() > 0 {
                            eprintln!("memcrab: accept(): {e}");
                        }
                        retry = true;
                        break;
                    }
                }
            }
        }
        for (k, n) in handed.iter().enumerate() {
            if *n > 0 {
                workers[k].wake();
            }
        }
    }
}
