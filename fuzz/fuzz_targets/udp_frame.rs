//! UDP: a datagram's 8-byte frame and the requests in it, served against
//! a store and cut into reply datagrams as the socket would send them.
//! Each reply datagram carries the request's id, sequence numbers that
//! count up from 0 within a reply, and at most 1400 bytes.
#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use memcrab_server::config::{Args, Settings};
use memcrab_server::shared::{Shared, UdpInfo};
use memcrab_server::stats::WorkerStats;
use memcrab_server::sys::Received;
use memcrab_server::udp::{datagram, Cx, Replies, MAX_DATAGRAM};
use memcrab_store::{Clock, Store};

fn shared() -> &'static Shared {
    static SH: OnceLock<Shared> = OnceLock::new();
    SH.get_or_init(|| {
        let args = Args::try_parse_from([
            "memcrab",
            "-m",
            "2",
            "-I",
            "64k",
            "-o",
            "slab_chunk_max=16384",
            "-U",
            "0",
        ])
        .unwrap();
        let settings = Settings::from_args(args).unwrap();
        let store = Store::new(settings.store_config(), Arc::new(Clock::new()));
        Shared::new(settings, store, Vec::new(), Vec::new(), Vec::new())
    })
}

fuzz_target!(|data: &[u8]| {
    let sh = shared();
    // The store is shared by every input; a `verbosity` an earlier one
    // sent would log every command after it.
    sh.set_verbose(0);
    // The server's maintainer reaps once a second (and compacts the
    // expiry wheels of stale entries); here, every 4096 inputs.
    static INPUTS: AtomicU64 = AtomicU64::new(0);
    if INPUTS.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
        sh.store.reap(64);
    }
    let stats = WorkerStats::default();
    let info = UdpInfo::new(0, "udp:fuzz".into(), 0);
    let mut cx = Cx {
        sh,
        stats: &stats,
        info: &info,
        fd: 0,
        pending: None,
    };
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut replies = Replies::default();
    // Several datagrams: each piece between 0xFF 0xFE markers.
    for d in data.split(|&b| b == 0xFE) {
        let r = Received {
            len: d.len(),
            peer: Some(peer),
            truncated: false,
        };
        datagram(&mut replies, d, &r, &mut cx);
        let id = (d.len() > 8).then(|| [d[0], d[1]]);
        let mut expect_seq = 0u16;
        loop {
            let mut out = Vec::new();
            let Some(to) = replies.next_datagram(&mut out) else {
                break;
            };
            assert_eq!(to, peer);
            assert!(out.len() >= 8 && out.len() <= MAX_DATAGRAM);
            if let Some(id) = id {
                assert_eq!(&out[..2], &id);
            }
            let seq = u16::from_be_bytes([out[2], out[3]]);
            let count = u16::from_be_bytes([out[4], out[5]]);
            assert!(
                seq == expect_seq || seq == 0,
                "seq {seq} after {expect_seq}"
            );
            expect_seq = if count == 0 || seq + 1 >= count {
                0
            } else {
                seq + 1
            };
        }
    }
});
