//! The enforcer's flow table: bounded, O(1) per packet whatever its size.
//!
//! Entries live in a slab and are found through an index of slab positions
//! per tier (`index`), by a keyed hash of the key (SipHash-1-3 with a
//! random key: `KeyHasher`): the 4-tuples come from the wire, and an
//! attacker who picks them must not be able to make them collide.
//!
//! Two tiers, each with its own bound and LRU order: unconfirmed flows
//! (those the enforcer could not keep in its compact table: acted on, or
//! with disagreeing MACs) and confirmed flows (the caller confirms a flow
//! once both ends really talked). A flood of new 4-tuples churns the
//! unconfirmed tier only, so it cannot evict a confirmed connection. Each
//! tier has two intrusive doubly linked lists: live flows, most recently
//! seen first, and closed flows (a RST went by), most recently closed
//! first. A full tier evicts its oldest closed flow, else its least
//! recently seen one. Expiry pops list tails, so it never walks the table.

use super::huge::Advice;
use super::index::Index;
use slab::Slab;

/// How a table hashes its keys: keyed, with a key the caller draws at
/// random (the core draws no random numbers itself).
pub trait KeyHasher<K> {
    fn keyed(key: [u64; 2]) -> Self;
    fn hash_key(&self, key: &K) -> u64;
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Unconfirmed = 0,
    Confirmed = 1,
}

/// One of the four lists: `tier * 2 + closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListId(u8);

impl ListId {
    pub const fn new(tier: Tier, closed: bool) -> ListId {
        ListId(tier as u8 * 2 + closed as u8)
    }
    fn tier(self) -> Tier {
        if self.0 < 2 {
            Tier::Unconfirmed
        } else {
            Tier::Confirmed
        }
    }
    fn closed(self) -> bool {
        self.0 & 1 == 1
    }
}

/// A slab position: stable while the entry lives, reused after it.
pub type Slot = u32;

struct Entry<K, V> {
    key: K,
    /// Unique over the table's life: tells a reused slot from the entry a
    /// caller remembered.
    id: u64,
    value: V,
}

/// What the index and the lists need of an entry, kept apart from the
/// entries (24 bytes a slot, so 2 MB for 82k flows, where the entries take
/// 24 MB): evicting a flood's flow reads no entry.
#[derive(Debug, Clone, Copy)]
struct Node {
    hash: u64,
    prev: u32,
    next: u32,
    list: ListId,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

const EMPTY: List = List { head: NIL, tail: NIL, len: 0 };

pub struct FlowTable<K, V, H> {
    slab: Slab<Entry<K, V>>,
    nodes: Vec<Node>,
    /// One index per tier: the churn of unconfirmed flows stays in a small
    /// one that the caches keep.
    index: [Index; 2],
    hasher: H,
    lists: [List; 4],
    caps: [usize; 2],
    next_id: u64,
    /// Entries touched (index comparisons, list links), for the tests
    /// that prove the work per packet is bounded.
    #[cfg(test)]
    pub work: std::cell::Cell<u64>,
}

impl<K: Eq, V, H: KeyHasher<K>> FlowTable<K, V, H> {
    /// At most `unconfirmed` + `confirmed` entries, allocated up front (the
    /// pages are touched only as entries arrive), so an insert never
    /// reallocates.
    pub fn new(unconfirmed: usize, confirmed: usize, hash_key: [u64; 2], advise: Advice) -> FlowTable<K, V, H> {
        let (unconfirmed, confirmed) = (unconfirmed.max(1), confirmed.max(1));
        let total = unconfirmed + confirmed;
        assert!(total < NIL as usize, "slot numbers are u32");
        FlowTable {
            slab: Slab::with_capacity(total),
            nodes: Vec::with_capacity(total),
            // Each at most half full (`Index`): 1 MiB for 65,536 flows.
            index: [Index::new(unconfirmed, advise), Index::new(confirmed, advise)],
            hasher: H::keyed(hash_key),
            lists: [EMPTY; 4],
            caps: [unconfirmed, confirmed],
            next_id: 0,
            #[cfg(test)]
            work: std::cell::Cell::new(0),
        }
    }

    /// Counts `_n` entries touched (tests only; the compact table's
    /// records count too).
    #[inline]
    pub fn touched(&self, _n: u64) {
        #[cfg(test)]
        self.work.set(self.work.get() + _n);
    }

