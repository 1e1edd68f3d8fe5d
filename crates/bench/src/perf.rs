//! System calls and context switches of a server process while a load
//! runs: `perf stat -e raw_syscalls:sys_enter,context-switches -p PID`
//! (Debian package `linux-perf`), started before the load and stopped
//! with SIGINT after it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Whether `perf stat` can count the tracepoint here (installed, and
/// allowed to: root or a low `perf_event_paranoid`).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("perf")
            .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stderr).contains("sys_enter"))
            .unwrap_or(false)
    })
}

/// What the counters read over the watched interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub syscalls: u64,
    pub context_switches: u64,
}

/// A `perf stat` attached to a process.
pub struct Watch {
    child: Child,
    out: PathBuf,
}

static N: AtomicUsize = AtomicUsize::new(0);

impl Watch {
    /// Attaches to `pid` (all its threads); `None` when perf is missing.
    pub fn start(pid: u32) -> Option<Watch> {
        if !available() {
            return None;
        }
        let out = std::env::temp_dir().join(format!(
            "memcrab-bench-perf-{}-{}.csv",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let child = Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "raw_syscalls:sys_enter,context-switches",
            ])
            .arg("-o")
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf needs a moment to open its counters on every thread.
        std::thread::sleep(Duration::from_millis(150));
        Some(Watch { child, out })
    }

    /// Stops counting and reads the counts.
    pub fn stop(mut self) -> Option<Counts> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).ok()?;
        let _ = std::fs::remove_file(&self.out);
        parse(&text)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// Reads `perf stat -x ,` output: `value,unit,event,...` lines.
fn parse(text: &str) -> Option<Counts> {
    let mut c = Counts::default();
    let (mut sys, mut cs) = (false, false);
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        let Ok(v) = f[0].trim().parse::<u64>() else {
            continue;
        };
        if f[2].contains("raw_syscalls:sys_enter") {
            c.syscalls = v;
            sys = true;
        } else if f[2].contains("context-switches") {
            c.context_switches = v;
            cs = true;
        }
    }
    (sys && cs).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_csv() {
        let text = "# started on Sat Dec  5 12:00:00 2026\n\n3120042,,raw_syscalls:sys_enter,5001234567,100.00,,\n24012,,context-switches,5001234567,100.00,,\n";
        let c = parse(text).expect("both counters");
        assert_eq!(c.syscalls, 3_120_042);
        assert_eq!(c.context_switches, 24_012);
        assert!(parse("<not counted>,,context-switches,0,0.00,,\n").is_none());
    }
}
