//! What an operator installs (issue 20): `packaging/memcrab-start` reads a
//! config file in the format of Debian's /etc/memcached.conf and starts
//! memcrab with its flags, as the systemd unit runs it.

mod common;

#[path = "../examples/man.rs"]
#[allow(dead_code)]
mod man;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("memcrab-pkg-{}-{name}", std::process::id()))
}

/// The shipped config, read by the wrapper: the flags it names, in order,
/// `-d` dropped (a stand-in binary prints what it was given).
#[test]
fn the_shipped_config_gives_these_flags() {
    let echo = tmp("echo");
    std::fs::write(&echo, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&echo).status().unwrap();
    let out = Command::new("sh")
        .arg(repo().join("packaging/memcrab-start"))
        .arg(repo().join("packaging/memcrab.conf"))
        .arg(&echo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::s(&out.stderr));
    assert_eq!(
        common::s(&out.stdout),
        "-m\n64\n-p\n11211\n-u\nmemcrab\n-l\n127.0.0.1\n"
    );
    let missing = Command::new("sh")
        .arg(repo().join("packaging/memcrab-start"))
        .arg("/nonexistent.conf")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(common::s(&missing.stderr).contains("cannot read /nonexistent.conf"));
    let _ = std::fs::remove_file(echo);
}

/// A config with comments, blank lines, indented flags, `-d`, several
/// `-o` lines and a `logfile`: the real server starts with those settings
/// and writes its `-vv` lines to the log file.
#[test]
fn a_config_file_starts_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = tmp("conf");
    let log = tmp("log");
    let _ = std::fs::remove_file(&log);
    std::fs::write(
        &conf,
        format!(
            "# a comment\n\n-d\n  -m 32\n-p {port}\n-U 0\n-l 127.0.0.1\n# -c 5\n-c 99\n-vv\n\
             -o hot_keys=3\n-o idle_timeout=50\nlogfile {}\n",
            log.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("sh")
        .arg(repo().join("packaging/memcrab-start"))
        .arg(&conf)
        .arg(env!("CARGO_BIN_EXE_memcrab"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            break common::Client { s };
        }
        assert!(Instant::now() < deadline, "memcrab did not start");
        assert!(child.try_wait().unwrap().is_none(), "memcrab exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    let st = common::s(&c.call(b"stats settings\r\n", b"END\r\n"));
    for want in [
        "STAT maxbytes 33554432\r\n",
        "STAT maxconns 99\r\n",
        "STAT idle_timeout 50\r\n",
        "STAT verbosity 2\r\n",
    ] {
        assert!(st.contains(want), "{want} in {st}");
    }
    assert!(common::s(&c.call(b"stats hotkeys\r\n", b"END\r\n")).contains("STAT hot_keys 3\r\n"));
    // SIGTERM (what systemd sends) stops it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop memcrab");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("server listening"), "{logged}");
    assert!(logged.contains("stats settings"), "{logged}");
    // memcached's stop line under -v.
    assert!(logged.ends_with("Exiting normally\n"), "{logged}");
    let _ = std::fs::remove_file(conf);
    let _ = std::fs::remove_file(log);
}

/// The committed man page is what the flag definitions give now (so it
/// cannot drift), and names every flag and suboption.
#[test]
fn the_man_page_is_current_and_complete() {
    use clap::CommandFactory;
    let page = man::render().unwrap();
    let committed = std::fs::read(repo().join("packaging/memcrab.1")).unwrap();
    assert!(
        page == committed,
        "packaging/memcrab.1 is stale: cargo run -p memcrab-server --example man > packaging/memcrab.1"
    );
    let text = String::from_utf8(page).unwrap();
    for arg in memcrab_server::config::Args::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            let want = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(text.contains(&want), "--{long} missing from the man page");
        }
    }
    for (name, _) in memcrab_server::config::SUBOPTIONS {
        let first = name
            .split([',', '=', '['])
            .next()
            .unwrap()
            .replace('-', "\\-");
        assert!(text.contains(&first), "-o {name} missing from the man page");
    }
    // It renders (man-db's `man -l`, where installed).
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(repo().join("packaging/memcrab.1"))
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
    {
        if out.status.success() {
            // Overstrikes (bold, underline) taken out, as col -b does.
            let mut shown = String::new();
            for c in common::s(&out.stdout).chars() {
                if c == '\u{8}' {
                    shown.pop();
                } else {
                    shown.push(c);
                }
            }
            assert!(
                shown.contains("EXTENDED OPTIONS") && shown.contains("hot_keys_window"),
                "{shown}"
            );
        }
    }
}
