//! Response actions, enforced: the sans-IO core that decides which resets
//! and probes to send for the TCP segments an interface shows.
//!
//! Linux accepts a RST only at exactly the sequence number it expects next
//! (RFC 5961), so per flow and per end the enforcer keeps `rcv_nxt`, the
//! freshest of "the ack this end last sent" and "the end of the last segment
//! sent to it". One segment A→B is enough to reset both ends: A at
//! `seg.ack`, B at `seg.end_seq()`. A flow that matches an action but is
//! quiet is probed: an ACK far outside the window makes each end answer with
//! a duplicate ACK that carries both numbers. During an action a SYN-ACK is
//! answered with resets to both sides, so new connections die at once.
//!
//! Frames go to an end only at a MAC the enforcer is sure of: the source
//! MAC of the end's own frames, which must also be the destination MAC of
//! its peer's frames, with no other MAC seen for that end since the
//! connection opened. One forged frame cannot steer a reset elsewhere; at
//! worst it makes the enforcer send nothing to that end.
//!
//! The work per segment is bounded whatever the traffic. New flows go to a
//! compact table (`compact`: a 64-byte record each, in sets of two, no
//! index, no list), where a flood of new 4-tuples stays: a segment of it
//! costs one index bucket and one set, two cache lines. A flow moves to
//! the full table (`flows`, bounded two-tier LRU, O(1) find, insert,
//! evict) once it is confirmed (both ends acknowledged something) or an
//! action has something to do with it, so a flood cannot push out
//! connections. The actions are indexed (`actions`) and each flow of the
//! full table remembers which one covers it until the set changes; `tick`
//! pops list tails, a bounded part of the compact table and a queue of due
//! probes, a bounded number each time. With no action in force a segment
//! costs two look-ups and no matching at all. Frames sent are limited to
//! `INJECT_PER_S` a second (`rate`). `prepare` (hash, cache lines
//! requested) and `observe_prepared` split `observe` for a caller that can
//! do other work in between, so the look-ups' cache misses are over by the
//! time they run.
//!
//! The caller feeds every TCP segment (`observe`), the actions (`apply`,
//! `cancel`) and the clock (`tick`), and sends what comes out. Nothing here
//! sends, reads a clock or allocates per segment.

mod compact;
mod flows;
pub mod huge;
mod index;
mod rate;
mod set;
pub mod signed;
mod sip;

pub use set::{Refused, MAX_ACTIONS};

use crate::tcpseg::{seq_after, Outgoing, Segment, ACK, RST, SYN};
use compact::{CompactTable, Place, Record};
use flows::{FlowTable, KeyHasher, ListId, Slot, Tier};
use rate::TokenBucket;
use serde::{Deserialize, Serialize};
use set::ActionSet;
use sip::Sip13;
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

/// One side of a block: an address and, optionally, a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Absent or null: any port.
    #[serde(default)]
    pub port: Option<u16>,
}

impl Endpoint {
    fn matches(&self, (ip, port): (IpAddr, u16)) -> bool {
        self.ip == ip && self.port.is_none_or(|p| p == port)
    }
}

/// What an action blocks. Externally tagged (`{"block": {...}}`), which
/// both JSON and the workers' bincode frames can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// TCP connections between `a` and `b` (either direction).
    Block { a: Endpoint, b: Endpoint },
    /// Every TCP connection of one host.
    Quarantine { host: IpAddr },
}

impl Target {
    pub fn matches(&self, x: (IpAddr, u16), y: (IpAddr, u16)) -> bool {
        match self {
            Target::Block { a, b } => (a.matches(x) && b.matches(y)) || (a.matches(y) && b.matches(x)),
            Target::Quarantine { host } => x.0 == *host || y.0 == *host,
        }
    }
}

/// An action in force until `until_ns` (CLOCK_REALTIME nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    pub target: Target,
    pub until_ns: u64,
}

/// What an action did, for the periodic reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionStats {
    /// Connections reset (both ends sent a RST at least once).
    pub connections_reset: u64,
    /// New connections refused (a SYN-ACK answered with resets).
    pub connections_refused: u64,
    pub resets_sent: u64,
    pub probes_sent: u64,
    /// Resets and probes not sent because the interface's rate limit
    /// (`INJECT_PER_S`) was reached.
    #[serde(default)]
    pub frames_suppressed: u64,
}

/// Why a packet is sent: for the level-3 log and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Reset,
    RefuseHandshake,
    Probe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub action: u64,
    pub reason: Reason,
    pub segment: Outgoing,
}

/// A flow's ends (lower endpoint first) and VLAN, as frames and actions
/// need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    vlan: Option<u16>,
    ends: [(IpAddr, u16); 2],
}

/// A flow as the tables know it: its 4-tuple and VLAN in a fixed layout,
/// canonically ordered (lower endpoint first) so both directions find the
/// same entry, compared whole and hashed as bytes: 16 for IPv4, 40 else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowId {
    /// compact::VALID, and which addresses are IPv6, whether a VLAN is
    /// there (the key bits of a compact record's `meta`).
    meta: u16,
    vlan: u16,
    ports: [u16; 2],
    /// As numbers (an IPv4 address in the low 32 bits).
    addrs: [u128; 2],
}

impl FlowId {
    /// The flow of `seg`, and which of its ends sent it.
    #[inline(always)]
    fn of(seg: &Segment) -> (FlowId, usize) {
        let end = |(ip, port): (IpAddr, u16)| match ip {
            IpAddr::V4(v4) => (false, u32::from(v4) as u128, port),
            IpAddr::V6(v6) => (true, u128::from(v6), port),
        };
        // Ordered as (IpAddr, port) orders: IPv4 first, then by address
        // and port.
        let (s, d) = (end(seg.src), end(seg.dst));
        let (lo, hi, from) = if s <= d { (s, d, 0) } else { (d, s, 1) };
        let meta = compact::VALID
            | if lo.0 { compact::V6_0 } else { 0 }
            | if hi.0 { compact::V6_1 } else { 0 }
            | if seg.vlan.is_some() { compact::HAS_VLAN } else { 0 };
        (FlowId { meta, vlan: seg.vlan.unwrap_or(0), ports: [lo.2, hi.2], addrs: [lo.1, hi.1] }, from)
    }

    fn key(&self) -> FlowKey {
        let ip = |i: usize, v6: u16| -> IpAddr {
            if self.meta & v6 != 0 {
                std::net::Ipv6Addr::from(self.addrs[i]).into()
            } else {
                std::net::Ipv4Addr::from(self.addrs[i] as u32).into()
            }
        };
        let vlan = (self.meta & compact::HAS_VLAN != 0).then_some(self.vlan);
        FlowKey { vlan, ends: [(ip(0, compact::V6_0), self.ports[0]), (ip(1, compact::V6_1), self.ports[1])] }
    }
}

