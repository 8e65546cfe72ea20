//! The sensors' API: `/v1/register`, `/v1/chunks`, `/v1/status` and the
//! action channel's WebSocket, all signed with the shared key. This module
//! authenticates a request and signs the answer; which handler runs is the
//! router's choice. Order matters:
//!
//! 1. the authentication headers are present and well formed;
//! 2. the body arrived whole within its limit ([`ossensor_shared::chunk::MAX_BODY`]; a
//!    declared larger length is refused before reading anything, see
//!    [`crate::http`]);
//! 3. the HMAC over the request and the body digest verifies;
//! 4. only then the replay window records the nonce, so unauthenticated
//!    garbage cannot fill it;
//! 5. the endpoint runs. Every answer from here on carries the collector's
//!    proof (`x-vsensor-proof`), errors included ([`answer`]).
//!
//! Nothing is stored or changed on any refusal.
//!
//! - [`register`]: a sensor's registration and its filter;
//! - [`chunks`]: packets, checked and stored;
//! - [`report`]: a sensor's running state, and its filter now;
//! - [`ws`]: the response-action channel (the one handler tied to a
//!   connection: it switches protocols).

pub mod chunks;
pub mod register;
pub mod report;
pub mod ws;

use crate::http::{error_body, header, note_refusal, refusal, refused, Bytes, HeaderMap, HeaderValue, Refusal, Request, Response, StatusCode};
use crate::state::{unix_now, App};
use ossensor_shared::auth::{self, AuthError, RequestMeta};
use ossensor_shared::control;

/// Limits on what a registration or a status report may carry.
const MAX_TEXT: usize = 255;
const MAX_INTERFACES: usize = 4096;
const MAX_COLLECTOR_ADDRESSES: usize = 64;

/// A request that passed steps 1 to 4: who sent it, and its body.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub sensor: String,
    pub epoch: u64,
    pub seq: u64,
    nonce: String,
    pub body: Bytes,
}

/// Steps 1 to 4. `Err`: the answer to send, a refusal (with the proof if
/// the signature had verified); boxed, as the refusals are the rare path.
pub fn authenticate(app: &App, req: &Request) -> Result<Authenticated, Box<Response>> {
    let headers = match AuthHeaders::parse(&req.headers) {
        Ok(h) => h,
        Err(r) => return Err(Box::new(refused(app, req, None, &r))),
    };
    let body = match req.body() {
        Ok(b) => b,
        // The rest of the body was not read: this connection is done.
        Err(r) => return Err(Box::new(refused(app, req, Some(&headers.sensor), &r))),
    };
    let meta = RequestMeta {
        method: req.method.as_str().to_string(),
        path: req.path.clone(),
        sensor_id: headers.sensor.clone(),
        epoch: headers.epoch,
        seq: headers.seq,
        timestamp: headers.timestamp,
        nonce: headers.nonce.clone(),
        body_sha256: auth::sha256(&body),
    };
    if let Err(e) = app.auth.verify(&meta, &headers.signature) {
        let r = Refusal { status: StatusCode::UNAUTHORIZED, kind: "bad_signature", reason: e.to_string(), audit: true };
        note_refusal(app, &req.conn, Some(&headers.sensor), &r);
        return Err(Box::new(Response::error(&r)));
    }
    // Authenticated from here on: every answer carries the proof.
    let authenticated = Authenticated { sensor: headers.sensor, epoch: headers.epoch, seq: headers.seq, nonce: headers.nonce, body };
    if let Err(e) = app.auth.check_replay(unix_now(), headers.timestamp, &authenticated.nonce) {
        let kind = if matches!(e, AuthError::Replayed) { "replayed" } else { "stale" };
        let r = Refusal { status: StatusCode::UNAUTHORIZED, kind, reason: e.to_string(), audit: true };
        return Err(Box::new(answer(app, req, &authenticated, Err(r))));
    }
    Ok(authenticated)
}

/// Step 5's answer: the handler's JSON, or its refusal (noted), with the
/// proof.
pub fn answer(app: &App, req: &Request, a: &Authenticated, result: Result<Vec<u8>, Refusal>) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(r) => {
            note_refusal(app, &req.conn, Some(&a.sensor), &r);
            (r.status, error_body(&r.reason))
        }
    };
    let proof = app.auth.proof(&a.nonce, status.as_u16(), &body);
    let mut resp = Response::json(status, body);
    resp.headers.insert(auth::H_PROOF, HeaderValue::from_str(&proof).expect("hex is a valid header value"));
    resp
}

/// The authentication headers, parsed.
struct AuthHeaders {
    sensor: String,
    epoch: u64,
    seq: u64,
    timestamp: i64,
    nonce: String,
    signature: String,
}

pub(crate) fn required<'a>(h: &'a HeaderMap, name: &'static str, status: StatusCode) -> Result<&'a str, Refusal> {
    header(h, name)?.ok_or_else(|| refusal(status, "missing_header", AuthError::MissingHeader(name).to_string()))
}

pub(crate) fn parsed<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, Refusal> {
    v.parse().map_err(|_| refusal(StatusCode::BAD_REQUEST, "malformed", AuthError::BadHeader { header: name, value: v.chars().take(80).collect() }.to_string()))
}

impl AuthHeaders {
    fn parse(h: &HeaderMap) -> Result<AuthHeaders, Refusal> {
        let unauth = StatusCode::UNAUTHORIZED;
        let sensor = required(h, auth::H_SENSOR, unauth)?;
        if !control::valid_sensor_id(sensor) {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("bad sensor id {:?} in header {} (1-64 of A-Z a-z 0-9 . _ -)", sensor.chars().take(80).collect::<String>(), auth::H_SENSOR),
            ));
        }
        let epoch = parsed(auth::H_EPOCH, required(h, auth::H_EPOCH, unauth)?)?;
        let seq = parsed(auth::H_SEQ, required(h, auth::H_SEQ, unauth)?)?;
        let timestamp = parsed(auth::H_TIMESTAMP, required(h, auth::H_TIMESTAMP, unauth)?)?;
        let nonce = required(h, auth::H_NONCE, unauth)?;
        if !auth::valid_nonce(nonce) {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("{} (32 lowercase hex digits expected)", AuthError::BadHeader { header: auth::H_NONCE, value: nonce.chars().take(80).collect() }),
            ));
        }
        let signature = required(h, auth::H_SIGNATURE, unauth)?;
        Ok(AuthHeaders { sensor: sensor.to_string(), epoch, seq, timestamp, nonce: nonce.to_string(), signature: signature.to_string() })
    }
}
