//! The accept loop: TLS over each TCP connection, HTTP/1.1 (keep-alive) with
//! hyper over each TLS stream, and a graceful stop. The caller hands in the
//! listener and the shutdown future, so tests bind port 0 and stop cleanly.
//! Each listener answers what it [`Serves`]: everything, or, with a separate
//! operators' listener, only the sensors' or only the operators' paths.
//!
//! - `adapter`: hyper's requests and answers to and from the plain ones
//!   the router takes and gives;
//! - `periodic`: the once-a-second driver (rotation, retention, the
//!   statistics line, the registry) and the last writes at shutdown.

mod adapter;
pub mod periodic;

pub use periodic::{close_all, periodic};

use crate::http::Conn;
use crate::router::Serves;
use crate::state::App;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ossensor_host::log;
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
    let service = service_fn(move |req| adapter::service(serves, app.clone(), conn, req));
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

/// Completes when the stop flag is set (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
