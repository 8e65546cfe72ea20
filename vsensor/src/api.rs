//! Request handling: authenticate, then route. Order matters:
//!
//! 1. the authentication headers are present and well formed;
//! 2. the body is read with a hard limit ([`chunk::MAX_BODY`]; a declared
//!    larger length is refused before reading anything);
//! 3. the HMAC over the request and the body digest verifies;
//! 4. only then the replay window records the nonce, so unauthenticated
//!    garbage cannot fill it;
//! 5. the endpoint runs. Every answer from here on carries the collector's
//!    proof (`x-vsensor-proof`), errors included.
//!
//! Nothing is stored or changed on any refusal.

use crate::state::{unix_now, App};
use crate::store::AppendOutcome;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use ossensor_shared::auth::{self, AuthError, RequestMeta};
use ossensor_shared::chunk::{self, Encoding};
use ossensor_shared::control::{self, ChunkAck, ErrorBody, RegisterRequest, RegisterResponse};
use ossensor_shared::log::AuditSeverity;
use ossensor_shared::{log, timefmt};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub type Resp = Response<Full<Bytes>>;

/// Limits on what a registration may carry into the registry.
const MAX_TEXT: usize = 255;
const MAX_INTERFACES: usize = 4096;
const MAX_COLLECTOR_ADDRESSES: usize = 64;

/// The two ends of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// A request turned away: status, a short kind (for rate-limited logging)
/// and the reason the client reads.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) reason: String,
    pub(crate) audit: bool,
}

pub(crate) fn refusal(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal { status, kind, reason: reason.into(), audit: false }
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

fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Refusal> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| refusal(StatusCode::BAD_REQUEST, "malformed", format!("header {name} is not text"))),
    }
}

fn required<'a>(h: &'a HeaderMap, name: &'static str, status: StatusCode) -> Result<&'a str, Refusal> {
    header(h, name)?.ok_or_else(|| refusal(status, "missing_header", AuthError::MissingHeader(name).to_string()))
}

fn parsed<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, Refusal> {
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

/// How long a request's body may take to arrive, from the end of its head:
/// a client trickling its body (or sending none after announcing one)
/// gets 408 and its connection is closed. A sensor's chunk is at most a few
/// MiB, so this asks for under 1 MiB/s even at [`chunk::MAX_BODY`].
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Should the connection close after this refusal (the body was not read
/// to its end, so the stream is not at a request boundary)?
pub(crate) fn ends_connection(status: StatusCode) -> bool {
    matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT)
}

/// Reads the body, never more than [`chunk::MAX_BODY`] bytes, nor for
/// longer than [`BODY_TIMEOUT`].
pub(crate) async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, Refusal> {
    let too_large =
        |n: String| refusal(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("body of {n} bytes exceeds the limit of {} bytes", chunk::MAX_BODY));
    if let Some(len) = header(headers, CONTENT_LENGTH.as_str())? {
        if len.parse::<u64>().is_ok_and(|n| n > chunk::MAX_BODY as u64) {
            return Err(too_large(len.to_string()));
        }
    }
    let collected = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, chunk::MAX_BODY).collect()).await {
        Ok(c) => c,
        Err(_) => return Err(refusal(StatusCode::REQUEST_TIMEOUT, "timeout", format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()))),
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large(format!("more than {}", chunk::MAX_BODY))),
        Err(e) => Err(refusal(StatusCode::BAD_REQUEST, "malformed", format!("cannot read the body: {e}"))),
    }
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("control messages serialize")
}

pub(crate) fn error_body(reason: &str) -> Vec<u8> {
    json(&ErrorBody { error: reason.to_string() })
}

pub(crate) fn response(status: StatusCode, body: Vec<u8>, content_type: &'static str, proof: Option<String>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(p) = proof {
        r.headers_mut().insert(auth::H_PROOF, HeaderValue::from_str(&p).expect("hex is a valid header value"));
    }
    r
}

