//! Sessions driven with plain bytes, no socket: what the transport does
//! (feed bytes, follow `Step`), done by hand.

use std::sync::{Arc, Mutex};

use clap::Parser;
use memcrab_store::{Clock, Store};

use super::Feeder;
use crate::cmd::hook::{Event, Observer};
use crate::cmd::Proto;
use crate::config::{Args, Settings};
use crate::shared::Shared;
use crate::stats::WorkerStats;

fn shared(args: &[&str], observers: Vec<Box<dyn Observer>>) -> Shared {
    let mut v = vec!["memcrab"];
    v.extend_from_slice(args);
    let settings = Settings::from_args(Args::try_parse_from(v).unwrap()).unwrap();
    let store = Store::new(settings.store_config(), Arc::new(Clock::new()));
    let mut sh = Shared::new(settings, store, Vec::new(), Vec::new(), Vec::new());
    sh.observers = observers;
    sh
}

/// Feeds `input` to a new session `chunk` bytes at a time, as a
/// transport would, and returns every reply byte.
fn drive(sh: &Shared, input: &[u8], chunk: usize) -> Vec<u8> {
    let stats = WorkerStats::default();
    let mut feeder = Feeder::default();
    let mut sent = Vec::new();
    for piece in input.chunks(chunk) {
        if !feeder.push(sh, &stats, piece, &mut sent) {
            break;
        }
    }
    sent
}

/// A binary request.
fn bin(opcode: u8, extras: &[u8], key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80, opcode];
    b.extend_from_slice(&(key.len() as u16).to_be_bytes());
    b.push(extras.len() as u8);
    b.extend_from_slice(&[0, 0, 0]);
    b.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(extras);
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}

/// The servers in these tests refuse values over 1 KB (`-I 1k`).
const ITEM_MAX: &[&str] = &["-I", "1k", "-o", "slab_chunk_max=512"];

/// A text stream: every key command, a value refused for its size (its
/// block swallowed), an unknown command, stats, and a quit that ends it.
fn text_stream() -> Vec<u8> {
    let mut t = b"set a 0 0 1\r\nx\r\nget a b\r\ngat 100 a\r\ntouch a 0\r\n".to_vec();
    t.extend_from_slice(b"set big 0 0 2000\r\n");
    t.extend_from_slice(&[b'v'; 2000]);
    t.extend_from_slice(
        b"\r\nincr n 1\r\nset n 0 0 2\r\n41\r\nincr n 1\r\n\
        delete a\r\ndelete a\r\nappend n 0 0 1\r\n7\r\nbogus\r\nstats settings\r\n\
        gets n\r\nquit\r\nget n\r\n",
    );
    t
}

fn binary_stream() -> Vec<u8> {
    let mut b = Vec::new();
    let set = [0, 0, 0, 0, 0, 0, 0, 0];
    let touch = 100u32.to_be_bytes();
    let arith = [[0u8; 7].as_slice(), &[1], &[0; 8], &[0xff; 4]].concat();
    for r in [
        bin(0x01, &set, b"a", b"x"),
        bin(0x0c, &[], b"a", &[]),
        bin(0x00, &[], b"b", &[]),
        bin(0x1d, &touch, b"a", &[]),
        bin(0x1c, &touch, b"a", &[]),
        bin(0x05, &arith, b"n", &[]),
        bin(0x01, &set, b"n", b"41"),
        bin(0x05, &arith, b"n", &[]),
        bin(0x04, &[], b"a", &[]),
        bin(0x04, &[], b"a", &[]),
        bin(0x0e, &[], b"n", b"7"),
        bin(0x10, &[], b"settings", &[]),
        bin(0x0a, &[], &[], &[]),
    ] {
        b.extend_from_slice(&r);
    }
    b
}

#[test]
fn a_session_answers_the_same_however_its_input_is_split() {
    for input in [text_stream(), binary_stream()] {
        let whole = drive(&shared(ITEM_MAX, Vec::new()), &input, input.len());
        assert!(whole.len() > 1000, "stats settings answered");
        for chunk in [1, 2, 3, 7, 24, 100] {
            let split = drive(&shared(ITEM_MAX, Vec::new()), &input, chunk);
            assert_eq!(
                String::from_utf8_lossy(&split),
                String::from_utf8_lossy(&whole),
                "in pieces of {chunk}"
            );
        }
    }
    let text = drive(&shared(ITEM_MAX, Vec::new()), &text_stream(), 5);
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nVALUE a 0 1\r\nx\r\nEND\r\nTOUCHED\r\nSERVER_ERROR object too large for cache\r\nNOT_FOUND\r\nSTORED\r\n42\r\nDELETED\r\nNOT_FOUND\r\nSTORED\r\nERROR\r\nSTAT maxbytes 67108864\r\n"), "{text}");
    assert!(text.contains("STAT item_size_max 1024\r\n"));
    assert!(
        text.ends_with("END\r\nVALUE n 0 3 4\r\n427\r\nEND\r\n"),
        "quit ends it: {text}"
    );
}

