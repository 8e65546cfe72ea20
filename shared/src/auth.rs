//! Request authentication between sensor and collector.
//!
//! Every request carries an HMAC-SHA256, keyed with the shared key, over a
//! canonical string of: method, path, sensor id, boot epoch, sequence,
//! timestamp, nonce and the SHA-256 of the body (see docs/protocol.md).
//! Every answer carries the collector's proof: an HMAC over the request's
//! nonce, the SHA-256 of the certificate the collector presented, the status
//! and the body digest. A sensor that checks the proof knows the collector
//! holds the key *and* that the TLS session ends at that collector, so a
//! self-signed certificate is safe against a man in the middle.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

pub const H_SENSOR: &str = "x-vsensor-sensor";
pub const H_EPOCH: &str = "x-vsensor-epoch";
pub const H_SEQ: &str = "x-vsensor-seq";
pub const H_TIMESTAMP: &str = "x-vsensor-timestamp";
pub const H_NONCE: &str = "x-vsensor-nonce";
pub const H_SIGNATURE: &str = "x-vsensor-signature";
pub const H_PROOF: &str = "x-vsensor-proof";

/// How far a request's timestamp may be from the collector's clock.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// What a request signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMeta {
    pub method: String,
    pub path: String,
    pub sensor_id: String,
    pub epoch: u64,
    pub seq: u64,
    /// Unix seconds.
    pub timestamp: i64,
    /// 32 lowercase hex digits.
    pub nonce: String,
    pub body_sha256: [u8; 32],
}

