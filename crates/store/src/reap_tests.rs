//! The expiry wheel and the reaper, driven by a fake clock: the tests move
//! the clock with `Clock::advance` and call `Store::reap` as the
//! maintainer would, never sleeping.

use super::*;

fn store_with(cfg: Config) -> (Store, Arc<Clock>) {
    let clock = Arc::new(Clock::new());
    (Store::new(cfg, Arc::clone(&clock)), clock)
}

fn store() -> (Store, Arc<Clock>) {
    store_with(Config::default())
}

fn set(s: &Store, k: &str, ttl: i32) {
    assert_eq!(
        s.put_v(Mode::Set, k.as_bytes(), 0, ttl, b"value", 0),
        StoreOutcome::Stored
    );
}

/// Linked items, as `stats` counts them (no lookup: a lookup would
/// unlink expired items itself).
fn items(s: &Store) -> u64 {
    s.stats().curr_items
}

fn used_chunks(s: &Store) -> u32 {
    s.stats().classes.iter().map(|c| c.used_chunks).sum()
}

/// One second passes and the maintainer reaps.
fn tick(s: &Store, c: &Clock) -> Reaped {
    c.advance(1);
    s.reap(256)
}

#[test]
fn items_are_freed_in_their_second_not_before() {
    let (s, c) = store();
    // 100 items for each TTL of 1..=5 seconds, 50 that never expire.
    for ttl in 1..=5 {
        for i in 0..100 {
            set(&s, &format!("k{ttl}-{i}"), ttl);
        }
    }
    for i in 0..50 {
        set(&s, &format!("forever{i}"), 0);
    }
    assert_eq!(s.reap(256).expired, 0, "nothing is due yet");
    assert_eq!(items(&s), 550);
    for sec in 1..=5u64 {
        let r = tick(&s, &c);
        assert_eq!(r.expired, 100, "second {sec}: the items of this second");
        assert_eq!(items(&s), 550 - 100 * sec);
        // The next second's items are all still there and readable.
        if sec < 5 {
            assert!(s.get(format!("k{}-7", sec + 1).as_bytes(), None).is_hit());
        }
    }
    assert_eq!(items(&s), 50);
    assert_eq!(used_chunks(&s), 50, "expired items' chunks are free");
    let st = s.stats();
    assert_eq!(st.expired_reclaimed, 500);
    // Four of them were read: the rest expired unfetched.
    assert_eq!(st.expired_unfetched, 496);
    assert_eq!(st.reclaimed, 0, "no store had to reclaim memory itself");
    assert_eq!(st.wheel_entries, 0);
    assert_eq!(st.wheel_checked, 500);
    s.reset_stats();
    let st = s.stats();
    assert_eq!((st.expired_reclaimed, st.wheel_checked), (0, 0));
    for _ in 0..10 {
        assert_eq!(tick(&s, &c), Reaped::default(), "nothing left to do");
    }
}

#[test]
fn negative_and_past_absolute_exptimes_are_freed_at_the_next_step() {
    let (s, c) = store();
    set(&s, "neg", -1);
    set(&s, "past", clock::REALTIME_MAXDELTA as i32 + 1);
    assert_eq!(items(&s), 2, "linked, as memcached does");
    assert_eq!(s.reap(16).expired, 2);
    assert_eq!(items(&s), 0);
    // An absolute time in the future expires in its second.
    let abs = (c.unix_now() + 3) as i32;
    set(&s, "abs", abs);
    assert_eq!(tick(&s, &c).expired, 0);
    assert_eq!(tick(&s, &c).expired, 0);
    assert_eq!(tick(&s, &c).expired, 1);
}

#[test]
fn touch_and_gat_move_items_to_their_new_second() {
    let (s, c) = store();
    set(&s, "earlier", 10);
    set(&s, "later", 3);
    set(&s, "gat", 3);
    set(&s, "never", 3);
    set(&s, "from-never", 0);
    assert!(s.touch_key(b"earlier", 2));
    assert!(s.touch_key(b"later", 20));
    assert!(s.get(b"gat", Some(6)).is_hit());
    assert!(s.touch_key(b"never", 0));
    assert!(s.touch_key(b"from-never", 4));
    let mut freed_at = std::collections::BTreeMap::new();
    for sec in 1..=25 {
        let r = tick(&s, &c);
        if r.expired > 0 {
            freed_at.insert(sec, r.expired);
        }
    }
    // earlier at 2, from-never at 4, gat at 6, later at 20; "never" stays.
    assert_eq!(
        freed_at.into_iter().collect::<Vec<_>>(),
        vec![(2, 1), (4, 1), (6, 1), (20, 1)]
    );
    assert!(s.get(b"never", None).is_hit());
    assert_eq!(items(&s), 1);
}

