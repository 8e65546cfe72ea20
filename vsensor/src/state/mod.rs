//! The collector's shared state: what the request handlers, the sensors'
//! WebSocket channels and the periodic driver read and change, one
//! [`App`] for the whole process, in cohesive parts:
//!
//! - [`SensorAuth`]: the shared key, the served certificate's hash and the
//!   replay window (signatures, proofs);
//! - [`Fleet`]: the registry and what each sensor's filter is made of;
//! - [`StatusReports`]: each sensor's last status reports;
//! - [`Actions`]: the book of response actions, the key that signs them,
//!   and the sensors' open channels;
//! - the operators' tokens ([`LiveTokens`]), the store ([`Store`]) and the
//!   [`RefusalLog`] that keeps refusals from flooding the log.
//!
//! The lowest layer of the request path: data and the operations that keep
//! each part consistent, no HTTP and no routes. Each part has its own std
//! mutexes, held briefly and never across an `.await` (a poisoned one is
//! used anyway: the data stays consistent, one handler panicking must not
//! stop the others); the store's per-sensor files have tokio mutexes, held
//! across the blocking writes.

mod actions;
mod auth;
mod fleet;
mod reports;

pub use actions::Actions;
pub use auth::SensorAuth;
pub use fleet::Fleet;
pub use reports::{Reports, StatusReports};

use crate::action_key::ActionKey;
use crate::actions::Book;
use crate::operator_file::LiveTokens;
use crate::registry::Registry;
use crate::store::Store;
use ossensor_host::log;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Everything a request handler needs, shared by all connections.
pub struct App {
    /// Who a sensor's request comes from, and the proof on answers.
    pub auth: SensorAuth,
    /// The registry and the sensors' filters.
    pub fleet: Fleet,
    /// Each sensor's last status reports (`POST /v1/status`), in memory.
    pub reports: StatusReports,
    /// Response actions: the book, its signer, the sensors' channels.
    pub actions: Actions,
    /// The operators' read and action tokens (`DATA_DIR/operator.json`,
    /// re-read when it changes).
    pub operator_tokens: LiveTokens,
    /// The sensors' files.
    pub store: Arc<Store>,
    /// When each kind of refusal from each source was last logged.
    pub refusals: RefusalLog,
}

impl App {
    pub fn new(
        key: Vec<u8>,
        cert_sha256: [u8; 32],
        registry: Registry,
        store: Arc<Store>,
        book: Book,
        action_key: ActionKey,
        operator_tokens: LiveTokens,
    ) -> App {
        App {
            auth: SensorAuth::new(key, cert_sha256),
            fleet: Fleet::new(registry),
            reports: StatusReports::default(),
            actions: Actions::new(book, action_key),
            operator_tokens,
            store,
            refusals: RefusalLog::default(),
        }
    }
}

/// How often the same refusal from the same source is logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Rate limit of the refusal log: once a minute per source and kind.
#[derive(Default)]
pub struct RefusalLog {
    seen: Mutex<HashMap<(IpAddr, &'static str), Instant>>,
}

impl RefusalLog {
    /// Whether a refusal of `kind` from `source` is to be logged now (and,
    /// if so, the next one only a minute later).
    pub fn due(&self, source: IpAddr, kind: &'static str) -> bool {
        let now = Instant::now();
        let mut seen = lock(&self.seen);
        if seen.len() > 10_000 {
            seen.retain(|_, t| now.duration_since(*t) < REFUSAL_LOG_INTERVAL);
        }
        match seen.get(&(source, kind)) {
            Some(t) if now.duration_since(*t) < REFUSAL_LOG_INTERVAL => false,
            _ => {
                seen.insert((source, kind), now);
                true
            }
        }
    }
}

/// Runs retention on a blocking thread after a file was closed.
pub fn spawn_retention(store: Arc<Store>) {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.enforce_retention() {
            log!(log::BASIC, "retention failed: {e}");
        }
    });
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    (ossensor_host::clock::now_ns() / 1_000_000_000) as i64
}

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
