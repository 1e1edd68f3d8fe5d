//! Positional shorthands for the unit tests (the store's API takes
//! request structs; spelling one out in each of the tests' hundreds of
//! calls would hide what they test).

use crate::{
    ArithReq, DeleteOutcome, DeleteReq, DeltaOutcome, Mode, Store, StoreOutcome, StoreReq,
};

impl Store {
    pub(crate) fn put_v(
        &self,
        mode: Mode,
        key: &[u8],
        flags: u32,
        exptime: i32,
        value: &[u8],
        cas: u64,
    ) -> StoreOutcome {
        self.put_v_cas(mode, key, flags, exptime, value, cas).0
    }

    pub(crate) fn put_v_cas(
        &self,
        mode: Mode,
        key: &[u8],
        flags: u32,
        exptime: i32,
        value: &[u8],
        cas: u64,
    ) -> (StoreOutcome, u64) {
        let r = self.store(&StoreReq {
            mode,
            key,
            flags,
            exptime,
            value,
            cas,
            ..StoreReq::default()
        });
        (r.outcome, r.cas)
    }

    /// Deletes `key`, whatever its CAS value: whether it was there.
    pub(crate) fn del(&self, key: &[u8]) -> bool {
        self.del_cas(key, 0) == DeleteOutcome::Deleted
    }

    /// Deletes `key` if its CAS value is `cas` (any, when 0).
    pub(crate) fn del_cas(&self, key: &[u8], cas: u64) -> DeleteOutcome {
        self.delete(&DeleteReq {
            key,
            cas: (cas != 0).then_some(cas),
            ..DeleteReq::default()
        })
    }

    /// A lookup that touches: whether the item was there.
    pub(crate) fn touch_key(&self, key: &[u8], exptime: i32) -> bool {
        self.get_with(key, Some(exptime), |_| ()).is_ok()
    }

    pub(crate) fn incr_decr(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        parse: fn(&[u8]) -> Option<u64>,
    ) -> DeltaOutcome {
        self.incr_decr_cas(key, incr, delta, 0, parse).0
    }

    pub(crate) fn incr_decr_cas(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        cas: u64,
        parse: fn(&[u8]) -> Option<u64>,
    ) -> (DeltaOutcome, u64) {
        let r = self.arith(&ArithReq {
            key,
            incr,
            delta,
            cas,
            parse,
            create: None,
            new_cas: None,
        });
        (r.outcome, r.cas)
    }
}
