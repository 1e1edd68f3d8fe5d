//! Property test: random command sequences against a plain map, under a
//! tiny `-m` so that eviction, chained items and page growth all happen.
//! The store may forget an item (eviction); it may never return a wrong
//! value, wrong flags, a CAS that did not change with the value, or an
//! item larger than `-I`. The clock moves (`Tick`), items carry TTLs of a
//! few seconds, and the reaper runs at each tick: no expired item may be
//! returned, and none may still be counted after the reaper's pass.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use crate::{Clock, Config, DeltaOutcome, GetOutcome, Mode, Store, StoreOutcome};

#[derive(Debug, Clone)]
enum Op {
    /// Mode, key, value length, flags, TTL in seconds (0: never).
    Store(Mode, u8, usize, u32, u8),
    Delete(u8),
    Incr(u8, u64),
    Get(u8),
    /// A `cas` with the CAS last seen for the key (or a stale one).
    Cas(u8, bool, usize),
    /// A `touch` (or, with the flag, a `gat`) with a TTL.
    Touch(u8, u8, bool),
    Reassign(u8, u8),
    /// A second passes; the reaper runs.
    Tick,
}

fn len_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..200,
        3 => 200usize..6000,
        1 => 500_000usize..1_100_000,
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let mode = prop_oneof![
        Just(Mode::Set),
        Just(Mode::Add),
        Just(Mode::Replace),
        Just(Mode::Append),
        Just(Mode::Prepend),
    ];
    prop_oneof![
        6 => (mode, any::<u8>(), len_strategy(), prop_oneof![Just(0u32), any::<u32>()], 0u8..5)
            .prop_map(|(m, k, l, f, t)| Op::Store(m, k % 48, l, f, t)),
        2 => any::<u8>().prop_map(|k| Op::Delete(k % 48)),
        1 => (any::<u8>(), any::<u64>()).prop_map(|(k, d)| Op::Incr(k % 48, d % 1000)),
        6 => any::<u8>().prop_map(|k| Op::Get(k % 48)),
        1 => (any::<u8>(), any::<bool>(), len_strategy()).prop_map(|(k, f, l)| Op::Cas(k % 48, f, l)),
        1 => (any::<u8>(), 0u8..5, any::<bool>()).prop_map(|(k, t, g)| Op::Touch(k % 48, t, g)),
        2 => Just(Op::Tick),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Reassign(a % 44, b % 44)),
    ]
}

#[derive(Debug, Clone)]
struct Model {
    value: Vec<u8>,
    flags: u32,
    /// The CAS last read, if the item has not changed since.
    cas: Option<u64>,
    /// Clock second at which it expires.
    exp: Option<u32>,
}

fn key(k: u8) -> Vec<u8> {
    format!("key:{k}").into_bytes()
}

fn value(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i * 7 + seed) % 26) as u8)
        .collect()
}

fn parse_num(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v)
        .ok()?
        .trim_end_matches(' ')
        .parse()
        .ok()
}

