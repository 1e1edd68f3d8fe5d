//! The `memcrab` binary: parses the flags, binds, starts the threads
//! (the crate's library holds everything else; its root has the map).
#![deny(unsafe_code)]

use memcrab_server::{config, listen, shared, stats, sys, worker};

use std::os::fd::AsRawFd;
use std::process::exit;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use memcrab_store::{Clock, Store};

use config::{Args, Early, Settings, EX_USAGE};
use shared::{Shared, UdpInfo};
use stats::WorkerStats;

/// sysexits' EX_OSERR, memcached's status when it cannot listen.
const EX_OSERR: i32 = 71;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    #[cfg(not(any(feature = "mimalloc", feature = "jemalloc")))]
    sys::fix_malloc_thresholds(64 * 1024);
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            exit(EX_USAGE);
        }
    };
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(Early::Print(text)) => {
            print!("{text}");
            exit(0);
        }
        Err(Early::Usage(msg)) => {
            eprintln!("{msg}");
            exit(EX_USAGE);
        }
    };
    if let Err(msg) = serve(settings) {
        eprintln!("{msg}");
        exit(EX_OSERR);
    }
}

fn serve(settings: Settings) -> Result<(), String> {
    // Handlers first: a `shutdown` or SIGTERM that arrives while the rest
    // starts must still end the process cleanly.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGHUP])
        .map_err(|e| format!("memcrab: cannot install signal handlers: {e}"))?;
    if settings.enable_coredumps {
        use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
        if setrlimit(Resource::RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY).is_err() {
            eprintln!("failed to ensure corefile creation");
        }
    }
    raise_fd_limit(settings.maxconns, settings.ext.maxconns_fast);
    let bound = listen::bind_all(&settings, settings.threads)?;
    let listeners = bound.listeners;
    let metrics = match settings.ext.metrics_port {
        Some(port) => listen::bind_metrics(&settings, port)?,
        None => Vec::new(),
    };
    drop_privileges(&settings)?;
    if settings.daemon {
        nix::unistd::daemon(false, settings.verbose > 0)
            .map_err(|e| format!("failed to daemon() in order to daemonize: {e}"))?;
        if let Some(p) = &settings.pidfile {
            if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
                eprintln!(
                    "Could not open the pid file {} for writing: {e}",
                    p.display()
                );
            }
        }
    }
    if settings.lock_memory {
        use nix::sys::mman::{mlockall, MlockAllFlags};
        if let Err(e) = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
            eprintln!("warning: -k invalid, mlockall() failed: {e}");
        }
    }

    let clock = Arc::new(Clock::new());
    let store = Store::try_new(settings.store_config(), Arc::clone(&clock)).map_err(|e| {
        format!(
            "failed to reserve {} bytes of item memory: {e}",
            settings.maxbytes
        )
    })?;
    if let Some(w) = store.warning() {
        eprintln!("{w}");
    }
    if settings.verbose > 1 {
        let t = store.classes();
        for id in 1..=t.largest() {
            eprintln!(
                "slab class {id:3}: chunk size {:9} perslab {:7}",
                t.size(id),
                t.per_page(id)
            );
        }
    }
    let worker_stats: Vec<Arc<WorkerStats>> = (0..settings.threads)
        .map(|_| {
            let e = &settings.ext;
            let hot = (e.hot_keys > 0).then(|| {
                memcrab_server::hotkeys::Slot::new(
                    e.hot_keys as usize,
                    e.hot_keys_window,
                    e.hot_keys_sample,
                    store.clock().now(),
                )
            });
            Arc::new(WorkerStats::new(hot))
        })
        .collect();
    let infos: Vec<_> = listeners.iter().map(listen::Listener::info).collect();
    let now = store.clock().now();
    let udp: Vec<Vec<(std::net::UdpSocket, Arc<UdpInfo>)>> = bound
        .udp
        .into_iter()
        .map(|socks| {
            socks
                .into_iter()
                .map(|s| {
                    let name = s
                        .local_addr()
                        .map(stats::udp_name)
                        .unwrap_or_else(|_| "udp:?".into());
                    let info = Arc::new(UdpInfo::new(s.as_raw_fd(), name, now));
                    (s, info)
                })
                .collect()
        })
        .collect();
    let mut udp_infos: Vec<Arc<UdpInfo>> =
        udp.iter().flatten().map(|(_, i)| Arc::clone(i)).collect();
    udp_infos.sort_by_key(|i| i.fd);
    if settings.verbose > 1 {
        let proto = match settings.protocol {
            config::Protocol::Auto => "auto-negotiate",
            config::Protocol::Ascii => "ascii",
            config::Protocol::Binary => "binary",
        };
        for l in &infos {
            eprintln!("<{} server listening ({proto})", l.fd);
        }
        for u in &udp_infos {
            eprintln!("<{} server listening (udp)", u.fd);
        }
    }
    let sh = Arc::new(Shared::new(
        settings,
        store,
        worker_stats.clone(),
        infos,
        udp_infos,
    ));
    // `watch evictions`: the store tells of each eviction under its lock;
    // the line goes into the watchers' buffers (their own locks only).
    let watch = Arc::clone(&sh.watch);
    sh.store.observe_evictions(Box::new(move |e| {
        watch.log(memcrab_server::watch::EVICTIONS, |b| {
            b.extend_from_slice(b"type=eviction key=");
            memcrab_server::watch::uri_encode(e.key, b);
            b.extend(
                format!(
                    " fetch={} ttl={} la={} clsid={} size={}\n",
                    if e.fetched { "yes" } else { "no" },
                    e.ttl,
                    e.idle,
                    e.class,
                    e.value_len
                )
                .bytes(),
            );
        });
    }));
    if sh.conns.too_few(sh.settings.maxconns) {
        eprintln!("Maxconns setting is too low, use -c to increase.");
        exit(1);
    }

    let mut handles = Vec::new();
    let mut udp = udp.into_iter();
    for (i, ws) in worker_stats.into_iter().enumerate() {
        let udp = udp.next().unwrap_or_default();
        let (h, _thread) = worker::spawn(i, Arc::clone(&sh), ws, udp)
            .map_err(|e| format!("worker thread: {e}"))?;
        handles.push(h);
    }
    memcrab_server::metrics::spawn(metrics, Arc::clone(&sh))
        .map_err(|e| format!("metrics thread: {e}"))?;
    listen::spawn_acceptor(listeners, handles, Arc::clone(&sh))
        .map_err(|e| format!("acceptor thread: {e}"))?;
    // The reaper: each time the clock turns a second, free what expired
    // (and what flush_all invalidated), a batch per taking of a lock. It
    // sleeps until the maintainer says the second has turned.
    let (turned, seconds) = std::sync::mpsc::sync_channel::<()>(1);
    let rsh = Arc::clone(&sh);
    std::thread::Builder::new()
        .name("expiry".into())
        .spawn(move || {
            let batch = rsh.settings.ext.expiry_batch as usize;
            while seconds.recv().is_ok() {
                rsh.store.reap(batch);
            }
        })
        .map_err(|e| format!("expiry thread: {e}"))?;
    let msh = Arc::clone(&sh);
    std::thread::Builder::new()
        .name("maintainer".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            if clock.tick() {
                // Full: the reaper has a second still to do, which covers
                // this one too.
                let _ = turned.try_send(());
            }
            if msh.settings.ext.slab_reassign {
                msh.store
                    .automove_step(msh.automove(), msh.settings.ext.slab_automove_ratio);
            }
            // Above a lowered cache_memlimit: pages go back as they empty.
            msh.store.shrink_step();
        })
        .map_err(|e| format!("maintainer thread: {e}"))?;

    wait_for_signal(signals, &sh);
    if sh.settings.daemon {
        if let Some(p) = &sh.settings.pidfile {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

/// Makes room for `-c` connections plus listeners and the like: raises
/// the soft descriptor limit up to the hard one. Without `maxconns_fast`
/// the limit is `-c` itself, as memcached sets it: the descriptors run
/// out there, and accepting waits until one is free.
fn raise_fd_limit(maxconns: usize, fast: bool) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = if fast {
        maxconns as u64 + 64
    } else {
        maxconns as u64
    };
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want || !fast {
            let new = want.min(hard);
            if setrlimit(Resource::RLIMIT_NOFILE, new, hard).is_err() || new < want {
                eprintln!(
                    "failed to set rlimit for open files to {want}: connections past {new} will be refused"
                );
            }
        }
    }
}