/// Hashed as its words: 2 for IPv4 (16 bytes), 5 else (40 bytes).
impl KeyHasher<FlowId> for Sip13 {
    fn keyed(key: [u64; 2]) -> Self {
        Sip13::new(key)
    }
    #[inline(always)]
    fn hash_key(&self, id: &FlowId) -> u64 {
        let head = id.meta as u64 | (id.vlan as u64) << 16 | (id.ports[0] as u64) << 32 | (id.ports[1] as u64) << 48;
        let [a, b] = id.addrs;
        if id.meta & (compact::V6_0 | compact::V6_1) == 0 {
            self.hash_words(&[head, a as u64 | (b as u64) << 32])
        } else {
            self.hash_words(&[head, a as u64, (a >> 64) as u64, b as u64, (b >> 64) as u64])
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct End {
    /// The source MAC of this end's own frames (the host itself or its
    /// router on this segment), first seen since the connection opened.
    src_mac: Option<[u8; 6]>,
    /// The destination MAC of the frames its peer sent to it.
    addressed_mac: Option<[u8; 6]>,
    /// Another MAC was seen for this end since then: send it nothing.
    mac_conflict: bool,
    /// It sent a segment with ACK that was neither a SYN nor a RST: a real
    /// peer of a connection, not a scanned or spoofed address.
    acked: bool,
    rcv_nxt: Option<u32>,
    /// The last RST sent to this end, and when: not repeated within
    /// RESEND_NS unless the expected number moved.
    last_rst: Option<(u32, u64)>,
    /// (seq, ack) of the last probe sent to this end: the capture shows our
    /// own probe, which must not count as the end's traffic.
    last_probe: Option<(u32, u32)>,
}

impl End {
    /// Where frames to this end go: only when both MACs are known, agree,
    /// and no other was seen.
    fn mac(&self) -> Option<[u8; 6]> {
        match (self.src_mac, self.addressed_mac) {
            (Some(a), Some(b)) if a == b && !self.mac_conflict => Some(a),
            _ => None,
        }
    }
}

/// Remembers the first MAC; any other one afterwards is a conflict.
fn learn(slot: &mut Option<[u8; 6]>, conflict: &mut bool, mac: [u8; 6]) {
    match slot {
        None => *slot = Some(mac),
        Some(m) if *m != mac => *conflict = true,
        Some(_) => {}
    }
}

/// No action covers the flow (in `Flow::cached`).
const NO_ACTION: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Flow {
    ends: [End; 2],
    last_seen_ns: u64,
    /// When a RST last went by (the flow is in a closed list).
    closed_at_ns: u64,
    /// Set once both ends were sent a RST under this action.
    reset_by: Option<u64>,
    probed_at_ns: Option<u64>,
    rsts: u32,
    /// The position of the action that covers this flow in the set of
    /// generation `match_gen` (NO_ACTION: none).
    cached: u32,
    match_gen: u64,
    /// The action this flow was last reported under in `matched`.
    matched_by: Option<u64>,
    /// In the queue of flows to probe again.
    probe_queued: bool,
}

impl Flow {
    fn new(now_ns: u64) -> Flow {
        Flow {
            ends: [End::default(); 2],
            last_seen_ns: now_ns,
            closed_at_ns: 0,
            reset_by: None,
            probed_at_ns: None,
            rsts: 0,
            cached: NO_ACTION,
            match_gen: 0,
            matched_by: None,
            probe_queued: false,
        }
    }
}

/// Resets are not repeated at the same number more often than this.
const RESEND_NS: u64 = 20_000_000;
/// A quiet flow is probed again after this (Linux limits challenge and
/// duplicate ACKs to one per socket per 500 ms).
const REPROBE_NS: u64 = 600_000_000;
/// At most this many RSTs per flow per action: a bound if the peers keep
/// talking (a host that ignores resets).
const MAX_RSTS_PER_FLOW: u32 = 64;
/// Flows quiet for this long are forgotten.
const FLOW_IDLE_NS: u64 = 300_000_000_000;
/// Flows that ended with a reset are forgotten after this.
const CLOSED_KEEP_NS: u64 = 2_000_000_000;
/// Probes go far outside any window, so they never change state.
const PROBE_OFFSET: u32 = 1 << 30;
/// Frames (resets and probes) an interface sends per second at most, after
/// a burst of INJECT_BURST: an action covering a whole busy segment must
/// not flood it. Beyond, frames are counted in `frames_suppressed`.
pub const INJECT_PER_S: u64 = 2_000;
pub const INJECT_BURST: u64 = 2_000;
/// Unconfirmed flows kept, as a share of `max_flows`: a quarter.
const UNCONFIRMED_SHARE: usize = 4;
/// Segments whose keys and hashes `observe_batch` computes together.
pub const BATCH: usize = 32;
/// How many segments ahead `observe_batch` requests the cache lines of
/// the look-ups: enough to overlap their misses, few enough that the
/// requests do not queue (measured: 8 to 16 best, 32 and 4 worse).
const PREFETCH_AHEAD: usize = 12;
/// At most this many flows leave each list per `tick`, and this many due
/// probes are looked at: the work of a tick is bounded.
const EXPIRE_PER_TICK: usize = 256;
const REPROBE_PER_TICK: usize = 256;

/// A confirmed flow an action covers, once per (flow, action): the shell
/// asks for the local socket to be destroyed when one end is on this host.
/// Only confirmed flows (both ends acknowledged something): a segment
/// nobody answered, a spoofed one say, never costs the supervisor a
/// socket dump, nor the worker the wait for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    pub action: u64,
    pub ends: [(IpAddr, u16); 2],
}

pub struct ActionEnforcer {
    own_mac: [u8; 6],
    matched: Vec<Matched>,
    /// Confirmed flows, and unconfirmed ones that an action acted on or
    /// whose MACs disagree.
    flows: FlowTable<FlowId, Flow, Sip13>,
    /// Every other unconfirmed flow, compact (most of a flood).
    compact: CompactTable,
    /// `observe_batch`'s keys and hashes (capacity BATCH, never grows).
    batch: Vec<(FlowId, usize, u64)>,
    actions: ActionSet,
    stats: BTreeMap<u64, ActionStats>,
    ip_id: u16,
    bucket: TokenBucket,
    /// Probed flows, (slot, entry id, when due), roughly in due order; one
    /// entry per flow at most.
    reprobe: VecDeque<(Slot, u64, u64)>,
}

/// A segment `ActionEnforcer::prepare` made ready for `observe_prepared`.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    now_ns: u64,
    seg: Segment,
    id: FlowId,
    from: usize,
    hash: u64,
}

/// What building a frame needs besides the flow: the source MAC, the IP id
/// counter and the rate limit.
struct Sender<'a> {
    own_mac: [u8; 6],
    ip_id: &'a mut u16,
    bucket: &'a mut TokenBucket,
    now_ns: u64,
}

impl Sender<'_> {
    /// A frame from `key`'s end `1 - to` to its end `to` at `dst_mac`, if
    /// the rate allows; counts it in `stats` if not.
    #[allow(clippy::too_many_arguments)]
    fn frame(&mut self, key: &FlowKey, to: usize, dst_mac: [u8; 6], seq: u32, ack: u32, flags: u8, stats: &mut ActionStats) -> Option<Outgoing> {
        if !self.bucket.take(self.now_ns) {
            stats.frames_suppressed += 1;
            return None;
        }
        *self.ip_id = self.ip_id.wrapping_add(1);
        Some(Outgoing { src_mac: self.own_mac, dst_mac, vlan: key.vlan, src: key.ends[1 - to], dst: key.ends[to], seq, ack, flags, ip_id: *self.ip_id })
    }
}

impl ActionEnforcer {
    /// `own_mac`: the interface's MAC, the source of everything sent.
    /// `max_flows`: connections remembered (confirmed flows); a quarter as
    /// many unconfirmed flows on top.
    /// `hash_key`: the flow tables' hash key, which the shell draws at
    /// random (whoever chooses 4-tuples must not know it).
    pub fn new(own_mac: [u8; 6], max_flows: usize, hash_key: [u64; 2]) -> ActionEnforcer {
        ActionEnforcer::with_tiers(own_mac, max_flows, max_flows / UNCONFIRMED_SHARE, hash_key, huge::no_advice)
    }

    /// As [`ActionEnforcer::new`], with the shell's advice on the large tables'
    /// memory (huge pages: see `huge`).
    pub fn with_advice(own_mac: [u8; 6], max_flows: usize, hash_key: [u64; 2], advise: huge::Advice) -> ActionEnforcer {
        ActionEnforcer::with_tiers(own_mac, max_flows, max_flows / UNCONFIRMED_SHARE, hash_key, advise)
    }

    /// Both bounds chosen (each at least 1). Unconfirmed flows: `unconfirmed`
    /// compact records (rounded down to a power of two, at least 2), and as
    /// many full entries for those an action acted on.
    pub fn with_tiers(own_mac: [u8; 6], confirmed: usize, unconfirmed: usize, hash_key: [u64; 2], advise: huge::Advice) -> ActionEnforcer {
        let compact = CompactTable::new(unconfirmed, advise);
        ActionEnforcer {
            own_mac,
            matched: Vec::new(),
            flows: FlowTable::new(compact.capacity(), confirmed, hash_key, advise),
            compact,
            batch: Vec::with_capacity(BATCH),
            actions: ActionSet::new(),
            stats: BTreeMap::new(),
            ip_id: 1,
            bucket: TokenBucket::new(INJECT_PER_S, INJECT_BURST),
            reprobe: VecDeque::new(),
        }
    }

    /// Another rate limit than INJECT_PER_S after a burst of INJECT_BURST.
    pub fn set_inject_rate(&mut self, per_second: u64, burst: u64) {
        self.bucket = TokenBucket::new(per_second, burst);
    }

    pub fn actions(&self) -> &[Action] {
        self.actions.as_slice()
    }

    pub fn stats(&self) -> &BTreeMap<u64, ActionStats> {
        &self.stats
    }

    /// Flows remembered, confirmed or not.
    pub fn flows(&self) -> usize {
        self.flows.len() + self.compact.len()
    }

