//! The operators' API for response actions (`/v1/operator/actions`),
//! authenticated by a bearer token that only the collector's host holds:
//! `DATA_DIR/operator.json` (mode 0600, with the collector's local URL), which
//! `vsensor action` reads. Sensors hold the HMAC key, not this token, so a
//! sensor cannot order actions.
//!
//! - `GET /v1/operator/actions`: every action with its state and reports.
//! - `POST /v1/operator/actions` `{"target": ..., "for_seconds": N}`: 201 and
//!   the new action; pushed at once to every connected sensor.
//! - `DELETE /v1/operator/actions/{id}`: cancels it (pushed at once).

use crate::api::{error_body, json, read_body, refusal, response, App, Conn, Refusal, Resp};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use ossensor_shared::control::{NewAction, PATH_OPERATOR_ACTIONS};
use ossensor_shared::response::{Endpoint, Target};
use ossensor_shared::{log, timefmt};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `DATA_DIR/operator.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorFile {
    /// Where `vsensor action` reaches this collector (from this host).
    pub url: String,
    pub token: String,
}

pub const OPERATOR_FILE: &str = "operator.json";

/// The token kept in `DATA_DIR/operator.json`, or a new one.
pub fn load_or_make_token(data_dir: &Path) -> Result<String, String> {
    let path = data_dir.join(OPERATOR_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let f: OperatorFile = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            if f.token.len() >= 32 {
                return Ok(f.token);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness for the operator token: {e}"))?;
    Ok(hex::encode(raw))
}

/// Writes `DATA_DIR/operator.json` (0600, temporary file then rename).
pub fn write_file(data_dir: &Path, f: &OperatorFile) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(OPERATOR_FILE);
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    out.write_all(&serde_json::to_vec_pretty(f).expect("serialisable"))?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)
}

/// The URL a local client uses for a listening address (a wildcard
/// address becomes loopback).
pub fn local_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v) if v.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(v) if v.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        std::net::IpAddr::V6(v) => format!("https://[{v}]:{}", addr.port()),
        v4 => format!("https://{v4}:{}", addr.port()),
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The operators' token, as `Authorization: Bearer TOKEN`, or for a
/// browser as HTTP Basic with the token as the password (any user name).
fn authorized(app: &App, headers: &hyper::HeaderMap) -> Result<(), Refusal> {
    let value = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = if let Some(t) = value.strip_prefix("Bearer ") {
        Some(t.trim().as_bytes().to_vec())
    } else if let Some(b) = value.strip_prefix("Basic ") {
        base64_decode(b.trim()).and_then(|d| d.iter().position(|c| *c == b':').map(|i| d[i + 1..].to_vec()))
    } else {
        None
    };
    match token {
        None => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            kind: "operator_auth",
            reason: "missing the operator token (Authorization: Bearer TOKEN, or Basic with the token as password)".into(),
            audit: true,
        }),
        Some(t) if !same(&t, app.operator_token.as_bytes()) => {
            Err(Refusal { status: StatusCode::UNAUTHORIZED, kind: "operator_auth", reason: "wrong operator token".into(), audit: true })
        }
        Some(_) => Ok(()),
    }
}

/// Standard base64 (RFC 4648, padding optional); None if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    if s.len() % 4 == 1 || s.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for group in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in group.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}

/// `/status` (the page), `/v1/operator/status` (JSON), `/metrics`
/// (Prometheus): GET only, with the operators' token.
pub async fn status(app: &App, conn: &Conn, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if let Err(r) = authorized(app, req.headers()) {
        app.note_refusal(conn, None, &r);
        let mut resp = response(r.status, error_body(&r.reason), "application/json", None);
        if path == "/status" {
            // Lets a browser ask for the token.
            resp.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Basic realm=\"vsensor\""));
        }
        return resp;
    }
    if req.method() != Method::GET {
        return response(StatusCode::METHOD_NOT_ALLOWED, error_body(&format!("{} not allowed on {path} (GET)", req.method())), "application/json", None);
    }
    let view = crate::status::view(app).await;
    match path.as_str() {
        "/status" => response(StatusCode::OK, crate::status::page(&view).into_bytes(), "text/html; charset=utf-8", None),
        "/metrics" => response(StatusCode::OK, crate::status::metrics(&view).into_bytes(), ossensor_shared::metrics::CONTENT_TYPE, None),
        _ => response(StatusCode::OK, json(&view), "application/json", None),
    }
}

pub async fn handle(app: &App, conn: &Conn, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let result = async {
        authorized(app, &parts.headers)?;
        let body = read_body(&parts.headers, body).await?;
        let path = parts.uri.path();
        let rest = path.strip_prefix(PATH_OPERATOR_ACTIONS).unwrap_or(path);
        let now = timefmt::now_ns();
        match (parts.method.clone(), rest) {
            (Method::GET, "" | "/") => {
                let view = app.actions.lock().unwrap_or_else(|e| e.into_inner()).view(now);
                Ok((StatusCode::OK, json(&serde_json::json!({ "actions": view }))))
            }
            (Method::POST, "" | "/") => {
                let new: NewAction = serde_json::from_slice(&body)
                    .map_err(|e| refusal(StatusCode::BAD_REQUEST, "malformed", format!("bad action: {e}")))?;
                check_target(&new.target)?;
                if let Some(p) = new.protocol.as_deref().filter(|p| !p.eq_ignore_ascii_case("tcp")) {
                    return Err(refusal(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        format!("protocol {p:?}: only TCP connections can be reset (a passive sensor cannot end a UDP or ICMP exchange)"),
                    ));
                }
                let view = {
                    let mut book = app.actions.lock().unwrap_or_else(|e| e.into_inner());
                    let id = book.create(now, new.target, new.for_seconds).map_err(|e| refusal(StatusCode::BAD_REQUEST, "malformed", e))?;
                    book.save().map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot save the action: {e}")))?;
                    book.view(now).into_iter().find(|v| v.id == id).expect("just created")
                };
                log!(log::BASIC, "response action {} created by {}: {:?} for {} s", view.id, conn.remote, view.target, new.for_seconds);
                log::audit(log::AuditSeverity::Notice, "action_created", &[("id", &view.id.to_string()), ("target", &format!("{:?}", view.target))]);
                app.actions_changed();
                Ok((StatusCode::CREATED, json(&view)))
            }
            (Method::DELETE, id) => {
                let id: u64 = id
                    .trim_start_matches('/')
                    .parse()
                    .map_err(|_| refusal(StatusCode::BAD_REQUEST, "malformed", format!("bad action id {:?}", id.trim_start_matches('/'))))?;
                let cancelled = {
                    let mut book = app.actions.lock().unwrap_or_else(|e| e.into_inner());
                    let r = book.cancel(now, id).ok_or_else(|| refusal(StatusCode::NOT_FOUND, "not_found", format!("no action {id}")))?;
                    book.save().map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot save the book: {e}")))?;
                    r
                };
                if cancelled {
                    log!(log::BASIC, "response action {id} cancelled by {}", conn.remote);
                    log::audit(log::AuditSeverity::Notice, "action_cancelled", &[("id", &id.to_string())]);
                    app.actions_changed();
                }
                Ok((StatusCode::OK, json(&serde_json::json!({ "id": id, "cancelled": cancelled }))))
            }
            (m, _) => Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on {path}"))),
        }
    }
    .await;
    match result {
        Ok((status, body)) => response(status, body, "application/json", None),
        Err(r) => {
            app.note_refusal(conn, None, &r);
            response(r.status, error_body(&r.reason), "application/json", None)
        }
    }
}

/// An action must name something narrower than "everything".
fn check_target(t: &Target) -> Result<(), Refusal> {
    let bad = |m: String| Err(refusal(StatusCode::BAD_REQUEST, "malformed", m));
    match t {
        Target::Block { a, b } => {
            for (name, e) in [("a", a), ("b", b)] {
                if e.ip.is_unspecified() {
                    return bad(format!("target.{name}.ip {} is unspecified", e.ip));
                }
                if e.port == Some(0) {
                    return bad(format!("target.{name}.port 0 is not a port"));
                }
            }
            let ep = |e: &Endpoint| (e.ip, e.port);
            if ep(a) == ep(b) {
                return bad("target.a and target.b are the same endpoint".into());
            }
            Ok(())
        }
        Target::Quarantine { host } if host.is_unspecified() => bad(format!("target.host {host} is unspecified")),
        Target::Quarantine { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls() {
        assert_eq!(local_url("0.0.0.0:8443".parse().unwrap()), "https://127.0.0.1:8443");
        assert_eq!(local_url("[::]:8443".parse().unwrap()), "https://[::1]:8443");
        assert_eq!(local_url("198.18.0.1:9".parse().unwrap()), "https://198.18.0.1:9");
    }

    #[test]
    fn token_is_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let t = load_or_make_token(dir.path()).unwrap();
        assert_eq!(t.len(), 64);
        write_file(dir.path(), &OperatorFile { url: "https://127.0.0.1:1".into(), token: t.clone() }).unwrap();
        assert_eq!(load_or_make_token(dir.path()).unwrap(), t);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join(OPERATOR_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn base64_decodes_like_rfc_4648() {
        assert_eq!(base64_decode("b3A6c2VjcmV0").unwrap(), b"op:secret");
        assert_eq!(base64_decode("b3A6c2VjcmV0MQ==").unwrap(), b"op:secret1");
        assert_eq!(base64_decode("b3A6c2VjcmV0MTI=").unwrap(), b"op:secret12");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("b3A6c2V*").is_none());
        assert!(base64_decode("b").is_none());
    }

    proptest::proptest! {
        #[test]
        fn base64_never_panics(s in "\\PC{0,64}") {
            let _ = base64_decode(&s);
        }
    }

    #[test]
    fn targets_must_be_specific() {
        let ip = |s: &str| s.parse().unwrap();
        assert!(check_target(&Target::Quarantine { host: ip("0.0.0.0") }).is_err());
        let e = |s: &str, p| Endpoint { ip: ip(s), port: p };
        assert!(check_target(&Target::Block { a: e("198.18.0.1", Some(0)), b: e("198.18.0.2", None) }).is_err());
        assert!(check_target(&Target::Block { a: e("198.18.0.1", None), b: e("198.18.0.1", None) }).is_err());
        assert!(check_target(&Target::Block { a: e("198.18.0.1", Some(80)), b: e("198.18.0.2", None) }).is_ok());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
