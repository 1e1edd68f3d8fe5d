//! libmemcached's `memccapable` (package libmemcached-tools) with no -a or -b:
//! every ASCII and every binary protocol test must pass against memcrab.

mod common;

use common::{s, Server};

#[test]
fn memccapable_ascii_and_binary_pass() {
    let tool = ["/usr/bin/memccapable", "/usr/bin/memcapable"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("memccapable is needed: apt-get install libmemcached-tools (bash .ci/run does it)");
    let srv = Server::memcrab(&[]);
    let out = std::process::Command::new(tool)
        .args(["-h", "127.0.0.1", "-p", &srv.port.to_string()])
        .output()
        .unwrap();
    let text = s(&out.stdout) + &s(&out.stderr);
    assert!(out.status.success(), "{text}");
    let passed = text.lines().filter(|l| l.ends_with("[pass]")).count();
    assert!(passed >= 53, "only {passed} passed:\n{text}");
    assert!(!text.contains("[FAIL]"), "{text}");
    assert!(text.contains("All tests passed"), "{text}");
}