    /// Flows whose two ends both talked (the tier a flood cannot evict).
    pub fn confirmed_flows(&self) -> usize {
        self.flows.tier_len(Tier::Confirmed)
    }

    /// Flows newly covered by an action since the last call.
    pub fn take_matched(&mut self) -> std::vec::Drain<'_, Matched> {
        self.matched.drain(..)
    }

    /// Puts `action` in force (replacing one with the same id) and probes
    /// the known flows it matches, so quiet connections die too. Refused
    /// when MAX_ACTIONS others are in force.
    pub fn apply(&mut self, now_ns: u64, action: Action, out: &mut Vec<Injection>) -> Result<(), Refused> {
        if !self.actions.contains(action.id) && self.actions.len() >= MAX_ACTIONS {
            return Err(Refused::TooManyActions);
        }
        self.actions.remove(action.id);
        if action.until_ns <= now_ns {
            return Ok(());
        }
        self.actions.push(action);
        self.stats.entry(action.id).or_default();
        let slots: Vec<Slot> = self
            .flows
            .slots()
            .filter(|&s| {
                let k = self.flows.key(s).key();
                !self.flows.is_closed(s) && action.target.matches(k.ends[0], k.ends[1])
            })
            .collect();
        for slot in slots {
            self.apply_to(now_ns, slot, action, out);
        }
        // Compact flows it covers move to the full table (what an action
        // does to a flow is more than a record holds), one at a time: one
        // moved in may push out another moved in before, never one not
        // yet acted on.
        let covered: Vec<Place> = self
            .compact
            .open_places(now_ns)
            .filter(|&at| {
                let k = self.compact.get(at).id().key();
                action.target.matches(k.ends[0], k.ends[1])
            })
            .collect();
        for at in covered {
            let slot = self.promote(at, now_ns);
            self.apply_to(now_ns, slot, action, out);
        }
        Ok(())
    }

    /// Resets the flow at `slot` at once at the numbers last seen (exact
    /// unless the flow moved since), and probes it: if they were stale, the
    /// answers to the probes give the exact ones.
    fn apply_to(&mut self, now_ns: u64, slot: Slot, action: Action, out: &mut Vec<Injection>) {
        let confirmed = self.flows.tier(slot) == Tier::Confirmed;
        let (own_mac, ip_id, bucket) = (self.own_mac, &mut self.ip_id, &mut self.bucket);
        let mut tx = Sender { own_mac, ip_id, bucket, now_ns };
        let (id, flow) = self.flows.entry_mut(slot);
        let key = id.key();
        flow.reset_by = None;
        flow.rsts = 0;
        if confirmed {
            flow.matched_by = Some(action.id);
            self.matched.push(Matched { action: action.id, ends: key.ends });
        }
        let stats = self.stats.entry(action.id).or_default();
        let mut sent = 0;
        for to in 0..2 {
            if let Some(seq) = flow.ends[to].rcv_nxt {
                if let Some(o) = rst(flow, &key, to, seq, 0, RST, &mut tx, stats) {
                    out.push(Injection { action: action.id, reason: Reason::Reset, segment: o });
                    sent += 1;
                }
            }
        }
        flow.rsts += sent;
        stats.resets_sent += sent as u64;
        if sent == 2 {
            flow.reset_by = Some(action.id);
            stats.connections_reset += 1;
        }
        self.probe(now_ns, slot, action.id, out);
    }

    /// Moves the compact flow at `at` into the full table's unconfirmed
    /// tier.
    fn promote(&mut self, at: Place, now_ns: u64) -> Slot {
        let r = self.compact.get(at);
        let (id, flow) = (r.id(), r.decode(self.compact.seen_ns(r, now_ns)));
        self.compact.clear(at);
        let hash = self.flows.hash(&id);
        self.flows.insert(hash, id, flow)
    }

    /// Ends an action early. Returns whether it was in force.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.actions.remove(id)
    }

    /// Expires actions, re-probes matching flows that stayed quiet, and
    /// forgets idle flows; a bounded amount of each per call. Returns the
    /// ids of the actions that expired.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Injection>) -> Vec<u64> {
        let expired = self.actions.expire(now_ns);
        for tier in [Tier::Unconfirmed, Tier::Confirmed] {
            self.flows.expire(ListId::new(tier, true), EXPIRE_PER_TICK, |f| now_ns.saturating_sub(f.closed_at_ns) >= CLOSED_KEEP_NS);
            self.flows.expire(ListId::new(tier, false), EXPIRE_PER_TICK, |f| now_ns.saturating_sub(f.last_seen_ns) >= FLOW_IDLE_NS);
        }
        self.compact.sweep(now_ns, EXPIRE_PER_TICK);
        self.flows.touched(EXPIRE_PER_TICK.min(self.compact.capacity()) as u64);
        for _ in 0..REPROBE_PER_TICK {
            let Some(&(slot, id, due)) = self.reprobe.front() else { break };
            if due > now_ns {
                break;
            }
            self.reprobe.pop_front();
            if self.flows.id(slot) != Some(id) {
                continue; // forgotten since
            }
            let closed = self.flows.is_closed(slot);
            let action = self.action_at(slot).map(|p| self.actions.get(p).id);
            let f = self.flows.entry_mut(slot).1;
            let probed = f.probed_at_ns.unwrap_or(0);
            match action {
                // Probed again since (a new action): due later.
                Some(_) if now_ns.saturating_sub(probed) < REPROBE_NS => self.reprobe.push_back((slot, id, probed + REPROBE_NS)),
                // Over, or reset already: kept in case it goes on.
                Some(_) if closed || f.reset_by.is_some() => self.reprobe.push_back((slot, id, now_ns + REPROBE_NS)),
                Some(a) => {
                    f.probe_queued = false;
                    self.probe(now_ns, slot, a, out);
                }
                // No action covers it any more: a new one probes it again.
                None => f.probe_queued = false,
            }
        }
        expired
    }

    /// Learns from one captured segment and, if an action covers its flow,
    /// says what to send.
    pub fn observe(&mut self, now_ns: u64, seg: &Segment, out: &mut Vec<Injection>) {
        let (id, from) = FlowId::of(seg);
        let hash = self.flows.hash(&id);
        self.observe_keyed(now_ns, seg, id, from, hash, out);
    }

    /// `observe` for each segment, in order, with the keyed hashes of a
    /// block of BATCH computed first, and the cache lines each look-up
    /// reads (index bucket, compact set) requested PREFETCH_AHEAD segments
    /// ahead: the misses overlap each other and the work, where one
    /// segment at a time waits for each in turn.
    pub fn observe_batch(&mut self, segs: &[(u64, Segment)], out: &mut Vec<Injection>) {
        let ahead = PREFETCH_AHEAD;
        for block in segs.chunks(BATCH) {
            self.batch.clear();
            for (_, seg) in block {
                let (id, from) = FlowId::of(seg);
                let hash = self.flows.hash(&id);
                self.batch.push((id, from, hash));
            }
            let n = self.batch.len();
            for i in 0..ahead.min(n) {
                self.prefetch_for(self.batch[i].2);
            }
            for (i, (now_ns, seg)) in block.iter().enumerate() {
                if i + ahead < n {
                    self.prefetch_for(self.batch[i + ahead].2);
                }
                let (id, from, hash) = self.batch[i];
                self.observe_keyed(*now_ns, seg, id, from, hash, out);
            }
        }
    }

    /// The first half of `observe`: the segment's flow id and keyed hash,
    /// and a request for the cache lines its look-up will read. A caller
    /// with other work per segment (the capture-worker reads its rings)
    /// prepares each segment as it comes and observes them a block later
    /// (`observe_prepared`, in order): the misses are then over by the
    /// time the look-ups run.
    #[inline]
    pub fn prepare(&self, now_ns: u64, seg: &Segment) -> Prepared {
        let (id, from) = FlowId::of(seg);
        let hash = self.flows.hash(&id);
        self.prefetch_for(hash);
        Prepared { now_ns, seg: *seg, id, from, hash }
    }

    /// The second half of `observe`, for segments `prepare`d in order.
    pub fn observe_prepared(&mut self, p: &Prepared, out: &mut Vec<Injection>) {
        self.observe_keyed(p.now_ns, &p.seg, p.id, p.from, p.hash, out);
    }

    #[inline]
    fn prefetch_for(&self, hash: u64) {
        self.flows.prefetch(hash);
        self.compact.prefetch(self.compact.set_of(hash));
    }

    fn observe_keyed(&mut self, now_ns: u64, seg: &Segment, id: FlowId, from: usize, hash: u64, out: &mut Vec<Injection>) {
        match self.flows.find(hash, &id) {
            Some(slot) => self.observe_full(now_ns, seg, slot, from, out),
            None => self.observe_compact(now_ns, seg, id, from, hash, out),
        }
    }

    /// A segment of a flow the full table holds.
    fn observe_full(&mut self, now_ns: u64, seg: &Segment, slot: Slot, from: usize, out: &mut Vec<Injection>) {
        // A reset (ours or an end's) teaches no numbers; it says the flow is
        // probably over.
        if seg.has(RST) {
            self.flows.entry_mut(slot).1.closed_at_ns = now_ns;
            self.flows.close(slot);
            return;
        }
        if seg.src_mac == self.own_mac && ours(self.flows.value(slot), seg, from, self.own_mac) {
            return;
        }
        self.flows.touch(slot);
        let flow = self.flows.entry_mut(slot).1;
        learn_segment(flow, seg, from, now_ns);
        if flow.ends[0].acked && flow.ends[1].acked {
            self.flows.confirm(slot);
        }
        self.enforce(now_ns, seg, slot, from, out);
    }

    /// A segment of a flow the full table does not hold: new, or in the
    /// compact table, where it stays while it is unconfirmed and no action
    /// has anything to do with it.
    fn observe_compact(&mut self, now_ns: u64, seg: &Segment, id: FlowId, from: usize, hash: u64, out: &mut Vec<Injection>) {
        let set = self.compact.set_of(hash);
        self.flows.touched(1);
        let (at, mut flow) = match self.compact.find(set, &id, now_ns) {
            Ok((at, r)) => {
                if seg.has(RST) {
                    self.compact.close(at, now_ns);
                    return;
                }
                let flow = r.decode(self.compact.seen_ns(r, now_ns));
                if seg.src_mac == self.own_mac && ours(&flow, seg, from, self.own_mac) {
                    return;
                }
                (at, flow)
            }
            // A reset of a flow nobody knows: nothing to learn.
            Err(_) if seg.has(RST) => return,
            // Most of a flood: a new flow, which one segment cannot confirm
            // nor give an end both MACs, so no action can matter to it yet.
            Err(at) => {
                let seen = self.compact.stamp(now_ns);
                self.compact.store_first(at, &id, seg, from, seen);
                return;
            }
        };
        learn_segment(&mut flow, seg, from, now_ns);
        let confirmed = flow.ends[0].acked && flow.ends[1].acked;
        // An action matters to a flow only where some end has a MAC that
        // frames could go to (both directions seen): until then it would
        // send nothing and change nothing.
        let acted_on = !self.actions.is_empty() && flow.ends.iter().any(|e| e.mac().is_some()) && {
            let k = id.key();
            self.actions.lookup(k.ends[0], k.ends[1]).is_some()
        };
        if !confirmed && !acted_on {
            let seen = self.compact.stamp(now_ns);
            if let Some(r) = Record::encode(&id, &flow, false, seen) {
                self.compact.store(at, r);
                return;
            }
        }
        // Into the full table: confirmed, acted on, or MACs that disagree.
        self.compact.clear(at);
        let tier = if confirmed { Tier::Confirmed } else { Tier::Unconfirmed };
        let slot = self.flows.insert_in(tier, hash, id, flow);
        self.enforce(now_ns, seg, slot, from, out);
    }

    /// What an action covering the flow at `slot` sends for `seg`.
    fn enforce(&mut self, now_ns: u64, seg: &Segment, slot: Slot, from: usize, out: &mut Vec<Injection>) {
        let to = 1 - from;
        if self.actions.is_empty() {
            return;
        }
        let Some(position) = self.action_at(slot) else {
            return;
        };
        let key = self.flows.key(slot).key();
        let action = *self.actions.get(position);
        let confirmed = self.flows.tier(slot) == Tier::Confirmed;
        let (own_mac, ip_id, bucket) = (self.own_mac, &mut self.ip_id, &mut self.bucket);
        let mut tx = Sender { own_mac, ip_id, bucket, now_ns };
        let flow = self.flows.entry_mut(slot).1;
        if confirmed && flow.matched_by != Some(action.id) {
            flow.matched_by = Some(action.id);
            self.matched.push(Matched { action: action.id, ends: key.ends });
        }
        if flow.rsts >= MAX_RSTS_PER_FLOW {
            return;
        }
        let handshake = seg.has(SYN) && seg.has(ACK);
        if seg.has(SYN) && !seg.has(ACK) {
            // A bare SYN: the answer (SYN-ACK) is where both numbers show.
            return;
        }
        let stats = self.stats.entry(action.id).or_default();
        let reason = if handshake { Reason::RefuseHandshake } else { Reason::Reset };
        let mut n = 0;
        // To the sender of this segment: at the ack it just sent.
        if seg.has(ACK) {
            if let Some(o) = rst(flow, &key, from, seg.ack, 0, RST, &mut tx, stats) {
                out.push(Injection { action: action.id, reason, segment: o });
                n += 1;
            }
        }
        // To the receiver: where this segment ends. For a SYN-ACK the
        // receiver is still in SYN_SENT and takes only a RST|ACK that
        // acknowledges the SYN-ACK.
        let (flags, ack) = if handshake { (RST | ACK, seg.end_seq()) } else { (RST, 0) };
        let seq = if handshake { seg.ack } else { seg.end_seq() };
        if let Some(o) = rst(flow, &key, to, seq, ack, flags, &mut tx, stats) {
            out.push(Injection { action: action.id, reason, segment: o });
            n += 1;
        }
        stats.resets_sent += n as u64;
        flow.rsts += n;
        if flow.ends.iter().all(|e| e.last_rst.is_some()) && flow.reset_by != Some(action.id) {
            flow.reset_by = Some(action.id);
            if handshake {
                stats.connections_refused += 1;
            } else {
                stats.connections_reset += 1;
            }
        }
    }

    /// The position of the action covering the flow at `slot`: looked up
    /// once per flow and generation of the set, remembered in the flow.
    fn action_at(&mut self, slot: Slot) -> Option<u32> {
        let generation = self.actions.generation();
        let (id, flow) = self.flows.entry_mut(slot);
        if flow.match_gen != generation {
            let key = id.key();
            flow.cached = self.actions.lookup(key.ends[0], key.ends[1]).unwrap_or(NO_ACTION);
            flow.match_gen = generation;
        }
        (flow.cached != NO_ACTION).then_some(flow.cached)
    }

    /// Sends each end whose MAC we are sure of an ACK far outside its
    /// window: it answers with a duplicate ACK carrying its numbers, which
    /// `observe` turns into exact resets. Queues the flow to be probed
    /// again if it stays quiet.
    fn probe(&mut self, now_ns: u64, slot: Slot, action: u64, out: &mut Vec<Injection>) {
        let id = self.flows.id(slot).expect("a live slot");
        let (own_mac, ip_id, bucket) = (self.own_mac, &mut self.ip_id, &mut self.bucket);
        let mut tx = Sender { own_mac, ip_id, bucket, now_ns };
        let (key, flow) = self.flows.entry_mut(slot);
        let key = key.key();
        flow.probed_at_ns = Some(now_ns);
        let stats = self.stats.entry(action).or_default();
        for to in 0..2 {
            let Some(mac) = flow.ends[to].mac() else {
                continue; // nowhere sure to send it
            };
            // Far from what the end expects: it drops the probe and answers
            // with an ACK carrying its snd_nxt and rcv_nxt.
            let seq = flow.ends[to].rcv_nxt.unwrap_or(0).wrapping_add(PROBE_OFFSET);
            let ack = flow.ends[1 - to].rcv_nxt.unwrap_or(0);
            let Some(segment) = tx.frame(&key, to, mac, seq, ack, ACK, stats) else {
                continue;
            };
            flow.ends[to].last_probe = Some((seq, ack));
            out.push(Injection { action, reason: Reason::Probe, segment });
            stats.probes_sent += 1;
        }
        if !flow.probe_queued {
            flow.probe_queued = true;
            self.reprobe.push_back((slot, id, now_ns + REPROBE_NS));
        }
    }

    /// Entries of the flow table touched so far (tests: the work per call).
    #[cfg(test)]
    fn work(&self) -> u64 {
        self.flows.work.get()
    }
}

