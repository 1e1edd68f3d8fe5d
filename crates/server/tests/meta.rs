//! The meta protocol on the real binary: what the differential test
//! cannot compare with memcached 1.6.18 — the flags memcached added later
//! (`E`, `mg C`, `ms s`, `ms N`, `md x`; their specification is the 1.6.45
//! protocol text) — and a stampede-protection session as a client runs it.

mod common;

use common::{s, Client, Server};

/// The reply to `req` (a line, or lines; the last `\r\n` added when
/// missing), as text.
fn ask(c: &mut Client, req: &str) -> String {
    let mut r = req.as_bytes().to_vec();
    if !r.ends_with(b"\r\n") {
        r.extend_from_slice(b"\r\n");
    }
    s(&c.roundtrip(&r))
}

/// The number after ` <letter>` in a meta reply.
fn flag(reply: &str, letter: char) -> u64 {
    reply
        .split_whitespace()
        .find_map(|t| t.strip_prefix(letter).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no {letter} in {reply:?}"))
}

#[test]
fn e_gives_the_changed_item_its_cas_value() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    assert_eq!(ask(&mut c, "ms k 2 E99 c\r\nhi\r\n"), "HD c99\r\n");
    assert_eq!(ask(&mut c, "mg k c v"), "VA 2 c99\r\nhi\r\n");
    // mg: the item a miss creates (N) takes E's value.
    assert_eq!(ask(&mut c, "mg viv N30 E1234 c t"), "HD c1234 t30 W\r\n");
    // md I: the stale item takes it.
    assert_eq!(ask(&mut c, "md k I E555"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg k c"), "HD c555 X W\r\n");
    // ma: the changed number, and a created one.
    ask(&mut c, "set n 0 0 1\r\n5\r\n");
    assert_eq!(ask(&mut c, "ma n E77 c v"), "VA 1 c77\r\n6\r\n");
    assert_eq!(ask(&mut c, "ma m N0 J9 E78 c v"), "VA 1 c78\r\n9\r\n");
    assert_eq!(ask(&mut c, "mg m c"), "HD c78\r\n");
}

#[test]
fn mg_c_sends_the_value_only_when_it_changed() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    let r = ask(&mut c, "ms k 3 c\r\nabc\r\n");
    let cas = flag(&r, 'c');
    assert_eq!(ask(&mut c, &format!("mg k v C{cas} s")), "HD s3\r\n");
    assert_eq!(
        ask(&mut c, &format!("mg k v C{} s", cas + 1)),
        "VA 3 s3\r\nabc\r\n"
    );
    // Other flags act as ever: T still sets the TTL.
    assert_eq!(ask(&mut c, &format!("mg k v C{cas} T60 t")), "HD t60\r\n");
}

#[test]
fn ms_s_reports_the_stored_size() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    assert_eq!(ask(&mut c, "ms k 3 s\r\nabc\r\n"), "HD s3\r\n");
    assert_eq!(ask(&mut c, "ms k 2 MA s\r\nde\r\n"), "HD s5\r\n");
    assert_eq!(ask(&mut c, "ms k 1 MP s k\r\nz\r\n"), "HD s6 kk\r\n");
    // Not stored: the size sent.
    assert_eq!(ask(&mut c, "ms other 4 MR s\r\nwxyz\r\n"), "NS s4\r\n");
    assert_eq!(ask(&mut c, "mg k v"), "VA 6\r\nzabcde\r\n");
}

