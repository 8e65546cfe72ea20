//! Sensors' requests: the shared HMAC key (never leaves this struct), the
//! SHA-256 of the certificate this collector serves (bound into every
//! proof) and the replay window. The checks themselves are the sans-IO
//! `ossensor_shared::auth`; their order is the ingest layer's.

use super::lock;
use ossensor_shared::auth::{self, AuthError, ReplayWindow, RequestMeta};
use std::sync::Mutex;

pub struct SensorAuth {
    key: Vec<u8>,
    /// SHA-256 of the leaf certificate this collector serves.
    pub cert_sha256: [u8; 32],
    replay: Mutex<ReplayWindow>,
}

impl SensorAuth {
    pub fn new(key: Vec<u8>, cert_sha256: [u8; 32]) -> SensorAuth {
        SensorAuth { key, cert_sha256, replay: Mutex::new(ReplayWindow::new(auth::DEFAULT_WINDOW_SECS, 1_000_000)) }
    }

    /// Checks the request's signature.
    pub fn verify(&self, meta: &RequestMeta, signature: &str) -> Result<(), AuthError> {
        auth::verify(&self.key, meta, signature)
    }

    /// Records the nonce if the timestamp is within the window and the
    /// nonce new; call only once the signature verified.
    pub fn check_replay(&self, now: i64, timestamp: i64, nonce: &str) -> Result<(), AuthError> {
        lock(&self.replay).check(now, timestamp, nonce)
    }

    /// The proof on an answer to an authenticated request.
    pub fn proof(&self, nonce: &str, status: u16, body: &[u8]) -> String {
        auth::response_proof(&self.key, nonce, &self.cert_sha256, status, body)
    }
}
