//! The full flow table's index: slab positions by keyed hash, in buckets
//! of one cache line, so that a caller can request a key's bucket ahead of
//! the look-up (`prefetch`) and the misses of several look-ups overlap.
//!
//! Open addressing over buckets of 8 entries (a 16-bit tag of the hash
//! and the slot), at most half full: a key lives in its home bucket
//! (`hash & mask`) or, when that was full, in the next one with room. Each
//! bucket counts the entries that had to pass it (`passed`, as in Folly's
//! F14), so a look-up stops at the first bucket that has no such entry:
//! one bucket almost always, and deletions leave no tombstones. The hash is
//! keyed (the caller's SipHash-1-3 with a per-process key): whoever chooses
//! the 4-tuples cannot make them share buckets.

use super::flows::Slot;
use super::huge::{Advice, HugeTable};

const WAYS: usize = 8;

#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// 0: a free entry; else the hash's tag.
    tags: [u16; WAYS],
    slots: [Slot; WAYS],
    /// Entries whose home is an earlier bucket (or this one) and that live
    /// in a later one.
    passed: u32,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

pub struct Index {
    buckets: HugeTable<Bucket>,
    mask: usize,
    len: usize,
}

fn tag(hash: u64) -> u16 {
    ((hash >> 48) as u16).max(1)
}

impl Index {
    /// For at most `capacity` entries, kept at most half full; allocated
    /// up front (64 bytes per 4 entries).
    pub fn new(capacity: usize, advise: Advice) -> Index {
        let buckets = (capacity * 2).div_ceil(WAYS).max(1).next_power_of_two();
        Index { buckets: HugeTable::new(buckets, Bucket::default(), advise), mask: buckets - 1, len: 0 }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Asks for `hash`'s home bucket ahead of a look-up.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        super::prefetch(self.buckets.as_ptr().wrapping_add(hash as usize & self.mask) as *const u8);
    }

    /// The slot with `hash` for which `eq` holds; `eq` is asked only about
    /// slots whose tag matches.
    pub fn find(&self, hash: u64, mut eq: impl FnMut(Slot) -> bool) -> Option<Slot> {
        let t = tag(hash);
        let mut b = hash as usize & self.mask;
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            // The matching tags as bits, compared all at once.
            let mut hits = 0u32;
            for i in 0..WAYS {
                hits |= ((bucket.tags[i] == t) as u32) << i;
            }
            while hits != 0 {
                let i = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                if eq(bucket.slots[i]) {
                    return Some(bucket.slots[i]);
                }
            }
            if bucket.passed == 0 {
                return None;
            }
            b = (b + 1) & self.mask;
        }
        None
    }

    /// Adds `slot` under `hash` (the caller keeps the bound: at most the
    /// capacity given to `new`).
    pub fn insert(&mut self, hash: u64, slot: Slot) {
        assert!(self.len < self.buckets.len() * WAYS, "index full");
        let mut b = hash as usize & self.mask;
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.tags.iter().position(|&t| t == 0) {
                bucket.tags[i] = tag(hash);
                bucket.slots[i] = slot;
                self.len += 1;
                return;
            }
            bucket.passed += 1;
            b = (b + 1) & self.mask;
        }
    }

    /// Removes `slot`, inserted under `hash`; whether it was there.
    /// `compared` counts the entries looked at.
    pub fn remove(&mut self, hash: u64, slot: Slot, compared: &mut u64) -> bool {
        let t = tag(hash);
        let home = hash as usize & self.mask;
        let mut b = home;
        for _ in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            for i in 0..WAYS {
                if bucket.tags[i] == t {
                    *compared += 1;
                    if bucket.slots[i] == slot {
                        bucket.tags[i] = 0;
                        self.len -= 1;
                        // The buckets it had to pass have one entry less
                        // past them.
                        let mut p = home;
                        while p != b {
                            self.buckets[p].passed -= 1;
                            p = (p + 1) & self.mask;
                        }
                        return true;
                    }
                }
            }
            if bucket.passed == 0 {
                return false;
            }
            b = (b + 1) & self.mask;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Whatever is inserted and removed, and however the hashes collide
        /// (few buckets, few tags), the index finds exactly what a map
        /// holds, and every `passed` count goes back to 0 when it empties.
        #[test]
        fn the_index_agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..64, 0u64..8, 0u64..4), 1..400)) {
            let mut index = Index::new(32, crate::actions::huge::no_advice);
            let mut map: HashMap<Slot, u64> = HashMap::new();
            for (insert, slot, home, t) in ops {
                let hash = (t << 48) | home;
                if insert {
                    if map.len() < 32 && !map.contains_key(&slot) {
                        index.insert(hash, slot);
                        map.insert(slot, hash);
                    }
                } else if let Some(h) = map.remove(&slot) {
                    let mut compared = 0;
                    prop_assert!(index.remove(h, slot, &mut compared));
                }
                prop_assert_eq!(index.len(), map.len());
                for (&s, &h) in &map {
                    prop_assert_eq!(index.find(h, |x| x == s), Some(s));
                }
                for s in 64..70 {
                    prop_assert_eq!(index.find(s as u64, |x| x == s), None);
                }
            }
            for (s, h) in map.drain() {
                let mut compared = 0;
                prop_assert!(index.remove(h, s, &mut compared));
            }
            prop_assert!(index.buckets.iter().all(|b| b.passed == 0 && b.tags == [0; WAYS]));
        }
    }
}