/// `-u`: when started as root, become that user.
fn drop_privileges(s: &Settings) -> Result<(), String> {
    use nix::unistd::{getuid, setgid, setuid, User};
    let Some(name) = &s.user else {
        return Ok(());
    };
    if !getuid().is_root() {
        return Ok(());
    }
    let user = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| format!("can't find the user {name} to switch to"))?;
    setgid(user.gid).map_err(|e| format!("failed to assume identity of user {name}: {e}"))?;
    setuid(user.uid).map_err(|e| format!("failed to assume identity of user {name}: {e}"))?;
    Ok(())
}

/// Blocks until SIGINT, SIGTERM or SIGUSR1 (the last from `shutdown
/// graceful`); connections end with the process. SIGHUP reloads the TLS
/// certificates (memcached 1.6's doc promises it; it does not end the
/// process either way).
fn wait_for_signal(mut signals: signal_hook::iterator::Signals, sh: &Shared) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    for sig in signals.forever() {
        if sig == SIGHUP {
            if let Some(tls) = &sh.settings.tls {
                match tls.refresh() {
                    Ok(()) if sh.verbose() > 0 => eprintln!("TLS certificates reloaded"),
                    Ok(()) => {}
                    Err(e) => eprintln!("{e}"),
                }
            }
            continue;
        }
        // memcached 1.6.18's stop lines: SIGUSR1 (shutdown graceful)
        // always says so; SIGINT and SIGTERM only under -v.
        if sig == SIGINT || sig == SIGTERM {
            if sh.verbose() > 0 {
                eprintln!("Exiting normally");
            }
        } else {
            eprintln!("Gracefully stopping");
        }
        return;
    }
}
