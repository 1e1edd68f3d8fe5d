//! A shard's lock: many readers, one writer, and a reader writes no cache
//! line that another core writes (a "big-reader" lock).
//!
//! ```text
//!  reader (thread slot s):  slots[s] += 1 ─► writing? ─no─► read ─► slots[s] -= 1
//!                                              │yes: slots[s] -= 1, wait, retry
//!                                              │     (after 3 tries: take the
//!                                              ▼      writer's mutex instead)
//!  writer:  mutex ─► writing = true ─► wait until every slot is 0 ─► write
//!           ─► writing = false ─► mutex released
//! ```
//!
//! A reader's count lives in its thread's slot, a cache line of its own, so
//! two threads reading one hot key never write a common line (parking_lot's
//! RwLock keeps one reader count that every reader writes: with two cores
//! reading one shard, 75% of a get's time went to moving that line).
//! `writing` is only read by readers, so it stays shared in every core's
//! cache until a writer comes. The price is paid by writers: they look at
//! every slot (16 lines) once they hold the mutex. A reader that finds a
//! writer at work backs off; after three tries it queues on the writer's
//! mutex (readers cannot starve under a stream of writers), holding the
//! shard exclusively for its read.
//!
//! Not re-entrant: a thread that holds a shard's guard must not ask for
//! that shard's lock again (a nested read would wait, after backing off,
//! for a writer that waits for the outer read). The store never does:
//! a lookup's closure runs no store call, and `get_with` drops its shared
//! guard before it takes the exclusive one.
//!
//! Ordering: a reader's increment and its load of `writing` are SeqCst, as
//! are the writer's store of `writing` and its loads of the slots, so one
//! of them sees the other (Dekker): either the reader sees `writing` and
//! backs off, or the writer sees the reader's count and waits for it. The
//! reader's decrement (Release) and the writer's `writing = false`
//! (Release) hand the data over the other way.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::{Mutex, MutexGuard};

/// Reader slots (threads past this many share one, counting atomically).
const SLOTS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

pub(crate) struct ShardLock<T> {
    writer: Mutex<()>,
    writing: Padded<AtomicBool>,
    readers: [Padded<AtomicU32>; SLOTS],
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out `&T` to any number of threads only while no
// `&mut T` exists (readers and the writer exclude each other, see the
// module docs), and `&mut T` to one thread at a time (the mutex), so it is
// Sync when T may be shared and sent, and Send when T is.
unsafe impl<T: Send + Sync> Sync for ShardLock<T> {}
// SAFETY: as above; the lock owns its T.
unsafe impl<T: Send> Send for ShardLock<T> {}

/// A reader's hold: shared (its slot counted) or, after backing off,
/// exclusive.
pub(crate) enum ReadGuard<'a, T> {
    Shared(&'a ShardLock<T>, &'a AtomicU32),
    Exclusive(WriteGuard<'a, T>),
}

pub(crate) struct WriteGuard<'a, T> {
    lock: &'a ShardLock<T>,
    _mutex: MutexGuard<'a, ()>,
}

impl<T> ShardLock<T> {
    pub fn new(data: T) -> Self {
        ShardLock {
            writer: Mutex::new(()),
            writing: Padded(AtomicBool::new(false)),
            readers: Default::default(),
            data: UnsafeCell::new(data),
        }
    }

    pub fn read(&self) -> ReadGuard<'_, T> {
        let slot = &self.readers[crate::hits::thread_slot() % SLOTS].0;
        for _ in 0..3 {
            slot.fetch_add(1, Ordering::SeqCst);
            if !self.writing.0.load(Ordering::SeqCst) {
                return ReadGuard::Shared(self, slot);
            }
            slot.fetch_sub(1, Ordering::Release);
            let mut spins = 0u32;
            while self.writing.0.load(Ordering::Relaxed) {
                backoff(&mut spins);
            }
        }
        ReadGuard::Exclusive(self.write())
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        let m = self.writer.lock();
        self.exclude_readers();
        WriteGuard {
            lock: self,
            _mutex: m,
        }
    }

    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        let m = self.writer.try_lock()?;
        self.exclude_readers();
        Some(WriteGuard {
            lock: self,
            _mutex: m,
        })
    }

    /// With the mutex held: no new reader enters, and those inside leave.
    fn exclude_readers(&self) {
        self.writing.0.store(true, Ordering::SeqCst);
        for r in &self.readers {
            let mut spins = 0u32;
            while r.0.load(Ordering::SeqCst) != 0 {
                backoff(&mut spins);
            }
        }
    }
}

/// Spins a while, then yields the core (a reader or writer preempted
/// inside its section would otherwise be waited for by spinning).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            // SAFETY: a counted reader: no writer is past
            // `exclude_readers` until the count drops (module docs).
            ReadGuard::Shared(l, _) => unsafe { &*l.data.get() },
            ReadGuard::Exclusive(w) => w,
        }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        if let ReadGuard::Shared(_, slot) = self {
            slot.fetch_sub(1, Ordering::Release);
        }
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer holds the mutex and every reader has left.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference handed out through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.writing.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn readers_and_writers_exclude_each_other() {
        // Writers keep two halves equal; readers must never see them differ.
        let l = Arc::new(ShardLock::new((0u64, 0u64)));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        if t == 0 || i % 7 == 0 {
                            let mut g = l.write();
                            g.0 += 1;
                            std::hint::black_box(&mut *g);
                            g.1 += 1;
                        } else {
                            let g = l.read();
                            assert_eq!(g.0, g.1, "a read saw half a write");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let g = l.read();
        assert_eq!(g.0, g.1);
        assert!(g.0 >= 5_000);
        drop(g);
        assert!(l.try_write().is_some(), "free once every guard is gone");
        let w = l.write();
        assert!(l.try_write().is_none(), "one writer at a time");
        drop(w);
    }
}
