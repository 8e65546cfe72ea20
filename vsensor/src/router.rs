//! The only module that knows every route, and which listener answers
//! which: a plain [`Request`] in, a plain [`Response`] out, the request
//! logged (level 2). No socket and no hyper, so a test drives the
//! collector's real handlers by calling [`handle`].
//!
//! | Path | Method | Handler |
//! |---|---|---|
//! | `/healthz` | GET | here: `200 ok` |
//! | `/status`, `/v1/operator/status`, `/metrics` | GET | [`operator::status`] (page, JSON, metrics) |
//! | `/v1/operator/actions`, `…/{id}` | GET, POST; DELETE | [`operator::actions`] |
//! | `/v1/register` | POST | [`ingest::register`] |
//! | `/v1/chunks` | POST | [`ingest::chunks`] |
//! | `/v1/status` | POST | [`ingest::report`] |
//! | `/v1/actions/ws` | GET | [`ingest::ws`] (switches to a WebSocket) |
//!
//! Any other `/v1/…` path is a sensors' path: it is authenticated first
//! ([`ingest::authenticate`]), so only a signed request learns that it does
//! not exist (404 with the proof); anything else is a plain 404. With a
//! separate operators' listener (`VSENSOR_OPERATOR_LISTEN`), each listener
//! answers only its own paths ([`Serves`]) and 404 for the others.

use crate::http::{refusal, refused, Method, Request, Response, StatusCode};
use crate::ingest;
use crate::operator;
use crate::operator::actions::Call;
use crate::operator::status::Rendering;
use crate::state::App;
use ossensor_host::log;
use ossensor_shared::auth;
use ossensor_shared::control::{PATH_ACTIONS_WS, PATH_CHUNKS, PATH_OPERATOR_ACTIONS, PATH_OPERATOR_STATUS, PATH_REGISTER, PATH_STATUS};
use std::sync::Arc;

/// Which requests a listener answers; the others get the 404 of an unknown
/// path, so the sensors' listener does not even tell that an operators'
/// API exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Sensors and operators: the only listener.
    All,
    /// Sensors only (the operators have their own listener).
    Sensors,
    /// The operators' API only (`VSENSOR_OPERATOR_LISTEN`).
    Operators,
}

impl Serves {
    fn answers(self, path: &str) -> bool {
        let operators = is_operator_path(path);
        match self {
            Serves::All => true,
            Serves::Sensors => !operators,
            Serves::Operators => operators || path == "/healthz",
        }
    }
}

/// The paths of the operators' API (served on the operators' listener
/// when there is one, and only there).
pub fn is_operator_path(path: &str) -> bool {
    matches!(path, "/status" | "/metrics" | PATH_OPERATOR_STATUS) || path == "/v1/operator" || path.starts_with("/v1/operator/")
}

/// One request on a listener that serves `serves`.
pub async fn handle(app: &Arc<App>, serves: Serves, req: Request) -> Response {
    if !serves.answers(&req.path) {
        let path = req.path.chars().take(100).collect::<String>();
        let r = refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {path:?}"));
        // The connection stays usable unless the body was too large to read.
        let resp = refused(app, &req, None, &r);
        log!(log::SENDS, "{} {path} from {} on the {serves:?} listener: 404", req.method, req.conn.remote);
        return resp;
    }
    let sensor = req.headers.get(auth::H_SENSOR).and_then(|v| v.to_str().ok()).unwrap_or("-").chars().take(64).collect::<String>();
    let seq = req.headers.get(auth::H_SEQ).and_then(|v| v.to_str().ok()).unwrap_or("-").chars().take(24).collect::<String>();
    let resp = route(app, &req).await;
    log!(log::SENDS, "{} {} from {} sensor {sensor} seq {seq}: {}", req.method, req.path, req.conn.remote, resp.status.as_u16());
    resp
}

async fn route(app: &Arc<App>, req: &Request) -> Response {
    let path = req.path.as_str();
    if let Some(rest) = path.strip_prefix(PATH_OPERATOR_ACTIONS) {
        let call = match (&req.method, rest) {
            (&Method::GET, "" | "/") => Call::List,
            (&Method::POST, "" | "/") => Call::Create,
            (&Method::DELETE, id) => Call::Cancel(id.trim_start_matches('/')),
            _ => Call::NotAllowed,
        };
        return operator::actions::handle(app, req, call).await;
    }
    let rendering = match path {
        "/status" => Some(Rendering::Page),
        "/metrics" => Some(Rendering::Metrics),
        PATH_OPERATOR_STATUS => Some(Rendering::Json),
        _ => None,
    };
    if let Some(rendering) = rendering {
        return operator::status::handle(app, req, rendering).await;
    }
    if !path.starts_with("/v1/") {
        let r = match (path, &req.method) {
            ("/healthz", &Method::GET) => return Response::new(StatusCode::OK, b"ok".to_vec(), "text/plain"),
            ("/healthz", m) => refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on /healthz (GET)")),
            (p, _) => refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {:?}", p.chars().take(100).collect::<String>())),
        };
        // The connection stays usable unless the body was too large to read.
        return refused(app, req, None, &r);
    }

    // The sensors' API: authenticated before anything else.
    let signed = match ingest::authenticate(app, req) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let result = match (&req.method, path) {
        (&Method::POST, PATH_REGISTER) => ingest::register::handle(app, req, &signed).await,
        (&Method::POST, PATH_CHUNKS) => ingest::chunks::handle(app, req, &signed).await,
        (&Method::POST, PATH_STATUS) => ingest::report::handle(app, req, &signed),
        (&Method::GET, PATH_ACTIONS_WS) => match ingest::ws::accept(app.clone(), &signed, req) {
            Ok(switching) => return switching,
            Err(r) => Err(r),
        },
        (m, PATH_REGISTER | PATH_CHUNKS) => Err(refusal(StatusCode::METHOD_NOT_ALLOWED, "method", format!("{m} not allowed on {path} (POST)"))),
        (_, p) => Err(refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {:?}", p.chars().take(100).collect::<String>()))),
    };
    ingest::answer(app, req, &signed, result)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn each_listener_answers_its_paths() {
        for path in ["/status", "/metrics", "/v1/operator/status", "/v1/operator/actions/3"] {
            assert!(Serves::All.answers(path) && Serves::Operators.answers(path) && !Serves::Sensors.answers(path), "{path}");
        }
        for path in ["/v1/register", "/v1/chunks", "/v1/status", "/v1/actions/ws", "/nothing"] {
            assert!(Serves::All.answers(path) && Serves::Sensors.answers(path) && !Serves::Operators.answers(path), "{path}");
        }
        assert!(Serves::All.answers("/healthz") && Serves::Sensors.answers("/healthz") && Serves::Operators.answers("/healthz"));
    }
}