impl RequestMeta {
    /// The exact bytes the HMAC covers: one field a line, in this order.
    pub fn canonical(&self) -> String {
        format!(
            "vsensor-request-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            self.sensor_id,
            self.epoch,
            self.seq,
            self.timestamp,
            self.nonce,
            hex::encode(self.body_sha256)
        )
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// The hex signature for a request.
pub fn sign(key: &[u8], meta: &RequestMeta) -> String {
    let mut m = mac(key);
    m.update(meta.canonical().as_bytes());
    hex::encode(m.finalize().into_bytes())
}

impl RequestMeta {
    /// A request's metadata, stamped `now_ns`, with its nonce (random, 32
    /// lowercase hex digits: `ossensor_host::nonce`).
    #[allow(clippy::too_many_arguments)]
    pub fn with_nonce(method: &str, path: &str, sensor_id: &str, epoch: u64, seq: u64, now_ns: u64, nonce: String, body: &[u8]) -> RequestMeta {
        RequestMeta {
            method: method.into(),
            path: path.into(),
            sensor_id: sensor_id.into(),
            epoch,
            seq,
            timestamp: (now_ns / 1_000_000_000) as i64,
            nonce,
            body_sha256: sha256(body),
        }
    }

    /// The authentication headers of this request, signed with `key`.
    pub fn signed_headers(&self, key: &[u8]) -> [(&'static str, String); 6] {
        [
            (H_SENSOR, self.sensor_id.clone()),
            (H_EPOCH, self.epoch.to_string()),
            (H_SEQ, self.seq.to_string()),
            (H_TIMESTAMP, self.timestamp.to_string()),
            (H_NONCE, self.nonce.clone()),
            (H_SIGNATURE, sign(key, self)),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    MissingHeader(&'static str),
    BadHeader { header: &'static str, value: String },
    BadSignature,
    BodyDigestMismatch,
    Stale { timestamp: i64, now: i64 },
    Replayed,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::MissingHeader(h) => write!(f, "missing header {h}"),
            AuthError::BadHeader { header, value } => write!(f, "bad value {value:?} in header {header}"),
            AuthError::BadSignature => write!(f, "signature does not match (wrong key?)"),
            AuthError::BodyDigestMismatch => write!(f, "body does not match its digest"),
            AuthError::Stale { timestamp, now } => {
                write!(f, "timestamp {timestamp} is {}s away from the collector's clock", (now - timestamp).abs())
            }
            AuthError::Replayed => write!(f, "nonce already used (replayed request)"),
        }
    }
}

impl std::error::Error for AuthError {}

/// Checks a signature in constant time.
pub fn verify(key: &[u8], meta: &RequestMeta, signature_hex: &str) -> Result<(), AuthError> {
    let sig = hex::decode(signature_hex).map_err(|_| AuthError::BadSignature)?;
    let mut m = mac(key);
    m.update(meta.canonical().as_bytes());
    m.verify_slice(&sig).map_err(|_| AuthError::BadSignature)
}

/// The collector's proof for one answer.
pub fn response_proof(key: &[u8], request_nonce: &str, cert_sha256: &[u8; 32], status: u16, body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(b"vsensor-response-v1\n");
    m.update(request_nonce.as_bytes());
    m.update(b"\n");
    m.update(hex::encode(cert_sha256).as_bytes());
    m.update(format!("\n{status}\n").as_bytes());
    m.update(hex::encode(sha256(body)).as_bytes());
    hex::encode(m.finalize().into_bytes())
}

pub fn verify_response_proof(key: &[u8], request_nonce: &str, cert_sha256: &[u8; 32], status: u16, body: &[u8], proof_hex: &str) -> bool {
    let expected = response_proof(key, request_nonce, cert_sha256, status, body);
    // Compare as MACs do: constant time over equal-length strings.
    expected.len() == proof_hex.len() && expected.bytes().zip(proof_hex.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Refuses timestamps outside a window and nonces seen within it. The
/// caller passes `now`; memory is bounded by `max_nonces`. Nonces are kept
/// ordered by their request's timestamp: expiry and, when the cache is full,
/// eviction both drop the oldest first, and a request no newer than the
/// newest evicted one is refused as stale (its nonce may have been
/// forgotten), so a replay can never slip through a full cache.
pub struct ReplayWindow {
    window_secs: u64,
    max_nonces: usize,
    seen: HashSet<String>,
    order: BTreeSet<(i64, String)>,
    /// Timestamps at or below this are refused.
    floor: i64,
}

impl ReplayWindow {
    pub fn new(window_secs: i64, max_nonces: usize) -> Self {
        ReplayWindow { window_secs: window_secs.unsigned_abs(), max_nonces: max_nonces.max(1), seen: HashSet::new(), order: BTreeSet::new(), floor: i64::MIN }
    }

    pub fn check(&mut self, now: i64, timestamp: i64, nonce: &str) -> Result<(), AuthError> {
        self.expire(now);
        if now.abs_diff(timestamp) > self.window_secs || timestamp <= self.floor {
            return Err(AuthError::Stale { timestamp, now });
        }
        if self.seen.contains(nonce) {
            return Err(AuthError::Replayed);
        }
        while self.seen.len() >= self.max_nonces {
            let Some((ts, old)) = self.order.pop_first() else { break };
            self.seen.remove(&old);
            self.floor = self.floor.max(ts);
        }
        self.seen.insert(nonce.to_string());
        self.order.insert((timestamp, nonce.to_string()));
        Ok(())
    }

    fn expire(&mut self, now: i64) {
        // Entries are kept until they are certainly outside the window.
        let horizon = now.saturating_sub_unsigned(self.window_secs).saturating_sub(1);
        while let Some((ts, _)) = self.order.first() {
            if *ts >= horizon {
                break;
            }
            let (ts, n) = self.order.pop_first().expect("non-empty");
            self.seen.remove(&n);
            // Even if the clock steps back, a forgotten nonce stays refused.
            self.floor = self.floor.max(ts);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Checks the nonce's shape (32 lowercase hex digits).
pub fn valid_nonce(n: &str) -> bool {
    n.len() == 32 && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> RequestMeta {
        RequestMeta {
            method: "POST".into(),
            path: "/v1/chunks".into(),
            sensor_id: "host-a".into(),
            epoch: 7,
            seq: 42,
            timestamp: 1_800_000_000,
            nonce: "00112233445566778899aabbccddeeff".into(),
            body_sha256: sha256(b"body"),
        }
    }

    #[test]
    fn signature_round_trip_and_wrong_key() {
        let m = meta();
        let s = sign(b"k1", &m);
        assert_eq!(verify(b"k1", &m, &s), Ok(()));
        assert_eq!(verify(b"k2", &m, &s), Err(AuthError::BadSignature));
        assert_eq!(verify(b"k1", &m, "zz"), Err(AuthError::BadSignature));
    }

    #[test]
    fn replay_window_refuses_repeats_and_stale() {
        let mut w = ReplayWindow::new(300, 10);
        assert_eq!(w.check(1000, 1000, "a"), Ok(()));
        assert_eq!(w.check(1001, 1000, "a"), Err(AuthError::Replayed));
        assert!(matches!(w.check(1000, 600, "b"), Err(AuthError::Stale { .. })));
        assert!(matches!(w.check(1000, 1400, "c"), Err(AuthError::Stale { .. })));
        // Much later the nonce is forgotten, but its timestamp is stale then.
        assert!(matches!(w.check(2000, 1000, "a"), Err(AuthError::Stale { .. })));
    }

    #[test]
    fn replay_window_stays_bounded() {
        let mut w = ReplayWindow::new(300, 3);
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            w.check(1000, 1000 + i as i64, n).unwrap();
        }
        assert_eq!(w.len(), 3);
        // "a" was forgotten; a replay of it is refused as stale instead.
        assert!(w.check(1000, 1000, "a").is_err());
    }

    #[test]
    fn proof_binds_nonce_cert_status_and_body() {
        let cert = sha256(b"cert");
        let p = response_proof(b"k", "n1", &cert, 200, b"{}");
        assert!(verify_response_proof(b"k", "n1", &cert, 200, b"{}", &p));
        assert!(!verify_response_proof(b"k", "n2", &cert, 200, b"{}", &p));
        assert!(!verify_response_proof(b"k", "n1", &sha256(b"mitm"), 200, b"{}", &p));
        assert!(!verify_response_proof(b"k", "n1", &cert, 409, b"{}", &p));
        assert!(!verify_response_proof(b"k", "n1", &cert, 200, b"{ }", &p));
        assert!(!verify_response_proof(b"x", "n1", &cert, 200, b"{}", &p));
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let mut w = ReplayWindow::new(300, 10);
        assert!(matches!(w.check(1000, i64::MIN, "a"), Err(AuthError::Stale { .. })));
        assert!(matches!(w.check(1000, i64::MAX, "b"), Err(AuthError::Stale { .. })));
        assert!(matches!(w.check(i64::MIN, 0, "c"), Err(AuthError::Stale { .. })));
        assert!(matches!(w.check(i64::MAX, i64::MAX, "d"), Ok(())));
    }

    #[test]
    fn a_future_dated_nonce_does_not_block_others() {
        let mut w = ReplayWindow::new(300, 2);
        w.check(1000, 1290, "future").unwrap();
        w.check(1000, 1000, "a").unwrap();
        // Full: evicting drops the oldest timestamp (1000), not the future one.
        w.check(1000, 1001, "b").unwrap();
        assert!(w.check(1000, 1002, "c").is_ok(), "requests from other clocks still pass");
    }

    proptest! {
        #[test]
        fn never_panics_and_never_accepts_a_replay(reqs in proptest::collection::vec((any::<i64>(), any::<i64>(), 0u8..20), 0..60), cap in 1usize..8) {
            let mut w = ReplayWindow::new(300, cap);
            let mut accepted = std::collections::HashSet::new();
            for (now, ts, n) in reqs {
                let nonce = format!("{n}-{ts}");
                if w.check(now, ts, &nonce).is_ok() {
                    prop_assert!(accepted.insert(nonce), "a nonce was accepted twice");
                }
            }
        }

        #[test]
        fn any_field_change_breaks_the_signature(seq in any::<u64>(), epoch in any::<u64>(), path in "/[a-z/]{0,20}", ts in any::<i64>()) {
            let m = meta();
            let s = sign(b"key", &m);
            let mut n = m.clone();
            n.seq = seq; n.epoch = epoch; n.path = path; n.timestamp = ts;
            prop_assert_eq!(verify(b"key", &n, &s).is_ok(), n == m);
        }

        #[test]
        fn verify_never_panics(sig in ".{0,100}") {
            let _ = verify(b"key", &meta(), &sig);
        }
    }
}