/// Logs a refusal at level 0 (and audits authentication failures), at
/// most once a minute per source and kind.
pub(crate) fn note_refusal(app: &App, conn: &Conn, sensor: Option<&str>, r: &Refusal) {
    if !app.refusals.due(conn.remote.ip(), r.kind) {
        return;
    }
    let source = conn.remote.to_string();
    let sensor = sensor.unwrap_or("-");
    log!(
        log::BASIC,
        "refused request from {source} (sensor {sensor}): {} {} (further {} refusals from this address are not logged for a minute)",
        r.status.as_u16(),
        r.reason,
        r.kind
    );
    if r.audit {
        log::audit(AuditSeverity::Warning, "auth_failure", &[("source", &source), ("sensor", sensor), ("reason", &r.reason)]);
    }
}

/// The hyper service: one request in, one answer out.
pub async fn handle(app: Arc<App>, conn: Conn, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let sensor = req.headers().get(auth::H_SENSOR).and_then(|v| v.to_str().ok()).unwrap_or("-").chars().take(64).collect::<String>();
    let seq = req.headers().get(auth::H_SEQ).and_then(|v| v.to_str().ok()).unwrap_or("-").chars().take(24).collect::<String>();
    let resp = if path.starts_with(control::PATH_OPERATOR_ACTIONS) {
        crate::operator::handle(&app, &conn, req).await
    } else if matches!(path.as_str(), "/status" | "/metrics" | control::PATH_OPERATOR_STATUS) {
        crate::operator::status(&app, &conn, req).await
    } else {
        route(&app, &conn, req).await
    };
    log!(log::SENDS, "{method} {path} from {} sensor {sensor} seq {seq}: {}", conn.remote, resp.status().as_u16());
    Ok(resp)
}

