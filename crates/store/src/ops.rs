//! The key operations every protocol reaches through the server's command
//! layer: lookup, store, delete, incr/decr. Each takes the key's shard
//! lock once, does its work (and, for a lookup, runs the caller's
//! closure on the item) and lets go; none does I/O.

use std::borrow::Cow;

use crate::found::Found;
use crate::item::{fl, ChunkId};
use crate::shard::{Dead, Shard};
use crate::write::NewItem;
use crate::{
    ArithReq, ArithResult, DeleteOutcome, DeleteReq, DeltaOutcome, GetOpts, GetOutcome, Hit,
    Incoming, Missed, Mode, Seen, Store, StoreOutcome, StoreReq, StoreResult,
};

impl Store {
    /// Looks `key` up and, when it is live (or `opts.vivify` created it),
    /// runs `f` on it under the shard lock: shared for a plain lookup
    /// (see [`GetOpts::exclusive`]), exclusive otherwise. With
    /// `opts.touch` the item gets that exptime first; with `opts.bump` it
    /// is marked fetched and used now. `f` sees [`ItemMeta`] as the item
    /// was before.
    pub fn get_with<R>(
        &self,
        key: &[u8],
        opts: impl Into<GetOpts>,
        f: impl FnOnce(&mut Found<'_>) -> R,
    ) -> Result<R, Missed> {
        let opts = opts.into();
        let hash = self.hash(key);
        let now = self.clock.now();
        if opts.touch.is_none() && !opts.vivify && !opts.exclusive {
            let g = self.shard(hash).read();
            let mem = &*self.mem;
            let Some(id) = g.index.lookup(hash, |id| mem.item(id).key() == key) else {
                return Err(Missed::Miss);
            };
            if Shard::is_dead(self, mem.item(id), now).is_none() {
                let mut found = Found::new(self, None, id, now, None);
                found.bump = opts.bump;
                let r = f(&mut found);
                let deferred = found.finish(opts.count);
                drop(g);
                if let Some((exptime, cas)) = deferred {
                    self.apply_deferred(hash, key, id, exptime, cas);
                }
                return Ok(r);
            }
            // Expired or flushed: unlinked below, under the exclusive lock.
        }
        let mut g = self.shard(hash).write();
        let missed = match g.find_live(self, hash, key, now) {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err(Missed::Miss),
            Err(Dead::Expired) => Err(Missed::Expired),
            Err(Dead::Flushed) => Err(Missed::Flushed),
        };
        let (id, created) = match missed {
            Ok(i) => (i, None),
            Err(m) if !opts.vivify => return Err(m),
            Err(m) => {
                let empty = NewItem {
                    hash,
                    key,
                    flags: 0,
                    exptime: 0,
                    pieces: &[b"\r\n"],
                    old: None,
                    now,
                    cas: opts.vivify_cas,
                    marks: 0,
                };
                match self.put(&mut g, &empty) {
                    Some(p) => (p.head, Some(m)),
                    None => return Err(m),
                }
            }
        };
        if let Some(t) = opts.touch {
            g.set_exptime(self, id, self.clock.realtime(t));
        }
        let mut found = Found::new(self, Some(&mut g), id, now, created);
        found.bump = opts.bump;
        let r = f(&mut found);
        found.finish(opts.count);
        Ok(r)
    }

    /// What a shared lookup's reader set and could not write under the
    /// shared lock: applied now, if the item it saw is still the key's.
    fn apply_deferred(
        &self,
        hash: u64,
        key: &[u8],
        id: ChunkId,
        exptime: Option<u32>,
        cas: Option<u64>,
    ) {
        let mut g = self.shard(hash).write();
        if g.find(self, hash, key) != Some(id) {
            return;
        }
        if let Some(t) = exptime {
            g.set_exptime(self, id, t);
        }
        if let Some(c) = cas {
            self.mem.item(id).set_cas(c);
        }
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
    /// The class an item of this key length, flags and value length
    /// would take (what `watch` reports for a store).
    pub fn class_for_item(&self, nkey: usize, flags: u32, value_len: usize) -> usize {
        if self.item_size_ok(nkey, flags, value_len) {
            self.class_for_size(Self::size_for(nkey, flags, value_len + 2))
        } else {
            0
        }
    }

    pub fn note_set_attempt(&self, key: &[u8], flags: u32, value_len: usize) {
        if self.item_size_ok(key.len(), flags, value_len) {
            let c = self.class_for_size(Self::size_for(key.len(), flags, value_len + 2));
            self.shard(self.hash(key)).write().classes[c].stats.cmd_set += 1;
        }
    }

    /// Stores `req.value` under `req.key` according to `req.mode`: the
    /// outcome memcached would report, and the new item's CAS value.
    pub fn store(&self, req: &StoreReq<'_>) -> StoreResult {
        self.store_from(req, None)
    }

    /// As [`store`](Self::store), with the value received into `data`
    /// (`Store::reserve`) rather than in `req.value`: a set, add, replace
    /// or cas links `data` itself, an append or prepend joins its bytes
    /// into a new item. `data` is freed if it is not stored. An `Incoming`
    /// reserved for another key or not yet whole is stored as a copy of
    /// its bytes if whole, else refused `NotStored`.
    pub fn store_incoming(&self, req: &StoreReq<'_>, data: Incoming) -> StoreResult {
        self.store_from(req, Some(data))
    }

    /// Inlined into both callers: as a call of its own, with two callers,
    /// it cost a text set about 100 instructions of ~3,700 (callgrind).
    #[inline(always)]
    fn store_from(&self, req: &StoreReq<'_>, data: Option<Incoming>) -> StoreResult {
        let mut value_len = 0;
        let mut old = None;
        let mut exptime = 0;
        let (outcome, cas) = self.store_inner(req, data, &mut value_len, &mut old, &mut exptime);
        StoreResult {
            outcome,
            cas,
            old,
            exptime,
            value_len,
        }
    }

    #[inline(always)]
    fn store_inner(
        &self,
        req: &StoreReq<'_>,
        data: Option<Incoming>,
        value_len: &mut usize,
        found: &mut Option<(u32, usize)>,
        stored_exptime: &mut u32,
    ) -> (StoreOutcome, u64) {
        let StoreReq {
            mode,
            key,
            flags,
            exptime,
            value,
            cas: cas_unique,
            stale_ok,
            new_cas,
            key_binary,
            vivify,
        } = *req;
        // A received value: linked as it is when it is this key's and
        // whole; its bytes otherwise (and for a join).
        let received: Cow<'_, [u8]>;
        let (value, mut data) = match data {
            None => (value, None),
            Some(d) if d.remaining() > 0 || !d.taken_from(self) => {
                drop(d);
                return (StoreOutcome::NotStored, 0);
            }
            Some(mut d) => {
                if !d.close_block(self) {
                    return (StoreOutcome::OutOfMemory, 0);
                }
                let linkable = self.fits(&d, key, flags);
                if linkable && !matches!(mode, Mode::Append | Mode::Prepend) {
                    received = Cow::Borrowed(&[]);
                } else {
                    received = Cow::Owned(self.value_of(self.mem.item(d.head())).into_owned());
                }
                (&*received, linkable.then_some(d))
            }
        };
        let value_len_in = data.as_ref().map_or(value.len(), |d| d.value_len());
        if !self.item_size_ok(key.len(), flags, value_len_in) {
            if mode == Mode::Set {
                self.unlink_key(key);
            }
            return (StoreOutcome::TooLarge, 0);
        }
        let class_in = self.class_for_size(Self::size_for(key.len(), flags, value_len_in + 2));
        let hash = self.hash(key);
        let now = self.clock.now();
        let exptime = self.clock.realtime(exptime);
        let mut g = self.shard(hash).write();
        let shard = &mut *g;
        shard.classes[class_in].stats.cmd_set += 1;
        let old = shard.find_live(self, hash, key, now).unwrap_or(None);
        if let Some(o) = old {
            let it = self.mem.item(o);
            *found = Some((it.flags(), it.nbytes() as usize - 2));
        }
        let crlf: &[u8] = b"\r\n";

        // Decide from the existing item what to store, if anything.
        let fresh: [&[u8]; 2] = [value, crlf];
        let old_value: Cow<'_, [u8]>;
        let joined: [&[u8]; 3];
        let mut marks = if key_binary { fl::KEY_BINARY } else { 0 };
        let (pieces, flags, exptime): (&[&[u8]], u32, u32) = match (mode, old) {
            (Mode::Set, _) | (Mode::Add, None) => (&fresh, flags, exptime),
            (Mode::Append | Mode::Prepend, None) if vivify.is_some() => {
                let t = vivify.map_or(0, |t| self.clock.realtime(t));
                (&fresh, flags, t)
            }
            (Mode::Add, Some(o)) => {
                // add promotes the item it did not replace.
                self.mem.item(o).mark_used(now);
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
                if cas_unique != 0 && cas_unique == it.cas() {
                    shard.classes[class].stats.cas_hits += 1;
                    (&fresh, flags, exptime)
                } else if stale_ok && cas_unique != 0 && cas_unique < it.cas() {
                    // An older writer may still store, as a stale value
                    // keeping the exptime and the recache winner.
                    shard.classes[class].stats.cas_hits += 1;
                    marks |= fl::STALE | (it.iflags() & fl::WON);
                    (&fresh, flags, it.exptime())
                } else {
                    shard.classes[class].stats.cas_badval += 1;
                    return (StoreOutcome::Exists, 0);
                }
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
                // memcached's joined item is a new one: no marks carried.
                marks = 0;
                joined = if mode == Mode::Append {
                    [v, value, crlf]
                } else {
                    [value, v, crlf]
                };
                (&joined, flags, exptime)
            }
        };
        // A join is written from `pieces`; a received value is linked as
        // it is (its `pieces` hold no bytes).
        let joins = matches!((mode, old), (Mode::Append | Mode::Prepend, Some(_)));
        *value_len = match data {
            Some(_) if !joins => value_len_in,
            _ => pieces.iter().map(|p| p.len()).sum::<usize>() - 2,
        };
        *stored_exptime = exptime;
        let new = NewItem {
            hash,
            key,
            flags,
            exptime,
            pieces,
            old,
            now,
            cas: new_cas,
            marks,
        };
        match data.take() {
            Some(d) if !joins => match self.link_incoming(shard, d, &new) {
                Some(p) => (StoreOutcome::Stored, p.cas),
                None => self.refuse_store(shard, &new, mode),
            },
            _ => self.finish_store(shard, &new, mode),
        }
    }

    /// Removes `key` if present, counting nothing (memcached drops the old
    /// value of a `set` that cannot be stored).
    /// Returns the class and value length of what it removed.
    pub fn unlink_key(&self, key: &[u8]) -> Option<(usize, usize)> {
        let hash = self.hash(key);
        let mut g = self.shard(hash).write();
        let i = g.find(self, hash, key)?;
        let it = self.mem.item(i);
        let seen = (self.class_of(it), it.nbytes() as usize - 2);
        g.unlink_free(self, i, hash);
        Some(seen)
    }

    /// Deletes `req.key` if it is live and, with `req.cas`, has that CAS
    /// value; or, as `req` asks, empties it or marks it stale.
    pub fn delete(&self, req: &DeleteReq<'_>) -> DeleteOutcome {
        self.delete_seen(req).0
    }

    /// [`delete`](Self::delete), and what its lookup saw.
    pub fn delete_seen(&self, req: &DeleteReq<'_>) -> (DeleteOutcome, Seen) {
        let key = req.key;
        let hash = self.hash(key);
        let now = self.clock.now();
        let mut g = self.shard(hash).write();
        let id = match g.find_live(self, hash, key, now) {
            Ok(Some(id)) => id,
            Ok(None) => return (DeleteOutcome::NotFound, Err(Missed::Miss)),
            Err(Dead::Expired) => return (DeleteOutcome::NotFound, Err(Missed::Expired)),
            Err(Dead::Flushed) => return (DeleteOutcome::NotFound, Err(Missed::Flushed)),
        };
        let old = self.mem.item(id);
        let old_len = old.nbytes() as usize - 2;
        if req.cas.is_some_and(|c| c != old.cas()) {
            return (DeleteOutcome::Exists, Ok((self.class_of(old), old_len)));
        }
        if req.remove_value || req.invalidate {
            // Rare paths: the class of the item before it changes.
            let seen = Ok((self.class_of(old), old_len));
            return (self.delete_special(&mut g, req, id, hash, now), seen);
        }
        let class = self.class_of(old);
        g.classes[class].stats.delete_hits += 1;
        g.unlink_free(self, id, hash);
        (DeleteOutcome::Deleted, Ok((class, old_len)))
    }

    /// Meta `md` with `x` (empty the value) or `I` (mark stale).
    fn delete_special(
        &self,
        g: &mut Shard,
        req: &DeleteReq<'_>,
        mut id: ChunkId,
        hash: u64,
        now: u32,
    ) -> DeleteOutcome {
        let key = req.key;
        let old = self.mem.item(id);
        let exptime = req.ttl.map(|t| self.clock.realtime(t));
        if req.remove_value {
            // An empty item in its place, keeping the CAS value.
            let empty = NewItem {
                hash,
                key,
                flags: req.flags,
                exptime: exptime.unwrap_or(0),
                pieces: &[b"\r\n"],
                old: Some(id),
                now,
                cas: Some(req.new_cas.unwrap_or(old.cas())),
                marks: 0,
            };
            match self.put(g, &empty) {
                Some(p) => id = p.head,
                None => return DeleteOutcome::OutOfMemory,
            }
        }
        let it = self.mem.item(id);
        if req.invalidate {
            if let Some(t) = exptime {
                g.set_exptime(self, id, t);
            }
            it.set(fl::STALE);
            // The next client to look may win the recache.
            it.clear(fl::WON);
            let cas = match (self.cfg.use_cas, req.new_cas) {
                (false, _) => 0,
                (true, Some(c)) => c,
                (true, None) => self.next_cas(),
            };
            it.set_cas(cas);
            return DeleteOutcome::Invalidated;
        }
        let class = self.class_of(it);
        g.classes[class].stats.delete_hits += 1;
        if !req.remove_value {
            g.unlink_free(self, id, hash);
        }
        DeleteOutcome::Deleted
    }

    /// `incr`/`decr`. Incr wraps at 2^64, decr stops at 0. A result no
    /// longer than the stored text is written in place, padded with
    /// spaces, as memcached does (when no reader holds the item).
    pub fn arith(&self, req: &ArithReq<'_>) -> ArithResult {
        self.arith_with(req, |_| ()).0
    }

    /// [`arith`](Self::arith), then `f` on the changed (or created) item
    /// under the same lock (meta `ma` reports and changes its TTL there).
    pub fn arith_with<R>(
        &self,
        req: &ArithReq<'_>,
        f: impl FnOnce(&mut Found<'_>) -> R,
    ) -> (ArithResult, Option<R>) {
        let hash = self.hash(req.key);
        let now = self.clock.now();
        let mut g = self.shard(hash).write();
        let mut how = How::default();
        let (outcome, cas, id) = self.arith_inner(&mut g, hash, now, req, &mut how);
        let result = ArithResult {
            outcome,
            cas,
            created: how.created,
            missed: how.missed.is_some(),
            seen: match how.missed {
                Some(m) => Err(m),
                None => Ok(how.seen),
            },
        };
        let Some(id) = id else {
            return (result, None);
        };
        let mut found = Found::new(self, Some(&mut g), id, now, None);
        found.created = if how.created { how.missed } else { None };
        found.detached_exptime = how.replaced.then_some(None);
        let r = f(&mut found);
        (result, Some(r))
    }

    /// The work of `arith_with`: the outcome, the new CAS value, and the
    /// item changed or created.
    fn arith_inner(
        &self,
        shard: &mut Shard,
        hash: u64,
        now: u32,
        req: &ArithReq<'_>,
        how: &mut How,
    ) -> (DeltaOutcome, u64, Option<ChunkId>) {
        let ArithReq {
            key,
            incr,
            delta,
            cas: cas_unique,
            parse,
            create,
            new_cas,
        } = *req;
        let found = shard.find_live(self, hash, key, now);
        how.missed = match found {
            Ok(Some(_)) => None,
            Ok(None) => Some(Missed::Miss),
            Err(Dead::Expired) => Some(Missed::Expired),
            Err(Dead::Flushed) => Some(Missed::Flushed),
        };
        let id = match (found, create) {
            (Ok(Some(i)), _) => i,
            (_, None) => return (DeltaOutcome::NotFound, 0, None),
            (_, Some(c)) => {
                // memcached counts neither a miss nor a set for this.
                let mut buf = [0u8; 20];
                let new_item = NewItem {
                    hash,
                    key,
                    flags: 0,
                    exptime: if c.exptime == 0 {
                        0
                    } else {
                        self.clock.realtime(c.exptime)
                    },
                    pieces: &[decimal(c.initial, &mut buf), b"\r\n"],
                    old: None,
                    now,
                    cas: new_cas,
                    marks: 0,
                };
                return match self.put(shard, &new_item) {
                    Some(p) => {
                        how.created = true;
                        (DeltaOutcome::Value(c.initial), p.cas, Some(p.head))
                    }
                    None => (DeltaOutcome::OutOfMemory, 0, None),
                };
            }
        };
        let it = self.mem.item(id);
        // memcached's order: an empty or chained value is no number, then
        // the CAS value is compared, then the number read.
        let len = it.nbytes() as usize - 2;
        let class = self.class_of(it);
        how.seen = (class, len);
        if len == 0 || it.has(fl::CHAINED) {
            return (DeltaOutcome::NonNumeric, 0, None);
        }
        if cas_unique != 0 && cas_unique != it.cas() {
            return (DeltaOutcome::Exists, 0, None);
        }
        let value = self.value_of(it);
        let Some(cur) = parse(&value) else {
            return (DeltaOutcome::NonNumeric, 0, None);
        };
        let new = if incr {
            cur.wrapping_add(delta)
        } else {
            cur.saturating_sub(delta)
        };
        if incr {
            shard.classes[class].stats.incr_hits += 1;
        } else {
            shard.classes[class].stats.decr_hits += 1;
        }
        let mut buf = [0u8; 20];
        let digits = decimal(new, &mut buf);
        if digits.len() <= len && it.readers() == 0 {
            let off = it.value_off(1);
            debug_assert!(self.mem.span_in_chunk(self.mem.value_ptr(it, off), len));
            // SAFETY: the value's `len` bytes lie in the item's one chunk;
            // the shard lock is held and no reader holds the item.
            let v = unsafe {
                std::slice::from_raw_parts_mut(self.mem.value_ptr(it, off).cast_mut(), len)
            };
            v[..digits.len()].copy_from_slice(digits);
            v[digits.len()..].fill(b' ');
            let cas = match (self.cfg.use_cas, new_cas) {
                (false, _) => 0,
                (true, Some(c)) => c,
                (true, None) => self.next_cas(),
            };
            it.set_cas(cas);
            it.mark_used(now);
            return (DeltaOutcome::Value(new), cas, Some(id));
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
            cas: new_cas,
            // memcached makes a fresh item: no marks carried.
            marks: 0,
        };
        match self.put(shard, &new_item) {
            Some(p) => {
                how.replaced = true;
                (DeltaOutcome::Value(new), p.cas, Some(p.head))
            }
            None => (DeltaOutcome::OutOfMemory, 0, None),
        }
    }
}

/// How an incr/decr went, beyond its outcome.
#[derive(Default)]
struct How {
    /// The key was missing, and why.
    missed: Option<Missed>,
    /// `create` stored the initial value.
    created: bool,
    /// The result did not fit: a new item replaced the old.
    replaced: bool,
    /// The found item's class and value length.
    seen: (usize, usize),
}

impl From<Option<i32>> for GetOpts {
    /// A plain lookup, or one that touches (`Some(exptime)`).
    fn from(touch: Option<i32>) -> Self {
        match touch {
            Some(t) => GetOpts::touch(t),
            None => GetOpts::default(),
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
