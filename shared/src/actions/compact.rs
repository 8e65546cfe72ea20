//! The first stage of flow tracking: unconfirmed flows as 64-byte records
//! in a set-associative table, so that a flood of new 4-tuples costs one
//! set (two adjacent cache lines) per packet, with no index, no list and no
//! allocation.
//!
//! A record holds everything the enforcer knows of an unconfirmed flow in
//! the plain case: the 4-tuple (and VLAN), per end its MAC, whether it
//! acknowledged something, its `rcv_nxt`; when it was last seen, or closed.
//! That is the whole `Flow` as long as no action did anything to it and its
//! MACs agree; the enforcer moves a flow into the full table (`flows`)
//! before it leaves that case, so nothing is lost in the move (`encode`
//! refuses any other flow, `decode` gives it back whole).
//!
//! Sets are chosen by the flow's keyed hash (the same SipHash-1-3 the full
//! table uses), so whoever chooses 4-tuples cannot aim at a set. A new flow
//! takes an empty or expired way of its set, else the oldest closed one,
//! else the least recently seen: a collision only ever evicts another
//! unconfirmed flow. Expiry is lazy (an expired record counts as absent)
//! and a sweep clears a bounded number of records per `tick`.
//!
//! Times are kept in units of 2^20 ns (about 1 ms), as 32 bits relative to
//! the newest time stored: exact while the caller ticks (the sweep visits
//! every record well within the 26 days the 32 bits cover).

use super::huge::{Advice, HugeTable};
use super::{End, Flow, FlowId, CLOSED_KEEP_NS, FLOW_IDLE_NS};
use crate::tcpseg::{Segment, ACK, SYN};

/// Records per set: a set is two cache lines, next to each other.
pub const WAYS: usize = 2;
const TIME_SHIFT: u32 = 20;

pub const VALID: u16 = 1;
/// The flow's first address is IPv6 (else IPv4).
pub const V6_0: u16 = 1 << 1;
pub const HAS_VLAN: u16 = 1 << 2;
const CLOSED: u16 = 1 << 3;
/// The flow's second address is IPv6.
pub const V6_1: u16 = 1 << 12;
/// Per end `i`, shifted by `4 + 4 * i`.
const SRC: u16 = 1;
const ADDRESSED: u16 = 1 << 1;
const ACKED: u16 = 1 << 2;
const RCV: u16 = 1 << 3;
/// The bits that are part of the key (`FlowId::meta`).
const KEY_BITS: u16 = VALID | V6_0 | V6_1 | HAS_VLAN;

fn end_bits(i: usize, bits: u16) -> u16 {
    bits << (4 + 4 * i)
}

/// One unconfirmed flow (64 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Record {
    /// 0: an empty way. Else VALID and the other bits above.
    meta: u16,
    vlan: u16,
    ports: [u16; 2],
    /// When last seen or, closed, when the RST went by (`stamp`).
    seen: u32,
    rcv_nxt: [u32; 2],
    /// Per end: the one MAC seen for it (as the source of its frames or
    /// the destination of its peer's).
    macs: [[u8; 6]; 2],
    /// As in `FlowId`.
    addrs: [u128; 2],
}

const _: () = assert!(std::mem::size_of::<Record>() == 64);

#[derive(Clone, Copy, Default)]
#[repr(C, align(128))]
struct Set([Record; WAYS]);

impl FlowId {
    fn matches(&self, r: &Record) -> bool {
        r.meta & KEY_BITS == self.meta && r.vlan == self.vlan && r.ports == self.ports && r.addrs == self.addrs
    }
}

impl Record {
    pub fn id(&self) -> FlowId {
        FlowId { meta: self.meta & KEY_BITS, vlan: self.vlan, ports: self.ports, addrs: self.addrs }
    }

    pub fn is_closed(&self) -> bool {
        self.meta & CLOSED != 0
    }

