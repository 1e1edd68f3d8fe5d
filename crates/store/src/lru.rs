//! Per-class LRU lists, doubly linked through 32-bit item indices.

use crate::item::{Idx, Item, NIL};

/// Head (most recently used) and tail (next to evict) of one class's list.
#[derive(Debug, Clone, Copy)]
pub struct Lru {
    pub head: Idx,
    pub tail: Idx,
}

impl Default for Lru {
    fn default() -> Self {
        Lru {
            head: NIL,
            tail: NIL,
        }
    }
}

fn it(items: &mut [Option<Item>], i: Idx) -> &mut Item {
    items[i as usize]
        .as_mut()
        .expect("LRU links point at live items")
}

impl Lru {
    pub fn push_head(&mut self, items: &mut [Option<Item>], i: Idx) {
        let old = self.head;
        {
            let e = it(items, i);
            e.prev = NIL;
            e.next = old;
        }
        if old != NIL {
            it(items, old).prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    pub fn unlink(&mut self, items: &mut [Option<Item>], i: Idx) {
        let (prev, next) = {
            let e = it(items, i);
            let pn = (e.prev, e.next);
            e.prev = NIL;
            e.next = NIL;
            pn
        };
        if prev != NIL {
            it(items, prev).next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            it(items, next).prev = prev;
        } else {
            self.tail = prev;
        }
    }

    pub fn bump(&mut self, items: &mut [Option<Item>], i: Idx) {
        if self.head != i {
            self.unlink(items, i);
            self.push_head(items, i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::make_data;

    fn item() -> Option<Item> {
        Some(Item {
            data: make_data(b"k", b"", b""),
            nkey: 1,
            class: 1,
            fetched: false,
            nchunks: 1,
            flags: 0,
            exptime: 0,
            time: 0,
            cas: 0,
            prev: NIL,
            next: NIL,
        })
    }

    fn order(l: &Lru, items: &[Option<Item>]) -> Vec<Idx> {
        let mut v = Vec::new();
        let mut i = l.head;
        while i != NIL {
            v.push(i);
            i = items[i as usize].as_ref().unwrap().next;
        }
        v
    }

    #[test]
    fn push_bump_unlink() {
        let mut items: Vec<Option<Item>> = (0..4).map(|_| item()).collect();
        let mut l = Lru::default();
        for i in 0..4 {
            l.push_head(&mut items, i);
        }
        assert_eq!(order(&l, &items), vec![3, 2, 1, 0]);
        assert_eq!(l.tail, 0);
        l.bump(&mut items, 0);
        assert_eq!(order(&l, &items), vec![0, 3, 2, 1]);
        assert_eq!(l.tail, 1);
        l.unlink(&mut items, 3);
        assert_eq!(order(&l, &items), vec![0, 2, 1]);
        l.unlink(&mut items, 1);
        assert_eq!(l.tail, 2);
        l.unlink(&mut items, 0);
        l.unlink(&mut items, 2);
        assert_eq!(l.head, NIL);
        assert_eq!(l.tail, NIL);
    }
}
