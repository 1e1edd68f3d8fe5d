//! The key operations every protocol reaches through the server's command
//! layer: lookup, store, delete, incr/decr. Each takes the key's shard
//! lock once, does its work (and, for a lookup, runs the caller's
//! closure on the item) and lets go; none does I/O.

use std::borrow::Cow;

use crate::found::Found;
use crate::item::fl;
use crate::shard::Dead;
use crate::write::NewItem;
use crate::{
    ArithReq, ArithResult, DeleteOutcome, DeltaOutcome, GetOpts, GetOutcome, Hit, ItemMeta, Missed,
    Mode, Store, StoreOutcome, StoreReq, StoreResult,
};

impl Store {
    /// Looks `key` up and, when it is live, runs `f` on it under the shard
    /// lock. The lookup marks the item fetched, bumps it in its LRU (unless
    /// `opts.bump` is false) and, with `opts.touch`, gives it a new
    /// exptime; `f` sees [`ItemMeta`] as the item was before.
    pub fn get_with<R>(
        &self,
        key: &[u8],
        opts: impl Into<GetOpts>,
        f: impl FnOnce(&Found<'_>) -> R,
    ) -> Result<R, Missed> {
        let opts = opts.into();
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
        let id = match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => i,
            Ok(None) => return Err(Missed::Miss),
            Err(Dead::Expired) => return Err(Missed::Expired),
            Err(Dead::Flushed) => return Err(Missed::Flushed),
        };
        let it = self.mem.item(id);
        if let Some(t) = opts.touch {
            g.set_exptime(self, id, self.clock.realtime(t));
        }
        let exptime = it.exptime();
        let meta = ItemMeta {
            ttl: (exptime != 0).then(|| exptime.saturating_sub(now)),
            idle: now.saturating_sub(it.time()),
            fetched: it.has(fl::FETCHED),
            class: self.class_of(it),
            size: self.size_of(it),
        };
        it.set(fl::FETCHED);
        let cs = &mut g.classes[meta.class];
        if opts.touch.is_some() {
            cs.stats.touch_hits += 1;
        } else {
            cs.stats.get_hits += 1;
        }
        if opts.bump {
            g.touch_lru(self, id, meta.class, now);
        }
        let found = Found {
            mem: &self.mem,
            head: id,
            it,
            flags: it.flags(),
            cas: it.cas(),
            value_len: it.nbytes() as usize - 2,
            meta,
        };
        Ok(f(&found))
    }

    /// [`get_with`](Self::get_with), copying the item out (tests and
    /// tools; the server answers from [`Found`] without a copy of large
    /// values).
    pub fn get(&self, key: &[u8], opts: impl Into<GetOpts>) -> GetOutcome {
        match self.get_with(key, opts, |f| {
            let mut value = Vec::with_capacity(f.value_len + 2);
            for p in f.parts() {
                value.extend_from_slice(p);
            }
            value.truncate(f.value_len);
            Hit {
                key: key.to_vec(),
                value,
                flags: f.flags,
                cas: f.cas,
            }
        }) {
            Ok(h) => GetOutcome::Hit(h),
            Err(m) => m.into(),
        }
    }

    /// Counts a store attempt whose data block was malformed: memcached
    /// counts the `set` in the item's class before it checks the block.
    pub fn note_set_attempt(&self, key: &[u8], flags: u32, value_len: usize) {
        if self.item_size_ok(key.len(), flags, value_len) {
            let c = self.class_for_size(Self::size_for(key.len(), flags, value_len + 2));
            self.shard(self.hash(key)).lock().classes[c].stats.cmd_set += 1;
        }
    }

    /// Stores `req.value` under `req.key` according to `req.mode`: the
    /// outcome memcached would report, and the new item's CAS value.
    pub fn store(&self, req: &StoreReq<'_>) -> StoreResult {
        let (outcome, cas) = self.store_inner(req);
        StoreResult { outcome, cas }
    }

