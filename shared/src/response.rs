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
//! The caller feeds every TCP segment (`observe`), the actions (`apply`,
//! `cancel`) and the clock (`tick`), and sends what comes out. Nothing here
//! sends, reads a clock or allocates per segment once the table is warm.

// Used by the enforcer in the next step.
#[allow(dead_code)]
mod actions;
#[allow(dead_code)]
mod flows;
#[allow(dead_code)]
mod rate;

use crate::tcpseg::{seq_after, Outgoing, Segment, ACK, RST, SYN};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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

/// A flow, canonically ordered (lower endpoint first) so both directions
/// find the same entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    vlan: Option<u16>,
    ends: [(IpAddr, u16); 2],
}

#[derive(Debug, Clone, Copy, Default)]
struct End {
    /// Source MAC of this end's frames: where frames to it must go (the
    /// host itself or its router on this segment).
    mac: [u8; 6],
    seen_sending: bool,
    rcv_nxt: Option<u32>,
    /// The last RST sent to this end, and when: not repeated within
    /// RESEND_NS unless the expected number moved.
    last_rst: Option<(u32, u64)>,
    /// (seq, ack) of the last probe sent to this end: the capture shows our
    /// own probe, which must not count as the end's traffic.
    last_probe: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    ends: [End; 2],
    last_seen_ns: u64,
    /// Set once both ends were sent a RST under this action.
    reset_by: Option<u64>,
    probed_at_ns: Option<u64>,
    rsts: u32,
    /// The action this flow was last reported under in `matched`.
    matched_by: Option<u64>,
    /// A RST went by since its last other segment: probably over. Not
    /// reset or probed again by a new action, and forgotten soon.
    closed: bool,
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

/// A flow an action covers, once per (flow, action): the shell destroys
/// the local socket when one end is on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched {
    pub action: u64,
    pub ends: [(IpAddr, u16); 2],
}

pub struct Enforcer {
    own_mac: [u8; 6],
    matched: Vec<Matched>,
    flows: HashMap<FlowKey, Flow>,
    max_flows: usize,
    actions: Vec<Action>,
    stats: BTreeMap<u64, ActionStats>,
    ip_id: u16,
}

impl Enforcer {
    /// `own_mac`: the interface's MAC, the source of everything sent.
    pub fn new(own_mac: [u8; 6], max_flows: usize) -> Enforcer {
        Enforcer { own_mac, matched: Vec::new(), flows: HashMap::new(), max_flows, actions: Vec::new(), stats: BTreeMap::new(), ip_id: 1 }
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    pub fn stats(&self) -> &BTreeMap<u64, ActionStats> {
        &self.stats
    }

    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Flows newly covered by an action since the last call.
    pub fn take_matched(&mut self) -> std::vec::Drain<'_, Matched> {
        self.matched.drain(..)
    }

    /// Puts `action` in force (replacing one with the same id) and probes
    /// the known flows it matches, so quiet connections die too.
    pub fn apply(&mut self, now_ns: u64, action: Action, out: &mut Vec<Injection>) {
        self.actions.retain(|a| a.id != action.id);
        if action.until_ns <= now_ns {
            return;
        }
        self.actions.push(action);
        self.stats.entry(action.id).or_default();
        let keys: Vec<FlowKey> =
            self.flows.iter().filter(|(k, f)| !f.closed && action.target.matches(k.ends[0], k.ends[1])).map(|(k, _)| *k).collect();
        for key in keys {
            // Reset at once at the numbers last seen (exact unless the flow
            // moved since), and probe: if they were stale, the answers to
            // the probes give the exact ones.
            if let Some(flow) = self.flows.get_mut(&key) {
                flow.reset_by = None;
                flow.rsts = 0;
                flow.matched_by = Some(action.id);
                self.matched.push(Matched { action: action.id, ends: key.ends });
                let mut sent = 0;
                for to in 0..2 {
                    if let Some(seq) = flow.ends[to].rcv_nxt {
                        if let Some(o) = rst(flow, &key, to, seq, 0, RST, now_ns, self.own_mac, &mut self.ip_id) {
                            out.push(Injection { action: action.id, reason: Reason::Reset, segment: o });
                            sent += 1;
                        }
                    }
                }
                flow.rsts += sent;
                let stats = self.stats.entry(action.id).or_default();
                stats.resets_sent += sent as u64;
                if sent == 2 {
                    flow.reset_by = Some(action.id);
                    stats.connections_reset += 1;
                }
            }
            self.probe(now_ns, key, action.id, out);
        }
    }