    /// Bytes of one flow (entry and node), for the size figures.
    #[cfg(test)]
    pub fn entry_size() -> usize {
        std::mem::size_of::<Entry<K, V>>() + std::mem::size_of::<Node>()
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Bytes the table reserves: entries and nodes for both tiers, indexes.
    #[cfg(test)]
    pub fn reserved_bytes(&self) -> usize {
        (self.caps[0] + self.caps[1]) * Self::entry_size() + self.index[0].bytes() + self.index[1].bytes()
    }

    pub fn tier_len(&self, tier: Tier) -> usize {
        let t = tier as usize * 2;
        self.lists[t].len + self.lists[t + 1].len
    }

    pub fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_key(key)
    }

    /// The slot holding `key`, given its `hash`.
    pub fn find(&self, hash: u64, key: &K) -> Option<Slot> {
        let eq = |s: Slot| {
            self.touched(1);
            self.slab[s as usize].key == *key
        };
        let confirmed = self.index[Tier::Confirmed as usize].find(hash, eq);
        // Most of the time the unconfirmed tier is empty (new flows start in
        // the compact table): its index is not even read.
        confirmed.or_else(|| (self.tier_len(Tier::Unconfirmed) > 0).then(|| self.index[Tier::Unconfirmed as usize].find(hash, eq)).flatten())
    }

    /// Asks for the index buckets that `find(hash, ..)` reads, ahead.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        self.index[Tier::Confirmed as usize].prefetch(hash);
        if self.tier_len(Tier::Unconfirmed) > 0 {
            self.index[Tier::Unconfirmed as usize].prefetch(hash);
        }
    }

    /// Adds `key` (not present) as the most recently seen unconfirmed flow.
    /// If that tier is full, its oldest entry makes room, in place.
    pub fn insert(&mut self, hash: u64, key: K, value: V) -> Slot {
        self.insert_in(Tier::Unconfirmed, hash, key, value)
    }

    /// Adds `key` (not present) as the most recently seen flow of `tier`.
    /// If that tier is full, its oldest entry makes room, in place.
    pub fn insert_in(&mut self, tier: Tier, hash: u64, key: K, value: V) -> Slot {
        self.next_id += 1;
        let entry = Entry { key, id: self.next_id, value };
        let list = ListId::new(tier, false);
        let slot = match self.victim(tier) {
            Some(victim) => {
                self.forget(victim);
                self.slab[victim as usize] = entry;
                victim
            }
            None => {
                let slot = self.slab.insert(entry);
                if slot == self.nodes.len() {
                    self.nodes.push(Node { hash, prev: NIL, next: NIL, list });
                }
                slot as Slot
            }
        };
        self.nodes[slot as usize] = Node { hash, prev: NIL, next: NIL, list };
        self.index_insert(tier, slot);
        self.link_head(list, slot);
        slot
    }

    pub fn key(&self, slot: Slot) -> &K {
        &self.slab[slot as usize].key
    }

    pub fn value(&self, slot: Slot) -> &V {
        &self.slab[slot as usize].value
    }

    pub fn entry_mut(&mut self, slot: Slot) -> (&K, &mut V) {
        let e = &mut self.slab[slot as usize];
        (&e.key, &mut e.value)
    }

    /// The id of the entry now at `slot`, if any.
    pub fn id(&self, slot: Slot) -> Option<u64> {
        self.slab.get(slot as usize).map(|e| e.id)
    }

    pub fn tier(&self, slot: Slot) -> Tier {
        self.nodes[slot as usize].list.tier()
    }

    pub fn is_closed(&self, slot: Slot) -> bool {
        self.nodes[slot as usize].list.closed()
    }

    /// Seen again: the head of its tier's live list (open again if it was
    /// closed).
    pub fn touch(&mut self, slot: Slot) {
        let tier = self.tier(slot);
        self.move_to(slot, ListId::new(tier, false));
    }

    /// A RST went by: the head of its tier's closed list.
    pub fn close(&mut self, slot: Slot) {
        let tier = self.tier(slot);
        self.move_to(slot, ListId::new(tier, true));
    }