async fn route(app: &Arc<App>, conn: &Conn, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if !path.starts_with("/v1/") {
        let r = match (path.as_str(), req.method()) {
            ("/healthz", &Method::GET) => return response(StatusCode::OK, b"ok".to_vec(), "text/plain", None),
            ("/healthz", m) => refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on /healthz (GET)")),
            (p, _) => refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {:?}", p.chars().take(100).collect::<String>())),
        };
        note_refusal(app, conn, None, &r);
        // Consume a small body so the connection stays usable.
        let (parts, body) = req.into_parts();
        let read = read_body(&parts.headers, body).await;
        let mut resp = response(r.status, error_body(&r.reason), "application/json", None);
        if read.is_err_and(|e| ends_connection(e.status)) {
            resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        return resp;
    }

    let (mut parts, body) = req.into_parts();
    let headers = match AuthHeaders::parse(&parts.headers) {
        Ok(h) => h,
        Err(r) => {
            note_refusal(app, conn, None, &r);
            // Consume the body (within the limit) so keep-alive survives a
            // refusal; a larger one ends the connection instead.
            let ends = read_body(&parts.headers, body).await.is_err_and(|e| ends_connection(e.status));
            let mut resp = response(r.status, error_body(&r.reason), "application/json", None);
            if ends {
                resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    };
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(r) => {
            note_refusal(app, conn, Some(&headers.sensor), &r);
            let mut resp = response(r.status, error_body(&r.reason), "application/json", None);
            if ends_connection(r.status) {
                // The rest of the body was not read: this connection is done.
                resp.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            }
            return resp;
        }
    };
    let meta = RequestMeta {
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        sensor_id: headers.sensor.clone(),
        epoch: headers.epoch,
        seq: headers.seq,
        timestamp: headers.timestamp,
        nonce: headers.nonce.clone(),
        body_sha256: auth::sha256(&body),
    };
    if let Err(e) = app.auth.verify(&meta, &headers.signature) {
        let r = Refusal { status: StatusCode::UNAUTHORIZED, kind: "bad_signature", reason: e.to_string(), audit: true };
        note_refusal(app, conn, Some(&headers.sensor), &r);
        return response(r.status, error_body(&r.reason), "application/json", None);
    }
    // Authenticated from here on: every answer carries the proof.
    let checked = app.auth.check_replay(unix_now(), headers.timestamp, &headers.nonce);
    let result = match checked {
        Err(e) => {
            let kind = if matches!(e, AuthError::Replayed) { "replayed" } else { "stale" };
            Err(Refusal { status: StatusCode::UNAUTHORIZED, kind, reason: e.to_string(), audit: true })
        }
        Ok(()) => match (parts.method.clone(), path.as_str()) {
            (Method::POST, control::PATH_REGISTER) => register(app, conn, &headers, &body).await,
            (Method::POST, control::PATH_CHUNKS) => chunks(app, conn, &headers, &parts.headers, body).await,
            (Method::POST, control::PATH_STATUS) => status_report(app, conn, &headers, &body),
            (Method::GET, control::PATH_ACTIONS_WS) => {
                let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
                match upgrade.and_then(|u| crate::ws::accept(app.clone(), headers.sensor.clone(), &parts.headers, u)) {
                    Some(resp) => return resp,
                    None => Err(refusal(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        "a WebSocket upgrade is expected (Upgrade: websocket, Sec-WebSocket-Version: 13, Sec-WebSocket-Key)",
                    )),
                }
            }
            (m, control::PATH_REGISTER | control::PATH_CHUNKS) => {
                Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on {path} (POST)")))
            }
            (_, p) => Err(refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {:?}", p.chars().take(100).collect::<String>()))),
        },
    };
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(r) => {
            note_refusal(app, conn, Some(&headers.sensor), &r);
            (r.status, error_body(&r.reason))
        }
    };
    let proof = app.auth.proof(&headers.nonce, status.as_u16(), &body);
    response(status, body, "application/json", Some(proof))
}

/// `POST /v1/status`: keeps the sensor's running state for the status page.
fn status_report(app: &App, conn: &Conn, h: &AuthHeaders, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let r: control::StatusReport = serde_json::from_slice(body).map_err(|e| bad(format!("bad status report: {e}")))?;
    if r.interfaces.len() > MAX_INTERFACES || r.interfaces.iter().any(|i| i.name.len() > MAX_TEXT) {
        return Err(bad(format!("status report: at most {MAX_INTERFACES} interfaces with names of at most {MAX_TEXT} bytes")));
    }
    let leaving = r.leaving;
    app.reports.push(&h.sensor, timefmt::now_ns(), r);
    app.fleet.registry().seen(&h.sensor, h.epoch, &conn.remote.to_string(), unix_now());
    if leaving {
        app.fleet.leaving(&h.sensor);
        log!(log::BASIC, "sensor {} is stopping: the others' filters no longer leave flows to it", h.sensor);
        return Ok(json(&control::StatusAnswer::default()));
    }
    Ok(json(&control::StatusAnswer { filter: app.fleet.filter_for(&h.sensor) }))
}

async fn register(app: &App, conn: &Conn, h: &AuthHeaders, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let req: RegisterRequest = serde_json::from_slice(body).map_err(|e| bad(format!("bad registration body: {e}")))?;
    if req.sensor_id != h.sensor {
        return Err(bad(format!("sensor_id {:?} in the body differs from header {} {:?}", req.sensor_id, auth::H_SENSOR, h.sensor)));
    }
    if req.epoch != h.epoch {
        return Err(bad(format!("epoch {} in the body differs from header {} {}", req.epoch, auth::H_EPOCH, h.epoch)));
    }
    if req.hostname.len() > MAX_TEXT || req.version.len() > MAX_TEXT {
        return Err(bad(format!("hostname or version longer than {MAX_TEXT} bytes")));
    }
    if req.interfaces.len() > MAX_INTERFACES {
        return Err(bad(format!("{} interfaces (at most {MAX_INTERFACES})", req.interfaces.len())));
    }
    if req.collector_addresses.len() > MAX_COLLECTOR_ADDRESSES {
        return Err(bad(format!("{} collector addresses (at most {MAX_COLLECTOR_ADDRESSES})", req.collector_addresses.len())));
    }
    let mut addrs = Vec::with_capacity(req.collector_addresses.len());
    for a in &req.collector_addresses {
        // Parsed, not pasted: the filter text must not carry anything else.
        let ip: IpAddr = a.parse().map_err(|_| bad(format!("collector address {:?} is not an IP address", a.chars().take(80).collect::<String>())))?;
        addrs.push(ip);
    }
    let base = ossensor_shared::filter::exclude_collector(&addrs, Some(conn.local), req.collector_port);
    let files =
        app.store.sensor(&h.sensor).map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot open the sensor's state: {e}")))?;
    let last_seq = files.lock().await.last_seq(h.epoch);
    app.fleet
        .registry()
        .register(&req, &conn.remote.to_string(), unix_now())
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot write the registry: {e}")))?;
    app.fleet.registered(&h.sensor, base.clone());
    let filter = app.fleet.filter_for(&h.sensor).unwrap_or(base);
    log!(
        log::BASIC,
        "registered sensor {} (host {:?}, version {}, epoch {}, {} interfaces) from {}; last seq {:?}; filter: {filter}",
        req.sensor_id,
        req.hostname,
        req.version,
        req.epoch,
        req.interfaces.len(),
        conn.remote,
        last_seq
    );
    Ok(json(&RegisterResponse { filter, max_chunk_bytes: chunk::MAX_RAW_CHUNK as u64, last_seq, action_key: Some(app.actions.key.public.to_string()) }))
}

async fn chunks(app: &App, conn: &Conn, h: &AuthHeaders, headers: &HeaderMap, body: Bytes) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let req400 = StatusCode::BAD_REQUEST;
    let encoding_text = required(headers, chunk::H_ENCODING, req400)?;
    let encoding =
        Encoding::parse(encoding_text).ok_or_else(|| bad(format!("bad value {encoding_text:?} in header {} (zstd or identity)", chunk::H_ENCODING)))?;
    let raw_len: usize = parsed(chunk::H_RAW_LENGTH, required(headers, chunk::H_RAW_LENGTH, req400)?)?;
    let packets: u64 = parsed(chunk::H_PACKETS, required(headers, chunk::H_PACKETS, req400)?)?;
    let compressed = body.len();

    // Decompression and the block walk are CPU work: off the reactor.
    let decoded = tokio::task::spawn_blocking(move || chunk::decode(encoding, &body, raw_len, packets))
        .await
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("chunk check failed: {e}")))?;
    let (raw, summary) = decoded.map_err(|e| bad(format!("bad chunk: {e}")))?;

    let files =
        app.store.sensor(&h.sensor).map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot open the sensor's folder: {e}")))?;
    let mut guard = files.lock_owned().await;
    let limits = app.store.limits;
    let (epoch, seq) = (h.epoch, h.seq);
    let raw_bytes = raw.len();
    let outcome = tokio::task::spawn_blocking(move || guard.append(epoch, seq, &raw, packets, timefmt::now_ns(), &limits))
        .await
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("store task failed: {e}")))?;
    let stored = match outcome {
        Err(e) => {
            return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot store the chunk: {e}")));
        }
        Ok(AppendOutcome::Duplicate) => false,
        Ok(AppendOutcome::Stored { closed, .. }) => {
            if closed {
                crate::state::spawn_retention(app.store.clone());
            }
            true
        }
    };
    app.fleet.registry().seen(&h.sensor, h.epoch, &conn.remote.to_string(), unix_now());
    if log::enabled(log::CHUNKS) {
        let span = match (summary.first_ts_ns, summary.last_ts_ns) {
            (Some(a), Some(b)) => format!("{} .. {}", timefmt::rfc3339_millis(a), timefmt::rfc3339_millis(b)),
            _ => "no packets".to_string(),
        };
        log!(
            log::CHUNKS,
            "chunk sensor {} epoch {} seq {}: {} packets, {} sections, raw {raw_bytes} bytes, {} {compressed} bytes, {span}; {}",
            h.sensor,
            h.epoch,
            h.seq,
            summary.packets,
            summary.sections,
            encoding.as_str(),
            if stored { "stored" } else { "duplicate, not stored" }
        );
    }
    Ok(json(&ChunkAck { seq: h.seq, stored }))
}
