//! The accept loop: TLS over each TCP connection, HTTP/1.1 (keep-alive) with
//! hyper over each TLS stream, and a graceful stop. The caller hands in the
//! listener and the shutdown future, so tests bind port 0 and stop cleanly.
//! Each listener answers what it [`Serves`]: everything, or, with a separate
//! operators' listener, only the sensors' or only the operators' paths.
//!
//! Also the periodic driver: closes files that are too old, runs retention,
//! writes the per-sensor statistics line and flushes the registry.

use crate::http::{self, refusal, refused, Conn, Request, Response, StatusCode, Upgraded};
use crate::state::{self, App};
use crate::store::CloseReason;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ossensor_shared::chunk;
use ossensor_shared::log;
use ossensor_shared::timefmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after the stop signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the statistics line is written (level 1).
const STATS_INTERVAL: Duration = Duration::from_secs(10);

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
        let operators = crate::operator::is_operator_path(path);
        match self {
            Serves::All => true,
            Serves::Sensors => !operators,
            Serves::Operators => operators || path == "/healthz",
        }
    }
}

/// One request on a listener that serves `serves`.
async fn dispatch(serves: Serves, app: &Arc<App>, req: Request) -> Response {
    if serves.answers(&req.path) {
        return crate::api::handle(app, req).await;
    }
    let path = req.path.chars().take(100).collect::<String>();
    let r = refusal(StatusCode::NOT_FOUND, "not_found", format!("no such path {path:?}"));
    // The connection stays usable unless the body was too large to read.
    let resp = refused(app, &req, None, &r);
    log!(log::SENDS, "{} {path} from {} on the {serves:?} listener: 404", req.method, req.conn.remote);
    resp
}

/// The hyper service, a thin adapter: hyper's request to a plain
/// [`Request`] (the body read whole, within its limits), the plain
/// [`Response`] back to hyper's, and a protocol switch handed over.
async fn service(serves: Serves, app: Arc<App>, conn: Conn, req: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = read_body(&parts.headers, body).await;
    let req = Request { method: parts.method, path: parts.uri.path().to_string(), headers: parts.headers, body, conn, can_upgrade: upgrade.is_some() };
    let mut resp = dispatch(serves, &app, req).await;
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

/// Accepts connections until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (up to [`DRAIN_TIMEOUT`]) and returns.
pub async fn serve(listener: TcpListener, serves: Serves, app: Arc<App>, tls: Arc<rustls::ServerConfig>, shutdown: impl Future<Output = ()>) {
    let acceptor = TlsAcceptor::from(tls);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let local = match tcp.local_addr() {
                        Ok(a) => a,
                        Err(_) => continue,
                    };
                    let _ = tcp.set_nodelay(true);
                    let conn = Conn { remote, local };
                    connections.spawn(connection(tcp, conn, serves, acceptor.clone(), app.clone(), stop_rx.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    log!(log::BASIC, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let in_flight = connections.len();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log!(log::BASIC, "shutdown: {} of {in_flight} connections still busy after {:?}; closing them", connections.len(), DRAIN_TIMEOUT);
        connections.shutdown().await;
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    conn: Conn,
    serves: Serves,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                log!(log::SENDS, "TLS handshake with {} failed: {e}", conn.remote);
                return;
            }
            Err(_) => {
                log!(log::SENDS, "TLS handshake with {} timed out", conn.remote);
                return;
            }
        },
        _ = stopped(&mut stop) => return,
    };
    let service = service_fn(move |req| service(serves, app.clone(), conn, req));
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    tokio::pin!(http);
    tokio::select! {
        r = http.as_mut() => {
            if let Err(e) = r {
                log!(log::SENDS, "connection from {}: {e}", conn.remote);
            }
        }
        _ = stopped(&mut stop) => {
            // Finish the request in flight, then close (idle keep-alive
            // connections close at once).
            http.as_mut().graceful_shutdown();
            let _ = http.await;
        }
    }
}

/// Every second: close files past their age limit (then run retention);
/// every [`STATS_INTERVAL`]: the statistics line and a registry flush.
/// Runs until dropped/aborted.
pub async fn periodic(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let limits = app.store.limits;
        let mut closed_any = false;
        for sensor in app.store.all_sensors() {
            // A sensor busy appending checks its own rotation.
            let Ok(guard) = sensor.try_lock_owned() else { continue };
            let now = timefmt::now_ns();
            let mut guard = guard;
            match tokio::task::spawn_blocking(move || guard.close_if_due(now, &limits)).await {
                Ok(Ok(true)) => closed_any = true,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => log!(log::BASIC, "cannot close a file: {e}"),
                Err(e) => log!(log::BASIC, "rotation task failed: {e}"),
            }
        }
        if closed_any {
            state::spawn_retention(app.store.clone());
        }
        let app2 = app.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || app2.actions.save_if_reported()).await {
            log!(log::BASIC, "cannot write the response actions: {e}");
        }
        if last_stats.elapsed() >= STATS_INTERVAL {
            last_stats = tokio::time::Instant::now();
            for sensor in app.store.all_sensors() {
                let mut s = sensor.lock().await;
                let i = std::mem::take(&mut s.interval);
                if i.chunks > 0 || i.duplicates > 0 {
                    log!(
                        log::STATS,
                        "stats sensor {}: last {}s: {} chunks, {} packets, {} bytes stored, {} duplicates; since start: {} chunks, {} packets, {} bytes, {} duplicates",
                        s.id(),
                        STATS_INTERVAL.as_secs(),
                        i.chunks,
                        i.packets,
                        i.bytes,
                        i.duplicates,
                        s.total.chunks,
                        s.total.packets,
                        s.total.bytes,
                        s.total.duplicates
                    );
                }
            }
            let app2 = app.clone();
            let flushed = tokio::task::spawn_blocking(move || app2.fleet.registry().flush()).await;
            if let Ok(Err(e)) = flushed {
                log!(log::BASIC, "cannot write the registry: {e}");
            }
        }
    }
}

/// Closes (and syncs) every open file and writes the registry. Call after
/// [`serve`] returned.
pub async fn close_all(app: Arc<App>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut first_err = None;
        for sensor in app.store.all_sensors() {
            let mut s = sensor.blocking_lock();
            if let Err(e) = s.close(CloseReason::Shutdown) {
                log!(log::BASIC, "sensor {}: cannot close its file: {e}", s.id());
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = app.fleet.registry().flush() {
            log!(log::BASIC, "cannot write the registry: {e}");
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Completes when the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::Serves;

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