/// What an observer saw: the protocol and the event, owned.
type Seen = Arc<Mutex<Vec<(Proto, String)>>>;

struct Recorder(Seen);

impl Observer for Recorder {
    fn observe(&self, proto: Proto, e: &Event<'_>) {
        let line = format!("{:?} {} {}", e.op, String::from_utf8_lossy(e.key), e.hit);
        self.0.lock().unwrap().push((proto, line));
    }
}

#[test]
fn every_protocol_passes_the_same_hook() {
    let seen = |input: &[u8]| {
        let log: Seen = Arc::default();
        let sh = shared(ITEM_MAX, vec![Box::new(Recorder(Arc::clone(&log)))]);
        drive(&sh, input, input.len());
        let v = log.lock().unwrap().clone();
        v
    };
    let text = seen(&text_stream());
    let binary = seen(&binary_stream());
    assert!(text.iter().all(|(p, _)| *p == Proto::Text));
    assert!(binary.iter().all(|(p, _)| *p == Proto::Binary));
    let events = |v: &[(Proto, String)]| v.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>();
    // Text `gat` and `touch` are told apart (per-prefix stats count the
    // first only); binary Gat and Touch both run as a gat.
    let want = [
        "Store(Set) a true",
        "Get a true",
        "Get b false",
        "Gat a true",
    ];
    assert_eq!(events(&text)[..4], want);
    assert_eq!(events(&binary)[..4], want);
    assert_eq!(events(&text)[4], "Touch a true");
    assert_eq!(events(&binary)[4], "Gat a true");
    // Then text refuses a 2 MB set (binary has none), and both go on alike.
    assert_eq!(events(&text)[5], "Store(Set) big false");
    let rest = [
        "Incr n false",
        "Store(Set) n true",
        "Incr n true",
        "Delete a true",
        "Delete a false",
        "Store(Append) n true",
    ];
    assert_eq!(events(&text)[6..12], rest);
    assert_eq!(events(&binary)[5..], rest);
    assert_eq!(events(&text)[12..], ["Get n true"]);
}

/// Values longer than the transport's buffer, fed in pieces, are received
/// into their item (`Step::Receive`) and answered as if whole, in text,
/// meta and binary, followed by more commands in the same pieces; a
/// block without its `\r\n` is answered as memcached answers it.
#[test]
fn long_values_are_received_into_their_item() {
    let sh = shared(&["-I", "2m"], Vec::new());
    let v: Vec<u8> = (0..100_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut text = b"set t 5 0 100000\r\n".to_vec();
    text.extend_from_slice(&v);
    text.extend_from_slice(b"\r\nms m 100000 c\r\n");
    text.extend_from_slice(&v);
    text.extend_from_slice(b"\r\nappend t 0 0 3\r\nxyz\r\nset bad 0 0 20000\r\n");
    text.extend_from_slice(&v[..20_000]);
    text.extend_from_slice(b"XXget t m bad\r\n");
    for chunk in [7, 1000, 65_536] {
        let got = drive(&sh, &text, chunk);
        let mut want = b"STORED\r\nHD c".to_vec();
        let cas_end = 12 + got[12..].iter().position(|&b| b == b'\r').unwrap();
        want.extend_from_slice(&got[12..cas_end]);
        want.extend_from_slice(
            b"\r\nSTORED\r\nCLIENT_ERROR bad data chunk\r\nVALUE t 5 100003\r\n",
        );
        want.extend_from_slice(&v);
        want.extend_from_slice(b"xyz\r\nVALUE m 0 100000\r\n");
        want.extend_from_slice(&v);
        want.extend_from_slice(b"\r\nEND\r\n");
        assert!(
            got == want,
            "pieces of {chunk}: {:?}",
            String::from_utf8_lossy(&got[..200.min(got.len())])
        );
    }
    // Binary: a Set whose value arrives in pieces, then a GetK.
    let mut b = bin(0x01, &[0, 0, 0, 7, 0, 0, 0, 0], b"bk", &v);
    b.extend_from_slice(&bin(0x0c, &[], b"bk", &[]));
    let got = drive(&sh, &b, 4096);
    assert_eq!(&got[..2], &[0x81, 0x01]);
    assert_eq!(u16::from_be_bytes([got[6], got[7]]), 0, "stored");
    let get = &got[24..];
    assert_eq!(&get[..2], &[0x81, 0x0c]);
    assert_eq!(&get[24 + 4 + 2..], &v[..]);
    // Nothing is left taken: every chunk in use belongs to an item.
    let st = sh.store.stats();
    let used: u32 = st.classes.iter().map(|c| c.used_chunks).sum();
    assert_eq!(st.curr_items, 3);
    assert!((3..=6).contains(&used), "{used} chunks for 3 items");
}