fn check(ops: Vec<Op>) {
    let clock = Arc::new(Clock::new());
    let s = Store::new(
        Config {
            mem_limit: 3 << 20,
            ..Config::default()
        },
        Arc::clone(&clock),
    );
    let exp_of = |ttl: u8| (ttl != 0).then(|| clock.now() + u32::from(ttl));
    let mut model: HashMap<Vec<u8>, Model> = HashMap::new();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Store(mode, k, len, flags, ttl) => {
                let key = key(k);
                let v = value(n, len);
                let fits = s.item_size_ok(key.len(), flags, len);
                let got = s.put_v(mode, &key, flags, i32::from(ttl), &v, 0);
                let had = model.contains_key(&key);
                match (mode, got) {
                    (_, StoreOutcome::TooLarge) => {
                        assert!(!fits);
                        if mode == Mode::Set {
                            model.remove(&key);
                        }
                    }
                    (Mode::Set | Mode::Add | Mode::Replace, StoreOutcome::Stored) => {
                        assert!(fits);
                        model.insert(
                            key,
                            Model {
                                value: v,
                                flags,
                                cas: None,
                                exp: exp_of(ttl),
                            },
                        );
                    }
                    (Mode::Add, StoreOutcome::NotStored) => {
                        assert!(had, "add refused with no item")
                    }
                    (Mode::Replace | Mode::Append | Mode::Prepend, StoreOutcome::NotStored) => {
                        // Absent (perhaps evicted), or append past -I.
                        if let Some(m) = model.get(&key) {
                            if s.item_size_ok(key.len(), m.flags, m.value.len() + len) {
                                model.remove(&key);
                            }
                        }
                    }
                    (Mode::Append | Mode::Prepend, StoreOutcome::Stored) => {
                        let m = model.get_mut(&key).expect("append stored with no item");
                        if mode == Mode::Append {
                            m.value.extend_from_slice(&v);
                        } else {
                            let mut nv = v.clone();
                            nv.extend_from_slice(&m.value);
                            m.value = nv;
                        }
                        m.cas = None;
                    }
                    // Under a tiny -m a class can be full of items it may
                    // not evict (the one being replaced): memcached fails
                    // the same way. A failed set drops the old value.
                    (_, StoreOutcome::OutOfMemory) => {
                        if mode == Mode::Set {
                            model.remove(&key);
                        }
                    }
                    (m, o) => panic!("{m:?} gave {o:?}"),
                }
                if mode == Mode::Replace && got == StoreOutcome::Stored {
                    assert!(had, "replace stored with no item");
                }
            }
            Op::Delete(k) => {
                let key = key(k);
                let deleted = s.del(&key);
                let had = model.remove(&key).is_some();
                assert!(!deleted || had, "deleted what was never there");
            }
            Op::Incr(k, d) => {
                let key = key(k);
                match s.incr_decr(&key, true, d, parse_num) {
                    DeltaOutcome::NotFound => {
                        model.remove(&key);
                    }
                    DeltaOutcome::NonNumeric => {
                        let m = model.get(&key).expect("non-numeric with no item");
                        assert!(m.value.len() > 500_000 || parse_num(&m.value).is_none());
                    }
                    DeltaOutcome::Value(v) => {
                        let m = model.get_mut(&key).expect("incr with no item");
                        let old = parse_num(&m.value).expect("numeric");
                        assert_eq!(v, old.wrapping_add(d));
                        let mut text = v.to_string().into_bytes();
                        if text.len() < m.value.len() {
                            text.resize(m.value.len(), b' ');
                        }
                        m.value = text;
                        m.cas = None;
                    }
                    DeltaOutcome::OutOfMemory => {}
                    DeltaOutcome::Exists => panic!("a CAS mismatch without a CAS value"),
                }
            }
            Op::Touch(k, ttl, false) => {
                let key = key(k);
                if s.touch_key(&key, i32::from(ttl)) {
                    let m = model.get_mut(&key).expect("touched what the model lacks");
                    m.exp = exp_of(ttl);
                } else {
                    model.remove(&key);
                }
            }
            Op::Get(_) | Op::Touch(_, _, true) => {
                let (k, touch) = match op {
                    Op::Touch(k, ttl, _) => (k, Some(i32::from(ttl))),
                    Op::Get(k) => (k, None),
                    _ => unreachable!(),
                };
                let key = key(k);
                match s.get(&key, touch) {
                    GetOutcome::Hit(h) => {
                        let m = model.get_mut(&key).expect("a hit the model lacks");
                        if let Some(t) = touch {
                            m.exp = exp_of(t as u8);
                        }
                        assert_eq!(h.value.len(), m.value.len());
                        assert!(h.value == m.value, "wrong value for {k}");
                        assert_eq!(h.flags, m.flags);
                        assert!(h.value.len() <= 1 << 20);
                        match m.cas {
                            Some(c) => assert_eq!(h.cas, c, "CAS changed without a write"),
                            None => m.cas = Some(h.cas),
                        }
                    }
                    GetOutcome::Miss => {
                        model.remove(&key);
                    }
                    other => panic!("{other:?}: the reaper should have freed it"),
                }
            }
            Op::Cas(k, fresh, len) => {
                let key = key(k);
                let v = value(n, len);
                let seen = model.get(&key).and_then(|m| m.cas);
                let unique = match (fresh, seen) {
                    (true, Some(c)) => c,
                    _ => u64::MAX,
                };
                match s.put_v(Mode::Cas, &key, 3, 0, &v, unique) {
                    StoreOutcome::Stored => {
                        assert_eq!(Some(unique), seen, "cas stored with a CAS never seen");
                        model.insert(
                            key,
                            Model {
                                value: v,
                                flags: 3,
                                cas: None,
                                exp: None,
                            },
                        );
                    }
                    StoreOutcome::NotFound => {
                        model.remove(&key);
                    }
                    StoreOutcome::Exists => assert!(model.contains_key(&key)),
                    StoreOutcome::TooLarge => assert!(!s.item_size_ok(key.len(), 3, len)),
                    StoreOutcome::OutOfMemory => {}
                    other => panic!("cas gave {other:?}"),
                }
            }
            Op::Reassign(a, b) => {
                let _ = s.reassign(i32::from(a), i32::from(b));
            }
            Op::Tick => {
                clock.advance(1);
                s.reap(3);
                let now = clock.now();
                model.retain(|_, m| m.exp.is_none_or(|e| e > now));
                // Every item still counted is live (the model may hold
                // more: the store evicts).
                assert!(s.stats().curr_items <= model.len() as u64);
            }
        }
    }
    // Everything the model still has is either gone (evicted) or right.
    for (key, m) in &model {
        if let GetOutcome::Hit(h) = s.get(key, None) {
            assert!(h.value == m.value);
            assert_eq!(h.flags, m.flags);
        }
    }
    let st = s.stats();
    let items: u64 = st.classes.iter().map(|c| u64::from(c.items)).sum();
    assert_eq!(items, st.curr_items);
    let used: u64 = st.classes.iter().map(|c| u64::from(c.used_chunks)).sum();
    assert!(used >= st.curr_items);
    let classes = st.classes.len() as u64;
    assert!(st.total_malloced <= (3 << 20) + classes * (1 << 20));
    s.check_policy();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn store_agrees_with_a_map(ops in proptest::collection::vec(op_strategy(), 1..400)) {
        check(ops);
    }
}