#[test]
fn ms_n_creates_on_an_append_miss() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    assert_eq!(ask(&mut c, "ms log 3 MA\r\nabc\r\n"), "NS\r\n");
    assert_eq!(ask(&mut c, "ms log 3 MA N60 T5\r\nabc\r\n"), "HD\r\n");
    // The TTL is N's, not T's.
    assert_eq!(ask(&mut c, "mg log v t"), "VA 3 t60\r\nabc\r\n");
    // On a hit it appends and keeps the item's TTL.
    assert_eq!(ask(&mut c, "ms log 3 MA N5\r\ndef\r\n"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg log v t"), "VA 6 t60\r\nabcdef\r\n");
    assert_eq!(ask(&mut c, "ms pre 2 MP N30 F7\r\nxy\r\n"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg pre v f t"), "VA 2 f7 t30\r\nxy\r\n");
}

#[test]
fn md_x_keeps_the_item_without_its_value() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    let r = ask(&mut c, "ms k 5 F3 T100 c\r\nhello\r\n");
    let cas = flag(&r, 'c');
    assert_eq!(ask(&mut c, "md k x"), "HD\r\n");
    // Empty, flags and TTL as the delete gave them, the same CAS value.
    assert_eq!(
        ask(&mut c, "mg k v f t c"),
        format!("VA 0 f0 t-1 c{cas}\r\n\r\n")
    );
    assert_eq!(ask(&mut c, "md k x F9 T50"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg k f t"), "HD f9 t50\r\n");
    // With I: a stale tombstone the next reader wins.
    ask(&mut c, "ms t 3\r\nold\r\n");
    assert_eq!(ask(&mut c, "md t x I"), "HD\r\n");
    assert_eq!(ask(&mut c, "mg t v"), "VA 0 X W\r\n\r\n");
    assert_eq!(ask(&mut c, "mg t v"), "VA 0 Z X\r\n\r\n");
    assert_eq!(ask(&mut c, "md gone x"), "NF\r\n");
    // delete_hits counts it; an md I does not.
    let stats = s(&c.call(b"stats\r\n", b"END\r\n"));
    assert!(stats.contains("STAT delete_hits 2\r\n"), "{stats}");
}

/// The recache dance of `meta-memcache`'s stale-while-revalidate: one
/// client wins the right to recompute, the others see it taken and keep
/// serving the stale value.
#[test]
fn stale_while_revalidate() {
    let srv = Server::memcrab(&[]);
    let (mut a, mut b) = (srv.connect(), srv.connect());
    // A miss: the first asker wins and gets an empty placeholder.
    assert_eq!(ask(&mut a, "mg page v N30 t"), "VA 0 t30 W\r\n\r\n");
    assert_eq!(ask(&mut b, "mg page v N30 t"), "VA 0 t30 Z\r\n\r\n");
    let r = ask(&mut a, "ms page 4 T100 c\r\nv1v1\r\n");
    let cas = flag(&r, 'c');
    assert_eq!(ask(&mut b, "mg page v"), "VA 4\r\nv1v1\r\n");
    // Invalidated: served stale, and one reader wins the recache.
    assert_eq!(ask(&mut a, "md page I T30"), "HD\r\n");
    assert_eq!(
        ask(&mut b, "mg page v c"),
        format!("VA 4 c{} X W\r\nv1v1\r\n", cas + 1)
    );
    assert_eq!(ask(&mut a, "mg page v"), "VA 4 Z X\r\nv1v1\r\n");
    // The winner's write with the CAS it saw clears it.
    let r = ask(&mut b, &format!("ms page 4 C{} T100\r\nv2v2\r\n", cas + 1));
    assert_eq!(r, "HD\r\n");
    assert_eq!(ask(&mut a, "mg page v"), "VA 4\r\nv2v2\r\n");
    // R: near the end of its TTL an item is won once.
    assert_eq!(ask(&mut a, "mg page R200 v"), "VA 4 W\r\nv2v2\r\n");
    assert_eq!(ask(&mut b, "mg page R200 v"), "VA 4 Z\r\nv2v2\r\n");
}

#[test]
fn binary_keys_round_trip_and_echo_encoded() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    // "\x00\xffkey\r\n" in base64: spaces and newlines fit in a key.
    let key = "AP9rZXkNCg==";
    assert_eq!(
        ask(&mut c, &format!("ms {key} 2 b k\r\nhi\r\n")),
        format!("HD k{key} b\r\n")
    );
    assert_eq!(
        ask(&mut c, &format!("mg {key} b k v")),
        format!("VA 2 k{key} b\r\nhi\r\n")
    );
    let me = ask(&mut c, &format!("me {key} b"));
    assert!(me.starts_with(&format!("ME {key} exp=-1 la=")), "{me}");
    assert_eq!(ask(&mut c, &format!("md {key} b q")), "");
    assert_eq!(
        ask(&mut c, &format!("mg {key} b k")),
        format!("EN k{key} b\r\n")
    );
}

#[test]
fn quiet_mode_pipelines_with_mn() {
    let srv = Server::memcrab(&[]);
    let mut c = srv.connect();
    // q hides HD and EN; errors and values still come, in order.
    let r = ask(
        &mut c,
        "ms a 1 q\r\n1\r\nms b 1 q\r\n2\r\nmg a v q Oa\r\nmg zz v q Oz\r\nmg b v q Ob\r\nmd a q\r\nmd a q\r\nma c q\r\nmg b q\r\nmg a v v\r\n",
    );
    assert_eq!(
        r,
        "VA 1 Oa\r\n1\r\nVA 1 Ob\r\n2\r\nNF\r\nNF\r\nHD\r\nCLIENT_ERROR duplicate flag\r\n"
    );
    // Four lookups (the refused mg is none): three hits, one miss.
    let st = s(&c.call(b"stats\r\n", b"END\r\n"));
    assert!(st.contains("STAT cmd_get 4\r\n"), "{st}");
    assert!(
        st.contains("STAT get_hits 3\r\nSTAT get_misses 1\r\n"),
        "{st}"
    );
}
