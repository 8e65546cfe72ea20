//! Response actions as the operator ordered them: the whole set in force,
//! signed by the collector's action key (Ed25519) and verified by each
//! capture-worker before it sends a single frame or asks for a socket
//! destroy.
//!
//! The uplink only carries the signed bytes: it cannot forge, re-target,
//! extend or replay an action, because the worker checks, with the public
//! key the supervisor pinned (never one the uplink hands it):
//!
//! - the signature, over [`CONTEXT`] followed by the payload, so a
//!   signature made for anything else never verifies as an action set;
//! - the set's age: issued at most [`SET_TTL_NS`] ago (plus [`MAX_SKEW_NS`]
//!   of clock difference, the same tolerance as signed requests), so an old
//!   set replayed after a cancellation is refused once it is that old; the
//!   collector signs the set again every [`RESIGN_EVERY_NS`];
//! - the set's version: never older than the newest one this worker took,
//!   so a set replayed after a newer one is refused at once;
//! - each action: its id appears once, keeps the target it had, and its
//!   end has not passed. An action lasts the time it had left when the set
//!   was signed, counted from when the worker takes it, and never beyond its
//!   signed end plus [`MAX_SKEW_NS`]: a delayed set cannot lengthen it.
//!
//! Nothing here reads a clock or the network: callers pass `now_ns`.

use crate::actions::{Action, Target};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub const PUBLIC_KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;
/// What is signed is this, then the payload: domain separation.
pub const CONTEXT: &[u8] = b"ossensor action set v1\0";
/// Actions a worker holds at most; a larger set is refused whole.
pub const MAX_ACTIONS: usize = 1024;
/// Largest payload accepted (1024 actions take about 70 KiB).
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// A set is taken for this long after it was signed...
pub const SET_TTL_NS: u64 = 300 * NS;
/// ...with this much clock difference allowed between collector and sensor.
pub const MAX_SKEW_NS: u64 = 300 * NS;
/// How often the collector signs the set again while a sensor is connected.
pub const RESIGN_EVERY_NS: u64 = 60 * NS;
const NS: u64 = 1_000_000_000;

/// What the collector signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionSet {
    /// Grows with every change of the set (the collector's book version).
    pub version: u64,
    /// When it was signed, collector clock (CLOCK_REALTIME ns).
    pub issued_ns: u64,
    /// Every action in force; `until_ns` on the collector's clock.
    pub actions: Vec<Action>,
}

/// A set and its signature, as the uplink relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSet {
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The collector's action key, public half.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// `ed25519:` and 64 hex digits, or the hex digits alone.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let hex_part = text.trim().strip_prefix("ed25519:").unwrap_or(text.trim());
        let bytes = hex::decode(hex_part).map_err(|_| "is not an Ed25519 public key (ed25519: and 64 hex digits)".to_string())?;
        let key: [u8; PUBLIC_KEY_LEN] =
            bytes.try_into().map_err(|b: Vec<u8>| format!("is {} bytes long, an Ed25519 public key is {PUBLIC_KEY_LEN}", b.len()))?;
        Ok(PublicKey(key))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding().with_limit::<MAX_PAYLOAD>()
}

pub fn encode(set: &ActionSet) -> Vec<u8> {
    bincode::serde::encode_to_vec(set, config()).expect("an action set encodes")
}

/// The payload's set; trailing bytes are refused (one payload, one meaning).
pub fn decode(payload: &[u8]) -> Result<ActionSet, Refusal> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Refusal::Malformed(format!("payload of {} bytes (at most {MAX_PAYLOAD})", payload.len())));
    }
    let (set, used): (ActionSet, usize) = bincode::serde::decode_from_slice(payload, config()).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(Refusal::Malformed(format!("{} bytes after the set", payload.len() - used)));
    }
    Ok(set)
}

/// The bytes a signature covers.
fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + payload.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(payload);
    m
}

/// Signs `set` (the collector's side).
pub fn sign(key: &ring::signature::Ed25519KeyPair, set: &ActionSet) -> SignedSet {
    let payload = encode(set);
    let signature = key.sign(&signed_message(&payload)).as_ref().to_vec();
    SignedSet { payload, signature }
}

