//! Store tests: semantics of each command, memory accounting, and a model
//! test against a plain map.

use super::*;
use crate::mover::MOVE_BATCH;
use std::collections::HashMap;

fn parse_num(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?;
    s.trim_end_matches(' ').parse().ok()
}

fn store_with(cfg: Config) -> Store {
    Store::new(cfg, Arc::new(Clock::new()))
}

fn store() -> Store {
    store_with(Config::default())
}

/// A reader's hold on the first part of an item's data block.
fn pin(s: &Store, k: &[u8]) -> ItemRef {
    s.get_with(k, None, |f| f.pin(f.parts().next().unwrap()).unwrap())
        .unwrap()
}

fn value(s: &Store, k: &[u8]) -> Option<Vec<u8>> {
    match s.get(k, None) {
        GetOutcome::Hit(h) => Some(h.value().to_vec()),
        _ => None,
    }
}

#[test]
fn set_get_delete() {
    let s = store();
    assert_eq!(
        s.put_v(Mode::Set, b"k", 7, 0, b"v", 0),
        StoreOutcome::Stored
    );
    match s.get(b"k", None) {
        GetOutcome::Hit(h) => {
            assert_eq!(h.key(), b"k");
            assert_eq!(h.value(), b"v");
            assert_eq!(h.flags, 7);
            assert!(h.cas > 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.del(b"k"));
    assert!(!s.del(b"k"));
    assert!(matches!(s.get(b"k", None), GetOutcome::Miss));
    assert_eq!(s.stats().curr_items, 0);
}

#[test]
fn a_lookup_reports_the_item_as_it_was() {
    let clock = Arc::new(Clock::new());
    let s = Store::new(Config::default(), Arc::clone(&clock));
    s.put_v(Mode::Set, b"k", 3, 100, b"value", 0);
    s.put_v(Mode::Set, b"forever", 0, 0, b"v", 0);
    clock.advance(7);
    let meta = |key: &[u8], opts: GetOpts| s.get_with(key, opts, |f| f.meta).unwrap();
    let first = meta(b"k", GetOpts::default());
    assert_eq!(first.ttl, Some(93));
    assert_eq!(first.idle, 7);
    assert!(!first.fetched, "never read before");
    assert_eq!(first.class, s.classes().class_for(first.size).unwrap());
    assert_eq!(first.size, item::single_size(1, 3, 7));
    clock.advance(2);
    let second = meta(b"k", GetOpts::touch(50));
    assert!(second.fetched);
    assert_eq!(second.idle, 2, "the first lookup bumped it");
    assert_eq!(second.ttl, Some(50), "the ttl after this lookup's touch");
    assert_eq!(meta(b"forever", GetOpts::default()).ttl, None);
    // Without a bump the item keeps its last-access time and LRU place.
    clock.advance(3);
    let quiet = GetOpts {
        bump: false,
        ..GetOpts::default()
    };
    assert_eq!(meta(b"k", quiet).idle, 3);
    assert_eq!(meta(b"k", quiet).idle, 3, "not bumped by the last lookup");
    assert_eq!(meta(b"k", GetOpts::default()).idle, 3);
    assert_eq!(meta(b"k", GetOpts::default()).idle, 0);
    let counted = s
        .stats()
        .classes
        .iter()
        .map(|c| c.stats.get_hits)
        .sum::<u64>();
    assert_eq!(
        counted, 6,
        "every lookup but the touching one counts a get hit"
    );
}

#[test]
fn arith_creates_on_a_miss_under_the_same_lock() {
    let clock = Arc::new(Clock::new());
    let s = Store::new(Config::default(), Arc::clone(&clock));
    let req = |create| ArithReq {
        key: b"n",
        incr: false,
        delta: 5,
        cas: 0,
        parse: parse_num,
        create,
        new_cas: None,
    };
    let r = s.arith(&req(Some(Create {
        initial: 42,
        exptime: 10,
    })));
    assert_eq!(r.outcome, DeltaOutcome::Value(42));
    assert!(r.created && r.cas > 0);
    let sets: u64 = s.stats().classes.iter().map(|c| c.stats.cmd_set).sum();
    assert_eq!(sets, 0, "a created counter is not a set (as in memcached)");
    // Then it is an ordinary number, with the exptime it was created with.
    let r = s.arith(&req(Some(Create {
        initial: 0,
        exptime: 0,
    })));
    assert_eq!((r.outcome, r.created), (DeltaOutcome::Value(37), false));
    assert_eq!(s.get_with(b"n", None, |f| f.meta.ttl).unwrap(), Some(10));
    assert!(s.del(b"n"));
    assert_eq!(s.arith(&req(None)).outcome, DeltaOutcome::NotFound);
}

#[test]
fn meta_primitives_vivify_stale_and_win_marks() {
    let clock = Arc::new(Clock::new());
    let s = Store::new(Config::default(), Arc::clone(&clock));
    let viv = GetOpts {
        vivify: true,
        vivify_cas: Some(777),
        ..GetOpts::default()
    };
    // A miss creates an empty item the caller can give an exptime, and
    // note a win on.
    let (created, cas, len) = s
        .get_with(b"v", viv, |f| {
            assert!(!f.win_sent() && !f.stale());
            f.set_exptime(30);
            f.mark_win_sent();
            (f.created, f.cas, f.value_len)
        })
        .unwrap();
    assert_eq!((created, cas, len), (Some(Missed::Miss), 777, 0));
    let (created, won, ttl) = s
        .get_with(b"v", viv, |f| (f.created, f.win_sent(), f.meta.ttl))
        .unwrap();
    assert_eq!((created, won, ttl), (None, true, Some(30)));

    // A compare-and-swap with an older CAS stores only with stale_ok,
    // and then keeps the exptime and the win mark, and marks it stale.
    let req = |cas, stale_ok| StoreReq {
        mode: Mode::Cas,
        key: b"v",
        value: b"new",
        exptime: 500,
        cas,
        stale_ok,
        ..StoreReq::default()
    };
    assert_eq!(s.store(&req(5, false)).outcome, StoreOutcome::Exists);
    assert_eq!(
        s.store(&req(778, true)).outcome,
        StoreOutcome::Exists,
        "newer"
    );
    let r = s.store(&req(5, true));
    assert_eq!((r.outcome, r.value_len), (StoreOutcome::Stored, 3));
    let (stale, won, ttl) = s
        .get_with(b"v", None, |f| (f.stale(), f.win_sent(), f.meta.ttl))
        .unwrap();
    assert_eq!((stale, won, ttl), (true, true, Some(30)));

    // Invalidating marks stale, clears the win, gives a new CAS value
    // (E's when given) and exptime.
    let inv = DeleteReq {
        key: b"v",
        invalidate: true,
        ttl: Some(90),
        new_cas: Some(4242),
        ..DeleteReq::default()
    };
    assert_eq!(s.delete(&inv), DeleteOutcome::Invalidated);
    let (stale, won, ttl, cas) = s
        .get_with(b"v", None, |f| (f.stale(), f.win_sent(), f.meta.ttl, f.cas))
        .unwrap();
    assert_eq!((stale, won, ttl, cas), (true, false, Some(90), 4242));
    let wrong = DeleteReq {
        key: b"v",
        cas: Some(1),
        ..DeleteReq::default()
    };
    assert_eq!(s.delete(&wrong), DeleteOutcome::Exists);

    // Removing the value keeps the item and its CAS value.
    let x = DeleteReq {
        key: b"v",
        remove_value: true,
        flags: 9,
        ..DeleteReq::default()
    };
    assert_eq!(s.delete(&x), DeleteOutcome::Deleted);
    let (len, flags, cas, stale) = s
        .get_with(b"v", None, |f| (f.value_len, f.flags, f.cas, f.stale()))
        .unwrap();
    assert_eq!((len, flags, cas, stale), (0, 9, 4242, false));

    // E gives a stored item its CAS value; b marks its key; an append
    // with vivify creates on a miss.
    let r = s.store(&StoreReq {
        mode: Mode::Append,
        key: b"a",
        value: b"xy",
        vivify: Some(20),
        new_cas: Some(31),
        key_binary: true,
        ..StoreReq::default()
    });
    assert_eq!((r.outcome, r.cas), (StoreOutcome::Stored, 31));
    let (bin, ttl) = s
        .get_with(b"a", None, |f| (f.key_binary(), f.meta.ttl))
        .unwrap();
    assert_eq!((bin, ttl), (true, Some(20)));
    let plain_append = StoreReq {
        mode: Mode::Append,
        key: b"b",
        value: b"xy",
        ..StoreReq::default()
    };
    assert_eq!(s.store(&plain_append).outcome, StoreOutcome::NotStored);

    // arith_with hands over the changed item; E sets its CAS value.
    s.put_v(Mode::Set, b"n", 0, 0, b"10", 0);
    let (r, ttl) = s.arith_with(
        &ArithReq {
            key: b"n",
            incr: true,
            delta: 5,
            cas: 0,
            parse: parse_num,
            create: None,
            new_cas: Some(99),
        },
        |f| {
            f.set_exptime(40);
            f.exptime() - f.now()
        },
    );
    assert_eq!(
        (r.outcome, r.cas, ttl),
        (DeltaOutcome::Value(15), 99, Some(40))
    );
    // A lookup without a bump marks nothing fetched.
    let quiet = GetOpts {
        bump: false,
        count: HitCount::None,
        ..GetOpts::default()
    };
    s.put_v(Mode::Set, b"q", 0, 0, b"v", 0);
    s.get_with(b"q", quiet, |_| ()).unwrap();
    assert!(!s.get_with(b"q", None, |f| f.meta.fetched).unwrap());
    assert!(s.get_with(b"q", None, |f| f.meta.fetched).unwrap());
}

#[test]
fn add_replace_append_prepend() {
    let s = store();
    assert_eq!(
        s.put_v(Mode::Replace, b"k", 0, 0, b"a", 0),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.put_v(Mode::Append, b"k", 0, 0, b"a", 0),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.put_v(Mode::Add, b"k", 3, 0, b"mid", 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.put_v(Mode::Add, b"k", 0, 0, b"x", 0),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.put_v(Mode::Append, b"k", 9, 0, b">", 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.put_v(Mode::Prepend, b"k", 9, 0, b"<", 0),
        StoreOutcome::Stored
    );
    assert_eq!(value(&s, b"k").unwrap(), b"<mid>");
    // append keeps the old flags
    match s.get(b"k", None) {
        GetOutcome::Hit(h) => assert_eq!(h.flags, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.put_v(Mode::Replace, b"k", 0, 0, b"new", 0),
        StoreOutcome::Stored
    );
    assert_eq!(value(&s, b"k").unwrap(), b"new");
}

#[test]
fn cas_rules() {
    let s = store();
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"a", 1),
        StoreOutcome::NotFound
    );
    s.put_v(Mode::Set, b"k", 0, 0, b"a", 0);
    let cas = match s.get(b"k", None) {
        GetOutcome::Hit(h) => h.cas,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"b", cas + 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"b", 0),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"b", cas),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"c", cas),
        StoreOutcome::Exists
    );
    assert_eq!(value(&s, b"k").unwrap(), b"b");
}

