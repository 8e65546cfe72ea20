//! The actions in force, indexed so that finding the one that covers a
//! flow costs three map look-ups however many there are: quarantines by
//! host, blocks by the unordered pair of their addresses (then the ports of
//! that pair's blocks are checked). When several actions cover a flow, the
//! one applied first wins, as a walk of the list in order would find.
//!
//! Before any look-up, a 256-bit filter of the last bytes of the addresses
//! the actions name rules out most flows at once. Every change bumps a
//! generation number, so a flow can keep the answer it was given until the
//! set changes.

use super::{Action, Target};
use std::collections::HashMap;
use std::net::IpAddr;

/// The most actions one enforcer holds: a bound on the index and on what
/// the uplink can make a worker keep. Far above what operators use.
pub const MAX_ACTIONS: usize = 1024;

/// Why `apply` refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `MAX_ACTIONS` other actions are in force.
    TooManyActions,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooManyActions => write!(f, "{MAX_ACTIONS} actions already in force, the most one interface holds"),
        }
    }
}

impl std::error::Error for Refused {}

pub struct ActionSet {
    /// In the order they were applied: the first match wins.
    actions: Vec<Action>,
    /// Positions in `actions`, ascending.
    by_host: HashMap<IpAddr, Vec<u32>>,
    by_pair: HashMap<(IpAddr, IpAddr), Vec<u32>>,
    /// Bit n set when an address of some action ends in byte n: most
    /// flows of a flood are ruled out by it without hashing.
    last_bytes: [u64; 4],
    generation: u64,
}

fn last_byte(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    }
}

fn pair(x: IpAddr, y: IpAddr) -> (IpAddr, IpAddr) {
    if x <= y {
        (x, y)
    } else {
        (y, x)
    }
}

impl ActionSet {
    pub fn new() -> ActionSet {
        ActionSet { actions: Vec::new(), by_host: HashMap::new(), by_pair: HashMap::new(), last_bytes: [0; 4], generation: 1 }
    }

    pub fn as_slice(&self) -> &[Action] {
        &self.actions
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.actions.iter().any(|a| a.id == id)
    }

    /// Changes with every change of the set (never 0).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, position: u32) -> &Action {
        &self.actions[position as usize]
    }

    /// Adds `action` last (the caller removed any with its id and checked
    /// the bound).
    pub fn push(&mut self, action: Action) {
        debug_assert!(self.actions.len() < MAX_ACTIONS);
        self.actions.push(action);
        self.changed();
    }

    /// Removes the action with this id; whether there was one.
    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.actions.len();
        self.actions.retain(|a| a.id != id);
        let removed = self.actions.len() != before;
        if removed {
            self.changed();
        }
        removed
    }

    /// Removes the actions whose time is over; their ids.
    pub fn expire(&mut self, now_ns: u64) -> Vec<u64> {
        let expired: Vec<u64> = self.actions.iter().filter(|a| a.until_ns <= now_ns).map(|a| a.id).collect();
        if !expired.is_empty() {
            self.actions.retain(|a| a.until_ns > now_ns);
            self.changed();
        }
        expired
    }

    /// The position of the first action that covers a flow between `x`
    /// and `y`.
    pub fn lookup(&self, x: (IpAddr, u16), y: (IpAddr, u16)) -> Option<u32> {
        // Every action names the address of at least one end of a flow it
        // covers.
        if !self.may_name(x.0) && !self.may_name(y.0) {
            return None;
        }
        let mut best = u32::MAX;
        for host in [x.0, y.0] {
            if let Some(first) = self.by_host.get(&host).and_then(|v| v.first()) {
                best = best.min(*first);
            }
        }
        if let Some(blocks) = self.by_pair.get(&pair(x.0, y.0)) {
            // Ascending: the first that matches is the earliest.
            if let Some(p) = blocks.iter().take_while(|p| **p < best).find(|p| self.actions[**p as usize].target.matches(x, y)) {
                best = *p;
            }
        }
        (best != u32::MAX).then_some(best)
    }

    fn may_name(&self, ip: IpAddr) -> bool {
        let b = last_byte(ip);
        self.last_bytes[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }

    /// Rebuilds the index (at most MAX_ACTIONS entries) and starts a new
    /// generation.
    fn changed(&mut self) {
        self.by_host.clear();
        self.by_pair.clear();
        self.last_bytes = [0; 4];
        let mut name = |ip: IpAddr| {
            let b = last_byte(ip);
            self.last_bytes[(b >> 6) as usize] |= 1 << (b & 63);
        };
        for a in &self.actions {
            match a.target {
                Target::Quarantine { host } => name(host),
                Target::Block { a, b } => {
                    name(a.ip);
                    name(b.ip);
                }
            }
        }
        for (i, a) in self.actions.iter().enumerate() {
            match a.target {
                Target::Quarantine { host } => self.by_host.entry(host).or_default().push(i as u32),
                Target::Block { a, b } => self.by_pair.entry(pair(a.ip, b.ip)).or_default().push(i as u32),
            }
        }
        self.generation = self.generation.wrapping_add(1).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Endpoint;
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// A few addresses and ports, so that actions and flows meet often.
    fn ip(i: u8) -> IpAddr {
        Ipv4Addr::new(198, 18, 0, i).into()
    }

    fn target() -> impl Strategy<Value = Target> {
        let ep = (0u8..4, prop::option::of(0u16..3)).prop_map(|(i, p)| Endpoint { ip: ip(i), port: p });
        prop_oneof![(ep.clone(), ep).prop_map(|(a, b)| Target::Block { a, b }), (0u8..4).prop_map(|h| Target::Quarantine { host: ip(h) }),]
    }

    proptest! {
        /// After any sequence of adds, removals and expiries, the index
        /// finds for every flow exactly what a walk of the list in order
        /// finds.
        #[test]
        fn the_index_agrees_with_a_linear_match(
            ops in proptest::collection::vec((0u8..8, 0u64..12, target(), 0u64..40), 1..60),
        ) {
            let mut set = ActionSet::new();
            for (i, (kind, id, target, until)) in ops.into_iter().enumerate() {
                let before = set.generation();
                match kind {
                    0 => { set.remove(id); }
                    1 => { set.expire(i as u64); }
                    _ => {
                        set.remove(id);
                        set.push(Action { id, target, until_ns: i as u64 + until });
                    }
                }
                prop_assert!(set.generation() != 0);
                let _ = before;
                for a in 0..4u8 {
                    for b in 0..4u8 {
                        for (pa, pb) in [(0u16, 1u16), (1, 0), (2, 2), (0, 0)] {
                            let (x, y) = ((ip(a), pa), (ip(b), pb));
                            let linear = set.as_slice().iter().position(|act| act.target.matches(x, y)).map(|p| p as u32);
                            prop_assert_eq!(set.lookup(x, y), linear, "flow {:?} <-> {:?} in {:?}", x, y, set.as_slice());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_change_starts_a_new_generation() {
        let mut set = ActionSet::new();
        let g0 = set.generation();
        set.push(Action { id: 1, target: Target::Quarantine { host: ip(1) }, until_ns: 10 });
        let g1 = set.generation();
        assert_ne!(g0, g1);
        assert!(!set.remove(2), "nothing removed");
        assert_eq!(set.generation(), g1, "and nothing changed");
        assert_eq!(set.expire(10), vec![1]);
        assert_ne!(set.generation(), g1);
        assert!(set.is_empty());
    }
}