#[test]
fn replacing_an_item_moves_it() {
    let (s, c) = store();
    set(&s, "k", 2);
    set(&s, "k", 5); // the 2-second entry is now stale
    assert_eq!(
        s.put_v(Mode::Append, b"k", 0, 0, b"+", 0),
        StoreOutcome::Stored
    );
    let r1 = tick(&s, &c);
    let r2 = tick(&s, &c);
    assert_eq!(r1.expired + r2.expired, 0);
    // The replaced item's entry: dropped, or (its chunk now holding the
    // appended item) put back for that item's second.
    assert_eq!(r2.stale + r2.requeued, 1);
    assert!(s.get(b"k", None).is_hit());
    for _ in 0..2 {
        assert_eq!(tick(&s, &c).expired, 0);
    }
    assert_eq!(
        tick(&s, &c).expired,
        1,
        "the appended item kept its exptime"
    );
    assert_eq!(items(&s), 0);
}

#[test]
fn far_future_ttls_survive_full_turns_of_the_ring() {
    let (s, c) = store();
    let far = 3 * EXPIRY_RING + 17;
    set(&s, "far", far as i32);
    let abs = (c.unix_now() + u64::from(2 * EXPIRY_RING) + 3) as i32;
    set(&s, "abs", abs);
    let mut freed = Vec::new();
    for sec in 1..=far + 2 {
        if tick(&s, &c).expired > 0 {
            freed.push(sec);
        }
    }
    assert_eq!(freed, vec![2 * EXPIRY_RING + 3, far]);
    assert_eq!(items(&s), 0);
}

#[test]
fn a_clock_jump_frees_everything_due() {
    let (s, c) = store();
    for i in 0..1000 {
        set(&s, &format!("k{i}"), 1 + (i % 3000));
    }
    set(&s, "later", 2_000_000);
    c.advance(1_000_000);
    let r = s.reap(64);
    assert_eq!(r.expired, 1000);
    assert_eq!(items(&s), 1);
    c.advance(1_000_000);
    assert_eq!(s.reap(64).expired, 1);
}

#[test]
fn flush_all_frees_in_the_background() {
    let (s, c) = store();
    for i in 0..3000 {
        set(&s, &format!("k{i}"), if i % 2 == 0 { 0 } else { 100 });
    }
    s.flush_all(0);
    // Stored after the flush, in the same second: stays.
    set(&s, "after", 0);
    assert_eq!(items(&s), 3001, "flush_all itself is O(1)");
    let r = s.reap(100);
    assert_eq!(r.flushed, 3000);
    assert_eq!(items(&s), 1);
    assert_eq!(used_chunks(&s), 1);
    assert!(s.get(b"after", None).is_hit());
    // The flushed items' wheel entries are dropped when due.
    c.advance(100);
    let r = s.reap(100);
    assert_eq!((r.expired, r.stale), (0, 1500));
}

#[test]
fn delayed_flush_frees_when_it_takes_effect() {
    let (s, c) = store();
    for i in 0..500 {
        set(&s, &format!("k{i}"), 0);
    }
    s.flush_all(3);
    assert_eq!(tick(&s, &c).flushed, 0);
    assert_eq!(items(&s), 500);
    // memcached's rule with CAS: the flush is in force from delay - 1
    // seconds on, for items last used up to then.
    assert_eq!(tick(&s, &c).flushed, 500);
    assert_eq!(items(&s), 0);
    c.advance(1);
    set(&s, "new", 0);
    assert_eq!(s.reap(64).flushed, 0);
    assert!(s.get(b"new", None).is_hit());
}

#[test]
fn an_item_in_flight_is_not_freed_under_its_reader() {
    let (s, c) = store();
    let big = vec![b'x'; 10_000];
    assert_eq!(
        s.put_v(Mode::Set, b"big", 0, 1, &big, 0),
        StoreOutcome::Stored
    );
    let held = s
        .get_with(b"big", None, |f| f.pin(f.parts().next().unwrap()).unwrap())
        .unwrap();
    assert_eq!(tick(&s, &c).expired, 1);
    assert_eq!(items(&s), 0, "unlinked: no longer counted or found");
    assert!(!s.get(b"big", None).is_hit());
    assert_eq!(used_chunks(&s), 1, "its memory stays while it is read");
    // Churn that would reuse a freed chunk.
    for i in 0..100 {
        assert_eq!(
            s.put_v(Mode::Set, format!("o{i}").as_bytes(), 0, 0, &big, 0),
            StoreOutcome::Stored
        );
    }
    assert_eq!(&held[..10_000], &big[..]);
    drop(held);
    assert_eq!(used_chunks(&s), 100);
}

#[test]
fn a_mass_expiry_is_drained_in_bounded_batches() {
    let (s, c) = store_with(Config {
        mem_limit: 32 << 20,
        ..Config::default()
    });
    let n = 20_000;
    for i in 0..n {
        set(&s, &format!("k{i}"), 1);
    }
    set(&s, "live", 0);
    c.advance(1);
    let r = s.reap(100);
    assert_eq!(r.expired, n);
    assert_eq!(r.checked, n);
    // Each shard's share split into batches of 100 at most.
    assert!(r.batches >= n / 100, "{} batches", r.batches);
    assert_eq!(items(&s), 1);
}

