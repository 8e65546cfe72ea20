//! `vsensor`, the collector: registers sensors, verifies their signed
//! requests and stores their chunks as rotating pcapng files.
//!
//! - [`config`]: environment and flags, raw → validated.
//! - [`tls`]: the served certificate (operator's, or self-signed once) and its SHA-256.
//! - [`server`]: accept loop (listeners and shutdown passed in), periodic driver.
//! - [`api`]: authenticate, then route `/v1/register`, `/v1/chunks` and `/v1/actions/ws`.
//! - [`state`]: what every handler shares ([`state::App`]), in parts: sensors' authentication, fleet, reports, actions, tokens, store.
//! - [`action_cli`]: `vsensor action ...`, the operators' command line.
//! - [`action_key`]: the Ed25519 key every set of actions is signed with.
//! - [`operator_cli`]: `vsensor operator rotate-tokens`.
//! - [`actions`]: the book of response actions (`actions.json`).
//! - [`atomic_file`]: every file written whole: temporary file, fsync, rename, fsync of the folder.
//! - [`fleet`]: each packet once across sensors: the filters between them.
//! - [`operator`]: the operators' API: status and actions.
//! - [`operator_auth`]: who may read or act there, and the cross-site rules.
//! - [`operator_file`]: `operator.json`, its two tokens, their rotation and reload.
//! - [`status`]: the fleet as operators see it: JSON, the `/status` page, `/metrics`.
//! - [`ws`]: the sensors' WebSocket: actions pushed, reports received.
//! - [`registry`]: the known sensors, `registry.json`.
//! - [`store`]: pure rotation/retention policy and the files on disk.
//!
//! The protocol logic itself (signatures, replay window, chunk checks,
//! pcapng) lives in the sans-IO crate `ossensor-shared`.

pub mod action_cli;
pub mod action_key;
pub mod actions;
pub mod api;
pub mod atomic_file;
pub mod config;
pub mod fleet;
pub mod http;
pub mod operator;
pub mod operator_auth;
pub mod operator_cli;
pub mod operator_file;
pub mod registry;
pub mod server;
pub mod state;
pub mod status;
pub mod store;
pub mod tls;
pub mod ws;

use ossensor_shared::log;
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
        let tokens = operator_file::open(&config.data_dir, &operator::local_url(config.operator_listen.unwrap_or(config.listen)))?;
        let app = Arc::new(state::App::new(config.key.clone(), tls.cert_sha256, registry, Arc::new(store), book, action_key, tokens));
        Ok(Collector { app, tls, data_dir: config.data_dir.clone() })
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
        operator_file::write_url(&self.data_dir, &operator::local_url(listening), &self.app.operator_tokens.current())
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
            None => server::serve(sensors, server::Serves::All, self.app.clone(), tls, shutdown).await,
            Some(operators) => {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let stop_when = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                tokio::join!(
                    server::serve(sensors, server::Serves::Sensors, self.app.clone(), tls.clone(), stop_when(stopped.clone())),
                    server::serve(operators, server::Serves::Operators, self.app.clone(), tls, stop_when(stopped)),
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