/// The public half of a key pair.
pub fn public_key(key: &ring::signature::Ed25519KeyPair) -> PublicKey {
    use ring::signature::KeyPair;
    PublicKey(key.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes"))
}

/// Checks the signature alone and returns the set it covers.
pub fn verify_signature(key: &PublicKey, signed: &SignedSet) -> Result<ActionSet, Refusal> {
    if signed.signature.len() != SIGNATURE_LEN || signed.payload.len() > MAX_PAYLOAD {
        return Err(Refusal::BadSignature);
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key.0)
        .verify(&signed_message(&signed.payload), &signed.signature)
        .map_err(|_| Refusal::BadSignature)?;
    decode(&signed.payload)
}

/// Why a set was not taken. Nothing of a refused set is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No action key is pinned yet: nothing can be verified.
    NoKey,
    BadSignature,
    Malformed(String),
    /// Signed longer ago than SET_TTL_NS + MAX_SKEW_NS.
    Stale {
        age_s: u64,
    },
    /// Signed later than MAX_SKEW_NS from now.
    FromTheFuture {
        ahead_s: u64,
    },
    /// Older than a set already taken (a replay).
    Older {
        version: u64,
        newest: u64,
    },
    TooMany(usize),
    DuplicateId(u64),
    /// An id already in force with another target.
    Retargeted(u64),
}

impl Refusal {
    /// A short name for counters and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NoKey => "no_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Malformed(_) => "malformed",
            Refusal::Stale { .. } => "stale",
            Refusal::FromTheFuture { .. } => "from_the_future",
            Refusal::Older { .. } => "older",
            Refusal::TooMany(_) => "too_many",
            Refusal::DuplicateId(_) => "duplicate_id",
            Refusal::Retargeted(_) => "retargeted",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoKey => write!(f, "no action key is pinned yet"),
            Refusal::BadSignature => write!(f, "the signature does not verify with the pinned action key"),
            Refusal::Malformed(e) => write!(f, "malformed action set: {e}"),
            Refusal::Stale { age_s } => write!(f, "signed {age_s} s ago: too old"),
            Refusal::FromTheFuture { ahead_s } => write!(f, "signed {ahead_s} s in the future"),
            Refusal::Older { version, newest } => write!(f, "version {version} is older than {newest}, already taken (a replay)"),
            Refusal::TooMany(n) => write!(f, "{n} actions (at most {MAX_ACTIONS})"),
            Refusal::DuplicateId(id) => write!(f, "action {id} appears twice"),
            Refusal::Retargeted(id) => write!(f, "action {id} changed its target"),
        }
    }
}

/// A set taken: the actions to enforce, their ends on the worker's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub version: u64,
    pub actions: Vec<Action>,
    /// Actions of the set whose time had already run out.
    pub expired: Vec<u64>,
}

/// A worker's check of the sets it is handed.
#[derive(Debug, Default)]
pub struct SetVerifier {
    key: Option<PublicKey>,
    newest: Option<u64>,
    /// Targets of the actions taken last: an id never changes target.
    targets: BTreeMap<u64, Target>,
}

impl SetVerifier {
    pub fn new(key: Option<PublicKey>) -> SetVerifier {
        SetVerifier { key, ..SetVerifier::default() }
    }

    pub fn key(&self) -> Option<PublicKey> {
        self.key
    }

    /// A key pinned after start (the first registration).
    pub fn set_key(&mut self, key: PublicKey) {
        if self.key != Some(key) {
            *self = SetVerifier::new(Some(key));
        }
    }

