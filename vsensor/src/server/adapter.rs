//! hyper and the plain HTTP of the handlers ([`crate::http`]), the only
//! place they meet: hyper's request becomes a plain [`Request`], its body
//! read whole first (the declared length checked before anything is read,
//! at most [`chunk::MAX_BODY`] bytes, within [`http::BODY_TIMEOUT`]); the
//! router's plain [`Response`] becomes hyper's. A 101 answer's callback
//! gets the connection once hyper lets go of it (the sensors' WebSocket).

use crate::http::{self, Conn, Request, Upgraded};
use crate::router::{self, Serves};
use crate::state::App;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use ossensor_shared::chunk;
use std::sync::Arc;

/// The hyper service: hyper's request to a plain
/// [`Request`] (the body read whole, within its limits), the plain
/// [`Response`] back to hyper's, and a protocol switch handed over.
pub(super) async fn service(
    serves: Serves,
    app: Arc<App>,
    conn: Conn,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = read_body(&parts.headers, body).await;
    let req = Request { method: parts.method, path: parts.uri.path().to_string(), headers: parts.headers, body, conn, can_upgrade: upgrade.is_some() };
    let mut resp = router::handle(&app, serves, req).await;
    if let (Some(serve), Some(upgrade)) = (resp.on_upgrade.take(), upgrade) {
        tokio::spawn(async move {
            let io = upgrade.await.map(|u| Box::new(TokioIo::new(u)) as Upgraded).map_err(std::io::Error::other);
            serve(io).await
        });
    }
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() = resp.status;
    *out.headers_mut() = resp.headers;
    Ok(out)
}

/// Reads the body, never more than [`chunk::MAX_BODY`] bytes, nor for
/// longer than [`http::BODY_TIMEOUT`].
async fn read_body(headers: &hyper::HeaderMap, body: Incoming) -> Result<Bytes, http::Refusal> {
    http::check_declared_length(headers)?;
    match tokio::time::timeout(http::BODY_TIMEOUT, Limited::new(body, chunk::MAX_BODY).collect()).await {
        Err(_) => Err(http::body_timeout()),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(http::body_over_limit()),
        Ok(Err(e)) => Err(http::body_unreadable(e)),
    }
}
