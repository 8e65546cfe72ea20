//! The sensor's requests to the collector as plain data, and what their
//! answers mean: the signed head of `POST /v1/register`, `/v1/chunks` and
//! `/v1/status` (docs/protocol.md §1.3–1.5), and the check of an answer's
//! proof (§1.6) that turns it into a result or a [`SendError`]. The
//! uplink's HTTPS client only carries these bytes; the tests carry them to
//! the collector's request handlers in memory.
//!
//! Time and the nonce come in: nothing here reads a clock or draws random
//! numbers.

use crate::auth::{self, RequestMeta};
use crate::chunk::{Encoding, H_ENCODING, H_PACKETS, H_RAW_LENGTH};
use crate::control::{ChunkAck, ErrorBody, RegisterRequest, RegisterResponse, StatusAnswer, StatusReport, PATH_CHUNKS, PATH_REGISTER, PATH_STATUS};
use crate::delivery::{Chunk, Failure, Outcome};
use std::fmt;

/// Who signs: the sensor's id, boot epoch and the shared key.
#[derive(Clone)]
pub struct Signer {
    pub sensor_id: String,
    pub epoch: u64,
    pub key: Vec<u8>,
}

/// One request: `POST path` with these headers and this body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The nonce the answer's proof must cover.
    pub nonce: String,
}

impl Signer {
    fn post(&self, path: &'static str, seq: u64, now_ns: u64, nonce: String, body: Vec<u8>, content_type: &'static str) -> Request {
        let meta = RequestMeta::with_nonce("POST", path, &self.sensor_id, self.epoch, seq, now_ns, nonce, &body);
        let mut headers: Vec<(&'static str, String)> = meta.signed_headers(&self.key).into_iter().collect();
        headers.push(("content-type", content_type.to_string()));
        Request { path, headers, body, nonce: meta.nonce }
    }

    pub fn register(&self, now_ns: u64, nonce: String, req: &RegisterRequest) -> Request {
        self.post(PATH_REGISTER, 0, now_ns, nonce, serde_json::to_vec(req).expect("serialisable"), "application/json")
    }

    /// A chunk's body goes as it is (no copy beyond the request's own).
    pub fn chunk(&self, now_ns: u64, nonce: String, c: &Chunk) -> Request {
        let mut r = self.post(PATH_CHUNKS, c.seq, now_ns, nonce, c.body.clone(), "application/octet-stream");
        let enc = if c.compressed { Encoding::Zstd } else { Encoding::Identity };
        r.headers.extend([(H_ENCODING, enc.as_str().to_string()), (H_RAW_LENGTH, c.raw_len.to_string()), (H_PACKETS, c.packets.to_string())]);
        r
    }

    pub fn status(&self, now_ns: u64, nonce: String, report: &StatusReport) -> Request {
        self.post(PATH_STATUS, 0, now_ns, nonce, serde_json::to_vec(report).expect("serialisable"), "application/json")
    }
}

/// An answer as it came: status, the proof header, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub proof: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No answer (connection refused, timeout, TLS failure...): retry.
    Transport(String),
    /// The collector's certificate changed since it proved the key: register again.
    CertificateChanged,
    /// The answer did not carry a valid proof: whoever answered does not
    /// hold the key. Nothing more is sent until a registration proves it.
    BadProof(u16),
    /// The collector refused the request.
    Refused { status: u16, reason: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Transport(e) => write!(f, "collector unreachable: {e}"),
            SendError::CertificateChanged => write!(f, "collector certificate differs from the one that proved the key"),
            SendError::BadProof(s) => write!(
                f,
                "answer (status {s}) does not prove knowledge of VSENSOR_HMAC_KEY for the certificate presented: \
                 wrong key on the collector, or a man in the middle; not sending packets"
            ),
            SendError::Refused { status, reason } => write!(f, "collector refused the request with {status}: {reason}"),
        }
    }
}

impl SendError {
    /// What delivery does about it.
    pub fn failure(&self) -> Failure {
        match self {
            SendError::Transport(_) => Failure::Transport,
            SendError::CertificateChanged | SendError::BadProof(_) | SendError::Refused { status: 401, .. } => Failure::Untrusted,
            SendError::Refused { .. } => Failure::Refused,
        }
    }

    /// Should it be audited (`collector_not_trusted`)?
    pub fn untrusted(&self) -> bool {
        matches!(self, SendError::BadProof(_) | SendError::Refused { status: 401, .. })
    }
}

/// Checks an answer's proof. `cert`: the certificate the connection
/// presented; `pinned`: whether it is the one a registration pinned. A
/// success must always be proven. A refusal on a pinned connection comes
/// from the collector that proved the key (no other certificate is
/// accepted); the collector refuses some requests (too large, malformed
/// headers) before it authenticates them, so those carry no proof. Returns
/// the body of a proven 200, or the error.
pub fn check(key: &[u8], request: &Request, cert: &[u8; 32], pinned: bool, answer: &Answer) -> Result<Vec<u8>, SendError> {
    let proven = answer.proof.as_deref().is_some_and(|p| auth::verify_response_proof(key, &request.nonce, cert, answer.status, &answer.body, p));
    if !proven && (answer.status == 200 || !pinned) {
        return Err(SendError::BadProof(answer.status));
    }
    if answer.status != 200 {
        let reason = serde_json::from_slice::<ErrorBody>(&answer.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]).into_owned());
        return Err(SendError::Refused { status: answer.status, reason });
    }
    Ok(answer.body.clone())
}