    /// Ends an action early. Returns whether it was in force.
    pub fn cancel(&mut self, id: u64) -> bool {
        let before = self.actions.len();
        self.actions.retain(|a| a.id != id);
        before != self.actions.len()
    }

    /// Expires actions, re-probes matching flows that stayed quiet, and
    /// forgets idle flows. Returns the ids of the actions that expired.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Injection>) -> Vec<u64> {
        let expired: Vec<u64> = self.actions.iter().filter(|a| a.until_ns <= now_ns).map(|a| a.id).collect();
        self.actions.retain(|a| a.until_ns > now_ns);
        self.flows.retain(|_, f| {
            let quiet = now_ns.saturating_sub(f.last_seen_ns);
            quiet < FLOW_IDLE_NS && !(f.closed && quiet >= CLOSED_KEEP_NS)
        });
        let due: Vec<(FlowKey, u64)> = self
            .flows
            .iter()
            .filter(|(_, f)| !f.closed && f.reset_by.is_none() && f.probed_at_ns.is_some_and(|t| now_ns.saturating_sub(t) >= REPROBE_NS))
            .filter_map(|(k, _)| self.action_for(k).map(|a| (*k, a.id)))
            .collect();
        for (key, id) in due {
            self.probe(now_ns, key, id, out);
        }
        expired
    }

    /// Learns from one captured segment and, if an action covers its flow,
    /// says what to send.
    pub fn observe(&mut self, now_ns: u64, seg: &Segment, out: &mut Vec<Injection>) {
        let (key, from) = key_of(seg);
        // A reset (ours or an end's) teaches no numbers; it says the flow is
        // probably over.
        if seg.has(RST) {
            if let Some(f) = self.flows.get_mut(&key) {
                f.closed = true;
            }
            return;
        }
        if !self.flows.contains_key(&key) {
            if self.flows.len() >= self.max_flows {
                self.evict_oldest();
            }
            self.flows.insert(key, Flow { ends: [End::default(); 2], last_seen_ns: now_ns, reset_by: None, probed_at_ns: None, rsts: 0, matched_by: None, closed: false });
        }
        let flow = self.flows.get_mut(&key).expect("inserted above");
        let to = 1 - from;
        if flow.ends[to].last_probe == Some((seg.seq, seg.ack)) && seg.src_mac == self.own_mac {
            return; // our own probe, seen by the capture
        }
        flow.last_seen_ns = now_ns;
        flow.closed = false;
        if seg.has(SYN) {
            // A new connection on this 4-tuple starts from new numbers
            // (which may be "before" the old ones): forget the old ones.
            flow.ends[from] = End::default();
            flow.ends[to].rcv_nxt = None;
            if !seg.has(ACK) {
                // The opening SYN: a connection the actions have not met.
                flow.ends[to] = End::default();
                flow.reset_by = None;
                flow.rsts = 0;
                flow.matched_by = None;
            }
        }
        let sender = &mut flow.ends[from];
        sender.mac = seg.src_mac;
        sender.seen_sending = true;
        if seg.has(ACK) {
            advance(&mut sender.rcv_nxt, seg.ack);
        }
        advance(&mut flow.ends[to].rcv_nxt, seg.end_seq());

        let Some(action) = self.action_for(&key).copied() else {
            return;
        };
        let flow = self.flows.get_mut(&key).expect("present");
        if flow.matched_by != Some(action.id) {
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
            if let Some(o) = rst(flow, &key, from, seg.ack, 0, RST, now_ns, self.own_mac, &mut self.ip_id) {
                out.push(Injection { action: action.id, reason, segment: o });
                n += 1;
            }
        }
        // To the receiver: where this segment ends. For a SYN-ACK the
        // receiver is still in SYN_SENT and takes only a RST|ACK that
        // acknowledges the SYN-ACK.
        let (flags, ack) = if handshake { (RST | ACK, seg.end_seq()) } else { (RST, 0) };
        let seq = if handshake { seg.ack } else { seg.end_seq() };
        if let Some(o) = rst(flow, &key, to, seq, ack, flags, now_ns, self.own_mac, &mut self.ip_id) {
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

    fn action_for(&self, key: &FlowKey) -> Option<&Action> {
        self.actions.iter().find(|a| a.target.matches(key.ends[0], key.ends[1]))
    }

    /// Sends each end whose MAC we know an ACK far outside its window: it
    /// answers with a duplicate ACK carrying its numbers, which `observe`
    /// turns into exact resets.
    fn probe(&mut self, now_ns: u64, key: FlowKey, action: u64, out: &mut Vec<Injection>) {
        let Some(flow) = self.flows.get_mut(&key) else { return };
        flow.probed_at_ns = Some(now_ns);
        let mut probes = 0;
        for to in 0..2 {
            let from = 1 - to;
            let (target, peer) = (flow.ends[to], flow.ends[from]);
            if !target.seen_sending {
                continue; // no MAC to send it to
            }
            // Far from what the end expects: it drops the probe and answers
            // with an ACK carrying its snd_nxt and rcv_nxt.
            let seq = target.rcv_nxt.unwrap_or(0).wrapping_add(PROBE_OFFSET);
            let ack = peer.rcv_nxt.unwrap_or(0);
            self.ip_id = self.ip_id.wrapping_add(1);
            let segment = Outgoing {
                src_mac: self.own_mac,
                dst_mac: target.mac,
                vlan: key.vlan,
                src: key.ends[from],
                dst: key.ends[to],
                seq,
                ack,
                flags: ACK,
                ip_id: self.ip_id,
            };
            flow.ends[to].last_probe = Some((seq, ack));
            out.push(Injection { action, reason: Reason::Probe, segment });
            probes += 1;
        }
        self.stats.entry(action).or_default().probes_sent += probes;
    }

    fn evict_oldest(&mut self) {
        if let Some(k) = self.flows.iter().min_by_key(|(_, f)| f.last_seen_ns).map(|(k, _)| *k) {
            self.flows.remove(&k);
        }
    }
}

fn advance(slot: &mut Option<u32>, value: u32) {
    match slot {
        Some(v) if !seq_after(value, *v) => {}
        _ => *slot = Some(value),
    }
}

fn key_of(seg: &Segment) -> (FlowKey, usize) {
    if seg.src <= seg.dst {
        (FlowKey { vlan: seg.vlan, ends: [seg.src, seg.dst] }, 0)
    } else {
        (FlowKey { vlan: seg.vlan, ends: [seg.dst, seg.src] }, 1)
    }
}

/// A RST to end `to` of `key`'s flow (from its peer) at `seq`, unless the
/// same one went out less than RESEND_NS ago.
#[allow(clippy::too_many_arguments)]
fn rst(flow: &mut Flow, key: &FlowKey, to: usize, seq: u32, ack: u32, flags: u8, now_ns: u64, own_mac: [u8; 6], ip_id: &mut u16) -> Option<Outgoing> {
    let end = &mut flow.ends[to];
    if !end.seen_sending {
        return None; // no MAC to send it to
    }
    if let Some((s, t)) = end.last_rst {
        if s == seq && now_ns.saturating_sub(t) < RESEND_NS {
            return None;
        }
    }
    end.last_rst = Some((seq, now_ns));
    *ip_id = ip_id.wrapping_add(1);
    Some(Outgoing {
        src_mac: own_mac,
        dst_mac: end.mac,
        vlan: key.vlan,
        src: key.ends[1 - to],
        dst: key.ends[to],
        seq,
        ack,
        flags,
        ip_id: *ip_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcpseg::{FIN, PSH};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

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
        Action {
            id,
            target: Target::Block { a: Endpoint { ip: srv().0, port: Some(7000) }, b: Endpoint { ip: cli().0, port: None } },
            until_ns,
        }
    }

    /// Client ISN 1000, server ISN 5000, then 10 bytes each way.
    fn established(e: &mut Enforcer, out: &mut Vec<Injection>) {
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
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        assert!(out.is_empty());
        assert_eq!(e.flows(), 1);
    }

    #[test]
    fn a_busy_connection_is_reset_at_both_ends_at_the_exact_numbers() {
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, 1_000_000_000), &mut out);
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
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, 1_000_000_000), &mut out);
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
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        e.apply(0, block_port(7, 1_000_000_000), &mut out);
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
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        e.apply(0, block_port(1, 1_000_000_000), &mut out);
        let other: (IpAddr, u16) = (Ipv4Addr::new(198, 19, 173, 2).into(), 22);
        let s = Segment { src_mac: CLI_MAC, dst_mac: SRV_MAC, vlan: None, src: cli(), dst: other, seq: 1, ack: 1, flags: ACK | PSH, len: 5 };
        e.observe(1, &s, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn resets_stop_when_the_action_expires_or_is_cancelled() {
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, 100), &mut out);
        out.clear();
        assert_eq!(e.tick(100, &mut out), vec![1]);
        e.observe(101, &seg(true, 1011, 5011, ACK | PSH, 5), &mut out);
        assert!(out.is_empty(), "expired");
        e.apply(200, block_port(2, 1_000_000_000), &mut out);
        assert!(e.cancel(2));
        assert!(!e.cancel(2));
        out.clear();
        e.observe(201, &seg(true, 1016, 5011, ACK | PSH, 5), &mut out);
        assert!(out.is_empty(), "cancelled");
    }

    #[test]
    fn a_repeated_trigger_does_not_repeat_the_same_reset_at_once() {
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out);
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
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out);
        out.clear();
        e.observe(20, &seg(false, 5011, 1011, ACK | FIN, 0), &mut out);
        assert_eq!(find(&out, cli())[0].seq, 5012, "the client expects the FIN's successor");
        assert!(find(&out, srv()).is_empty(), "1011 went to the server at apply");
    }

    #[test]
    fn covered_flows_are_reported_once_per_action() {
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out);
        let m: Vec<Matched> = e.take_matched().collect();
        assert_eq!(m, vec![Matched { action: 1, ends: [cli(), srv()] }]);
        e.observe(20, &seg(true, 1011, 5011, ACK, 0), &mut out);
        assert_eq!(e.take_matched().count(), 0, "already reported");
        // A new connection on the same 4-tuple is reported again.
        e.observe(30, &seg(true, 90, 0, SYN, 0), &mut out);
        e.observe(31, &seg(false, 70, 91, SYN | ACK, 0), &mut out);
        assert_eq!(e.take_matched().count(), 1);
    }

    #[test]
    fn a_reset_flow_is_left_alone_by_later_actions_and_forgotten() {
        let mut e = Enforcer::new(SENSOR, 100);
        let mut out = Vec::new();
        established(&mut e, &mut out);
        e.apply(10, block_port(1, u64::MAX), &mut out);
        assert!(!out.is_empty());
        // Our reset to the server, seen by the capture.
        let mut ours = seg(true, 1011, 0, RST, 0);
        ours.src_mac = SENSOR;
        e.observe(11, &ours, &mut out);
        out.clear();
        e.apply(20, block_port(2, u64::MAX), &mut out);
        assert!(out.is_empty(), "a flow that ended is not reset or probed again: {out:?}");
        e.tick(11 + CLOSED_KEEP_NS, &mut out);
        assert_eq!(e.flows(), 0);
        // But a flow that goes on after a reset is live again.
        established(&mut e, &mut out);
        e.observe(30, &ours, &mut out);
        e.observe(31, &seg(false, 5011, 1011, ACK, 0), &mut out);
        out.clear();
        e.apply(40, block_port(3, u64::MAX), &mut out);
        assert!(!out.is_empty());
    }

    #[test]
    fn the_flow_table_is_bounded() {
        let mut e = Enforcer::new(SENSOR, 10);
        let mut out = Vec::new();
        for p in 0..100u16 {
            let mut s = seg(true, 1, 1, ACK, 0);
            s.src.1 = 10000 + p;
            e.observe(p as u64, &s, &mut out);
        }
        assert_eq!(e.flows(), 10);
    }

    #[test]
    fn quarantine_matches_every_connection_of_the_host() {
        let t = Target::Quarantine { host: srv().0 };
        assert!(t.matches(cli(), srv()));
        assert!(t.matches(srv(), cli()));
        assert!(!t.matches(cli(), (Ipv4Addr::new(198, 19, 173, 9).into(), 80)));
    }

    proptest! {
        /// Whatever the traffic, every reset goes to an end of a matching
        /// flow at a number that end itself revealed (its ack) or that its
        /// peer's segment ends at, and never to an unrelated flow.
        #[test]
        fn resets_only_hit_matching_flows(segs in proptest::collection::vec(
            (any::<bool>(), any::<u32>(), any::<u32>(), 0u8..0x20, 0u32..2000, 0u16..3), 1..60)) {
            let mut e = Enforcer::new(SENSOR, 1000);
            let mut out = Vec::new();
            e.apply(0, block_port(1, u64::MAX), &mut out);
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