/// Our own probe, seen by the capture; or a frame from our MAC for an end
/// whose frames come from another one (ours, or forged): neither is the
/// end's traffic (the caller checks that the frame is from our MAC).
fn ours(flow: &Flow, seg: &Segment, from: usize, own_mac: [u8; 6]) -> bool {
    flow.ends[1 - from].last_probe == Some((seg.seq, seg.ack)) || flow.ends[from].src_mac.is_some_and(|m| m != own_mac)
}

/// What a segment (not a RST) from end `from` teaches about its flow.
fn learn_segment(flow: &mut Flow, seg: &Segment, from: usize, now_ns: u64) {
    let to = 1 - from;
    flow.last_seen_ns = now_ns;
    if seg.has(SYN) {
        // A new connection on this 4-tuple starts from new numbers
        // (which may be "before" the old ones): forget the old ones.
        if seg.has(ACK) {
            let sender = &mut flow.ends[from];
            (sender.rcv_nxt, sender.last_rst, sender.last_probe, sender.acked) = (None, None, None, false);
            flow.ends[to].rcv_nxt = None;
        } else {
            // The opening SYN: a connection the actions have not met,
            // whose MACs are learnt anew.
            flow.ends = [End::default(); 2];
            flow.reset_by = None;
            flow.rsts = 0;
            flow.matched_by = None;
        }
    }
    let sender = &mut flow.ends[from];
    learn(&mut sender.src_mac, &mut sender.mac_conflict, seg.src_mac);
    if seg.has(ACK) {
        advance(&mut sender.rcv_nxt, seg.ack);
        sender.acked |= !seg.has(SYN);
    }
    let receiver = &mut flow.ends[to];
    learn(&mut receiver.addressed_mac, &mut receiver.mac_conflict, seg.dst_mac);
    advance(&mut receiver.rcv_nxt, seg.end_seq());
}