    /// `flow` as a record, if it is a flow records can hold: nothing an
    /// action did to it (no reset, probe or report), and per end no more
    /// than one MAC.
    pub fn encode(id: &FlowId, flow: &Flow, closed: bool, seen: u32) -> Option<Record> {
        if flow.reset_by.is_some() || flow.probed_at_ns.is_some() || flow.rsts != 0 || flow.matched_by.is_some() || flow.probe_queued {
            return None;
        }
        let mut r = Record { meta: id.meta, vlan: id.vlan, ports: id.ports, seen, addrs: id.addrs, ..Record::default() };
        if closed {
            r.meta |= CLOSED;
        }
        for (i, e) in flow.ends.iter().enumerate() {
            if e.mac_conflict || e.last_rst.is_some() || e.last_probe.is_some() {
                return None;
            }
            r.macs[i] = match (e.src_mac, e.addressed_mac) {
                (Some(a), Some(b)) if a != b => return None,
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => [0; 6],
            };
            let mut bits = 0;
            if e.src_mac.is_some() {
                bits |= SRC;
            }
            if e.addressed_mac.is_some() {
                bits |= ADDRESSED;
            }
            if e.acked {
                bits |= ACKED;
            }
            if let Some(n) = e.rcv_nxt {
                bits |= RCV;
                r.rcv_nxt[i] = n;
            }
            r.meta |= end_bits(i, bits);
        }
        Some(r)
    }

    /// A new flow after its first segment (not a RST), from end `from`:
    /// what `encode` makes of `Flow::new` after `learn_segment`, built
    /// directly (most of a flood is this).
    #[cfg(test)]
    pub fn first(id: &FlowId, seg: &Segment, from: usize, seen: u32) -> Record {
        let mut r = Record::default();
        r.set_first(id, seg, from, seen);
        r
    }

    /// Becomes `first(..)`, written in place: built elsewhere and copied,
    /// the record's stores at an index (`from`) and the copy's wide loads
    /// defeated store forwarding, which cost more than the rest.
    #[inline(always)]
    fn set_first(&mut self, id: &FlowId, seg: &Segment, from: usize, seen: u32) {
        let ack = seg.has(ACK);
        let sender = SRC | if ack { RCV } else { 0 } | if ack && !seg.has(SYN) { ACKED } else { 0 };
        let (sender_rcv, receiver_rcv) = (if ack { seg.ack } else { 0 }, seg.end_seq());
        let receiver = ADDRESSED | RCV;
        let (bits, rcv_nxt) = if from == 0 {
            (end_bits(0, sender) | end_bits(1, receiver), [sender_rcv, receiver_rcv])
        } else {
            (end_bits(0, receiver) | end_bits(1, sender), [receiver_rcv, sender_rcv])
        };
        self.meta = id.meta | bits;
        self.vlan = id.vlan;
        self.ports = id.ports;
        self.seen = seen;
        self.rcv_nxt = rcv_nxt;
        // Each MAC straight from the segment (an array of both, built
        // first, was read back before its stores had landed).
        self.macs[from] = seg.src_mac;
        self.macs[1 - from] = seg.dst_mac;
        self.addrs = id.addrs;
    }

    /// The flow this record holds, last seen (or closed) at `seen_ns`.
    pub fn decode(&self, seen_ns: u64) -> Flow {
        let mut flow = Flow::new(seen_ns);
        flow.closed_at_ns = if self.is_closed() { seen_ns } else { 0 };
        for (i, e) in flow.ends.iter_mut().enumerate() {
            let has = |b: u16| self.meta & end_bits(i, b) != 0;
            *e = End {
                src_mac: has(SRC).then_some(self.macs[i]),
                addressed_mac: has(ADDRESSED).then_some(self.macs[i]),
                acked: has(ACKED),
                rcv_nxt: has(RCV).then_some(self.rcv_nxt[i]),
                ..End::default()
            };
        }
        flow
    }
}

/// Where a flow's record is, or goes: a set and a way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub set: usize,
    pub way: usize,
}

pub struct CompactTable {
    sets: HugeTable<Set>,
    mask: usize,
    /// Valid records (expired ones included until cleared).
    len: usize,
    /// The newest time stored, which record times are relative to.
    newest_ns: u64,
    /// The next record the sweep looks at.
    hand: usize,
}