    fn store_inner(&self, req: &StoreReq<'_>) -> (StoreOutcome, u64) {
        let StoreReq {
            mode,
            key,
            flags,
            exptime,
            value,
            cas: cas_unique,
        } = *req;
        if !self.item_size_ok(key.len(), flags, value.len()) {
            if mode == Mode::Set {
                self.unlink_key(key);
            }
            return (StoreOutcome::TooLarge, 0);
        }
        let class_in = self.class_for_size(Self::size_for(key.len(), flags, value.len() + 2));
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = self.clock.realtime(exptime);
        let mut g = self.shard(hash).lock();
        let shard = &mut *g;
        shard.classes[class_in].stats.cmd_set += 1;
        let old = shard.find_live(self, hash, key, now).unwrap_or(None);
        let crlf: &[u8] = b"\r\n";

        // Decide from the existing item what to store, if anything.
        let fresh: [&[u8]; 2] = [value, crlf];
        let old_value: Cow<'_, [u8]>;
        let joined: [&[u8]; 3];
        let (pieces, flags, exptime): (&[&[u8]], u32, u32) = match (mode, old) {
            (Mode::Set, _) | (Mode::Add, None) => (&fresh, flags, exptime),
            (Mode::Add, Some(o)) => {
                // add promotes the item it did not replace.
                shard.touch_lru(self, o, self.class_of(self.mem.item(o)), now);
                return (StoreOutcome::NotStored, 0);
            }
            (Mode::Replace | Mode::Append | Mode::Prepend, None) => {
                return (StoreOutcome::NotStored, 0)
            }
            (Mode::Cas, None) => return (StoreOutcome::NotFound, 0),
            (Mode::Replace, Some(_)) => (&fresh, flags, exptime),
            (Mode::Cas, Some(o)) => {
                let it = self.mem.item(o);
                let class = self.class_of(it);
                if cas_unique == 0 || cas_unique != it.cas() {
                    shard.classes[class].stats.cas_badval += 1;
                    return (StoreOutcome::Exists, 0);
                }
                shard.classes[class].stats.cas_hits += 1;
                (&fresh, flags, exptime)
            }
            (Mode::Append | Mode::Prepend, Some(o)) => {
                let it = self.mem.item(o);
                if cas_unique != 0 && cas_unique != it.cas() {
                    return (StoreOutcome::Exists, 0);
                }
                let old_len = it.nbytes() as usize - 2;
                if !self.item_size_ok(key.len(), it.flags(), old_len + value.len()) {
                    return (StoreOutcome::NotStored, 0);
                }
                old_value = self.value_of(it);
                let v: &[u8] = &old_value;
                let (flags, exptime) = (it.flags(), it.exptime());
                joined = if mode == Mode::Append {
                    [v, value, crlf]
                } else {
                    [value, v, crlf]
                };
                (&joined, flags, exptime)
            }
        };
        let new = NewItem {
            hash,
            key,
            flags,
            exptime,
            pieces,
            old,
            now,
        };
        self.finish_store(shard, &new, mode)
    }

    /// Removes `key` if present, counting nothing (memcached drops the old
    /// value of a `set` that cannot be stored).
    pub fn unlink_key(&self, key: &[u8]) {
        let hash = self.hash(key);
        let mut g = self.shard(hash).lock();
        if let Some(i) = g.find(self, hash, key) {
            g.unlink_free(self, i, hash);
        }
    }

