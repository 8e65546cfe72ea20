//! What the supervisor hands each child at start, as one JSON document on
//! the child's standard input. The key travels this way so it never appears
//! in a command line or an environment that `ps` or /proc could show.

use serde::{Deserialize, Serialize};

/// Environment variable the supervisor sets so a child knows it is one
/// (children refuse to run by hand without it, with a clear message).
pub const CHILD_MARKER: &str = "OSSENSOR_CHILD";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub level: u8,
    /// None: standard output.
    pub path: Option<String>,
    /// The syslog socket for audit events; None: /dev/log.
    #[serde(default)]
    pub syslog_socket: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub interface: String,
    /// The fd of the control channel to the supervisor, which hands over
    /// the connection to the uplink and the pinned action key
    /// (`supervision`).
    pub control_fd: i32,
    /// Kernel ring size for each of the interface's two capture handles.
    pub ring_bytes: u64,
    /// Enforce response actions (ANTIGENA_ENABLED): track TCP flows and send
    /// resets on this interface. False: the worker never sends a packet.
    #[serde(default)]
    pub enforce_actions: bool,
    /// The fd of the socket-destroy channel to the supervisor (for
    /// connections that end on this host), if it gave one.
    #[serde(default)]
    pub destroy_fd: Option<i32>,
    /// The collector's action key as the supervisor pinned it (`ed25519:`
    /// and hex); None until the first registration pins one. Response
    /// actions are verified with it and nothing else.
    #[serde(default)]
    pub action_key: Option<String>,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkConfig {
    /// The fd of the control channel to the supervisor, which hands over
    /// the workers' connections (`supervision`).
    pub control_fd: i32,
    pub collector_host: String,
    pub collector_port: u16,
    pub hmac_key: String,
    pub sensor_id: String,
    /// The user's BPF expression (may be empty).
    pub bpf: String,
    /// Bound on chunks held while the collector is away.
    pub spool_bytes: u64,
    /// zstd level; None sends chunks uncompressed.
    pub compression_level: Option<i32>,
    /// A chunk is closed at this many raw bytes...
    pub chunk_bytes: usize,
    /// ...or this long after its first packet, so sparse traffic is not held.
    pub chunk_max_age_ms: u64,
    /// Pin the collector to a CA (PEM file) instead of trusting on first
    /// proof; None = accept the certificate whose holder proves the key.
    pub ca_file: Option<String>,
    /// Keep the WebSocket for response actions (ANTIGENA_ENABLED), and
    /// report what they did every this many seconds.
    #[serde(default)]
    pub actions: Option<ActionsConfig>,
    /// OSSENSOR_METRICS_ADDR: serve Prometheus metrics there.
    #[serde(default)]
    pub metrics_addr: Option<String>,
    /// OSSENSOR_DEDUPLICATE: drop copies of a frame seen on several interfaces.
    #[serde(default = "yes")]
    pub deduplicate: bool,
    pub log: LogConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionsConfig {
    pub report_every_secs: u32,
}

fn yes() -> bool {
    true
}
