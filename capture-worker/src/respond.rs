//! Response actions on this interface: the thin shell around
//! `ossensor_shared::response::Enforcer`. It feeds the enforcer every
//! captured TCP segment and sends, on the same interface, the resets and
//! probes it decides. The uplink only says which actions are in force;
//! every packet sent here is a RST or an empty ACK built from a flow this
//! worker saw itself, so a compromised uplink cannot make it send anything
//! else.

use ossensor_shared::log::{self as slog, ACTIONS};
use ossensor_shared::response::{Action, ActionStats, Enforcer, Injection, Reason};
use ossensor_shared::tcpseg::{self, LINKTYPE_ETHERNET, RST};
use ossensor_shared::log;
use std::collections::BTreeMap;

/// Flows remembered per interface (for quiet connections): about 100 bytes
/// each.
const MAX_FLOWS: usize = 65_536;

pub struct Responder {
    enforcer: Enforcer,
    linktype: i32,
    decided: Vec<Injection>,
    frame: Vec<u8>,
    interface: String,
}

impl Responder {
    /// None when the link type cannot carry what we would send (only
    /// Ethernet can).
    pub fn new(interface: &str, linktype: i32) -> Option<Responder> {
        if linktype != LINKTYPE_ETHERNET {
            return None;
        }
        let own_mac = interface_mac(interface).unwrap_or([0; 6]);
        Some(Responder {
            enforcer: Enforcer::new(own_mac, MAX_FLOWS),
            linktype,
            decided: Vec::new(),
            frame: Vec::with_capacity(80),
            interface: interface.to_string(),
        })
    }

    /// One captured frame.
    pub fn observe(&mut self, ts_ns: u64, frame: &[u8]) {
        if let Some(seg) = tcpseg::parse(self.linktype, frame) {
            self.enforcer.observe(ts_ns, &seg, &mut self.decided);
        }
    }

    /// The full set of actions in force, as the uplink sends it: new ones
    /// are applied (resetting and probing the known flows they cover),
    /// missing ones cancelled.
    pub fn set_actions(&mut self, now_ns: u64, actions: &[Action]) {
        let current: Vec<Action> = self.enforcer.actions().to_vec();
        for old in &current {
            if !actions.iter().any(|a| a.id == old.id) && self.enforcer.cancel(old.id) {
                log!(ACTIONS, "{}: action {} cancelled", self.interface, old.id);
            }
        }
        for a in actions {
            if current.contains(a) {
                continue;
            }
            self.enforcer.apply(now_ns, *a, &mut self.decided);
            log!(ACTIONS, "{}: action {} applied: {:?} until {}", self.interface, a.id, a.target, ossensor_shared::timefmt::rfc3339_millis(a.until_ns));
        }
    }

    pub fn tick(&mut self, now_ns: u64) {
        for id in self.enforcer.tick(now_ns, &mut self.decided) {
            log!(ACTIONS, "{}: action {id} expired", self.interface);
        }
    }

    pub fn stats(&self) -> &BTreeMap<u64, ActionStats> {
        self.enforcer.stats()
    }

    /// Sends what the enforcer decided, with `inject`.
    pub fn send(&mut self, mut inject: impl FnMut(&[u8]) -> Result<(), String>) {
        for d in self.decided.drain(..) {
            if tcpseg::build(&d.segment, &mut self.frame).is_none() {
                continue;
            }
            let result = inject(&self.frame);
            if slog::enabled(ACTIONS) {
                let s = &d.segment;
                let what = match d.reason {
                    Reason::Reset if s.flags & RST != 0 => "reset",
                    Reason::RefuseHandshake => "reset (new connection)",
                    _ => "probe",
                };
                log!(
                    ACTIONS,
                    "{}: action {}: {what} sent to {}:{} (from {}:{}) seq {} ack {}{}",
                    self.interface,
                    d.action,
                    s.dst.0,
                    s.dst.1,
                    s.src.0,
                    s.src.1,
                    s.seq,
                    s.ack,
                    result.err().map(|e| format!(" FAILED: {e}")).unwrap_or_default()
                );
            }
        }
    }
}

/// The interface's MAC address, the source of every frame we send.
fn interface_mac(interface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}
