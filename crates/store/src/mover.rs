//! `slabs reassign`: a page moved from one class to another (or from
//! the global pool), its items evicted a batch of slots at a time.

use crate::{ReassignError, Store};

/// Chunk slots a page move empties per taking of the locks.
pub(crate) const MOVE_BATCH: u32 = 256;

impl Store {
    /// `slabs reassign <src> <dst>`: moves one page of `src` (any class
    /// with a page to spare when `src` is -1) to `dst`, evicting the items
    /// in it. The move finishes at once unless a reader holds one of them;
    /// then it finishes when the last such reader lets go.
    pub fn reassign(&self, src: i32, dst: i32) -> Result<(), ReassignError> {
        if self.mem.slabs.lock().moving.is_some() {
            return Err(ReassignError::Busy);
        }
        if src == dst {
            return Err(ReassignError::Same);
        }
        let largest = self.mem.table.largest() as i32;
        let src = if src == -1 {
            let slabs = self.mem.slabs.lock();
            (1..=largest)
                .filter(|&c| c != dst && slabs.classes[c as usize].pages > 1)
                .max_by_key(|&c| slabs.classes[c as usize].pages)
                .unwrap_or(-1)
        } else {
            src
        };
        if src < 0 || dst < 0 || src > largest || dst > largest {
            return Err(ReassignError::BadClass);
        }
        self.move_page(src as usize, dst as usize)
    }

    /// Moves a page from class `src` to class `dst`; class 0 is the
    /// global pool of pages no class holds.
    pub(crate) fn move_page(&self, src: usize, dst: usize) -> Result<(), ReassignError> {
        if src == 0 {
            let mut slabs = self.mem.slabs.lock();
            if slabs.pool.len() < 2 {
                return Err(ReassignError::NoSpare);
            }
            let page = slabs.pool.pop().expect("a pooled page");
            self.mem.give_page(&mut slabs, page, dst);
            slabs.slabs_moved += 1;
            return Ok(());
        }
        // Every shard, in order (the one place that waits on more than one
        // shard lock), then the slabs.
        let page = {
            let _shards: Vec<_> = self.shards.iter().map(|s| s.write()).collect();
            let mut slabs = self.mem.slabs.lock();
            if slabs.moving.is_some() {
                return Err(ReassignError::Busy);
            }
            if slabs.classes[src].pages < 2 {
                return Err(ReassignError::NoSpare);
            }
            let page = self
                .mem
                .start_move(&mut slabs, src, dst)
                .ok_or(ReassignError::NoSpare)?;
            if slabs.moving.is_none() {
                return Ok(());
            }
            page
        };
        // Unlink the page's items a batch of slots at a time, letting the
        // workers in between: a request waits for one batch at most.
        let slots = self.mem.slots_in_page(page);
        let mut from = 0;
        while from < slots {
            let to = (from + MOVE_BATCH).min(slots);
            let mut shards: Vec<_> = self.shards.iter().map(|s| s.write()).collect();
            let mut slabs = self.mem.slabs.lock();
            if slabs.moving.map(|m| m.page) != Some(page) {
                break;
            }
            for head in self.mem.items_in_slots(page, from..to) {
                let it = self.mem.item(head);
                if !it.is_linked() {
                    // Unlinked already (a chained item seen twice, or one
                    // a reader holds): its release frees the chunk.
                    continue;
                }
                if it.readers() > 0 {
                    slabs.move_busy += 1;
                }
                let hash = self.hash(it.key());
                slabs.move_evictions += 1;
                if shards[self.shard_of(hash)].unlink(self, head, hash) {
                    self.mem.free_item(&mut slabs, head);
                }
            }
            for (k, g) in shards.iter_mut().enumerate() {
                g.classes[src].q.trim(self.qcx(k, src));
            }
            from = to;
        }
        Ok(())
    }
}
