//! HTTP as plain data for the handlers: a [`Request`] in (method, path,
//! headers, the body's bytes, the connection's two addresses), a
//! [`Response`] out (status, headers, body), and the refusals in between.
//! No socket, no hyper (`server` adapts hyper's types to these and back),
//! and no knowledge of routes (`router`), so every handler runs in a test
//! without TCP or TLS.
//!
//! The body arrives whole: the adapter reads it before routing, never more
//! than [`chunk::MAX_BODY`] bytes (a larger declared length is refused
//! before reading anything) nor for longer than [`BODY_TIMEOUT`]. Where it
//! could not, [`Request::body`] holds the refusal (413, 408, 400), which a
//! handler answers with where it needs the body; a refusal for anything
//! else comes first, as if the body were still to be read, and its answer
//! closes the connection ([`Request::body_unread`]). Trade-off: a request
//! is answered only once its body is in, even where the handler would not
//! look at it (a `GET /status` announcing a body waits for it, at most
//! [`BODY_TIMEOUT`]); in exchange no handler deals with streams, and a
//! refusal still leaves a keep-alive connection at a request boundary.
//!
//! A protocol switch (the sensors' WebSocket) cannot be plain data: a
//! handler answers 101 with a [`Response::on_upgrade`] callback, which the
//! adapter calls with the connection's stream once hyper hands it over.

use crate::state::App;
use ossensor_host::log;
use ossensor_host::log::AuditSeverity;
use ossensor_shared::chunk;
use ossensor_shared::control::ErrorBody;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

pub use ::http::header::{self, HeaderMap, HeaderValue};
pub use ::http::{Method, StatusCode};
pub use bytes::Bytes;

/// How long a request's body may take to arrive, from the end of its head:
/// a client trickling its body (or sending none after announcing one)
/// gets 408 and its connection is closed. A sensor's chunk is at most a few
/// MiB, so this asks for under 1 MiB/s even at [`chunk::MAX_BODY`].
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The two ends of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// One request, read whole.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The URI's path (no query).
    pub path: String,
    pub headers: HeaderMap,
    /// The body, or why it was not read to its end.
    pub body: Result<Bytes, Refusal>,
    pub conn: Conn,
    /// Whether the connection can switch protocols (an HTTP/1.1 request
    /// with `Upgrade`): only then may a handler answer 101.
    pub can_upgrade: bool,
}

impl Request {
    /// A request whose body arrived whole, on a connection from `remote`
    /// to `local` that cannot switch protocols.
    pub fn new(method: Method, path: impl Into<String>, headers: HeaderMap, body: impl Into<Bytes>, remote: SocketAddr, local: SocketAddr) -> Request {
        Request { method, path: path.into(), headers, body: Ok(body.into()), conn: Conn { remote, local }, can_upgrade: false }
    }

    /// The body, or the refusal the handler answers with.
    pub fn body(&self) -> Result<Bytes, Refusal> {
        self.body.clone()
    }

    /// Whether the body was not read to its end, so the connection is not
    /// at a request boundary and must close after the answer.
    pub fn body_unread(&self) -> bool {
        self.body.as_ref().is_err_and(|r| ends_connection(r.status))
    }
}

/// The connection after a `101 Switching Protocols`: any byte stream.
pub trait UpgradedIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> UpgradedIo for T {}
pub type Upgraded = Box<dyn UpgradedIo>;
/// What serves a switched connection: called once with the stream (or why
/// the switch failed), and runs until the connection ends.
pub type OnUpgrade = Box<dyn FnOnce(std::io::Result<Upgraded>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One answer.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// With a 101: what serves the connection afterwards.
    pub on_upgrade: Option<OnUpgrade>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("on_upgrade", &self.on_upgrade.is_some())
            .finish()
    }
}

impl Response {
    /// `status` with `body` of `content_type`.
    pub fn new(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        Response { status, headers, body, on_upgrade: None }
    }

