//! Store tests: semantics of each command, memory accounting, and a model
//! test against a plain map.

use super::*;
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
        s.store(Mode::Set, b"k", 7, 0, b"v", 0),
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
    assert!(s.delete(b"k"));
    assert!(!s.delete(b"k"));
    assert!(matches!(s.get(b"k", None), GetOutcome::Miss));
    assert_eq!(s.stats().curr_items, 0);
}

#[test]
fn add_replace_append_prepend() {
    let s = store();
    assert_eq!(
        s.store(Mode::Replace, b"k", 0, 0, b"a", 0),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(Mode::Append, b"k", 0, 0, b"a", 0),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(Mode::Add, b"k", 3, 0, b"mid", 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(Mode::Add, b"k", 0, 0, b"x", 0),
        StoreOutcome::NotStored
    );
    assert_eq!(
        s.store(Mode::Append, b"k", 9, 0, b">", 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(Mode::Prepend, b"k", 9, 0, b"<", 0),
        StoreOutcome::Stored
    );
    assert_eq!(value(&s, b"k").unwrap(), b"<mid>");
    // append keeps the old flags
    match s.get(b"k", None) {
        GetOutcome::Hit(h) => assert_eq!(h.flags, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.store(Mode::Replace, b"k", 0, 0, b"new", 0),
        StoreOutcome::Stored
    );
    assert_eq!(value(&s, b"k").unwrap(), b"new");
}

#[test]
fn cas_rules() {
    let s = store();
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"a", 1),
        StoreOutcome::NotFound
    );
    s.store(Mode::Set, b"k", 0, 0, b"a", 0);
    let cas = match s.get(b"k", None) {
        GetOutcome::Hit(h) => h.cas,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"b", cas + 1),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"b", 0),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"b", cas),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"c", cas),
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
    s.store(Mode::Set, b"k", 0, 0, b"a", 0);
    match s.get(b"k", None) {
        GetOutcome::Hit(h) => assert_eq!(h.cas, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"b", 0),
        StoreOutcome::Exists
    );
    assert_eq!(
        s.store(Mode::Cas, b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
}

#[test]
fn incr_decr_in_place_and_growing() {
    let s = store();
    assert_eq!(s.arith(b"n", true, 1, parse_num), DeltaOutcome::NotFound);
    s.store(Mode::Set, b"n", 0, 0, b"100", 0);
    assert_eq!(s.arith(b"n", false, 95, parse_num), DeltaOutcome::Value(5));
    // shorter result: written in place, padded with spaces
    assert_eq!(value(&s, b"n").unwrap(), b"5  ");
    assert_eq!(s.arith(b"n", false, 10, parse_num), DeltaOutcome::Value(0));
    assert_eq!(
        s.arith(b"n", true, 12345, parse_num),
        DeltaOutcome::Value(12345)
    );
    // longer result: a new item of the exact length
    assert_eq!(value(&s, b"n").unwrap(), b"12345");
    s.store(Mode::Set, b"m", 0, 0, b"18446744073709551615", 0);
    assert_eq!(s.arith(b"m", true, 2, parse_num), DeltaOutcome::Value(1));
    s.store(Mode::Set, b"x", 0, 0, b"abc", 0);
    assert_eq!(s.arith(b"x", true, 1, parse_num), DeltaOutcome::NonNumeric);
    s.store(Mode::Set, b"e", 0, 0, b"", 0);
    assert_eq!(s.arith(b"e", true, 1, parse_num), DeltaOutcome::NonNumeric);
}

#[test]
fn a_held_value_is_not_changed_in_place() {
    let s = store();
    s.store(Mode::Set, b"n", 0, 0, b"100", 0);
    let held = match s.get(b"n", None) {
        GetOutcome::Hit(h) => h,
        other => panic!("{other:?}"),
    };
    assert_eq!(s.arith(b"n", false, 1, parse_num), DeltaOutcome::Value(99));
    assert_eq!(held.value(), b"100", "a reader's bytes stay as they were");
    assert_eq!(value(&s, b"n").unwrap(), b"99");
}

#[test]
fn expiry_and_touch() {
    let s = store();
    s.store(Mode::Set, b"a", 0, 2, b"v", 0);
    s.store(Mode::Set, b"b", 0, 2, b"v", 0);
    s.store(Mode::Set, b"never", 0, 0, b"v", 0);
    s.store(Mode::Set, b"neg", 0, -1, b"v", 0);
    assert!(matches!(s.get(b"neg", None), GetOutcome::Expired));
    assert!(s.touch(b"b", 100));
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
    s.store(Mode::Set, b"a", 0, 0, b"v", 0);
    s.flush_all(0);
    assert!(matches!(s.get(b"a", None), GetOutcome::Flushed));
    s.store(Mode::Set, b"b", 0, 0, b"v", 0);
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
        s.store(Mode::Set, b"a", 0, 0, b"v", 0);
        s.flush_all(0);
        s.clock().advance(1);
        s.store(Mode::Set, b"b", 0, 0, b"v", 0);
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
    s.store(Mode::Set, b"k", 0, 0, b"v", 0);
    let big = vec![b'x'; 1 << 20];
    assert_eq!(
        s.store(Mode::Set, b"k", 0, 0, &big, 0),
        StoreOutcome::TooLarge
    );
    assert!(value(&s, b"k").is_none(), "memcached drops the stale value");
    // append past -I is NOT_STORED
    let almost = vec![b'x'; (1 << 20) - 100];
    assert_eq!(
        s.store(Mode::Set, b"k", 0, 0, &almost, 0),
        StoreOutcome::Stored
    );
    assert_eq!(
        s.store(Mode::Append, b"k", 0, 0, &[b'y'; 200], 0),
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
            s.store(Mode::Set, format!("key{i}").as_bytes(), 0, 0, &v, 0),
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
        match s.store(Mode::Set, format!("key{i}").as_bytes(), 0, 0, &v, 0) {
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
        s.store(Mode::Set, format!("old{i}").as_bytes(), 0, 1, &v, 0);
    }
    s.clock().advance(2);
    for i in 0..per_page {
        s.store(Mode::Set, format!("new{i}").as_bytes(), 0, 0, &v, 0);
    }
    let st = s.stats();
    assert_eq!(st.evictions, 0);
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
                    s.store(Mode::Set, &key, flags, 0, &val, 0),
                    StoreOutcome::Stored
                );
                model.insert(key, (val, flags));
            }
            2 => {
                let got = s.store(Mode::Add, &key, flags, 0, &val, 0);
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
                let got = s.store(Mode::Append, &key, flags, 0, &val, 0);
                match model.get_mut(&key) {
                    Some(e) => {
                        assert_eq!(got, StoreOutcome::Stored);
                        e.0.extend_from_slice(&val);
                    }
                    None => assert_eq!(got, StoreOutcome::NotStored),
                }
            }
            4 => assert_eq!(s.delete(&key), model.remove(&key).is_some()),
            5 => {
                let got = s.arith(&key, true, 3, parse_num);
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
                    s.store(Mode::Set, k.as_bytes(), t, 0, v.as_bytes(), 0);
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
    s.store(Mode::Set, b"a", 0, 0, b"1", 0);
    s.store(Mode::Set, b"b", 0, 0, b"22", 0);
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
        s.store(Mode::Set, format!("k{i}").as_bytes(), 0, 0, b"v", 0);
    }
    let d = s.dump(1, 10, 1 << 20);
    assert_eq!(d.len(), 10);
    // Same second: the most recent stores (highest CAS) come first.
    assert_eq!(d[0].key, b"k49");
    assert_eq!(s.dump(1, 0, 1 << 20).len(), 50);
}
