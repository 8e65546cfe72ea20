//! JSON control messages between sensor and collector (docs/protocol.md).

use serde::{Deserialize, Serialize};

pub const PATH_REGISTER: &str = "/v1/register";
pub const PATH_CHUNKS: &str = "/v1/chunks";

/// `POST /v1/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub sensor_id: String,
    pub hostname: String,
    pub version: String,
    pub epoch: u64,
    pub interfaces: Vec<InterfaceInfo>,
    /// The collector's addresses as the sensor resolved VSENSOR_HOSTNAME.
    pub collector_addresses: Vec<String>,
    pub collector_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    pub name: String,
    pub addresses: Vec<String>,
}

/// `POST /v1/register` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The collector's filter in tcpdump syntax (may be empty); the sensor
    /// captures `(filter) and (BPF)`.
    pub filter: String,
    /// Largest raw chunk the collector takes.
    pub max_chunk_bytes: u64,
    /// The highest sequence the collector stored for this (sensor, epoch),
    /// so a sensor that re-registers knows where it stands.
    pub last_seq: Option<u64>,
}

/// `POST /v1/chunks` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAck {
    pub seq: u64,
    /// False when the collector had already stored this (epoch, seq).
    pub stored: bool,
}

/// Body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Sensor ids name folders on the collector: 1–64 of `[A-Za-z0-9._-]`, not
/// starting with a dot.
pub fn valid_sensor_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Turns a host name into a valid sensor id.
pub fn sensor_id_from_hostname(host: &str) -> String {
    let mut id: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '_' })
        .take(64)
        .collect();
    while id.starts_with('.') {
        id.replace_range(0..1, "_");
    }
    if id.is_empty() {
        id.push_str("sensor");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensor_ids() {
        assert!(valid_sensor_id("node-1.example"));
        assert!(!valid_sensor_id("../etc"));
        assert!(!valid_sensor_id("a/b"));
        assert!(!valid_sensor_id(""));
        assert!(valid_sensor_id(&sensor_id_from_hostname("../weird host")));
        assert!(valid_sensor_id(&sensor_id_from_hostname("")));
    }
}