    /// A JSON answer.
    pub fn json(status: StatusCode, body: Vec<u8>) -> Response {
        Response::new(status, body, "application/json")
    }

    /// The answer to a refusal: `{"error": reason}`.
    pub fn error(r: &Refusal) -> Response {
        Response::json(r.status, error_body(&r.reason))
    }

    /// Closes the connection after this answer.
    pub fn close(&mut self) {
        self.headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// A request turned away: status, a short kind (for rate-limited logging)
/// and the reason the client reads; `audit`: an authentication failure,
/// also written to the audit trail.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub kind: &'static str,
    pub reason: String,
    pub audit: bool,
}

pub fn refusal(status: StatusCode, kind: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal { status, kind, reason: reason.into(), audit: false }
}

/// Should the connection close after this refusal (the body was not read
/// to its end, so the stream is not at a request boundary)?
pub fn ends_connection(status: StatusCode) -> bool {
    matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT)
}

/// Logs a refusal at level 0 (and audits authentication failures), at
/// most once a minute per source and kind.
pub fn note_refusal(app: &App, conn: &Conn, sensor: Option<&str>, r: &Refusal) {
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

/// A refusal noted and answered; the connection closes if the body was not
/// read to its end.
pub fn refused(app: &App, req: &Request, sensor: Option<&str>, r: &Refusal) -> Response {
    note_refusal(app, &req.conn, sensor, r);
    let mut resp = Response::error(r);
    if req.body_unread() {
        resp.close();
    }
    resp
}

pub fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("control messages serialize")
}

pub fn error_body(reason: &str) -> Vec<u8> {
    json(&ErrorBody { error: reason.to_string() })
}

/// A header's value as text, trimmed; None if absent.
pub fn header<'a>(h: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Refusal> {
    match h.get(name) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| refusal(StatusCode::BAD_REQUEST, "malformed", format!("header {name} is not text"))),
    }
}

// The body's limits, for the adapter that reads it.

/// Refuses a body whose declared length exceeds [`chunk::MAX_BODY`],
/// before anything of it is read.
pub fn check_declared_length(headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(len) = header(headers, header::CONTENT_LENGTH.as_str())? {
        if len.parse::<u64>().is_ok_and(|n| n > chunk::MAX_BODY as u64) {
            return Err(body_too_large(len));
        }
    }
    Ok(())
}

/// 413: a body of `n` bytes (or "more than …").
pub fn body_too_large(n: &str) -> Refusal {
    refusal(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("body of {n} bytes exceeds the limit of {} bytes", chunk::MAX_BODY))
}

/// 413: the body grew past [`chunk::MAX_BODY`] while it was read.
pub fn body_over_limit() -> Refusal {
    body_too_large(&format!("more than {}", chunk::MAX_BODY))
}

/// 408: the body did not arrive within [`BODY_TIMEOUT`].
pub fn body_timeout() -> Refusal {
    refusal(StatusCode::REQUEST_TIMEOUT, "timeout", format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()))
}

/// 400: the body could not be read.
pub fn body_unreadable(e: impl std::fmt::Display) -> Refusal {
    refusal(StatusCode::BAD_REQUEST, "malformed", format!("cannot read the body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let mut h = HeaderMap::new();
        assert!(check_declared_length(&h).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(chunk::MAX_BODY as u64));
        assert!(check_declared_length(&h).is_ok());
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(chunk::MAX_BODY as u64 + 1));
        let r = check_declared_length(&h).unwrap_err();
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(ends_connection(r.status));
    }

    #[test]
    fn an_unread_body_closes_the_connection() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut req = Request::new(Method::GET, "/", HeaderMap::new(), Vec::new(), a, a);
        assert!(!req.body_unread());
        req.body = Err(body_timeout());
        assert!(req.body_unread());
        req.body = Err(body_unreadable("reset"));
        assert!(!req.body_unread());
    }
}
