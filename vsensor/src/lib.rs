//! `vsensor`, the collector: registers sensors, verifies their signed
//! requests and stores their chunks as rotating pcapng files.
//!
//! # Module graph
//!
//! One way only: a module uses modules of lower layers, never one of its
//! own layer or above (`tests/module_graph.rs` reads this table and checks
//! every `crate::` path against it). [`Collector`], here, stands on top.
//!
//! | Layer | Modules | Job |
//! |---|---|---|
//! | 8 | [`operator_cli`] | `vsensor operator rotate-tokens` |
//! | 7 | [`action_cli`] | `vsensor action …`, the operators' command line (a client of the API) |
//! | 6 | [`server`] | accept loop, TLS, the hyper adapter, the periodic driver |
//! | 5 | [`router`] | every route, and which listener answers which |
//! | 4 | [`ingest`], [`operator`] | the sensors' API (authentication, register, chunks, status reports, the actions' WebSocket); the operators' API (status page, JSON, metrics, actions) |
//! | 3 | [`http`] | plain requests and answers, refusals, the body's limits; no routes, no sockets |
//! | 2 | [`state`] | what the handlers share ([`state::App`]), in parts: sensors' authentication, fleet, reports, actions, tokens, store |
//! | 1 | [`store`], [`registry`], [`actions`], [`action_key`], [`operator_file`], [`fleet`], [`tls`] | the files and the pure policies: pcapng files and retention, `registry.json`, the book of actions, the action key, `operator.json`, the filters between sensors, the certificate |
//! | 0 | [`config`], [`atomic_file`] | environment and flags; the one way a file is written whole |
//!
//! ```text
//!  main ─► Collector ─► server ─► router ─┬─► ingest ───┬─► http ─► state ─► store, registry, actions, action_key,
//!                       (hyper)           └─► operator ─┘                    operator_file, fleet, tls ─► config, atomic_file
//! ```
//!
//! Why: the handlers take a plain [`http::Request`] and give a plain
//! [`http::Response`], so a test calls [`router::handle`] without TCP, TLS
//! or hyper (`tests/router.rs`), and only [`server`] knows hyper. The one
//! exception is the sensors' WebSocket: its 101 answer is plain, but the
//! channel runs on the connection the server's adapter hands over.
//!
//! The protocol logic itself (signatures, replay window, chunk checks,
//! pcapng, filter text) lives in the sans-IO crate `ossensor-shared`.

pub mod action_cli;
pub mod action_key;
pub mod actions;
pub mod atomic_file;
pub mod config;
pub mod fleet;
pub mod http;
pub mod ingest;
pub mod operator;
pub mod operator_cli;
pub mod operator_file;
pub mod registry;
pub mod router;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;

use ossensor_host::log;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A collector ready to serve: configuration applied, store repaired,
/// certificate loaded.
pub struct Collector {
    app: Arc<state::App>,
    tls: tls::TlsIdentity,
    data_dir: std::path::PathBuf,
}

impl Collector {
    /// Loads the certificate (making a self-signed one on first start),
    /// opens the registry and the store (repairing torn files, applying
    /// retention). Blocking; call before serving.
    pub fn open(config: &config::Config) -> Result<Collector, String> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("cannot create the data folder {}: {e}", config.data_dir.display()))?;
        let tls = tls::load(&config.tls, &config.data_dir).map_err(|e| e.to_string())?;
        let registry = registry::Registry::open(&config.data_dir).map_err(|e| format!("cannot read the registry in {}: {e}", config.data_dir.display()))?;
        let limits = store::Limits { rotate_bytes: config.rotate_bytes, rotate_seconds: config.rotate_seconds, retention_bytes: config.retention_bytes };
        let store = store::Store::open(&config.data_dir, limits).map_err(|e| format!("cannot open the store in {}: {e}", config.data_dir.display()))?;
        let book = actions::Book::open(&config.data_dir).map_err(|e| format!("cannot read the response actions: {e}"))?;
        let action_key = action_key::ActionKey::load_or_make(&config.data_dir)?;
        log!(
            log::BASIC,
            "response actions are signed with the action key {} ({}; {})",
            action_key.public,
            if action_key.generated { "new" } else { "kept" },
            config.data_dir.join(action_key::PUBLIC_FILE).display()
        );
        let tokens = operator_file::open(&config.data_dir, &operator_file::local_url(config.operator_listen.unwrap_or(config.listen)))?;
        let app = Arc::new(state::App::new(config.key.clone(), tls.cert_sha256, registry, Arc::new(store), book, action_key, tokens));
        Ok(Collector { app, tls, data_dir: config.data_dir.clone() })
    }

    /// The state every handler shares: with [`router::handle`], the
    /// collector's answers without a socket (a test drives a sensor
    /// against it in memory).
    pub fn app(&self) -> Arc<state::App> {
        self.app.clone()
    }

    /// SHA-256 of the leaf certificate served (what sensors may pin).
    pub fn cert_sha256(&self) -> [u8; 32] {
        self.tls.cert_sha256
    }

    pub fn tls_identity(&self) -> &tls::TlsIdentity {
        &self.tls
    }

    /// Writes this collector's local URL into `DATA_DIR/operator.json` for
    /// `vsensor action`: `listening` is the operators' listener if there is
    /// one, else the only one. The tokens in the file stay.
    pub fn write_operator_file(&self, listening: std::net::SocketAddr) -> Result<(), String> {
        operator_file::write_url(&self.data_dir, &operator_file::local_url(listening), &self.app.operator_tokens.current())
    }

    /// Serves everything on `listener` until `shutdown` completes; then
    /// drains in-flight requests, closes and syncs every file and writes the
    /// registry.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        self.run_listeners(listener, None, shutdown).await
    }

    /// As [`Collector::run`]; with `operators` (`VSENSOR_OPERATOR_LISTEN`),
    /// the operators' API is served there only and `sensors` answers 404
    /// for it (and the operators' listener 404 for the sensors' paths).
    pub async fn run_listeners(self, sensors: TcpListener, operators: Option<TcpListener>, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let periodic = tokio::spawn(server::periodic(self.app.clone()));
        let tls = self.tls.server_config.clone();
        match operators {
            None => server::serve(sensors, router::Serves::All, self.app.clone(), tls, shutdown).await,
            Some(operators) => {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let stop_when = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                tokio::join!(
                    server::serve(sensors, router::Serves::Sensors, self.app.clone(), tls.clone(), stop_when(stopped.clone())),
                    server::serve(operators, router::Serves::Operators, self.app.clone(), tls, stop_when(stopped)),
                    async move {
                        shutdown.await;
                        let _ = stop.send(true);
                    }
                );
            }
        }
        periodic.abort();
        let _ = periodic.await;
        server::close_all(self.app).await
    }
}
