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

use crate::http::{header, json, note_refusal, refusal, refused, Bytes, HeaderMap, HeaderValue, Method, Refusal, Request, Response, StatusCode};
use crate::state::{unix_now, App};
use crate::store::AppendOutcome;
use ossensor_shared::auth::{self, AuthError, RequestMeta};
use ossensor_shared::chunk::{self, Encoding};
use ossensor_shared::control::{self, ChunkAck, RegisterRequest, RegisterResponse};
use ossensor_shared::{log, timefmt};
use std::net::IpAddr;
use std::sync::Arc;

/// Limits on what a registration may carry into the registry.
const MAX_TEXT: usize = 255;
const MAX_INTERFACES: usize = 4096;
const MAX_COLLECTOR_ADDRESSES: usize = 64;

/// The authentication headers, parsed.
struct AuthHeaders {
    sensor: String,
    epoch: u64,
    seq: u64,
    timestamp: i64,
    nonce: String,
    signature: String,
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

/// One request in, one answer out.
pub async fn handle(app: &Arc<App>, req: Request) -> Response {
    let sensor = req.headers.get(auth::H_SENSOR).and_then(|v| v.to_str().ok()).unwrap_or("-").chars().take(64).collect::<String>();
    let seq = req.headers.get(auth::H_SEQ).and_then(|v| v.to_str().ok()).unwrap_or("-").chars().take(24).collect::<String>();
    let resp = if req.path.starts_with(control::PATH_OPERATOR_ACTIONS) {
        crate::operator::handle(app, &req).await
    } else if matches!(req.path.as_str(), "/status" | "/metrics" | control::PATH_OPERATOR_STATUS) {
        crate::operator::status(app, &req).await
    } else {
        route(app, &req).await
    };
    log!(log::SENDS, "{} {} from {} sensor {sensor} seq {seq}: {}", req.method, req.path, req.conn.remote, resp.status.as_u16());
    resp
}

async fn route(app: &Arc<App>, req: &Request) -> Response {
    let path = req.path.as_str();
    if !path.starts_with("/v1/") {
        let r = match (path, &req.method) {
            ("/healthz", &Method::GET) => return Response::new(StatusCode::OK, b"ok".to_vec(), "text/plain"),
            ("/healthz", m) => refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on /healthz (GET)")),
            (p, _) => refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {:?}", p.chars().take(100).collect::<String>())),
        };
        // The connection stays usable unless the body was too large to read.
        return refused(app, req, None, &r);
    }

    let headers = match AuthHeaders::parse(&req.headers) {
        Ok(h) => h,
        Err(r) => return refused(app, req, None, &r),
    };
    let body = match req.body() {
        Ok(b) => b,
        // The rest of the body was not read: this connection is done.
        Err(r) => return refused(app, req, Some(&headers.sensor), &r),
    };
    let meta = RequestMeta {
        method: req.method.as_str().to_string(),
        path: path.to_string(),
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
        return Response::error(&r);
    }
    // Authenticated from here on: every answer carries the proof.
    let checked = app.auth.check_replay(unix_now(), headers.timestamp, &headers.nonce);
    let result = match checked {
        Err(e) => {
            let kind = if matches!(e, AuthError::Replayed) { "replayed" } else { "stale" };
            Err(Refusal { status: StatusCode::UNAUTHORIZED, kind, reason: e.to_string(), audit: true })
        }
        Ok(()) => match (req.method.clone(), path) {
            (Method::POST, control::PATH_REGISTER) => register(app, req, &headers, &body).await,
            (Method::POST, control::PATH_CHUNKS) => chunks(app, req, &headers, body).await,
            (Method::POST, control::PATH_STATUS) => status_report(app, req, &headers, &body),
            (Method::GET, control::PATH_ACTIONS_WS) => match crate::ws::accept(app.clone(), headers.sensor.clone(), req) {
                Some(resp) => return resp,
                None => Err(refusal(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "a WebSocket upgrade is expected (Upgrade: websocket, Sec-WebSocket-Version: 13, Sec-WebSocket-Key)",
                )),
            },
            (m, control::PATH_REGISTER | control::PATH_CHUNKS) => {
                Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on {path} (POST)")))
            }
            (_, p) => Err(refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {:?}", p.chars().take(100).collect::<String>()))),
        },
    };
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(r) => {
            note_refusal(app, &req.conn, Some(&headers.sensor), &r);
            (r.status, crate::http::error_body(&r.reason))
        }
    };
    let proof = app.auth.proof(&headers.nonce, status.as_u16(), &body);
    let mut resp = Response::json(status, body);
    resp.headers.insert(auth::H_PROOF, HeaderValue::from_str(&proof).expect("hex is a valid header value"));
    resp
}

/// `POST /v1/status`: keeps the sensor's running state for the status page.
fn status_report(app: &App, req: &Request, h: &AuthHeaders, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let r: control::StatusReport = serde_json::from_slice(body).map_err(|e| bad(format!("bad status report: {e}")))?;
    if r.interfaces.len() > MAX_INTERFACES || r.interfaces.iter().any(|i| i.name.len() > MAX_TEXT) {
        return Err(bad(format!("status report: at most {MAX_INTERFACES} interfaces with names of at most {MAX_TEXT} bytes")));
    }
    let leaving = r.leaving;
    app.reports.push(&h.sensor, timefmt::now_ns(), r);
    app.fleet.registry().seen(&h.sensor, h.epoch, &req.conn.remote.to_string(), unix_now());
    if leaving {
        app.fleet.leaving(&h.sensor);
        log!(log::BASIC, "sensor {} is stopping: the others' filters no longer leave flows to it", h.sensor);
        return Ok(json(&control::StatusAnswer::default()));
    }
    Ok(json(&control::StatusAnswer { filter: app.fleet.filter_for(&h.sensor) }))
}

async fn register(app: &App, req: &Request, h: &AuthHeaders, body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let reg: RegisterRequest = serde_json::from_slice(body).map_err(|e| bad(format!("bad registration body: {e}")))?;
    if reg.sensor_id != h.sensor {
        return Err(bad(format!("sensor_id {:?} in the body differs from header {} {:?}", reg.sensor_id, auth::H_SENSOR, h.sensor)));
    }
    if reg.epoch != h.epoch {
        return Err(bad(format!("epoch {} in the body differs from header {} {}", reg.epoch, auth::H_EPOCH, h.epoch)));
    }
    if reg.hostname.len() > MAX_TEXT || reg.version.len() > MAX_TEXT {
        return Err(bad(format!("hostname or version longer than {MAX_TEXT} bytes")));
    }
    if reg.interfaces.len() > MAX_INTERFACES {
        return Err(bad(format!("{} interfaces (at most {MAX_INTERFACES})", reg.interfaces.len())));
    }
    if reg.collector_addresses.len() > MAX_COLLECTOR_ADDRESSES {
        return Err(bad(format!("{} collector addresses (at most {MAX_COLLECTOR_ADDRESSES})", reg.collector_addresses.len())));
    }
    let mut addrs = Vec::with_capacity(reg.collector_addresses.len());
    for a in &reg.collector_addresses {
        // Parsed, not pasted: the filter text must not carry anything else.
        let ip: IpAddr = a.parse().map_err(|_| bad(format!("collector address {:?} is not an IP address", a.chars().take(80).collect::<String>())))?;
        addrs.push(ip);
    }
    let base = ossensor_shared::filter::exclude_collector(&addrs, Some(req.conn.local), reg.collector_port);
    let files =
        app.store.sensor(&h.sensor).map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot open the sensor's state: {e}")))?;
    let last_seq = files.lock().await.last_seq(h.epoch);
    app.fleet
        .registry()
        .register(&reg, &req.conn.remote.to_string(), unix_now())
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot write the registry: {e}")))?;
    app.fleet.registered(&h.sensor, base.clone());
    let filter = app.fleet.filter_for(&h.sensor).unwrap_or(base);
    log!(
        log::BASIC,
        "registered sensor {} (host {:?}, version {}, epoch {}, {} interfaces) from {}; last seq {:?}; filter: {filter}",
        reg.sensor_id,
        reg.hostname,
        reg.version,
        reg.epoch,
        reg.interfaces.len(),
        req.conn.remote,
        last_seq
    );
    Ok(json(&RegisterResponse { filter, max_chunk_bytes: chunk::MAX_RAW_CHUNK as u64, last_seq, action_key: Some(app.actions.key.public.to_string()) }))
}

async fn chunks(app: &App, req: &Request, h: &AuthHeaders, body: Bytes) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let req400 = StatusCode::BAD_REQUEST;
    let headers = &req.headers;
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
    app.fleet.registry().seen(&h.sensor, h.epoch, &req.conn.remote.to_string(), unix_now());
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
