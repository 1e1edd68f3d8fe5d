//! Per-class LRU lists, doubly linked through the items' 32-bit `prev` and
//! `next` chunk ids. A shard owns the lists of its items.

use crate::item::{ChunkId, NIL};
use crate::mem::Mem;

/// Head (most recently used) and tail (next to evict) of one class's list.
#[derive(Debug, Clone, Copy)]
pub struct Lru {
    pub head: ChunkId,
    pub tail: ChunkId,
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            head: NIL,
            tail: NIL,
        }
    }
}

impl Lru {
    pub fn push_head(&mut self, mem: &Mem, i: ChunkId) {
        let old = self.head;
        let e = mem.item(i);
        e.set_prev(NIL);
        e.set_next(old);
        if old != NIL {
            mem.item(old).set_prev(i);
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    pub fn unlink(&mut self, mem: &Mem, i: ChunkId) {
        let e = mem.item(i);
        let (prev, next) = (e.prev(), e.next());
        e.set_prev(NIL);
        e.set_next(NIL);
        if prev != NIL {
            mem.item(prev).set_next(next);
        } else {
            self.head = next;
        }
        if next != NIL {
            mem.item(next).set_prev(prev);
        } else {
            self.tail = prev;
        }
    }

    pub fn bump(&mut self, mem: &Mem, i: ChunkId) {
        if self.head != i {
            self.unlink(mem, i);
            self.push_head(mem, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::Chunks;
    use crate::slabs::ClassTable;

    fn order(l: &Lru, mem: &Mem) -> Vec<ChunkId> {
        let mut v = Vec::new();
        let mut i = l.head;
        while i != NIL {
            v.push(i);
            i = mem.item(i).next();
        }
        v
    }

    #[test]
    fn push_bump_unlink() {
        let table = ClassTable::new(48, 1.25, 1 << 20, 1 << 19, 1 << 20);
        let (mem, _) = Mem::new(table, 4 << 20, 0, false).unwrap();
        let mut ids = Chunks::new();
        assert!(mem.take(&mut mem.slabs.lock(), 1, 4, &mut ids));
        let mut l = Lru::default();
        for &i in ids.iter() {
            l.push_head(&mem, i);
        }
        let [a, b, c, d] = [ids[0], ids[1], ids[2], ids[3]];
        assert_eq!(order(&l, &mem), vec![d, c, b, a]);
        assert_eq!(l.tail, a);
        l.bump(&mem, a);
        assert_eq!(order(&l, &mem), vec![a, d, c, b]);
        assert_eq!(l.tail, b);
        l.unlink(&mem, d);
        assert_eq!(order(&l, &mem), vec![a, c, b]);
        l.unlink(&mem, b);
        assert_eq!(l.tail, c);
        l.unlink(&mem, a);
        l.unlink(&mem, c);
        assert_eq!(l.head, NIL);
        assert_eq!(l.tail, NIL);
    }
}
