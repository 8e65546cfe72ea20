//! The operators' API: the fleet's status (`/status`, `/v1/operator/status`,
//! `/metrics`) and response actions (`/v1/operator/actions`), with the
//! operators' tokens from `DATA_DIR/operator.json` ([`crate::operator_file`]),
//! which only the collector's host holds; who may do what is
//! [`crate::operator_auth`]. Sensors hold the HMAC key, not these tokens, so
//! a sensor cannot order actions.
//!
//! - `GET /v1/operator/actions`: every action with its state and reports.
//! - `POST /v1/operator/actions` `{"target": ..., "for_seconds": N}`: 201 and
//!   the new action; pushed at once to every connected sensor.
//! - `DELETE /v1/operator/actions/{id}`: cancels it (pushed at once).

use crate::http::{error_body, header, json, note_refusal, refusal, refused, HeaderValue, Method, Refusal, Request, Response, StatusCode};
use crate::operator_auth::{may_act, may_read};
use crate::state::App;
use ossensor_shared::control::{NewAction, PATH_OPERATOR_ACTIONS, PATH_OPERATOR_STATUS};
use ossensor_shared::response::{Endpoint, Target};
use ossensor_shared::{log, timefmt};

/// The paths of the operators' API (served on the operators' listener
/// when there is one, and only there).
pub fn is_operator_path(path: &str) -> bool {
    matches!(path, "/status" | "/metrics" | PATH_OPERATOR_STATUS) || path == "/v1/operator" || path.starts_with("/v1/operator/")
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

/// `/status` (the page), `/v1/operator/status` (JSON), `/metrics`
/// (Prometheus): GET only, with the read token (or the action token).
pub async fn status(app: &App, req: &Request) -> Response {
    let path = req.path.as_str();
    if let Err(r) = may_read(&app.operator_tokens.current(), &req.headers) {
        let mut resp = refused(app, req, None, &r);
        if path == "/status" {
            // Lets a browser ask for the token.
            resp.headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"vsensor\""));
        }
        return resp;
    }
    if req.method != Method::GET {
        return Response::json(StatusCode::METHOD_NOT_ALLOWED, error_body(&format!("{} not allowed on {path} (GET)", req.method)));
    }
    let view = crate::status::view(app).await;
    match path {
        "/status" => Response::new(StatusCode::OK, crate::status::page(&view).into_bytes(), "text/html; charset=utf-8"),
        "/metrics" => Response::new(StatusCode::OK, crate::status::metrics(&view).into_bytes(), ossensor_shared::metrics::CONTENT_TYPE),
        _ => Response::json(StatusCode::OK, json(&view)),
    }
}

/// `/v1/operator/actions`: listing with the read token, ordering and
/// cancelling only as [`may_act`] allows.
pub async fn handle(app: &App, req: &Request) -> Response {
    let tokens = app.operator_tokens.current();
    let allowed = if req.method == Method::GET { may_read(&tokens, &req.headers) } else { may_act(&tokens, &req.method, &req.headers) };
    if let Err(r) = allowed {
        return refused(app, req, None, &r);
    }
    let result = async {
        let body = req.body()?;
        let path = req.path.as_str();
        let rest = path.strip_prefix(PATH_OPERATOR_ACTIONS).unwrap_or(path);
        let now = timefmt::now_ns();
        match (req.method.clone(), rest) {
            (Method::GET, "" | "/") => {
                let view = app.actions.book().view(now);
                Ok((StatusCode::OK, json(&serde_json::json!({ "actions": view }))))
            }
            (Method::POST, "" | "/") => {
                let new: NewAction = serde_json::from_slice(&body).map_err(|e| refusal(StatusCode::BAD_REQUEST, "malformed", format!("bad action: {e}")))?;
                check_target(&new.target)?;
                if let Some(p) = new.protocol.as_deref().filter(|p| !p.eq_ignore_ascii_case("tcp")) {
                    return Err(refusal(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        format!("protocol {p:?}: only TCP connections can be reset (a passive sensor cannot end a UDP or ICMP exchange)"),
                    ));
                }
                let view = {
                    let mut book = app.actions.book();
                    let id = book.create(now, new.target, new.for_seconds).map_err(|e| refusal(StatusCode::BAD_REQUEST, "malformed", e))?;
                    book.save().map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot save the action: {e}")))?;
                    book.view(now).into_iter().find(|v| v.id == id).expect("just created")
                };
                log!(log::BASIC, "response action {} created by {}: {:?} for {} s", view.id, req.conn.remote, view.target, new.for_seconds);
                log::audit(log::AuditSeverity::Notice, "action_created", &[("id", &view.id.to_string()), ("target", &format!("{:?}", view.target))]);
                app.actions.changed();
                Ok((StatusCode::CREATED, json(&view)))
            }
            (Method::DELETE, id) => {
                let id: u64 = id
                    .trim_start_matches('/')
                    .parse()
                    .map_err(|_| refusal(StatusCode::BAD_REQUEST, "malformed", format!("bad action id {:?}", id.trim_start_matches('/'))))?;
                let cancelled = {
                    let mut book = app.actions.book();
                    let r = book.cancel(now, id).ok_or_else(|| refusal(StatusCode::NOT_FOUND, "not_found", format!("no action {id}")))?;
                    book.save().map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot save the book: {e}")))?;
                    r
                };
                if cancelled {
                    log!(log::BASIC, "response action {id} cancelled by {}", req.conn.remote);
                    log::audit(log::AuditSeverity::Notice, "action_cancelled", &[("id", &id.to_string())]);
                    app.actions.changed();
                }
                Ok((StatusCode::OK, json(&serde_json::json!({ "id": id, "cancelled": cancelled }))))
            }
            (m, _) => Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on {path}"))),
        }
    }
    .await;
    match result {
        Ok((status, body)) => Response::json(status, body),
        Err(r) => {
            note_refusal(app, &req.conn, None, &r);
            Response::error(&r)
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
    fn operator_paths() {
        for p in ["/status", "/metrics", "/v1/operator/status", "/v1/operator/actions", "/v1/operator/actions/7", "/v1/operator/x", "/v1/operator"] {
            assert!(is_operator_path(p), "{p}");
        }
        for p in ["/healthz", "/v1/register", "/v1/chunks", "/v1/status", "/v1/actions/ws", "/v1/operatorx", "/statusx", "/"] {
            assert!(!is_operator_path(p), "{p}");
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
    }
}