#[test]
fn stale_entries_naming_chunks_now_in_other_shards_are_harmless() {
    // Items with exptimes are deleted; their chunks are reused by items
    // of every shard with no exptime, and by a page moved to another
    // class. The wheel's entries for them must touch none of those.
    let (s, c) = store_with(Config {
        mem_limit: 8 << 20,
        ..Config::default()
    });
    for i in 0..30_000 {
        set(&s, &format!("t{i}"), 2);
    }
    for i in 0..30_000 {
        assert!(s.del(format!("t{i}").as_bytes()));
    }
    for i in 0..30_000 {
        set(&s, &format!("n{i}"), 0);
    }
    // Some pages of the small class go to a large class and are refilled.
    let small = s.class_for_size(Store::size_for(2, 0, 7)) as i32;
    let large = s.class_for_size(Store::size_for(5, 0, 20_002)) as i32;
    for _ in 0..2 {
        assert_eq!(s.reassign(small, large), Ok(()));
    }
    for i in 0..20 {
        let v = vec![b'v'; 20_000];
        assert_eq!(
            s.put_v(Mode::Set, format!("big{i}").as_bytes(), 0, 0, &v, 0),
            StoreOutcome::Stored
        );
    }
    let before = items(&s);
    let r = tick(&s, &c);
    let r2 = tick(&s, &c);
    assert_eq!(r.expired + r2.expired, 0);
    assert_eq!(r.stale + r2.stale, 30_000);
    assert_eq!(items(&s), before, "no live item was touched");
    for i in 0..20 {
        let k = format!("big{i}");
        assert_eq!(value_len(&s, &k), Some(20_000));
    }
}

fn value_len(s: &Store, k: &str) -> Option<usize> {
    match s.get(k.as_bytes(), None) {
        GetOutcome::Hit(h) => Some(h.value.len()),
        _ => None,
    }
}

#[test]
fn stale_entries_stay_bounded() {
    // A client alternating a long and a short TTL on the same items adds
    // an entry per shortening; compaction keeps the wheel near the items.
    let (s, c) = store();
    let n = 400;
    for i in 0..n {
        set(&s, &format!("k{i}"), 500);
    }
    for round in 0..1000 {
        for i in 0..n {
            let ttl = if round % 2 == 0 { 400 } else { 500 };
            assert!(s.touch_key(format!("k{i}").as_bytes(), ttl));
        }
    }
    let before = s.stats().wheel_entries;
    assert!(before > 100_000, "entries piled up: {before}");
    let r = tick(&s, &c);
    assert!(r.compacted > 0);
    let after = s.stats().wheel_entries;
    assert!(after <= n, "compacted to one entry per item: {after}");
    // Each still expires in its second: the last touch said 500 s.
    let mut freed = 0;
    for sec in 2..=500 {
        freed += tick(&s, &c).expired;
        assert_eq!(freed, if sec < 500 { 0 } else { n }, "second {sec}");
    }
    assert_eq!(items(&s), 0);
}

#[test]
fn expired_items_never_push_out_live_ones() {
    // Short-TTL churn through 4x the memory, with the reaper running: the
    // long-lived items stay and nothing is evicted.
    let (s, c) = store_with(Config {
        mem_limit: 4 << 20,
        ..Config::default()
    });
    let v = vec![b'v'; 200];
    for i in 0..1000 {
        assert_eq!(
            s.put_v(Mode::Set, format!("long{i}").as_bytes(), 0, 3600, &v, 0),
            StoreOutcome::Stored
        );
    }
    // ~4,000 items of 256 B per second (1 MB/s), TTL 2: about 2 MB live.
    let mut n = 0;
    for _ in 0..16 {
        for _ in 0..4000 {
            n += 1;
            assert_eq!(
                s.put_v(Mode::Set, format!("short{n}").as_bytes(), 0, 2, &v, 0),
                StoreOutcome::Stored
            );
        }
        tick(&s, &c);
    }
    let st = s.stats();
    assert_eq!(st.evictions, 0);
    for i in 0..1000 {
        assert!(s.get(format!("long{i}").as_bytes(), None).is_hit());
    }
    assert!(st.curr_items <= 1000 + 2 * 4000, "{}", st.curr_items);
}

impl GetOutcome {
    fn is_hit(&self) -> bool {
        matches!(self, GetOutcome::Hit(_))
    }
}

#[test]
#[ignore = "a timing, run by hand: cargo test --release -p memcrab-store reap_timing -- --ignored --nocapture"]
fn reap_timing() {
    // How long the reaper holds a shard's lock per batch, and its cost per
    // item, for 10^4..10^6 items expiring in one second.
    let (s, c) = store_with(Config {
        mem_limit: 1 << 30,
        ..Config::default()
    });
    let mut start = 0;
    for n in [10_000u32, 100_000, 1_000_000] {
        for i in start..start + n {
            set(&s, &format!("key{i:08}"), 1);
        }
        start += n;
        c.advance(1);
        let batch = 256;
        let t = std::time::Instant::now();
        let r = s.reap(batch);
        let el = t.elapsed();
        assert_eq!(r.expired, u64::from(n));
        eprintln!(
            "{n} items: reaped in {el:?}, {:.1} ns per item, {} batches of <= {batch}, {:?} per batch",
            el.as_nanos() as f64 / f64::from(n),
            r.batches,
            el / r.batches as u32
        );
    }
}