    /// Deletes `key` if its CAS value is `cas` (any, when 0; the binary
    /// protocol's check).
    pub fn delete(&self, key: &[u8], cas: u64) -> DeleteOutcome {
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
        match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => {
                let it = self.mem.item(i);
                if cas != 0 && cas != it.cas() {
                    return DeleteOutcome::Exists;
                }
                let class = self.class_of(it);
                g.classes[class].stats.delete_hits += 1;
                g.unlink_free(self, i, hash);
                DeleteOutcome::Deleted
            }
            _ => DeleteOutcome::NotFound,
        }
    }

    /// `incr`/`decr`. Incr wraps at 2^64, decr stops at 0. A result no
    /// longer than the stored text is written in place, padded with
    /// spaces, as memcached does (when no reader holds the item).
    pub fn arith(&self, req: &ArithReq<'_>) -> ArithResult {
        let mut created = false;
        let (outcome, cas) = self.arith_inner(req, &mut created);
        ArithResult {
            outcome,
            cas,
            created,
        }
    }

    fn arith_inner(&self, req: &ArithReq<'_>, created: &mut bool) -> (DeltaOutcome, u64) {
        let ArithReq {
            key,
            incr,
            delta,
            cas: cas_unique,
            parse,
            create,
        } = *req;
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).lock();
        let shard = &mut *g;
        let id = match (shard.find_live(self, hash, key, now), create) {
            (Ok(Some(i)), _) => i,
            (_, None) => return (DeltaOutcome::NotFound, 0),
            (_, Some(c)) => {
                // memcached counts neither a miss nor a set for this.
                let mut buf = [0u8; 20];
                let new_item = NewItem {
                    hash,
                    key,
                    flags: 0,
                    exptime: self.clock.realtime(c.exptime),
                    pieces: &[decimal(c.initial, &mut buf), b"\r\n"],
                    old: None,
                    now,
                };
                return match self.put(shard, &new_item) {
                    Some(cas) => {
                        *created = true;
                        (DeltaOutcome::Value(c.initial), cas)
                    }
                    None => (DeltaOutcome::OutOfMemory, 0),
                };
            }
        };
        let it = self.mem.item(id);
        if cas_unique != 0 && cas_unique != it.cas() {
            return (DeltaOutcome::Exists, 0);
        }
        let len = it.nbytes() as usize - 2;
        if len == 0 || it.has(fl::CHAINED) {
            return (DeltaOutcome::NonNumeric, 0);
        }
        let value = self.value_of(it);
        let Some(cur) = parse(&value) else {
            return (DeltaOutcome::NonNumeric, 0);
        };
        let new = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        let class = self.class_of(it);
        if incr {
            shard.classes[class].stats.incr_hits += 1;
        } else {
            shard.classes[class].stats.decr_hits += 1;
        }
        let mut buf = [0u8; 20];
        let digits = decimal(new, &mut buf);
        if digits.len() <= len && it.readers() == 0 {
            let off = it.value_off(1);
            // SAFETY: the value's `len` bytes lie in the item's one chunk;
            // the shard lock is held and no reader holds the item.
            let v = unsafe {
                std::slice::from_raw_parts_mut(self.mem.value_ptr(it, off).cast_mut(), len)
            };
            v[..digits.len()].copy_from_slice(digits);
            v[digits.len()..].fill(b' ');
            let cas = if self.cfg.use_cas { self.next_cas() } else { 0 };
            it.set_cas(cas);
            shard.touch_lru(self, id, class, now);
            return (DeltaOutcome::Value(new), cas);
        }
        let (flags, exptime) = (it.flags(), it.exptime());
        let new_item = NewItem {
            hash,
            key,
            flags,
            exptime,
            pieces: &[digits, b"\r\n"],
            old: Some(id),
            now,
        };
        match self.put(shard, &new_item) {
            Some(cas) => (DeltaOutcome::Value(new), cas),
            None => (DeltaOutcome::OutOfMemory, 0),
        }
    }
}

impl From<Option<i32>> for GetOpts {
    /// A plain lookup, or one that touches (`Some(exptime)`).
    fn from(touch: Option<i32>) -> Self {
        GetOpts {
            touch,
            ..GetOpts::default()
        }
    }
}

/// `v` in decimal, written into `buf` without an allocation.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}