    pub fn accept(&mut self, now_ns: u64, signed: &SignedSet) -> Result<Accepted, Refusal> {
        let key = self.key.ok_or(Refusal::NoKey)?;
        let set = verify_signature(&key, signed)?;
        if set.issued_ns > now_ns.saturating_add(MAX_SKEW_NS) {
            return Err(Refusal::FromTheFuture { ahead_s: (set.issued_ns - now_ns) / NS });
        }
        let age = now_ns.saturating_sub(set.issued_ns);
        if age > SET_TTL_NS + MAX_SKEW_NS {
            return Err(Refusal::Stale { age_s: age / NS });
        }
        if let Some(newest) = self.newest.filter(|n| set.version < *n) {
            return Err(Refusal::Older { version: set.version, newest });
        }
        if set.actions.len() > MAX_ACTIONS {
            return Err(Refusal::TooMany(set.actions.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &set.actions {
            if !seen.insert(a.id) {
                return Err(Refusal::DuplicateId(a.id));
            }
            if self.targets.get(&a.id).is_some_and(|t| *t != a.target) {
                return Err(Refusal::Retargeted(a.id));
            }
        }
        let mut actions = Vec::with_capacity(set.actions.len());
        let mut expired = Vec::new();
        for a in &set.actions {
            let left = a.until_ns.saturating_sub(set.issued_ns);
            let until_ns = now_ns.saturating_add(left).min(a.until_ns.saturating_add(MAX_SKEW_NS));
            if left == 0 || until_ns <= now_ns {
                expired.push(a.id);
            } else {
                actions.push(Action { until_ns, ..*a });
            }
        }
        self.newest = Some(set.version);
        self.targets = actions.iter().map(|a| (a.id, a.target)).collect();
        Ok(Accepted { version: set.version, actions, expired })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::Endpoint;
    use proptest::prelude::*;
    use ring::rand::SystemRandom;
    use ring::signature::Ed25519KeyPair;

    const T0: u64 = 1_800_000_000 * NS;

    fn key_pair() -> Ed25519KeyPair {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap()
    }

    fn quarantine(id: u64, host: &str, until_ns: u64) -> Action {
        Action { id, target: Target::Quarantine { host: host.parse().unwrap() }, until_ns }
    }

    fn set(version: u64, issued_ns: u64, actions: Vec<Action>) -> ActionSet {
        ActionSet { version, issued_ns, actions }
    }

    #[test]
    fn a_set_signed_by_the_pinned_key_is_taken_with_its_time_left() {
        let k = key_pair();
        let mut v = SetVerifier::new(Some(public_key(&k)));
        let signed = sign(&k, &set(1, T0, vec![quarantine(7, "198.18.0.9", T0 + 60 * NS)]));
        // Taken 2 s after it was signed: 58 s left, counted from now.
        let a = v.accept(T0 + 2 * NS, &signed).unwrap();
        assert_eq!(a.actions, vec![quarantine(7, "198.18.0.9", T0 + 62 * NS)]);
        // A worker clock 200 s behind the collector's: still the full minute.
        let mut v = SetVerifier::new(Some(public_key(&k)));
        let a = v.accept(T0 - 200 * NS, &signed).unwrap();
        assert_eq!(a.actions[0].until_ns, T0 - 140 * NS);
    }

    #[test]
    fn forged_retargeted_and_unkeyed_sets_are_refused() {
        let k = key_pair();
        let other = key_pair();
        let s = set(1, T0, vec![quarantine(7, "198.18.0.9", T0 + 60 * NS)]);
        assert_eq!(SetVerifier::new(None).accept(T0, &sign(&k, &s)), Err(Refusal::NoKey));
        let mut v = SetVerifier::new(Some(public_key(&k)));
        assert_eq!(v.accept(T0, &sign(&other, &s)), Err(Refusal::BadSignature), "another key");
        // The genuine bytes with the target changed, signature kept.
        let mut signed = sign(&k, &s);
        let mut other_target = s.clone();
        other_target.actions[0].target = Target::Quarantine { host: "198.18.0.1".parse().unwrap() };
        signed.payload = encode(&other_target);
        assert_eq!(v.accept(T0, &signed), Err(Refusal::BadSignature), "re-targeted");
        let mut signed = sign(&k, &s);
        signed.signature.truncate(10);
        assert_eq!(v.accept(T0, &signed), Err(Refusal::BadSignature));
        // A signature over the payload without the context is not one over a set.
        let mut signed = sign(&k, &s);
        signed.signature = k.sign(&signed.payload).as_ref().to_vec();
        assert_eq!(v.accept(T0, &signed), Err(Refusal::BadSignature), "no domain separation");
    }

    #[test]
    fn old_future_and_replayed_sets_are_refused() {
        let k = key_pair();
        let mut v = SetVerifier::new(Some(public_key(&k)));
        let a = quarantine(7, "198.18.0.9", T0 + 3600 * NS);
        assert_eq!(v.accept(T0 + 601 * NS, &sign(&k, &set(1, T0, vec![a]))), Err(Refusal::Stale { age_s: 601 }));
        assert_eq!(v.accept(T0 - 301 * NS, &sign(&k, &set(1, T0, vec![a]))), Err(Refusal::FromTheFuture { ahead_s: 301 }));
        // Version 5 (the action in force), then version 6 cancels it; the
        // older set replayed is refused.
        let with = sign(&k, &set(5, T0, vec![a]));
        assert_eq!(v.accept(T0, &with).unwrap().actions.len(), 1);
        assert!(v.accept(T0 + NS, &sign(&k, &set(6, T0 + NS, vec![]))).unwrap().actions.is_empty());
        assert_eq!(v.accept(T0 + 2 * NS, &with), Err(Refusal::Older { version: 5, newest: 6 }));
        // The same version signed again later is taken (the periodic re-signing).
        assert!(v.accept(T0 + 70 * NS, &sign(&k, &set(6, T0 + 60 * NS, vec![]))).is_ok());
    }

    #[test]
    fn expired_actions_are_dropped_and_ids_are_checked() {
        let k = key_pair();
        let mut v = SetVerifier::new(Some(public_key(&k)));
        let a = quarantine(7, "198.18.0.9", T0 + 60 * NS);
        let gone = quarantine(8, "198.18.0.8", T0 - NS);
        let r = v.accept(T0, &sign(&k, &set(1, T0, vec![a, gone]))).unwrap();
        assert_eq!((r.actions.len(), r.expired.clone()), (1, vec![8]));
        assert_eq!(v.accept(T0, &sign(&k, &set(2, T0, vec![a, a]))), Err(Refusal::DuplicateId(7)));
        let moved = Action {
            target: Target::Block {
                a: Endpoint { ip: "198.18.0.1".parse().unwrap(), port: None },
                b: Endpoint { ip: "198.18.0.2".parse().unwrap(), port: Some(22) },
            },
            ..a
        };
        assert_eq!(v.accept(T0, &sign(&k, &set(3, T0, vec![moved]))), Err(Refusal::Retargeted(7)));
        let many: Vec<Action> = (0..MAX_ACTIONS as u64 + 1).map(|i| quarantine(i, "198.18.0.9", T0 + NS)).collect();
        assert_eq!(v.accept(T0, &sign(&k, &set(4, T0, many))), Err(Refusal::TooMany(MAX_ACTIONS + 1)));
    }

    #[test]
    fn a_new_key_starts_afresh_and_keys_read_back() {
        let k = key_pair();
        let p = public_key(&k);
        assert_eq!(PublicKey::parse(&p.to_string()).unwrap(), p);
        assert_eq!(PublicKey::parse(&hex::encode(p.0)).unwrap(), p);
        assert!(PublicKey::parse("ed25519:abcd").unwrap_err().contains("2 bytes"));
        assert!(PublicKey::parse("ed25519:zz").is_err());
        let mut v = SetVerifier::new(None);
        v.set_key(p);
        assert_eq!(v.key(), Some(p));
        assert!(v.accept(T0, &sign(&k, &set(9, T0, vec![]))).is_ok());
    }

    proptest! {
        /// Any bytes, as payload or signature: refused without a panic
        /// (the signature cannot verify).
        #[test]
        fn any_bytes_are_refused(payload in proptest::collection::vec(any::<u8>(), 0..512), sig in proptest::collection::vec(any::<u8>(), 0..80)) {
            let k = key_pair();
            let mut v = SetVerifier::new(Some(public_key(&k)));
            let signed = SignedSet { payload: payload.clone(), signature: sig };
            prop_assert!(v.accept(T0, &signed).is_err());
            let _ = decode(&payload);
        }
    }
}