fn stamp(ns: u64) -> u32 {
    (ns >> TIME_SHIFT) as u32
}

/// Ages of records at one time.
struct Clock {
    newest: u32,
    /// How far `now_ns` is past the newest time stored.
    over_ns: u64,
}

impl Clock {
    fn at(t: &CompactTable, now_ns: u64) -> Clock {
        Clock { newest: stamp(t.newest_ns), over_ns: now_ns.saturating_sub(t.newest_ns) }
    }

    /// Units `r` is older than the newest time stored (records are never
    /// newer; a clock that went back counts as no age).
    fn behind(&self, r: &Record) -> i32 {
        (self.newest.wrapping_sub(r.seen) as i32).max(0)
    }

    fn age_ns(&self, r: &Record) -> u64 {
        self.over_ns.saturating_add((self.behind(r) as u64) << TIME_SHIFT)
    }

    fn expired(&self, r: &Record) -> bool {
        self.age_ns(r) >= if r.is_closed() { CLOSED_KEEP_NS } else { FLOW_IDLE_NS }
    }
}

impl CompactTable {
    /// At most `records` flows (rounded down to a power of two, at least
    /// WAYS), allocated and zeroed up front: 64 bytes each.
    pub fn new(records: usize, advise: Advice) -> CompactTable {
        let sets = (records / WAYS).max(1);
        let sets = if sets.is_power_of_two() { sets } else { sets.next_power_of_two() / 2 };
        CompactTable { sets: HugeTable::new(sets, Set::default(), advise), mask: sets - 1, len: 0, newest_ns: 0, hand: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn set_of(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Asks for the set's cache lines ahead of a look-up.
    #[inline]
    pub fn prefetch(&self, set: usize) {
        let p = self.sets.as_ptr().wrapping_add(set) as *const u8;
        super::prefetch(p);
        super::prefetch(p.wrapping_add(64));
    }

    /// Nanoseconds since `r` was last seen (or closed), at `now_ns`.
    fn age_ns(&self, r: &Record, now_ns: u64) -> u64 {
        Clock::at(self, now_ns).age_ns(r)
    }

    fn expired(&self, r: &Record, now_ns: u64) -> bool {
        Clock::at(self, now_ns).expired(r)
    }

    /// The flow's record in `set`, if it holds a live one; else where a new
    /// one should go (an empty or expired way, else the oldest closed, else
    /// the least recently seen).
    pub fn find(&self, set: usize, id: &FlowId, now_ns: u64) -> Result<(Place, &Record), Place> {
        let s = &self.sets[set].0;
        let clock = Clock::at(self, now_ns);
        let mut victim = (0, (false, false, 0i64));
        for (way, r) in s.iter().enumerate() {
            let live = r.meta & VALID != 0 && !clock.expired(r);
            if live && id.matches(r) {
                return Ok((Place { set, way }, r));
            }
            // Ranked: empty or expired first, then closed, then oldest.
            let rank = (!live, r.is_closed(), clock.behind(r) as i64);
            if way == 0 || rank > victim.1 {
                victim = (way, rank);
            }
        }
        Err(Place { set, way: victim.0 })
    }

    pub fn get(&self, at: Place) -> &Record {
        &self.sets[at.set].0[at.way]
    }

    /// The time to store in a record written at `now_ns`.
    pub fn stamp(&mut self, now_ns: u64) -> u32 {
        self.newest_ns = self.newest_ns.max(now_ns);
        stamp(now_ns)
    }

    /// The flow's last time as nanoseconds, at `now_ns`.
    pub fn seen_ns(&self, r: &Record, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.age_ns(r, now_ns))
    }

    /// Stores the record of a new flow after its first segment (`first`).
    #[inline(always)]
    pub fn store_first(&mut self, at: Place, id: &FlowId, seg: &Segment, from: usize, seen: u32) {
        let r = &mut self.sets[at.set].0[at.way];
        self.len += (r.meta & VALID == 0) as usize;
        r.set_first(id, seg, from, seen);
    }

    pub fn store(&mut self, at: Place, r: Record) {
        let old = &mut self.sets[at.set].0[at.way];
        self.len += (old.meta & VALID == 0) as usize;
        *old = r;
    }

    /// A RST went by: kept CLOSED_KEEP_NS from now.
    pub fn close(&mut self, at: Place, now_ns: u64) {
        let seen = self.stamp(now_ns);
        let r = &mut self.sets[at.set].0[at.way];
        r.meta |= CLOSED;
        r.seen = seen;
    }

    pub fn clear(&mut self, at: Place) {
        let r = &mut self.sets[at.set].0[at.way];
        if r.meta & VALID != 0 {
            self.len -= 1;
        }
        *r = Record::default();
    }

    /// Clears the expired records among the next `max` (in a circle);
    /// returns how many went.
    pub fn sweep(&mut self, now_ns: u64, max: usize) -> usize {
        let mut cleared = 0;
        for _ in 0..max.min(self.capacity()) {
            let at = Place { set: self.hand / WAYS, way: self.hand % WAYS };
            self.hand = (self.hand + 1) % self.capacity();
            let r = self.get(at);
            if r.meta & VALID != 0 && self.expired(r, now_ns) {
                self.clear(at);
                cleared += 1;
            }
        }
        cleared
    }

    /// Every live record that is not closed (for the rare walks: a new
    /// action).
    pub fn open_places(&self, now_ns: u64) -> impl Iterator<Item = Place> + '_ {
        (0..self.capacity()).map(|i| Place { set: i / WAYS, way: i % WAYS }).filter(move |&at| {
            let r = self.get(at);
            r.meta & VALID != 0 && !r.is_closed() && !self.expired(r, now_ns)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::learn_segment;
    use super::*;
    use crate::tcpseg::{FIN, PSH, RST};
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// A segment of flow `i` (IPv4, IPv6 or one of each), from its
    /// client when `from_client`.
    fn seg(i: u16, family: u8, from_client: bool) -> Segment {
        let v4 = |b: u8| IpAddr::from(Ipv4Addr::new(198, 18, 0, b));
        let v6 = |b: u16| IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, b));
        let (a, b) = match family {
            0 => (v4(1), v4(2)),
            1 => (v6(1), v6(2)),
            _ => (v4(1), v6(2)),
        };
        let (c, s) = ((a, 40000 + i), (b, 80));
        let (src, dst) = if from_client { (c, s) } else { (s, c) };
        let (cm, sm) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let (src_mac, dst_mac) = if from_client { (cm, sm) } else { (sm, cm) };
        Segment { src_mac, dst_mac, vlan: (i & 1 == 0).then_some(i), src, dst, seq: 1, ack: 1, flags: ACK, len: 0 }
    }

    fn id(i: u16, family: u8) -> FlowId {
        FlowId::of(&seg(i, family, true)).0
    }

    /// Both directions give the same id, which gives back the ends in
    /// order and tells flows apart.
    #[test]
    fn ids_are_canonical() {
        for family in 0..3 {
            let (c, from_c) = FlowId::of(&seg(6, family, true));
            let (s, from_s) = FlowId::of(&seg(6, family, false));
            assert_eq!(c, s);
            assert_ne!(from_c, from_s);
            let k = c.key();
            let x = seg(6, family, true);
            assert_eq!(k.vlan, Some(6));
            assert!(k.ends == [x.src, x.dst] || k.ends == [x.dst, x.src]);
            assert!(k.ends[0] <= k.ends[1]);
            assert_ne!(id(7, family), c);
        }
    }

    /// A record gives back the id and the flow it was made from.
    #[test]
    fn records_round_trip() {
        for family in 0..3 {
            let id = id(6, family);
            let mut f = Flow::new(0);
            f.ends[0] = End { src_mac: Some([2, 0, 0, 0, 0, 1]), acked: true, rcv_nxt: Some(7), ..End::default() };
            f.ends[1] = End { src_mac: Some([2, 0, 0, 0, 0, 2]), addressed_mac: Some([2, 0, 0, 0, 0, 2]), rcv_nxt: Some(9), ..End::default() };
            let r = Record::encode(&id, &f, false, 0).unwrap();
            assert_eq!(r.id(), id);
            assert!(id.matches(&r));
            assert!(!self::id(7, family).matches(&r));
            let back = r.decode(0);
            for i in 0..2 {
                let (a, b) = (back.ends[i], f.ends[i]);
                assert_eq!((a.src_mac, a.addressed_mac, a.acked, a.rcv_nxt, a.mac_conflict), (b.src_mac, b.addressed_mac, b.acked, b.rcv_nxt, false));
            }
            // What a record cannot hold.
            let mut g = f;
            g.ends[1].addressed_mac = Some([2, 0, 0, 0, 0, 9]);
            assert!(Record::encode(&id, &g, false, 0).is_none(), "two MACs for one end");
            let mut g = f;
            g.ends[0].last_rst = Some((1, 1));
            assert!(Record::encode(&id, &g, false, 0).is_none(), "a reset sent");
            let mut g = f;
            g.probed_at_ns = Some(1);
            assert!(Record::encode(&id, &g, false, 0).is_none(), "probed");
        }
    }

    proptest! {
        /// Whatever segments a flow sees, its record (while it can have
        /// one) gives back exactly the flow the full table would hold; and
        /// `first` is exactly what `encode` makes of a new flow.
        #[test]
        fn records_hold_flows_exactly(family in 0u8..3, segs in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), any::<u32>(), 0u8..0x20, 0u32..100, any::<bool>()), 1..8)) {
            let mut flow: Option<Flow> = None;
            let flow_id = id(3, family);
            for (i, (from_client, seq, ack, flags, len, other_mac)) in segs.into_iter().enumerate() {
                let flags = flags & (FIN | SYN | PSH | ACK) & !RST;
                let mut s = Segment { seq, ack, flags, len, ..seg(3, family, from_client) };
                if other_mac {
                    s.src_mac = [2, 0, 0, 0, 0, 9];
                }
                let (sid, from) = FlowId::of(&s);
                prop_assert_eq!(sid, flow_id);
                let now = i as u64 * 1000;
                match flow.as_mut() {
                    None => {
                        let mut f = Flow::new(now);
                        learn_segment(&mut f, &s, from, now);
                        prop_assert_eq!(Some(Record::first(&sid, &s, from, 5)), Record::encode(&sid, &f, false, 5));
                        flow = Some(f);
                    }
                    Some(f) => learn_segment(f, &s, from, now),
                }
                let f = flow.unwrap();
                if let Some(r) = Record::encode(&sid, &f, false, 5) {
                    prop_assert_eq!(r.decode(now).ends, f.ends);
                }
            }
        }
    }

    /// A full set gives up an expired record first, then the oldest closed
    /// one, then the least recently seen.
    #[test]
    fn victims_are_expired_then_closed_then_oldest() {
        let mut t = CompactTable::new(2, crate::actions::huge::no_advice);
        assert_eq!(t.capacity(), 2);
        let put = |t: &mut CompactTable, i: u16, now: u64| {
            let id = id(i, 0);
            let at = t.find(0, &id, now).unwrap_err();
            let seen = t.stamp(now);
            t.store(at, Record::encode(&id, &Flow::new(now), false, seen).unwrap());
            at
        };
        let s = 1 << 30;
        let a = put(&mut t, 1, s);
        let b = put(&mut t, 2, 2 * s);
        assert_ne!(a, b, "an empty way first");
        assert_eq!(t.len(), 2);
        assert_eq!(put(&mut t, 3, 3 * s), a, "the least recently seen");
        t.close(a, 4 * s);
        assert_eq!(put(&mut t, 4, 5 * s), a, "a closed one before an older open one");
        let id = id(2, 0);
        assert!(t.find(0, &id, 2 * s + FLOW_IDLE_NS - 1).is_ok());
        assert!(t.find(0, &id, 2 * s + FLOW_IDLE_NS + (1 << TIME_SHIFT)).is_err(), "expired: absent");
        assert_eq!(t.sweep(u64::MAX / 2, 10), 2);
        assert_eq!(t.len(), 0);
    }
}