fn unreadable(status: u16, what: &str, e: serde_json::Error) -> SendError {
    SendError::Refused { status, reason: format!("unreadable {what}: {e}") }
}

pub fn registered(body: &[u8]) -> Result<RegisterResponse, SendError> {
    serde_json::from_slice(body).map_err(|e| unreadable(200, "registration answer", e))
}

pub fn status_answered(body: &[u8]) -> Result<StatusAnswer, SendError> {
    serde_json::from_slice(body).map_err(|e| unreadable(200, "status answer", e))
}

/// A chunk's answer as delivery's outcome: acknowledged, rejected as
/// malformed (400/413), or a failure to retry.
pub fn chunk_outcome(result: Result<Vec<u8>, SendError>) -> (Outcome, Option<SendError>) {
    match result.and_then(|body| serde_json::from_slice::<ChunkAck>(&body).map_err(|e| unreadable(200, "acknowledgement", e))) {
        Ok(ack) => (Outcome::ChunkAcked { stored: ack.stored }, None),
        Err(e @ SendError::Refused { status: 400 | 413, .. }) => (Outcome::ChunkRejected, Some(e)),
        Err(e) => (Outcome::Failed(e.failure()), Some(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"k";
    const CERT: [u8; 32] = [7; 32];

    fn signer() -> Signer {
        Signer { sensor_id: "node1".into(), epoch: 9, key: KEY.to_vec() }
    }

    fn proven(req: &Request, status: u16, body: &[u8]) -> Answer {
        Answer { status, proof: Some(auth::response_proof(KEY, &req.nonce, &CERT, status, body)), body: body.to_vec() }
    }

    #[test]
    fn a_chunk_request_carries_the_signed_head_and_the_chunk_headers() {
        let c = Chunk { seq: 42, body: vec![1, 2, 3], raw_len: 10, packets: 2, compressed: true };
        let r = signer().chunk(1_800_000_000_000_000_000, "ab".repeat(16), &c);
        let h = |n: &str| r.headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap();
        assert_eq!((r.path, h(auth::H_SEQ).as_str(), h(H_PACKETS).as_str(), h(H_ENCODING).as_str()), (PATH_CHUNKS, "42", "2", "zstd"));
        assert_eq!(h(auth::H_NONCE), "ab".repeat(16));
        let meta = RequestMeta::with_nonce("POST", PATH_CHUNKS, "node1", 9, 42, 1_800_000_000_000_000_000, "ab".repeat(16), &[1, 2, 3]);
        assert!(auth::verify(KEY, &meta, &h(auth::H_SIGNATURE)).is_ok());
    }

    #[test]
    fn answers_are_proven_or_refused() {
        let c = Chunk { seq: 1, body: vec![], raw_len: 0, packets: 0, compressed: false };
        let r = signer().chunk(0, "cd".repeat(16), &c);
        let ack = br#"{"seq":1,"stored":true}"#;
        assert_eq!(chunk_outcome(check(KEY, &r, &CERT, true, &proven(&r, 200, ack))).0, Outcome::ChunkAcked { stored: true });
        let unproven = Answer { status: 200, proof: None, body: ack.to_vec() };
        assert_eq!(check(KEY, &r, &CERT, true, &unproven), Err(SendError::BadProof(200)), "a success must be proven");
        let bad = br#"{"error":"bad chunk: no"}"#;
        let (o, e) = chunk_outcome(check(KEY, &r, &CERT, true, &proven(&r, 400, bad)));
        assert_eq!((o, e.unwrap().to_string()), (Outcome::ChunkRejected, "collector refused the request with 400: bad chunk: no".into()));
        // Unauthenticated 413 on a pinned connection: refused, not untrusted.
        let big = Answer { status: 413, proof: None, body: b"{}".to_vec() };
        assert_eq!(chunk_outcome(check(KEY, &r, &CERT, true, &big)).0, Outcome::ChunkRejected);
        assert_eq!(check(KEY, &r, &CERT, false, &big), Err(SendError::BadProof(413)), "not pinned yet: must be proven");
        let busy = proven(&r, 503, b"{}");
        assert_eq!(chunk_outcome(check(KEY, &r, &CERT, true, &busy)).0, Outcome::Failed(Failure::Refused));
        let denied = proven(&r, 401, b"{}");
        assert_eq!(chunk_outcome(check(KEY, &r, &CERT, true, &denied)).0, Outcome::Failed(Failure::Untrusted));
        assert_eq!(SendError::Transport("x".into()).failure(), Failure::Transport);
    }
}
