//! The operators' actions API (`/v1/operator/actions`): listing with the
//! read token, ordering and cancelling only as `may_act` allows. A new or
//! cancelled action is saved (`actions.json`) and pushed at once to every
//! connected sensor.
//!
//! - `GET`: every action with its state and reports.
//! - `POST` `{"target": ..., "for_seconds": N}`: 201 and the new action.
//! - `DELETE …/{id}`: cancels it.

use super::auth::{may_act, may_read};
use crate::http::{json, note_refusal, refusal, refused, Method, Refusal, Request, Response, StatusCode};
use crate::state::App;
use ossensor_host::log;
use ossensor_shared::actions::{Endpoint, Target};
use ossensor_shared::control::NewAction;

/// What a request to the actions API asks for (the router tells from its
/// method and path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    List,
    Create,
    /// The id as the path has it (checked here).
    Cancel(&'a str),
    /// No such method on this path.
    NotAllowed,
}

/// `/v1/operator/actions`: listing with the read token, ordering and
/// cancelling only as [`may_act`] allows.
pub async fn handle(app: &App, req: &Request, call: Call<'_>) -> Response {
    let tokens = app.operator_tokens.current();
    let allowed = if req.method == Method::GET { may_read(&tokens, &req.headers) } else { may_act(&tokens, &req.method, &req.headers) };
    if let Err(r) = allowed {
        return refused(app, req, None, &r);
    }
    let result = async {
        let body = req.body()?;
        let now = ossensor_host::clock::now_ns();
        match call {
            Call::List => {
                let view = app.actions.book().view(now);
                Ok((StatusCode::OK, json(&serde_json::json!({ "actions": view }))))
            }
            Call::Create => {
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
            Call::Cancel(id) => {
                let id: u64 = id.parse().map_err(|_| refusal(StatusCode::BAD_REQUEST, "malformed", format!("bad action id {id:?}")))?;
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
            Call::NotAllowed => Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{} not allowed on {}", req.method, req.path))),
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
    fn targets_must_be_specific() {
        let ip = |s: &str| s.parse().unwrap();
        assert!(check_target(&Target::Quarantine { host: ip("0.0.0.0") }).is_err());
        let e = |s: &str, p| Endpoint { ip: ip(s), port: p };
        assert!(check_target(&Target::Block { a: e("198.18.0.1", Some(0)), b: e("198.18.0.2", None) }).is_err());
        assert!(check_target(&Target::Block { a: e("198.18.0.1", None), b: e("198.18.0.1", None) }).is_err());
        assert!(check_target(&Target::Block { a: e("198.18.0.1", Some(80)), b: e("198.18.0.2", None) }).is_ok());
    }
}