    /// Into the confirmed tier (as its most recently seen live flow),
    /// evicting that tier's oldest first if it is full.
    pub fn confirm(&mut self, slot: Slot) {
        if self.tier(slot) == Tier::Confirmed {
            return;
        }
        self.unlink(slot);
        self.index_remove(Tier::Unconfirmed, slot);
        if let Some(victim) = self.victim(Tier::Confirmed) {
            self.remove(victim);
        }
        self.index_insert(Tier::Confirmed, slot);
        self.link_head(ListId::new(Tier::Confirmed, false), slot);
    }

    pub fn remove(&mut self, slot: Slot) -> (K, V) {
        self.forget(slot);
        let e = self.slab.remove(slot as usize);
        (e.key, e.value)
    }

    /// Removes the tail of `list` while `done(tail)` says so, at most `max`
    /// entries; returns how many went.
    pub fn expire(&mut self, list: ListId, max: usize, mut done: impl FnMut(&V) -> bool) -> usize {
        let mut n = 0;
        while n < max {
            let tail = self.lists[list.0 as usize].tail;
            self.touched(1);
            if tail == NIL || !done(&self.slab[tail as usize].value) {
                break;
            }
            self.remove(tail);
            n += 1;
        }
        n
    }

    /// Every slot in use (for the rare walks: a new action).
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.slab.iter().map(|(s, _)| s as Slot)
    }

    /// The entry to give up for a new one when `tier` is full: its oldest
    /// closed flow, else its least recently seen.
    fn victim(&self, tier: Tier) -> Option<Slot> {
        if self.tier_len(tier) < self.caps[tier as usize] {
            return None;
        }
        let closed = self.lists[ListId::new(tier, true).0 as usize].tail;
        let victim = if closed != NIL { closed } else { self.lists[ListId::new(tier, false).0 as usize].tail };
        (victim != NIL).then_some(victim)
    }

    /// Takes `slot` out of its list and its index (the entry stays).
    fn forget(&mut self, slot: Slot) {
        let tier = self.tier(slot);
        self.unlink(slot);
        self.index_remove(tier, slot);
    }

    fn index_insert(&mut self, tier: Tier, slot: Slot) {
        self.index[tier as usize].insert(self.nodes[slot as usize].hash, slot);
    }

    fn index_remove(&mut self, tier: Tier, slot: Slot) {
        let mut compared = 0;
        self.index[tier as usize].remove(self.nodes[slot as usize].hash, slot, &mut compared);
        self.touched(compared);
    }

    fn move_to(&mut self, slot: Slot, list: ListId) {
        let n = &self.nodes[slot as usize];
        if n.list == list && n.prev == NIL {
            return; // already at the head
        }
        self.unlink(slot);
        self.link_head(list, slot);
    }

    fn unlink(&mut self, slot: Slot) {
        let Node { prev, next, list, .. } = self.nodes[slot as usize];
        let list = list.0 as usize;
        self.touched(1 + (prev != NIL) as u64 + (next != NIL) as u64);
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        self.lists[list].len -= 1;
        let n = &mut self.nodes[slot as usize];
        n.prev = NIL;
        n.next = NIL;
    }

    fn link_head(&mut self, list: ListId, slot: Slot) {
        let l = &mut self.lists[list.0 as usize];
        let old = l.head;
        l.head = slot;
        if old == NIL {
            l.tail = slot;
        }
        l.len += 1;
        self.touched(1 + (old != NIL) as u64);
        if old != NIL {
            self.nodes[old as usize].prev = slot;
        }
        let n = &mut self.nodes[slot as usize];
        n.prev = NIL;
        n.next = old;
        n.list = list;
    }

    /// Walks every list and the indexes: panics if anything disagrees.
    /// Tests only (linear).
    #[cfg(test)]
    pub fn check(&self) {
        let mut seen = 0;
        for (i, l) in self.lists.iter().enumerate() {
            let (mut at, mut prev, mut n) = (l.head, NIL, 0);
            while at != NIL {
                let node = &self.nodes[at as usize];
                assert!(self.slab.contains(at as usize), "a listed slot is empty");
                assert_eq!(node.list.0 as usize, i, "entry in the wrong list");
                assert_eq!(node.prev, prev, "broken back link");
                assert_eq!(node.hash, self.hash(&self.slab[at as usize].key), "stale hash");
                assert!(self.index[node.list.tier() as usize].find(node.hash, |s| s == at).is_some(), "entry not in its tier's index");
                assert_eq!(self.find(node.hash, &self.slab[at as usize].key), Some(at), "entry not found");
                prev = at;
                at = node.next;
                n += 1;
            }
            assert_eq!(l.tail, prev, "tail");
            assert_eq!(l.len, n, "list length");
            seen += n;
        }
        assert_eq!(seen, self.slab.len(), "every entry in one list");
        assert_eq!(self.index[0].len() + self.index[1].len(), self.slab.len(), "index size");
        for t in [Tier::Unconfirmed, Tier::Confirmed] {
            assert!(self.tier_len(t) <= self.caps[t as usize], "{t:?} over its bound");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::huge::no_advice;
    use crate::actions::sip::Sip13;

    impl KeyHasher<u16> for Sip13 {
        fn keyed(key: [u64; 2]) -> Self {
            Sip13::new(key)
        }
        fn hash_key(&self, k: &u16) -> u64 {
            self.hash_words(&[*k as u64])
        }
    }
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Touch(u16),
        Close(u16),
        Confirm(u16),
        Remove(u16),
        Expire(u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u16..64).prop_map(Op::Insert),
            2 => (0u16..64).prop_map(Op::Touch),
            1 => (0u16..64).prop_map(Op::Close),
            2 => (0u16..64).prop_map(Op::Confirm),
            1 => (0u16..64).prop_map(Op::Remove),
            1 => (0u8..4, 0u8..4).prop_map(|(l, n)| Op::Expire(l, n)),
        ]
    }

    proptest! {
        /// Whatever happens, each tier stays within its bound and the lists
        /// and the index agree; a confirmed entry leaves only for another
        /// confirmed one, never for an unconfirmed newcomer.
        #[test]
        fn the_table_never_exceeds_its_bounds(ops in proptest::collection::vec(op(), 1..300), unconf in 1usize..6, conf in 1usize..6) {
            let mut t: FlowTable<u16, u16, Sip13> = FlowTable::new(unconf, conf, [1, 2], no_advice);
            for op in ops {
                let confirmed_before = t.tier_len(Tier::Confirmed);
                let slot_of = |t: &FlowTable<u16, u16, Sip13>, k: u16| t.find(t.hash(&k), &k);
                match op {
                    Op::Insert(k) => {
                        if slot_of(&t, k).is_none() {
                            let h = t.hash(&k);
                            t.insert(h, k, k);
                            prop_assert_eq!(t.tier_len(Tier::Confirmed), confirmed_before, "an insert evicted a confirmed entry");
                        }
                    }
                    Op::Touch(k) => if let Some(s) = slot_of(&t, k) { t.touch(s) },
                    Op::Close(k) => if let Some(s) = slot_of(&t, k) { t.close(s) },
                    Op::Confirm(k) => if let Some(s) = slot_of(&t, k) { t.confirm(s) },
                    Op::Remove(k) => if let Some(s) = slot_of(&t, k) { prop_assert_eq!(t.remove(s).0, k) },
                    Op::Expire(l, n) => {
                        t.expire(ListId(l), n as usize, |_| true);
                    }
                }
                t.check();
                prop_assert!(t.len() <= unconf + conf);
            }
        }
    }

    #[test]
    fn eviction_takes_closed_flows_first_then_the_least_recently_seen() {
        let mut t: FlowTable<u16, (), Sip13> = FlowTable::new(3, 3, [1, 2], no_advice);
        let ins = |t: &mut FlowTable<u16, (), Sip13>, k: u16| {
            let h = t.hash(&k);
            t.insert(h, k, ())
        };
        let a = ins(&mut t, 1);
        let b = ins(&mut t, 2);
        ins(&mut t, 3);
        t.touch(a); // 2 is now the least recently seen
        ins(&mut t, 4);
        assert!(t.find(t.hash(&2), &2).is_none());
        let _ = b;
        let c = t.find(t.hash(&3), &3).unwrap();
        t.close(c);
        ins(&mut t, 5);
        assert!(t.find(t.hash(&3), &3).is_none(), "the closed one went first");
        assert!(t.find(t.hash(&1), &1).is_some());
        t.check();
    }
}
