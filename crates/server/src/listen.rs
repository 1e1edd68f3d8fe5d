//! Listening sockets (socket2 for the options memcached sets) and the
//! acceptor thread that enforces `-c` and spreads connections over the
//! workers round-robin.

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
    Tcp(mio::net::TcpListener, String),
    Unix(mio::net::UnixListener, String),
}

impl Listener {
    pub fn info(&self) -> ListenerInfo {
        match self {
            Listener::Tcp(l, a) => ListenerInfo {
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
            Listener::Tcp(l, me) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(NewConn {
                    stream: Stream::Tcp(s),
                    addr: tcp_name(peer),
                    listen_addr: Some(me.clone()),
                })
            }
            Listener::Unix(l, me) => {
                let (s, _) = l.accept()?;
                Ok(NewConn {
                    stream: Stream::Unix(s),
                    addr: me.clone(),
                    listen_addr: None,
                })
            }
        }
    }
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

/// Binds every listener the settings ask for.
pub fn bind_all(s: &Settings) -> Result<Vec<Listener>, String> {
    if let Some(path) = &s.unix_socket {
        return Ok(vec![bind_unix(path, s.unix_mask, s.backlog)?]);
    }
    let mut out = Vec::new();
    let want = match s.port {
        0 => return Ok(out),
        -1 => 0,
        p => p as u16,
    };
    if s.listen.is_empty() {
        let any4 = SocketAddr::from(([0, 0, 0, 0], want));
        let l = bind_tcp(any4, s.backlog)
            .map_err(|e| format!("failed to listen on TCP port {}: {e}", s.port))?;
        let port = l.local_addr().map(|a| a.port()).unwrap_or(want);
        out.push(Listener::Tcp(
            l,
            tcp_name(SocketAddr::from(([0, 0, 0, 0], port))),
        ));
        // IPv6 as well where the host has it, as memcached does.
        let any6 = SocketAddr::from(([0u16; 8], port));
        if let Ok(l) = bind_tcp(any6, s.backlog) {
            out.push(Listener::Tcp(l, tcp_name(any6)));
        }
    } else {
        for spec in &s.listen {
            for addr in resolve(spec, want)? {
                let l = bind_tcp(addr, s.backlog)
                    .map_err(|e| format!("failed to listen on TCP port {}: {e}", addr.port()))?;
                let name = l
                    .local_addr()
                    .map(tcp_name)
                    .unwrap_or_else(|_| tcp_name(addr));
                out.push(Listener::Tcp(l, name));
            }
        }
    }
    if let Ok(file) = std::env::var("MEMCACHED_PORT_FILENAME") {
        write_port_file(&file, &out);
    }
    Ok(out)
}

/// memcached's MEMCACHED_PORT_FILENAME: the ports actually bound (useful
/// with `-p 0`), one `TCP INET: port` line per listener.
fn write_port_file(file: &str, ls: &[Listener]) {
    let mut text = String::new();
    for l in ls {
        if let Listener::Tcp(l, _) = l {
            if let Ok(a) = l.local_addr() {
                let fam = if a.is_ipv6() { "INET6" } else { "INET" };
                text.push_str(&format!("TCP {fam}: {}\n", a.port()));
            }
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

/// Starts the acceptor thread.
pub fn spawn_acceptor(
    mut listeners: Vec<Listener>,
    workers: Vec<WorkerHandle>,
    sh: Arc<Shared>,
) -> io::Result<JoinHandle<()>> {
    let poll = Poll::new()?;
    for (i, l) in listeners.iter_mut().enumerate() {
        match l {
            Listener::Tcp(l, _) => poll.registry().register(l, Token(i), Interest::READABLE)?,
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
        for id in ids {
            loop {
                match listeners[id].accept() {
                    Ok(mut nc) => {
                        if !sh.conns.try_admit(sh.settings.maxconns) {
                            let _ = nc.stream.write(b"ERROR Too many open connections\r\n");
                            continue;
                        }
                        let w = &workers[next % workers.len()];
                        next = next.wrapping_add(1);
                        if !w.send(nc) {
                            sh.conns.remove_slot();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if sh.verbose() > 0 {
                            eprintln!("memcrab: accept(): {e}");
                        }
                        retry = true;
                        break;
                    }
                }
            }
        }
    }
}