#[test]
fn cas_disabled() {
    let s = store_with(Config {
        use_cas: false,
        ..Config::default()
    });
    s.put_v(Mode::Set, b"k", 0, 0, b"a", 0);
    match s.get(b"k", None) {
        GetOutcome::Hit(h) => assert_eq!(h.cas, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"b", 0),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.put_v(Mode::Cas, b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
}

#[test]
fn incr_decr_in_place_and_growing() {
    let s = store();
    assert_eq!(
        s.incr_decr(b"n", true, 1, parse_num),
        DeltaOutcome::NotFound
    );
    s.put_v(Mode::Set, b"n", 0, 0, b"100", 0);
    assert_eq!(
        s.incr_decr(b"n", false, 95, parse_num),
        DeltaOutcome::Value(5)
    );
    // shorter result: written in place, padded with spaces
    assert_eq!(value(&s, b"n").unwrap(), b"5  ");
    assert_eq!(
        s.incr_decr(b"n", false, 10, parse_num),
        DeltaOutcome::Value(0)
    );
    assert_eq!(
        s.incr_decr(b"n", true, 12345, parse_num),
        DeltaOutcome::Value(12345)
    );
    // longer result: a new item of the exact length
    assert_eq!(value(&s, b"n").unwrap(), b"12345");
    s.put_v(Mode::Set, b"m", 0, 0, b"18446744073709551615", 0);
    assert_eq!(
        s.incr_decr(b"m", true, 2, parse_num),
        DeltaOutcome::Value(1)
    );
    s.put_v(Mode::Set, b"x", 0, 0, b"abc", 0);
    assert_eq!(
        s.incr_decr(b"x", true, 1, parse_num),
        DeltaOutcome::NonNumeric
    );
    s.put_v(Mode::Set, b"e", 0, 0, b"", 0);
    assert_eq!(
        s.incr_decr(b"e", true, 1, parse_num),
        DeltaOutcome::NonNumeric
    );
}

fn cas_of(s: &Store, k: &[u8]) -> u64 {
    match s.get(k, None) {
        GetOutcome::Hit(h) => h.cas,
        other => panic!("{other:?}"),
    }
}

/// The binary protocol's CAS checks and the CAS values it answers with.
#[test]
fn cas_values_returned_and_checked() {
    let s = store();
    let (o, c1) = s.put_v_cas(Mode::Set, b"k", 0, 0, b"v", 0);
    assert_eq!(o, StoreOutcome::Stored);
    assert_eq!(c1, cas_of(&s, b"k"));
    // Append/prepend: any CAS when 0, else it must match.
    assert_eq!(
        s.put_v_cas(Mode::Append, b"k", 0, 0, b"w", c1 + 1),
        (StoreOutcome::Exists, 0)
    );
    let (o, c2) = s.put_v_cas(Mode::Append, b"k", 0, 0, b"w", c1);
    assert_eq!(o, StoreOutcome::Stored);
    assert!(c2 > c1);
    assert_eq!(
        s.put_v_cas(Mode::Prepend, b"k", 0, 0, b"p", 0).0,
        StoreOutcome::Stored
    );
    assert_eq!(value(&s, b"k").unwrap(), b"pvw");
    // incr/decr: the CAS is checked, the new one returned.
    s.put_v(Mode::Set, b"n", 0, 0, b"10", 0);
    let cn = cas_of(&s, b"n");
    assert_eq!(
        s.incr_decr_cas(b"n", true, 1, cn + 7, parse_num),
        (DeltaOutcome::Exists, 0)
    );
    let (o, c3) = s.incr_decr_cas(b"n", true, 1, cn, parse_num);
    assert_eq!(o, DeltaOutcome::Value(11));
    assert_eq!(c3, cas_of(&s, b"n"));
    assert!(c3 > cn);
    // delete: a wrong CAS keeps the item.
    assert_eq!(s.del_cas(b"n", c3 + 1), DeleteOutcome::Exists);
    assert_eq!(value(&s, b"n").unwrap(), b"11");
    assert_eq!(s.del_cas(b"n", c3), DeleteOutcome::Deleted);
    assert_eq!(s.del_cas(b"n", 0), DeleteOutcome::NotFound);
    // Without CAS values (-C) every item's is 0.
    let s = store_with(Config {
        use_cas: false,
        ..Config::default()
    });
    assert_eq!(
        s.put_v_cas(Mode::Set, b"k", 0, 0, b"v", 0),
        (StoreOutcome::Stored, 0)
    );
    assert_eq!(s.del_cas(b"k", 5), DeleteOutcome::Exists);
}

#[test]
fn a_held_value_is_not_changed_in_place() {
    let s = store();
    s.put_v(Mode::Set, b"n", 0, 0, b"100", 0);
    let held = pin(&s, b"n");
    assert_eq!(
        s.incr_decr(b"n", false, 1, parse_num),
        DeltaOutcome::Value(99)
    );
    assert_eq!(&held[..], b"100\r\n", "a reader's bytes stay as they were");
    assert_eq!(
        value(&s, b"n").unwrap(),
        b"99",
        "a new item of the exact length"
    );
    drop(held);
    // Nobody holds the new one: in place, padded.
    assert_eq!(
        s.incr_decr(b"n", false, 90, parse_num),
        DeltaOutcome::Value(9)
    );
    assert_eq!(value(&s, b"n").unwrap(), b"9 ");
}

#[test]
fn expiry_and_touch() {
    let s = store();
    s.put_v(Mode::Set, b"a", 0, 2, b"v", 0);
    s.put_v(Mode::Set, b"b", 0, 2, b"v", 0);
    s.put_v(Mode::Set, b"never", 0, 0, b"v", 0);
    s.put_v(Mode::Set, b"neg", 0, -1, b"v", 0);
    assert!(matches!(s.get(b"neg", None), GetOutcome::Expired));
    assert!(s.touch_key(b"b", 100));
    s.clock().advance(2);
    assert!(matches!(s.get(b"a", None), GetOutcome::Expired));
    assert!(value(&s, b"b").is_some());
    assert!(value(&s, b"never").is_some());
    // gat sets a new exptime
    assert!(matches!(s.get(b"b", Some(-1)), GetOutcome::Hit(_)));
    assert!(matches!(s.get(b"b", None), GetOutcome::Expired));
}

#[test]
fn flush_now_and_later() {
    let s = store();
    s.put_v(Mode::Set, b"a", 0, 0, b"v", 0);
    s.flush_all(0);
    assert!(matches!(s.get(b"a", None), GetOutcome::Flushed));
    s.put_v(Mode::Set, b"b", 0, 0, b"v", 0);
    assert!(value(&s, b"b").is_some(), "items stored after a flush live");
    s.flush_all(2);
    assert!(value(&s, b"b").is_some(), "a delayed flush waits");
    s.clock().advance(3);
    assert!(matches!(s.get(b"b", None), GetOutcome::Flushed));
}

#[test]
fn a_later_delayed_flush_does_not_bring_flushed_items_back() {
    for use_cas in [true, false] {
        let s = store_with(Config {
            use_cas,
            ..Config::default()
        });
        s.put_v(Mode::Set, b"a", 0, 0, b"v", 0);
        s.flush_all(0);
        s.clock().advance(1);
        s.put_v(Mode::Set, b"b", 0, 0, b"v", 0);
        s.flush_all(100_000);
        assert!(value(&s, b"a").is_none(), "cas {use_cas}");
        assert!(value(&s, b"b").is_some(), "cas {use_cas}");
    }
}

#[test]
fn too_large_and_set_drops_old_value() {
    let s = store();
    assert!(s.item_size_ok(1, 0, 1000));
    assert!(!s.item_size_ok(1, 0, 1 << 20));
    s.put_v(Mode::Set, b"k", 0, 0, b"v", 0);
    let big = vec![b'x'; 1 << 20];
    assert_eq!(
        s.put_v(Mode::Set, b"k", 0, 0, &big, 0),
        StoreOutcome::TooLarge
    );
    assert!(value(&s, b"k").is_none(), "memcached drops the stale value");
    // append past -I is NOT_STORED
    let almost = vec![b'x'; (1 << 20) - 100];
    assert_eq!(
        s.put_v(Mode::Set, b"k", 0, 0, &almost, 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.put_v(Mode::Append, b"k", 0, 0, &[b'y'; 200], 0),
        StoreOutcome::NotStored
    );
}

#[test]
fn memory_limit_evicts_oldest_first() {
    let s = store_with(Config {
        mem_limit: 2 << 20,
        ..Config::default()
    });
    let v = vec![b'v'; 1000];
    for i in 0..10_000u32 {
        assert_eq!(
            s.put_v(Mode::Set, format!("key{i}").as_bytes(), 0, 0, &v, 0),
            StoreOutcome::Stored
        );
    }
    let st = s.stats();
    assert!(st.total_malloced <= 2 << 20);
    assert!(st.evictions > 0);
    assert!(st.curr_items < 10_000);
    assert!(value(&s, b"key9999").is_some(), "newest survives");
    assert!(value(&s, b"key0").is_none(), "oldest evicted");
    let used: u32 = st.classes.iter().map(|c| c.used_chunks).sum();
    assert_eq!(u64::from(used), st.curr_items);
}

#[test]
fn no_evictions_reports_out_of_memory() {
    let s = store_with(Config {
        mem_limit: 1 << 20,
        evictions: false,
        ..Config::default()
    });
    let v = vec![b'v'; 1000];
    let mut oom = false;
    for i in 0..5_000u32 {
        match s.put_v(Mode::Set, format!("key{i}").as_bytes(), 0, 0, &v, 0) {
            StoreOutcome::Stored => {}
            StoreOutcome::OutOfMemory => {
                oom = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(oom);
    assert!(value(&s, b"key0").is_some(), "nothing was evicted");
}

#[test]
fn expired_items_are_reclaimed_before_live_ones_are_evicted() {
    let s = store_with(Config {
        mem_limit: 1 << 20,
        ..Config::default()
    });
    let v = vec![b'v'; 1000];
    let per_page = s.classes().per_page(s.classes().class_for(1100).unwrap()) as usize;
    for i in 0..per_page {
        s.put_v(Mode::Set, format!("old{i}").as_bytes(), 0, 1, &v, 0);
    }
    s.clock().advance(2);
    for i in 0..per_page {
        s.put_v(Mode::Set, format!("new{i}").as_bytes(), 0, 0, &v, 0);
    }
    let st = s.stats();
    assert_eq!(
        st.evictions, 0,
        "{} reclaimed, {} items, per page {per_page}",
        st.reclaimed, st.curr_items
    );
    assert!(st.reclaimed > 0);
}

#[test]
fn model_against_a_map() {
    let s = store();
    let mut model: HashMap<Vec<u8>, (Vec<u8>, u32)> = HashMap::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..50_000 {
        let r = rnd();
        let key = format!("k{}", r % 64).into_bytes();
        let val = format!("{}", (r >> 8) % 1000).into_bytes();
        let flags = ((r >> 20) % 3) as u32;
        match (r >> 32) % 8 {
            0 | 1 => {
                assert_eq!(
                    s.put_v(Mode::Set, &key, flags, 0, &val, 0),
                    StoreOutcome::Stored
                );
                model.insert(key, (val, flags));
            }
            2 => {
                let got = s.put_v(Mode::Add, &key, flags, 0, &val, 0);
                match model.entry(key) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        assert_eq!(got, StoreOutcome::NotStored)
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        assert_eq!(got, StoreOutcome::Stored);
                        e.insert((val, flags));
                    }
                }
            }
            3 => {
                let got = s.put_v(Mode::Append, &key, flags, 0, &val, 0);
                match model.get_mut(&key) {
                    Some(e) => {
                        assert_eq!(got, StoreOutcome::Stored);
                        e.0.extend_from_slice(&val);
                    }
                    None => assert_eq!(got, StoreOutcome::NotStored),
                }
            }
            4 => assert_eq!(s.del(&key), model.remove(&key).is_some()),
            5 => {
                let got = s.incr_decr(&key, true, 3, parse_num);
                match model.get_mut(&key) {
                    None => assert_eq!(got, DeltaOutcome::NotFound),
                    Some(e) => match parse_num(&e.0) {
                        None => assert_eq!(got, DeltaOutcome::NonNumeric),
                        Some(n) => {
                            let new = n.wrapping_add(3);
                            assert_eq!(got, DeltaOutcome::Value(new));
                            let mut text = new.to_string().into_bytes();
                            if text.len() < e.0.len() {
                                text.resize(e.0.len(), b' ');
                            }
                            e.0 = text;
                        }
                    },
                }
            }
            _ => match (s.get(&key, None), model.get(&key)) {
                (GetOutcome::Hit(h), Some((v, f))) => {
                    assert_eq!(h.value(), &v[..]);
                    assert_eq!(h.flags, *f);
                }
                (GetOutcome::Miss, None) => {}
                (got, want) => panic!("store {got:?} model {want:?}"),
            },
        }
    }
    assert_eq!(s.stats().curr_items, model.len() as u64);
}

#[test]
fn concurrent_writers_and_readers() {
    let s = Arc::new(store());
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    let k = format!("t{t}k{}", i % 100);
                    let v = format!("{t}:{i}");
                    s.put_v(Mode::Set, k.as_bytes(), t, 0, v.as_bytes(), 0);
                    match s.get(k.as_bytes(), None) {
                        GetOutcome::Hit(h) => {
                            assert_eq!(h.flags, t);
                            assert_eq!(h.value(), v.as_bytes());
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.stats().curr_items, 400);
}

#[test]
fn cachedump_lists_recent_first() {
    let s = store();
    s.put_v(Mode::Set, b"a", 0, 0, b"1", 0);
    s.put_v(Mode::Set, b"b", 0, 0, b"22", 0);
    let d = s.dump(1, 0, 1 << 20);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].key, b"b");
    assert_eq!(d[0].value_len, 2);
    assert_eq!(s.dump(1, 1, 1 << 20).len(), 1);
    assert!(s.dump(0, 0, 1 << 20).is_empty());
    assert!(s.dump(99, 0, 1 << 20).is_empty());
}

#[test]
fn cachedump_limit_spans_shards() {
    let s = store();
    for i in 0..50u32 {
        s.put_v(Mode::Set, format!("k{i}").as_bytes(), 0, 0, b"v", 0);
    }
    let d = s.dump(1, 10, 1 << 20);
    assert_eq!(d.len(), 10);
    // Same second: the most recent stores (highest CAS) come first.
    assert_eq!(d[0].key, b"k49");
    assert_eq!(s.dump(1, 0, 1 << 20).len(), 50);
}

fn small(mem_mb: u64) -> Store {
    store_with(Config {
        mem_limit: mem_mb << 20,
        ..Config::default()
    })
}

#[test]
fn header_is_24_bytes_and_small_items_fit_small_chunks() {
    let s = store();
    // key 10, value 20 + \r\n: 24 + 10 + 22 = 56 bytes, class 1 (72).
    s.put_v(Mode::Set, b"0123456789", 0, 0, &[b'v'; 20], 0);
    let st = s.stats();
    let c = &st.classes[0];
    assert_eq!((c.id, c.chunk_size, c.used_chunks), (1, 72, 1));
    assert_eq!(c.mem_requested, 56);
    // flags take 4 bytes only when non-zero
    s.put_v(Mode::Set, b"f", 7, 0, b"", 0);
    assert_eq!(s.stats().classes[0].mem_requested, 56 + 24 + 4 + 1 + 2);
}

#[test]
fn arena_pages_taken_lazily_and_within_the_limit() {
    let s = small(4);
    assert_eq!(s.pages_taken(), 0, "nothing taken at start");
    s.put_v(Mode::Set, b"k", 0, 0, b"v", 0);
    assert_eq!(s.pages_taken(), 1);
    let v = vec![b'x'; 3000];
    for i in 0..20_000u32 {
        s.put_v(Mode::Set, format!("k{i}").as_bytes(), 0, 0, &v, 0);
    }
    // -m 4: four pages, the first page of class 1 beyond them at most.
    assert!(s.pages_taken() <= 5, "{}", s.pages_taken());
    assert!(s.stats().total_malloced <= 5 << 20);
    assert!(s.stats().evictions > 0);
}

#[test]
fn chained_items_round_trip() {
    let s = small(8);
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        s.put_v(Mode::Set, b"big", 5, 0, &big, 0),
        StoreOutcome::Stored
    );
    let parts = s
        .get_with(b"big", None, |f| {
            f.parts().map(<[u8]>::len).collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(
        parts.len(),
        2,
        "1,000,000 B takes a 512 KB chunk and a smaller one"
    );
    assert_eq!(parts.iter().sum::<usize>(), big.len() + 2);
    assert_eq!(value(&s, b"big").unwrap(), big);
    // append onto a chained item, then prepend
    assert_eq!(
        s.put_v(Mode::Append, b"big", 0, 0, b"END", 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.put_v(Mode::Prepend, b"big", 0, 0, b"GO", 0),
        StoreOutcome::Stored
    );
    let got = value(&s, b"big").unwrap();
    assert_eq!(&got[..2], b"GO");
    assert_eq!(&got[got.len() - 3..], b"END");
    assert_eq!(&got[2..got.len() - 3], &big[..]);
    assert_eq!(
        s.incr_decr(b"big", true, 1, parse_num),
        DeltaOutcome::NonNumeric
    );
    assert!(s.del(b"big"));
    let st = s.stats();
    assert_eq!(st.classes.iter().map(|c| c.used_chunks).sum::<u32>(), 0);
}

#[test]
fn a_held_item_outlives_delete_and_is_never_evicted() {
    let s = small(2);
    let v = vec![b'h'; 2000];
    s.put_v(Mode::Set, b"held", 0, 0, &v, 0);
    let held = pin(&s, b"held");
    assert!(s.del(b"held"));
    // Churn the class far past -m: the held chunk is never reused.
    for i in 0..5_000u32 {
        s.put_v(
            Mode::Set,
            format!("k{i}").as_bytes(),
            0,
            0,
            &[b'z'; 2000],
            0,
        );
    }
    assert_eq!(&held[..2000], &v[..]);
    let used_before: u32 = s.stats().classes.iter().map(|c| c.used_chunks).sum();
    drop(held);
    let used_after: u32 = s.stats().classes.iter().map(|c| c.used_chunks).sum();
    assert_eq!(
        used_after + 1,
        used_before,
        "the last reader frees the chunk"
    );
}

#[test]
fn eviction_passes_over_items_readers_hold() {
    let s = small(1);
    let v = vec![b'q'; 5000];
    s.put_v(Mode::Set, b"first", 0, 0, &v, 0);
    let held = pin(&s, b"first");
    for i in 0..2_000u32 {
        s.put_v(Mode::Set, format!("k{i}").as_bytes(), 0, 0, &v, 0);
    }
    assert!(value(&s, b"first").is_some(), "a held item is not evicted");
    drop(held);
}

#[test]
fn reassign_moves_a_page_and_its_items_go() {
    let s = small(4);
    let v = vec![b's'; 40];
    let mut i = 0u32;
    while u64::from(s.pages_taken()) < 3 {
        s.put_v(Mode::Set, format!("s{i}").as_bytes(), 0, 0, &v, 0);
        i += 1;
    }
    let small_class = s.classes().class_for(crate::item::HDR + 6 + 42).unwrap();
    let big_class = s.classes().class_for(5000).unwrap();
    let before = s.stats();
    let pages_small = before.classes[small_class - 1].pages;
    assert!(pages_small >= 2);
    assert_eq!(
        s.reassign(small_class as i32, small_class as i32),
        Err(ReassignError::Same)
    );
    assert_eq!(
        s.reassign(0, 1),
        Err(ReassignError::NoSpare),
        "the empty pool"
    );
    assert_eq!(s.reassign(-2, 1), Err(ReassignError::BadClass));
    assert_eq!(s.reassign(1, 99), Err(ReassignError::BadClass));
    assert_eq!(s.reassign(big_class as i32, 1), Err(ReassignError::NoSpare));
    assert_eq!(s.reassign(small_class as i32, big_class as i32), Ok(()));
    let after = s.stats();
    assert_eq!(after.slabs_moved, 1);
    assert_eq!(after.classes[small_class - 1].pages, pages_small - 1);
    assert_eq!(after.classes[big_class - 1].pages, 1);
    assert!(after.curr_items < before.curr_items);
    assert_eq!(
        after.total_malloced, before.total_malloced,
        "a move takes no new memory"
    );
    // The moved page serves the new class, and survivors read back intact.
    for k in 0..100u32 {
        s.put_v(
            Mode::Set,
            format!("b{k}").as_bytes(),
            0,
            0,
            &[b'b'; 4900],
            0,
        );
    }
    let mut alive = 0;
    for k in 0..i {
        if let Some(got) = value(&s, format!("s{k}").as_bytes()) {
            assert_eq!(got, v);
            alive += 1;
        }
    }
    assert_eq!(
        alive as u64,
        s.stats().classes[small_class - 1].items as u64
    );
}

#[test]
fn a_move_waits_for_readers() {
    let s = small(4);
    let v = vec![b's'; 40];
    let mut i = 0u32;
    while u64::from(s.pages_taken()) < 2 {
        s.put_v(Mode::Set, format!("s{i}").as_bytes(), 0, 0, &v, 0);
        i += 1;
    }
    let small_class = s.classes().class_for(crate::item::HDR + 6 + 42).unwrap();
    // Hold one item of every page.
    let held: Vec<ItemRef> = (0..i)
        .filter(|k| k % 500 == 0 || *k == i - 1)
        .map(|k| pin(&s, format!("s{k}").as_bytes()))
        .collect();
    assert_eq!(s.reassign(small_class as i32, 20), Ok(()));
    assert!(s.stats().slab_reassign_running);
    assert_eq!(s.reassign(small_class as i32, 20), Err(ReassignError::Busy));
    drop(held);
    let st = s.stats();
    assert!(!st.slab_reassign_running);
    assert_eq!(st.slabs_moved, 1);
    assert_eq!(st.classes[19].pages, 1);
}

#[test]
fn automove_follows_the_evicting_class() {
    let s = small(8);
    let mut k = 0u32;
    while u64::from(s.pages_taken()) < 8 {
        s.put_v(Mode::Set, format!("s{k}").as_bytes(), 0, 0, &[b's'; 50], 0);
        k += 1;
    }
    s.clock().advance(100);
    let big = s.classes().class_for(5200).unwrap();
    let mut moved = 0;
    for round in 0..200u32 {
        for j in 0..50u32 {
            s.put_v(
                Mode::Set,
                format!("b{round}-{j}").as_bytes(),
                0,
                0,
                &[b'b'; 5000],
                0,
            );
        }
        s.clock().advance(1);
        if s.automove_step(1, 0.8) {
            moved += 1;
        }
    }
    assert!(moved >= 5, "moved {moved}");
    assert!(s.stats().classes[big - 1].pages > 5);
    assert!(!s.automove_step(0, 0.8), "mode 0 never moves");
}

#[test]
fn index_grows_under_concurrent_use() {
    let s = Arc::new(store_with(Config {
        mem_limit: 256 << 20,
        hashpower: 4,
        ..Config::default()
    }));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    let k = format!("t{t}-{i}");
                    assert_eq!(
                        s.put_v(Mode::Set, k.as_bytes(), 0, 0, k.as_bytes(), 0),
                        StoreOutcome::Stored
                    );
                    if i % 3 == 0 {
                        assert!(s.del(format!("t{t}-{}", i / 2).as_bytes()) || (i / 2) % 3 == 0);
                    }
                    let back = format!("t{t}-{}", i / 4 * 3 + 1);
                    if let Some(v) = value(&s, back.as_bytes()) {
                        assert_eq!(v, back.as_bytes());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = s.stats();
    assert!(st.hash_power_level >= 16, "grew: {}", st.hash_power_level);
    assert_eq!(st.evictions, 0);
    for t in 0..4u32 {
        for i in (1..20_000u32).step_by(7) {
            let k = format!("t{t}-{i}");
            if let Some(v) = value(&s, k.as_bytes()) {
                assert_eq!(v, k.as_bytes());
            }
        }
    }
}

#[test]
fn pages_go_to_the_pool_and_back() {
    let s = small(4);
    let mut i = 0u32;
    while u64::from(s.pages_taken()) < 3 {
        s.put_v(Mode::Set, format!("s{i}").as_bytes(), 0, 0, &[b'p'; 40], 0);
        i += 1;
    }
    let c = s.classes().class_for(crate::item::HDR + 6 + 42).unwrap() as i32;
    assert_eq!(s.reassign(c, 0), Ok(()));
    assert_eq!(
        s.reassign(0, 5),
        Err(ReassignError::NoSpare),
        "one pooled page is no spare"
    );
    assert_eq!(s.reassign(-1, 99), Err(ReassignError::BadClass));
    // A class that grows takes the pooled page before a fresh one.
    let taken = s.pages_taken();
    s.put_v(Mode::Set, b"big", 0, 0, &[b'b'; 100_000], 0);
    assert_eq!(s.pages_taken(), taken);
    assert_eq!(value(&s, b"big").unwrap(), vec![b'b'; 100_000]);
}

#[test]
fn chained_items_end_in_a_small_chunk_and_lose_none() {
    let s = small(64);
    // One byte of header, flags and key past what a 512 KB chunk holds
    // leaves a 30-byte data block for a second, small chunk.
    let fixed = crate::item::HDR + 4 + 4 + 4;
    let big = vec![b'L'; (1 << 19) - fixed + 28];
    for i in 0..5 {
        assert_eq!(
            s.put_v(Mode::Set, format!("big{i}").as_bytes(), 1, 0, &big, 0),
            StoreOutcome::Stored
        );
    }
    let st = s.stats();
    let c = &st.classes[s.classes().largest() - 1];
    assert_eq!(
        c.used_chunks, 5,
        "one 512 KB chunk each, and a small last one"
    );
    assert_eq!(c.pages, 3, "5 chunks of 512 KB in 3 pages, none lost");
    assert_eq!(c.free_chunks, 1);
    let smallest_last = st.classes.iter().find(|c| c.used_chunks > 0).unwrap();
    assert_eq!(smallest_last.used_chunks, 5);
    assert!(
        smallest_last.chunk_size < 200,
        "{}",
        smallest_last.chunk_size
    );
    for i in 0..5 {
        assert_eq!(value(&s, format!("big{i}").as_bytes()).unwrap(), big);
    }
}

/// A value that says what it is: its key id and length, then bytes that
/// follow from both, so any reader can check what it got.
fn checkable(id: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len.max(8));
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend((8..len.max(8)).map(|i| ((id as usize * 31 + i) % 251) as u8));
    v
}

/// Checks a value held as parts (its data block, `\r\n` at the end).
fn check_held(parts: &[ItemRef]) {
    let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert!(whole.ends_with(b"\r\n"));
    check_value(&whole[..whole.len() - 2]);
}

fn check_value(v: &[u8]) {
    let id = u32::from_le_bytes(v[..4].try_into().unwrap());
    let len = u32::from_le_bytes(v[4..8].try_into().unwrap()) as usize;
    assert_eq!(v.len(), len.max(8), "length of key {id}'s value");
    assert!(v == checkable(id, len), "key {id}: bytes differ");
}

#[test]
fn threads_under_eviction_page_moves_and_held_readers() {
    let s = Arc::new(small(32));
    // The maintainer: a second passes every half millisecond, and the
    // reaper frees what expired (items carry TTLs of 0-3 s).
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaper = {
        let (s, done) = (Arc::clone(&s), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut expired = 0;
            while !done.load(Ordering::Relaxed) {
                s.clock().advance(1);
                expired += s.reap(16).expired;
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            expired
        })
    };
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut x = 0x2545_f491_4f6c_dd1du64 ^ u64::from(t);
                let mut rnd = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut held: Vec<Vec<ItemRef>> = Vec::new();
                for _ in 0..20_000 {
                    let r = rnd();
                    let id = (r % 20_000) as u32;
                    let key = format!("k{id}");
                    let len = match (r >> 12) % 100 {
                        0 => 500_000 + (r >> 20) as usize % 500_000,
                        1..=10 => 2_000 + (r >> 20) as usize % 2_000,
                        _ => 8 + (r >> 20) as usize % 100,
                    };
                    match (r >> 40) % 10 {
                        0..=3 => {
                            let v = checkable(id, len);
                            let ttl = ((r >> 50) % 4) as i32;
                            let got = s.put_v(Mode::Set, key.as_bytes(), 0, ttl, &v, 0);
                            assert!(matches!(
                                got,
                                StoreOutcome::Stored
                                    | StoreOutcome::OutOfMemory
                                    | StoreOutcome::TooLarge
                            ));
                        }
                        4 if r % 3 == 0 => {
                            s.touch_key(key.as_bytes(), ((r >> 50) % 4) as i32);
                        }
                        4 => {
                            s.del(key.as_bytes());
                        }
                        5 => {
                            // Hold a part of the value past the lock.
                            if let Ok(parts) = s.get_with(key.as_bytes(), None, |f| {
                                f.parts().filter_map(|p| f.pin(p)).collect::<Vec<_>>()
                            }) {
                                check_held(&parts);
                                held.push(parts);
                            }
                            if held.len() > 40 {
                                held.drain(..20);
                            }
                        }
                        6 if r % 50 == 0 => {
                            let _ = s.reassign(-1, (1 + (r >> 8) % 40) as i32);
                        }
                        6 => {
                            s.automove_step(2, 0.8);
                        }
                        _ => {
                            if let GetOutcome::Hit(h) = s.get(key.as_bytes(), None) {
                                check_value(&h.value);
                            }
                        }
                    }
                }
                // Bytes held all along are still what they were.
                for parts in &held {
                    check_held(parts);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let expired = reaper.join().unwrap();
    assert!(expired > 0, "the reaper freed items");
    // A minute later every item with a TTL is gone.
    s.clock().advance(60);
    s.reap(16);
    let st = s.stats();
    let items: u64 = st.classes.iter().map(|c| u64::from(c.items)).sum();
    assert_eq!(items, st.curr_items);
    assert!(st.total_malloced <= (32 << 20) + st.classes.len() as u64 * (1 << 20));
    for id in 0..20_000u32 {
        if let GetOutcome::Hit(h) = s.get(format!("k{id}").as_bytes(), None) {
            check_value(&h.value);
        }
    }
    assert!(st.evictions > 0, "the test evicts");
    assert!(st.slabs_moved > 0, "the test moves pages");
    assert!(
        !st.slab_reassign_running,
        "every move finished once readers let go"
    );
    // Every reader is gone: chunks in use are exactly the items' chunks.
    let used: u64 = st.classes.iter().map(|c| u64::from(c.used_chunks)).sum();
    assert!(used >= st.curr_items);
    // And the eviction queues agree with the items after all of it.
    s.check_policy();
}

#[test]
#[ignore = "a timing, run by hand: cargo test --release -p memcrab-store move_timing -- --ignored --nocapture"]
fn move_timing() {
    let s = small(64);
    let mut i = 0u32;
    while u64::from(s.pages_taken()) < 60 {
        s.put_v(Mode::Set, format!("s{i}").as_bytes(), 0, 0, &[b'p'; 30], 0);
        i += 1;
    }
    let c = s.classes().class_for(32 + 7 + 32).unwrap() as i32;
    for _ in 0..5 {
        let t = std::time::Instant::now();
        assert_eq!(s.reassign(c, 30), Ok(()));
        let per = s.classes().per_page(c as usize);
        let el = t.elapsed();
        eprintln!(
            "moved a page of {per} chunks in {el:?}: {:?} per batch of {MOVE_BATCH}",
            el / per.div_ceil(MOVE_BATCH)
        );
    }
}

#[test]
fn pin_refuses_memory_that_is_not_the_items_data() {
    let s = store();
    s.put_v(Mode::Set, b"k", 0, 0, b"value", 0);
    let elsewhere = vec![1u8; 16];
    let (own, piece, other) = s
        .get_with(b"k", None, |f| {
            let part = f.parts().next().unwrap();
            (
                f.pin(part).is_some(),
                f.pin(&part[1..3]).map(|r| r.to_vec()),
                f.pin(&elsewhere).is_none(),
            )
        })
        .unwrap();
    assert!(own);
    assert_eq!(piece.as_deref(), Some(&b"al"[..]));
    assert!(other, "a slice of other memory is refused in every build");
    // Neither may a slice reach past the item's data.
    let past = s
        .get_with(b"k", None, |f| {
            let p = f.parts().next().unwrap();
            // SAFETY (test): one byte past the data block lies in the same
            // chunk of the arena, so the slice is valid to form.
            let longer = unsafe { std::slice::from_raw_parts(p.as_ptr(), p.len() + 1) };
            f.pin(longer).is_none()
        })
        .unwrap();
    assert!(past);
}

#[test]
fn readers_share_a_shard_and_every_hit_counts() {
    let s = Arc::new(store());
    s.put_v(Mode::Set, b"hot", 0, 0, b"value", 0);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    if t == 3 && i % 10 == 0 {
                        // A writer in the same shard now and then.
                        s.put_v(Mode::Set, format!("w{i}").as_bytes(), 0, 0, b"x", 0);
                        continue;
                    }
                    assert_eq!(value(&s, b"hot").unwrap(), b"value");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let hits: u64 = s.stats().classes.iter().map(|c| c.stats.get_hits).sum();
    assert_eq!(hits, 3 * 5_000 + 4_500);
}

#[test]
fn a_shared_lookup_defers_what_it_changes() {
    let s = store();
    s.put_v(Mode::Set, b"k", 0, 0, b"v", 0);
    let seen = s
        .get_with(b"k", None, |f| {
            f.set_exptime(100);
            f.exptime()
        })
        .unwrap();
    let now = s.clock().now();
    assert_eq!(seen, now + 100, "the reader sees what it set");
    let ttl = s.get_with(b"k", None, |f| f.meta.ttl).unwrap();
    assert_eq!(ttl, Some(100), "and it is written after");
}

#[test]
fn one_hit_wonders_do_not_push_out_the_hot_set() {
    // 1 MB of 1000-byte items: about 900 fit. 200 hot keys, read again
    // and again between scans of keys never asked for again.
    for (small_percent, must_keep) in [(crate::SMALL_PERCENT, 180), (0, 0)] {
        let s = store_with(Config {
            mem_limit: 1 << 20,
            small_percent,
            ..Config::default()
        });
        let v = vec![b'v'; 1000];
        let hot = |i: u32| format!("hot{i}");
        for i in 0..200 {
            s.put_v(Mode::Set, hot(i).as_bytes(), 0, 0, &v, 0);
        }
        let mut cold = 0u32;
        for _round in 0..10 {
            for i in 0..200 {
                if value(&s, hot(i).as_bytes()).is_none() {
                    s.put_v(Mode::Set, hot(i).as_bytes(), 0, 0, &v, 0);
                }
            }
            for _ in 0..1_000 {
                cold += 1;
                s.put_v(Mode::Set, format!("cold{cold}").as_bytes(), 0, 0, &v, 0);
            }
        }
        let kept = (0..200)
            .filter(|&i| value(&s, hot(i).as_bytes()).is_some())
            .count();
        assert!(
            kept >= must_keep,
            "small {small_percent}%: {kept} hot keys kept"
        );
        if small_percent == 0 {
            assert!(
                kept < 180,
                "CLOCK keeps the hot set too ({kept}): the test shows nothing"
            );
        }
    }
}
