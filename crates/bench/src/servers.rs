//! Servers under comparison: finding the binaries, starting them on a free
//! loopback port (pinned to given CPUs), and reading what the kernel knows
//! of them (CPU time, peak and current RSS) and what `stats` says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Which server, and how to start it.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// "memcrab", "memcached", or a path.
    pub name: String,
    pub path: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

impl ServerSpec {
    pub fn resolve(name: &str) -> Result<ServerSpec, String> {
        let path = match name {
            "memcrab" => {
                // Beside this binary (target/release), else on PATH.
                let beside = std::env::current_exe()
                    .ok()
                    .and_then(|e| e.parent().map(|d| d.join("memcrab")))
                    .filter(|p| p.is_file());
                beside
                    .or_else(|| on_path("memcrab"))
                    .ok_or("memcrab not found: build it (cargo build --release)")?
            }
            "memcached" => on_path("memcached")
                .or_else(|| Some(PathBuf::from("/usr/bin/memcached")).filter(|p| p.is_file()))
                .ok_or("memcached not found: apt-get install memcached")?,
            other => PathBuf::from(other),
        };
        Ok(ServerSpec {
            name: name.to_string(),
            path,
        })
    }

    pub fn is_memcached(&self) -> bool {
        self.path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().contains("memcached"))
    }
}

/// `compare --ports`: the range servers are started in, and the next.
static PORTS: std::sync::Mutex<Option<(u16, u16, u16)>> = std::sync::Mutex::new(None);

/// Starts servers on FIRST..=LAST in turn instead of a kernel-picked port.
pub fn use_ports(first: u16, last: u16) {
    *PORTS.lock().unwrap_or_else(|e| e.into_inner()) = Some((first, last, first));
}

/// The `-p` value for the next start.
fn next_port() -> String {
    let mut g = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_mut() {
        None => "-1".into(),
        Some((first, last, next)) => {
            let p = *next;
            *next = if p >= *last { *first } else { p + 1 };
            p.to_string()
        }
    }
}

pub struct Running {
    child: Child,
    pub addr: SocketAddr,
    pub udp_port: Option<u16>,
    port_file: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.port_file);
    }
}

static N: AtomicUsize = AtomicUsize::new(0);

/// Why a server did not start: refused its flags (a feature it lacks), or
/// something else.
#[derive(Debug)]
pub enum StartError {
    Refused(String),
    Failed(String),
}

impl Running {
    /// Starts `spec` with `flags` on 127.0.0.1 and a free port, pinned to
    /// `cpus` if given.
    pub fn start(
        spec: &ServerSpec,
        flags: &[String],
        cpus: Option<&[usize]>,
    ) -> Result<Running, StartError> {
        let port_file = std::env::temp_dir().join(format!(
            "memcrab-bench-{}-{}.port",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&port_file);
        let mut cmd = Command::new(&spec.path);
        cmd.args(["-l", "127.0.0.1", "-p", &next_port()]);
        if !flags.iter().any(|f| f == "-U") {
            cmd.args(["-U", "0"]);
        }
        cmd.args(flags)
            .env("MEMCACHED_PORT_FILENAME", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if spec.is_memcached() && nix::unistd::getuid().is_root() {
            cmd.args(["-u", "root"]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("{}: {e}", spec.path.display())))?;
        if let Some(cpus) = cpus {
            use nix::sched::{sched_setaffinity, CpuSet};
            let mut set = CpuSet::new();
            for &c in cpus {
                let _ = set.set(c);
            }
            let _ = sched_setaffinity(nix::unistd::Pid::from_raw(child.id() as i32), &set);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let tcp = text
                    .lines()
                    .find_map(|l| l.strip_prefix("TCP INET: "))
                    .and_then(|p| p.trim().parse::<u16>().ok());
                let udp = text
                    .lines()
                    .find_map(|l| l.strip_prefix("UDP INET: "))
                    .and_then(|p| p.trim().parse::<u16>().ok());
                if let Some(port) = tcp {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Ok(Running {
                            child,
                            addr: SocketAddr::from(([127, 0, 0, 1], port)),
                            udp_port: udp,
                            port_file,
                        });
                    }
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let msg = format!("{} exited ({status}): {}", spec.name, err.trim());
                return Err(if status.code() == Some(64) {
                    StartError::Refused(msg)
                } else {
                    StartError::Failed(msg)
                });
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!("{} did not start", spec.name)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime + stime in seconds, from /proc/PID/stat.
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) else {
            return 0.0;
        };
        // Fields after the command name, which is in parentheses.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13
        // after the name (state is 0).
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        (ticks(11) + ticks(12)) / hz
    }

    /// CPU time of all the server's threads in nanoseconds, from
    /// /proc/PID/task/*/schedstat (finer than the 10 ms ticks of
    /// `cpu_seconds`).
    pub fn cpu_ns(&self) -> u64 {
        self.tasks_cpu_ns(None)
    }

    /// CPU time in nanoseconds of the server's threads named `name`
    /// (/proc/PID/task/*/comm).
    pub fn thread_cpu_ns(&self, name: &str) -> u64 {
        self.tasks_cpu_ns(Some(name))
    }

    fn tasks_cpu_ns(&self, name: Option<&str>) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return 0;
        };
        tasks
            .filter_map(|t| {
                let dir = t.ok()?.path();
                if let Some(name) = name {
                    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
                    (comm.trim() == name).then_some(())?;
                }
                let s = std::fs::read_to_string(dir.join("schedstat")).ok()?;
                s.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// (VmHWM, VmRSS) in bytes.
    pub fn rss(&self) -> (u64, u64) {
        let text =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let kb = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmHWM:"), kb("VmRSS:"))
    }

    /// `stats` as name/value pairs.
    pub fn stats(&self) -> Result<Vec<(String, String)>, String> {
        self.stats_group("")
    }

    /// `stats <group>` (`""` for plain `stats`) as name/value pairs.
    pub fn stats_group(&self, group: &str) -> Result<Vec<(String, String)>, String> {
        let mut s = TcpStream::connect(self.addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let cmd = if group.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {group}\r\n")
        };
        s.write_all(cmd.as_bytes()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while !out.ends_with(b"END\r\n") {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, ' ');
                (p.next() == Some("STAT"))
                    .then(|| (p.next().unwrap_or("").into(), p.next().unwrap_or("").into()))
            })
            .collect())
    }

    pub fn stat_u64(&self, name: &str) -> Result<u64, String> {
        self.stats()?
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("no stat {name}"))
    }
}