/// Asks for the cache line at `p` ahead of a read (nothing where the
/// architecture has no such hint here). Never faults, whatever `p` is.
#[inline]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing and cannot fault.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

fn advance(slot: &mut Option<u32>, value: u32) {
    match slot {
        Some(v) if !seq_after(value, *v) => {}
        _ => *slot = Some(value),
    }
}

/// A RST to end `to` of `key`'s flow (from its peer) at `seq`, unless its
/// MAC is unsure, the same one went out less than RESEND_NS ago, or the
/// rate limit says no.
#[allow(clippy::too_many_arguments)]
fn rst(flow: &mut Flow, key: &FlowKey, to: usize, seq: u32, ack: u32, flags: u8, tx: &mut Sender, stats: &mut ActionStats) -> Option<Outgoing> {
    let end = &mut flow.ends[to];
    let mac = end.mac()?;
    if let Some((s, t)) = end.last_rst {
        if s == seq && tx.now_ns.saturating_sub(t) < RESEND_NS {
            return None;
        }
    }
    let o = tx.frame(key, to, mac, seq, ack, flags, stats)?;
    end.last_rst = Some((seq, tx.now_ns));
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcpseg::{FIN, PSH};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    use ossensor_host::alloc_count::{allocations_on_this_thread, Counting};

    /// Counts allocations, for the test that observe allocates nothing.
    #[global_allocator]
    static ALLOC: Counting = Counting;

    const SENSOR: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
    const CLI_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const SRV_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn cli() -> (IpAddr, u16) {
        (Ipv4Addr::new(198, 19, 173, 1).into(), 40000)
    }
    fn srv() -> (IpAddr, u16) {
        (Ipv4Addr::new(198, 19, 173, 2).into(), 7000)
    }

    fn seg(from_client: bool, seq: u32, ack: u32, flags: u8, len: u32) -> Segment {
        let (src, dst, sm, dm) = if from_client { (cli(), srv(), CLI_MAC, SRV_MAC) } else { (srv(), cli(), SRV_MAC, CLI_MAC) };
        Segment { src_mac: sm, dst_mac: dm, vlan: None, src, dst, seq, ack, flags, len }
    }

    fn block_port(id: u64, until_ns: u64) -> Action {
        Action { id, target: Target::Block { a: Endpoint { ip: srv().0, port: Some(7000) }, b: Endpoint { ip: cli().0, port: None } }, until_ns }
    }

    /// Client ISN 1000, server ISN 5000, then 10 bytes each way.
    fn established(e: &mut ActionEnforcer, out: &mut Vec<Injection>) {
        e.observe(1, &seg(true, 1000, 0, SYN, 0), out);
        e.observe(2, &seg(false, 5000, 1001, SYN | ACK, 0), out);
        e.observe(3, &seg(true, 1001, 5001, ACK, 0), out);
        e.observe(4, &seg(true, 1001, 5001, ACK | PSH, 10), out);
        e.observe(5, &seg(false, 5001, 1011, ACK | PSH, 10), out);
    }

    fn find(out: &[Injection], to: (IpAddr, u16)) -> Vec<Outgoing> {
        out.iter().map(|i| i.segment).filter(|s| s.dst == to).collect()
    }

    #[test]
    fn nothing_is_sent_without_an_action() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        assert!(out.is_empty());
        assert_eq!(e.flows(), 1);
    }

    #[test]
    fn a_busy_connection_is_reset_at_both_ends_at_the_exact_numbers() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, 1_000_000_000), &mut out).unwrap();
        out.clear(); // the first resets and the probes; tested below
                     // The client sends 5 more bytes: seq 1011, acking the server's 5011.
        e.observe(10 + RESEND_NS, &seg(true, 1011, 5011, ACK | PSH, 5), &mut out);
        let to_client = find(&out, cli());
        let to_server = find(&out, srv());
        assert_eq!(to_client.len(), 1);
        assert_eq!(to_server.len(), 1);
        assert_eq!((to_client[0].seq, to_client[0].flags), (5011, RST), "the client expects the server's 5011 next");
        assert_eq!((to_server[0].seq, to_server[0].flags), (1016, RST), "the server expects 1011 + 5");
        assert_eq!((to_client[0].src, to_client[0].dst_mac, to_client[0].src_mac), (srv(), CLI_MAC, SENSOR));
        assert_eq!((to_server[0].src, to_server[0].dst_mac), (cli(), SRV_MAC));
        let st = e.stats()[&1];
        assert_eq!((st.connections_reset, st.resets_sent, st.probes_sent), (1, 4, 2), "{st:?}");
    }

    #[test]
    fn a_quiet_connection_is_probed_and_killed_from_the_answer() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, 1_000_000_000), &mut out).unwrap();
        let mut resets: Vec<_> = out.iter().filter(|i| i.reason == Reason::Reset).map(|i| (i.segment.dst, i.segment.seq)).collect();
        resets.sort();
        let mut want = vec![(cli(), 5011), (srv(), 1011)];
        want.sort();
        assert_eq!(resets, want, "at once, at the numbers last seen");
        let probes: Vec<_> = out.iter().filter(|i| i.reason == Reason::Probe).map(|i| i.segment).collect();
        assert_eq!(probes.len(), 2, "and one probe to each end");
        assert!(probes.iter().all(|p| p.flags == ACK));
        let probe_to_server = *probes.iter().find(|p| p.dst == srv()).unwrap();
        assert!(seq_after(probe_to_server.seq.wrapping_sub(1011), 1 << 20), "far outside the server's window");
        // The capture shows our own probe: it must not count as traffic.
        out.clear();
        let own = Segment {
            src_mac: SENSOR,
            dst_mac: SRV_MAC,
            vlan: None,
            src: cli(),
            dst: srv(),
            seq: probe_to_server.seq,
            ack: probe_to_server.ack,
            flags: ACK,
            len: 0,
        };
        e.observe(11, &own, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The server answers with a duplicate ACK: seq 5011, ack 1011. The
        // same resets again are not sent within RESEND_NS; later they are.
        e.observe(12 + RESEND_NS, &seg(false, 5011, 1011, ACK, 0), &mut out);
        assert_eq!(find(&out, srv())[0].seq, 1011);
        assert_eq!(find(&out, cli())[0].seq, 5011);
    }

    #[test]
    fn a_new_connection_is_refused_at_the_syn_ack() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        e.apply(0, block_port(7, 1_000_000_000), &mut out).unwrap();
        assert!(out.is_empty());
        e.observe(1, &seg(true, 9000, 0, SYN, 0), &mut out);
        assert!(out.is_empty(), "nothing to learn from a bare SYN");
        e.observe(2, &seg(false, 3000, 9001, SYN | ACK, 0), &mut out);
        let to_server = find(&out, srv());
        let to_client = find(&out, cli());
        assert_eq!((to_server[0].seq, to_server[0].flags), (9001, RST), "responder: at the ack of its SYN-ACK");
        assert_eq!((to_client[0].seq, to_client[0].ack, to_client[0].flags), (9001, 3001, RST | ACK), "initiator in SYN_SENT");
        assert_eq!(e.stats()[&7].connections_refused, 1);
    }

    #[test]
    fn unrelated_connections_are_untouched() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        e.apply(0, block_port(1, 1_000_000_000), &mut out).unwrap();
        let other: (IpAddr, u16) = (Ipv4Addr::new(198, 19, 173, 2).into(), 22);
        let s = Segment { src_mac: CLI_MAC, dst_mac: SRV_MAC, vlan: None, src: cli(), dst: other, seq: 1, ack: 1, flags: ACK | PSH, len: 5 };
        e.observe(1, &s, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn resets_stop_when_the_action_expires_or_is_cancelled() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, 100), &mut out).unwrap();
        out.clear();
        assert_eq!(e.tick(100, &mut out), vec![1]);
        e.observe(101, &seg(true, 1011, 5011, ACK | PSH, 5), &mut out);
        assert!(out.is_empty(), "expired");
        e.apply(200, block_port(2, 1_000_000_000), &mut out).unwrap();
        assert!(e.cancel(2));
        assert!(!e.cancel(2));
        out.clear();
        e.observe(201, &seg(true, 1016, 5011, ACK | PSH, 5), &mut out);
        assert!(out.is_empty(), "cancelled");
    }

    #[test]
    fn a_repeated_trigger_does_not_repeat_the_same_reset_at_once() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
        out.clear();
        let s = seg(true, 1011, 5011, ACK, 0);
        e.observe(20, &s, &mut out);
        assert!(out.is_empty(), "the numbers of the resets sent at apply: not again so soon");
        e.observe(20 + RESEND_NS, &s, &mut out);
        assert_eq!(out.len(), 2, "resent later (the first may have been lost)");
        e.observe(21 + RESEND_NS, &s, &mut out);
        assert_eq!(out.len(), 2, "but not twice in a row");
    }

    #[test]
    fn a_fin_counts_in_the_expected_number() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
        out.clear();
        e.observe(20, &seg(false, 5011, 1011, ACK | FIN, 0), &mut out);
        assert_eq!(find(&out, cli())[0].seq, 5012, "the client expects the FIN's successor");
        assert!(find(&out, srv()).is_empty(), "1011 went to the server at apply");
    }

    #[test]
    fn covered_flows_are_reported_once_per_action() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
        let m: Vec<Matched> = e.take_matched().collect();
        assert_eq!(m, vec![Matched { action: 1, ends: [cli(), srv()] }]);
        e.observe(20, &seg(true, 1011, 5011, ACK, 0), &mut out);
        assert_eq!(e.take_matched().count(), 0, "already reported");
        // A new connection on the same 4-tuple is reported again.
        e.observe(30, &seg(true, 90, 0, SYN, 0), &mut out);
        e.observe(31, &seg(false, 70, 91, SYN | ACK, 0), &mut out);
        assert_eq!(e.take_matched().count(), 1);
    }

    /// Segments one way only (bare ACKs from the quarantined host, spoofed
    /// or not, to a port nobody answers from) are never reported for a
    /// socket destroy; a connection whose ends both acknowledged is.
    #[test]
    fn only_confirmed_flows_are_reported_for_a_destroy() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        e.apply(0, Action { id: 1, target: Target::Quarantine { host: cli().0 }, until_ns: u64::MAX }, &mut out).unwrap();
        for p in 0..50u16 {
            let mut s = seg(true, 7, 9, ACK, 0);
            s.src.1 = 20000 + p;
            e.observe(p as u64 + 1, &s, &mut out);
        }
        assert_eq!(e.take_matched().count(), 0, "no flow confirmed, nothing to destroy");
        established(&mut e, &mut out);
        e.observe(100, &seg(true, 1011, 5011, ACK, 0), &mut out);
        assert_eq!(e.take_matched().collect::<Vec<_>>(), vec![Matched { action: 1, ends: [cli(), srv()] }]);
    }

    #[test]
    fn a_reset_flow_is_left_alone_by_later_actions_and_forgotten() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
        assert!(!out.is_empty());
        // Our reset to the server, seen by the capture.
        let mut ours = seg(true, 1011, 0, RST, 0);
        ours.src_mac = SENSOR;
        e.observe(11, &ours, &mut out);
        out.clear();
        e.apply(20, block_port(2, u64::MAX), &mut out).unwrap();
        assert!(out.is_empty(), "a flow that ended is not reset or probed again: {out:?}");
        e.tick(11 + CLOSED_KEEP_NS, &mut out);
        assert_eq!(e.flows(), 0);
        // But a flow that goes on after a reset is live again.
        established(&mut e, &mut out);
        e.observe(30, &ours, &mut out);
        e.observe(31, &seg(false, 5011, 1011, ACK, 0), &mut out);
        out.clear();
        e.apply(40, block_port(3, u64::MAX), &mut out).unwrap();
        assert!(!out.is_empty());
    }

    #[test]
    fn the_flow_table_is_bounded() {
        let mut e = ActionEnforcer::new(SENSOR, 10, [7, 11]);
        let mut out = Vec::new();
        for p in 0..100u16 {
            // One end only: never confirmed.
            let mut s = seg(true, 1, 1, ACK, 0);
            s.src.1 = 10000 + p;
            e.observe(p as u64, &s, &mut out);
            // Both ends acknowledge: a connection.
            let (mut c, mut r) = (seg(true, 1, 1, ACK, 0), seg(false, 1, 1, ACK, 0));
            c.src.1 = 20000 + p;
            r.dst.1 = 20000 + p;
            e.observe(p as u64, &c, &mut out);
            e.observe(p as u64, &r, &mut out);
        }
        assert_eq!(e.confirmed_flows(), 10);
        assert!(e.flows() - e.confirmed_flows() <= 2, "and a quarter as many unconfirmed flows");
        e.flows.check();
    }

    /// A flow with a random client address and port, to `srv()`.
    fn flood_segment(x: &mut u64, flags: u8) -> Segment {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let r = *x;
        let ip = Ipv4Addr::new(198, 18, (r >> 8) as u8, r as u8);
        let mut s = seg(true, (r >> 16) as u32, (r >> 40) as u32, flags, 0);
        s.src = (ip.into(), (r >> 24) as u16 | 1024);
        s.src_mac = [2, 0, 0, 0, 0, 0x66];
        s
    }

    /// The work of `observe` and `tick` does not grow with the table:
    /// entries touched (index comparisons, list links) are counted while
    /// 500,000 random 4-tuples go into full tables, with no action, then
    /// an unrelated one, then one covering every flood flow. The table of
    /// the first version scanned every entry for each new 4-tuple once
    /// full: 65,536 per packet here.
    #[test]
    fn observe_and_tick_touch_a_bounded_number_of_entries() {
        let mut e = ActionEnforcer::new(SENSOR, 65_536, [7, 11]);
        e.set_inject_rate(1_000, 10);
        let mut out = Vec::new();
        // 65,536 connections (both ends acknowledge) fill the confirmed tier.
        for i in 0..65_536u32 {
            let (mut c, mut r) = (seg(true, 1, 1, ACK, 0), seg(false, 1, 1, ACK, 0));
            c.src = (Ipv4Addr::from(0xc613_0000 | i).into(), 40000);
            r.dst = c.src;
            e.observe(1, &c, &mut out);
            e.observe(1, &r, &mut out);
        }
        assert_eq!(e.confirmed_flows(), 65_536);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let (mut worst_observe, mut worst_tick, mut allocations) = (0, 0, 0);
        for i in 0..500_000u64 {
            let now = 1_000_000 + i * 50_000; // 20,000 new 4-tuples a second
            if i == 100_000 {
                let unrelated = Action { id: 1, target: Target::Quarantine { host: Ipv4Addr::new(203, 0, 113, 9).into() }, until_ns: u64::MAX };
                e.apply(now, unrelated, &mut out).unwrap();
            }
            if i == 300_000 {
                e.apply(now, Action { id: 2, target: Target::Quarantine { host: srv().0 }, until_ns: u64::MAX }, &mut out).unwrap();
            }
            let s = flood_segment(&mut x, if i % 3 == 0 { SYN } else { ACK });
            let (before, allocated) = (e.work(), allocations_on_this_thread());
            e.observe(now, &s, &mut out);
            worst_observe = worst_observe.max(e.work() - before);
            if i < 300_000 {
                allocations += allocations_on_this_thread() - allocated;
            }
            out.clear();
            if i % 1_000 == 0 {
                let before = e.work();
                e.tick(now, &mut out);
                worst_tick = worst_tick.max(e.work() - before);
                out.clear();
            }
        }
        // Then every flow expires at once: a tick still does a bounded part.
        let (before, flows) = (e.work(), e.flows());
        e.tick(u64::MAX / 2, &mut out);
        worst_tick = worst_tick.max(e.work() - before);
        // Three places: connections, unconfirmed flows the quarantine acted
        // on (moved to the full table when it came), the compact table.
        assert_eq!(flows - e.flows(), 3 * EXPIRE_PER_TICK, "a bounded share of each went; the rest waits for the next ticks");
        e.flows.check();
        assert!(worst_observe <= 24, "observe touched {worst_observe} entries at most");
        assert_eq!(allocations, 0, "observe allocated (with no action, or an unrelated one)");
        let tick_bound = 4 * (EXPIRE_PER_TICK as u64 + 1) * 8 + REPROBE_PER_TICK as u64 * 16;
        assert!(worst_tick <= tick_bound, "tick touched {worst_tick} entries (bound {tick_bound})");
        println!("entries touched at most: {worst_observe} per observe, {worst_tick} per tick");
    }

    /// What one enforcer (a worker's: MAX_FLOWS 65,536) reserves, all of
    /// it at start: the figure docs/protocol.md 1.11 gives.
    #[test]
    fn the_memory_of_an_enforcer_is_bounded() {
        let e = ActionEnforcer::new(SENSOR, 65_536, [7, 11]);
        let (full, compact) = (e.flows.reserved_bytes(), e.compact.capacity() * std::mem::size_of::<Record>());
        println!(
            "full table: {} bytes per flow ({} confirmed, {} unconfirmed), {} bytes in all with its indexes; compact table: {} records, {} bytes",
            FlowTable::<FlowId, Flow, Sip13>::entry_size(),
            65_536,
            e.compact.capacity(),
            full,
            e.compact.capacity(),
            compact
        );
        assert_eq!(e.compact.capacity(), 16_384);
        assert!(full + compact < 32 << 20, "{} MiB", (full + compact) >> 20);
    }

    /// A connection that went quiet before the action lives through a
    /// flood of 200,000 new 4-tuples (SYNs, and ACKs answered by RSTs, as
    /// from random spoofed sources) and is still reset at its exact
    /// numbers when the action comes.
    #[test]
    fn a_confirmed_idle_flow_survives_a_flood_and_is_reset_exactly() {
        let mut e = ActionEnforcer::new(SENSOR, 65_536, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        assert_eq!(e.confirmed_flows(), 1);
        let mut x = 42u64;
        for i in 0..200_000u64 {
            let now = 10 + i * 50_000;
            let s = flood_segment(&mut x, if i % 2 == 0 { SYN } else { ACK });
            e.observe(now, &s, &mut out);
            if s.has(ACK) {
                // The server answers an unexpected ACK with a RST.
                let mut r = seg(false, s.ack, 0, RST, 0);
                r.dst = s.src;
                e.observe(now, &r, &mut out);
            }
            if i % 1000 == 0 {
                e.tick(now, &mut out);
            }
        }
        assert!(out.is_empty());
        assert_eq!(e.confirmed_flows(), 1, "no flood flow confirmed, the connection kept");
        assert!(e.flows() <= 1 + 16_384);
        let now = 10 + 200_000 * 50_000;
        e.apply(now, Action { id: 9, target: Target::Quarantine { host: cli().0 }, until_ns: u64::MAX }, &mut out).unwrap();
        let mut resets: Vec<_> = out.iter().filter(|i| i.reason == Reason::Reset).map(|i| (i.segment.dst, i.segment.seq, i.segment.dst_mac)).collect();
        resets.sort();
        assert_eq!(resets, vec![(cli(), 5011, CLI_MAC), (srv(), 1011, SRV_MAC)], "exact, at the numbers last seen");
        assert_eq!(out.iter().filter(|i| i.reason == Reason::Probe).count(), 2);
    }

    const ATTACKER: [u8; 6] = [2, 0, 0, 0, 0, 0x66];

    /// One forged frame with the client's addresses and another source
    /// MAC (or a forged frame to the client at another destination MAC):
    /// the enforcer sends nothing to the client at all, rather than to the
    /// forger's MAC. The server, whose MACs agree, is still reset exactly.
    #[test]
    fn a_spoofed_mac_makes_the_enforcer_send_nothing_to_that_end() {
        for forged in [Segment { src_mac: ATTACKER, ..seg(true, 1011, 5011, ACK, 0) }, Segment { dst_mac: ATTACKER, ..seg(false, 5011, 1011, ACK, 0) }] {
            let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
            let mut out = Vec::new();
            established(&mut e, &mut out);
            e.observe(6, &forged, &mut out);
            e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
            e.observe(10 + RESEND_NS, &seg(true, 1011, 5011, ACK | PSH, 5), &mut out);
            e.tick(10 + REPROBE_NS, &mut out);
            assert!(out.iter().all(|i| i.segment.dst_mac != ATTACKER), "{out:?}");
            assert!(find(&out, cli()).is_empty(), "nothing to the client: {out:?}");
            let to_server = find(&out, srv());
            assert!(to_server.iter().any(|o| o.flags == RST && o.seq == 1016), "the server reset exactly: {to_server:?}");
            assert!(to_server.iter().all(|o| o.dst_mac == SRV_MAC));
            // A new connection on the 4-tuple learns its MACs anew.
            out.clear();
            e.observe(20 + RESEND_NS, &seg(true, 9000, 0, SYN, 0), &mut out);
            e.observe(21 + RESEND_NS, &seg(false, 3000, 9001, SYN | ACK, 0), &mut out);
            assert_eq!(find(&out, cli()).len(), 1, "{out:?}");
            assert_eq!(find(&out, cli())[0].dst_mac, CLI_MAC);
        }
    }

    /// A host behind a router: its frames come from the router's MAC and
    /// frames to it go to the router's MAC, so resets go there. Where the
    /// two differ (asymmetric routing), the enforcer cannot be sure and
    /// sends that end nothing.
    #[test]
    fn resets_go_to_the_mac_both_directions_agree_on() {
        const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
        const ROUTER2: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
        for (inbound, outbound, sent) in [(ROUTER, ROUTER, true), (ROUTER, ROUTER2, false)] {
            let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
            let mut out = Vec::new();
            let from_client = |seq, ack, flags, len| Segment { src_mac: inbound, ..seg(true, seq, ack, flags, len) };
            let to_client = |seq, ack, flags, len| Segment { dst_mac: outbound, ..seg(false, seq, ack, flags, len) };
            e.observe(1, &from_client(1000, 0, SYN, 0), &mut out);
            e.observe(2, &to_client(5000, 1001, SYN | ACK, 0), &mut out);
            e.observe(3, &from_client(1001, 5001, ACK, 0), &mut out);
            e.observe(4, &to_client(5001, 1001, ACK | PSH, 10), &mut out);
            e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
            let to_cli = find(&out, cli());
            if sent {
                assert_eq!(to_cli.iter().map(|o| (o.flags, o.dst_mac)).collect::<Vec<_>>(), vec![(RST, ROUTER), (ACK, ROUTER)]);
            } else {
                assert!(to_cli.is_empty(), "{to_cli:?}");
            }
            assert_eq!(find(&out, srv()).len(), 2, "the server: a reset and a probe");
        }
    }

    /// A frame from the sensor's own MAC for an end whose frames come from
    /// another MAC (an earlier probe the capture shows late, or a forgery)
    /// teaches neither numbers nor MACs: the end is still reset exactly.
    #[test]
    fn frames_from_our_own_mac_do_not_count_as_an_ends_traffic() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        let late = Segment { src_mac: SENSOR, ..seg(true, 1011 + (1 << 30), 5011, ACK, 0) };
        e.observe(6, &late, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out).unwrap();
        let resets: Vec<_> = out.iter().filter(|i| i.reason == Reason::Reset).map(|i| (i.segment.dst, i.segment.seq, i.segment.dst_mac)).collect();
        assert_eq!(resets, vec![(cli(), 5011, CLI_MAC), (srv(), 1011, SRV_MAC)]);
    }

    #[test]
    fn actions_beyond_the_bound_are_refused() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        let mut out = Vec::new();
        let quarantine = |id: u64| Action { id, target: Target::Quarantine { host: Ipv4Addr::from(id as u32).into() }, until_ns: u64::MAX };
        for id in 0..MAX_ACTIONS as u64 {
            e.apply(0, quarantine(id), &mut out).unwrap();
        }
        assert_eq!(e.apply(0, quarantine(5_000), &mut out), Err(Refused::TooManyActions));
        assert_eq!(e.actions().len(), MAX_ACTIONS);
        e.apply(0, Action { until_ns: 99, ..quarantine(7) }, &mut out).expect("replacing one is not adding one");
        assert!(e.cancel(3));
        e.apply(0, quarantine(5_000), &mut out).expect("room again");
    }

    /// Frames beyond the rate limit are not built, and are counted.
    #[test]
    fn injection_is_rate_limited() {
        let mut e = ActionEnforcer::new(SENSOR, 100, [7, 11]);
        e.set_inject_rate(10, 4);
        let mut out = Vec::new();
        for p in 0..5u16 {
            let (mut c, mut r) = (seg(true, 1, 1, ACK, 0), seg(false, 1, 1, ACK, 0));
            c.src.1 = 40000 + p;
            r.dst.1 = 40000 + p;
            e.observe(1, &c, &mut out);
            e.observe(1, &r, &mut out);
        }
        // 5 flows: 10 resets and 10 probes wanted, a burst of 4 allowed.
        e.apply(2, Action { id: 1, target: Target::Quarantine { host: srv().0 }, until_ns: u64::MAX }, &mut out).unwrap();
        assert_eq!(out.len(), 4);
        let st = e.stats()[&1];
        assert_eq!((st.resets_sent + st.probes_sent, st.frames_suppressed), (4, 16), "{st:?}");
        // A tenth of a second later: one more token.
        out.clear();
        let mut c = seg(true, 1, 1, ACK, 0);
        c.src.1 = 40004;
        e.observe(2 + 100_000_000, &c, &mut out);
        assert_eq!(out.len(), 1);
    }

    /// The action found for a flow through the index and the per-flow
    /// cache is always the one a walk of the actions in order finds,
    /// whatever was applied, cancelled or expired in between.
    /// A flow in the compact table keeps no answer: it is looked up in the
    /// index each time.
    fn covering(e: &mut ActionEnforcer, now_ns: u64, seg: &Segment) -> Option<u64> {
        let (id, _) = FlowId::of(seg);
        let hash = e.flows.hash(&id);
        let position = match e.flows.find(hash, &id) {
            Some(slot) => e.action_at(slot),
            None => {
                e.compact.find(e.compact.set_of(hash), &id, now_ns).ok()?;
                let key = id.key();
                e.actions.lookup(key.ends[0], key.ends[1])
            }
        };
        position.map(|p| e.actions.get(p).id)
    }

    #[test]
    fn quarantine_matches_every_connection_of_the_host() {
        let t = Target::Quarantine { host: srv().0 };
        assert!(t.matches(cli(), srv()));
        assert!(t.matches(srv(), cli()));
        assert!(!t.matches(cli(), (Ipv4Addr::new(198, 19, 173, 9).into(), 80)));
    }

    proptest! {
        #[test]
        fn the_cached_match_is_the_linear_match(steps in proptest::collection::vec(
            (0u8..6, 0u64..6, 0u8..4, 0u8..4, proptest::option::of(0u16..3), any::<bool>(), 0u16..3), 1..80)) {
            let ip = |i: u8| IpAddr::from(Ipv4Addr::new(198, 18, 1, i));
            let mut e = ActionEnforcer::new(SENSOR, 1000, [7, 11]);
            let mut out = Vec::new();
            for (i, (kind, id, a, b, port, quarantine, p)) in steps.into_iter().enumerate() {
                let now = i as u64 * 1000;
                match kind {
                    0 => { e.cancel(id); }
                    1 => { e.tick(now, &mut out); }
                    2 | 3 => {
                        let target = if quarantine {
                            Target::Quarantine { host: ip(a) }
                        } else {
                            Target::Block { a: Endpoint { ip: ip(a), port }, b: Endpoint { ip: ip(b), port: None } }
                        };
                        e.apply(now, Action { id, target, until_ns: now + 3000 + id * 1000 }, &mut out).unwrap();
                    }
                    _ => {
                        let mut s = seg(kind == 4, 1, 1, ACK, 0);
                        let (x, y) = ((ip(a), 7000 + p), (ip(b), 40000));
                        (s.src, s.dst) = if kind == 4 { (y, x) } else { (x, y) };
                        e.observe(now, &s, &mut out);
                        let linear = e.actions().iter().find(|act| act.target.matches(s.src, s.dst)).map(|act| act.id);
                        prop_assert_eq!(covering(&mut e, now, &s), linear);
                        for inj in out.drain(..) {
                            prop_assert_eq!(Some(inj.action), linear);
                        }
                    }
                }
                out.clear();
            }
        }

        /// Segments observed a block at a time (`observe_batch`, or
        /// `prepare` then `observe_prepared`) give what observing them one
        /// by one gives. Two flows at most, which a set of the compact
        /// table always holds both of (the enforcers' hash keys differ).
        #[test]
        fn batched_and_prepared_segments_are_observed_as_one_by_one(segs in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), any::<u32>(), 0u8..0x20, 0u32..2000, any::<bool>()), 1..80), action_at in 0usize..80) {
            let mut one = ActionEnforcer::new(SENSOR, 1000, [7, 11]);
            let mut batched = ActionEnforcer::new(SENSOR, 1000, [7, 11]);
            let mut prepared = ActionEnforcer::new(SENSOR, 1000, [7, 11]);
            let (mut o1, mut o2, mut o3) = (Vec::new(), Vec::new(), Vec::new());
            let segs: Vec<(u64, Segment)> = segs.into_iter().enumerate().map(|(i, (from_client, seq, ack, flags, len, other_port))| {
                let mut s = seg(from_client, seq, ack, flags, len);
                if other_port {
                    if from_client { s.dst.1 = 7001 } else { s.src.1 = 7001 }
                }
                (i as u64 * 1000, s)
            }).collect();
            let action = block_port(1, u64::MAX);
            let (before, after) = segs.split_at(action_at.min(segs.len()));
            for part in [before, after] {
                for (now, s) in part {
                    one.observe(*now, s, &mut o1);
                }
                batched.observe_batch(part, &mut o2);
                let ready: Vec<Prepared> = part.iter().map(|(now, s)| prepared.prepare(*now, s)).collect();
                for p in &ready {
                    prepared.observe_prepared(p, &mut o3);
                }
                if part.as_ptr() == before.as_ptr() {
                    let now = before.last().map_or(0, |x| x.0);
                    for (e, out) in [(&mut one, &mut o1), (&mut batched, &mut o2), (&mut prepared, &mut o3)] {
                        e.apply(now, action, out).unwrap();
                    }
                }
            }
            prop_assert_eq!(&o1, &o2);
            prop_assert_eq!(&o1, &o3);
            prop_assert_eq!((one.flows(), one.confirmed_flows()), (batched.flows(), batched.confirmed_flows()));
            prop_assert_eq!((one.flows(), one.confirmed_flows()), (prepared.flows(), prepared.confirmed_flows()));
        }

        /// Whatever the traffic, every reset goes to an end of a matching
        /// flow at a number that end itself revealed (its ack) or that its
        /// peer's segment ends at, and never to an unrelated flow.
        #[test]
        fn resets_only_hit_matching_flows(segs in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), any::<u32>(), 0u8..0x20, 0u32..2000, 0u16..3), 1..60)) {
            let mut e = ActionEnforcer::new(SENSOR, 1000, [7, 11]);
            let mut out = Vec::new();
            e.apply(0, block_port(1, u64::MAX), &mut out).unwrap();
            for (i, (from_client, seq, ack, flags, len, port_pick)) in segs.into_iter().enumerate() {
                let mut s = seg(from_client, seq, ack, flags, len);
                let sport = [7000u16, 7001, 22][port_pick as usize];
                if from_client { s.dst.1 = sport } else { s.src.1 = sport }
                out.clear();
                e.observe(i as u64 * 1000, &s, &mut out);
                for inj in &out {
                    let o = inj.segment;
                    prop_assert!(o.flags & RST != 0);
                    prop_assert!(sport == 7000, "reset for an unrelated port {sport}");
                    let to_sender = o.dst == s.src;
                    if to_sender {
                        prop_assert_eq!(o.seq, s.ack);
                    } else {
                        prop_assert_eq!(o.dst, s.dst);
                    }
                }
            }
        }
    }
}
