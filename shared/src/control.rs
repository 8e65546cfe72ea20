//! JSON control messages between sensor and collector (docs/protocol.md).

use crate::actions::signed::SignedSet;
use crate::actions::{ActionStats, Target};
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
    /// The collector's action key (`ed25519:` and hex), which signs every
    /// response action. The sensor's supervisor pins the first one it is
    /// given (or the one OSSENSOR_ACTION_KEY names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_key: Option<String>,
}

/// `POST /v1/chunks` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkAck {
    pub seq: u64,
    /// False when the collector had already stored this (epoch, seq).
    pub stored: bool,
}

/// `GET /v1/actions/ws`: the sensor's WebSocket for response actions. The
/// upgrade request is signed like every other request (empty body).
pub const PATH_ACTIONS_WS: &str = "/v1/actions/ws";
/// The operators' API (bearer token): `GET`/`POST` here, `DELETE .../{id}`.
pub const PATH_OPERATOR_ACTIONS: &str = "/v1/operator/actions";

/// A signed action set in JSON: its payload and signature in hex
/// (`actions::signed` says what they hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedSetHex {
    pub payload: String,
    pub signature: String,
}

impl SignedSetHex {
    pub fn from_set(s: &SignedSet) -> SignedSetHex {
        SignedSetHex { payload: hex::encode(&s.payload), signature: hex::encode(&s.signature) }
    }

    /// The bytes; None if either field is not hex or is longer than a set
    /// may be.
    pub fn to_set(&self) -> Option<SignedSet> {
        if self.payload.len() > 2 * crate::actions::signed::MAX_PAYLOAD || self.signature.len() > 2 * crate::actions::signed::SIGNATURE_LEN {
            return None;
        }
        Some(SignedSet { payload: hex::decode(&self.payload).ok()?, signature: hex::decode(&self.signature).ok()? })
    }
}

/// Collector → sensor on the WebSocket (JSON text messages).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToSensor {
    /// Every action in force, signed by the collector's action key; sent
    /// on connection, on every change and again every minute (a fresh
    /// signature). An action missing from the set is over.
    Actions { signed: SignedSetHex },
}

/// What one action did on one sensor: cumulative since the sensor's uplink
/// started (the collector keeps the latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionReport {
    pub id: u64,
    #[serde(flatten)]
    pub stats: ActionStats,
}

/// Sensor → collector on the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromSensor {
    /// Every ANTIGENA_TIME_PERIOD seconds while an action is known.
    Report { actions: Vec<ActionReport> },
}

/// `POST /v1/operator/actions` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAction {
    pub target: Target,
    pub for_seconds: u64,
    /// Absent, null or "tcp": connections can only be reset over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// An action as the operators' API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionView {
    pub id: u64,
    pub target: Target,
    /// RFC 3339 UTC.
    pub created: String,
    pub until: String,
    /// "active", "expired" or "cancelled".
    pub state: String,
    /// Latest report per sensor id.
    pub reports: std::collections::BTreeMap<String, SensorReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorReport {
    /// When the report arrived (RFC 3339 UTC).
    pub at: String,
    #[serde(flatten)]
    pub stats: ActionStats,
}

/// `POST /v1/status`: the sensor's running state, signed like every request.
pub const PATH_STATUS: &str = "/v1/status";
/// The operators' view of every sensor (bearer token), and the page.
pub const PATH_OPERATOR_STATUS: &str = "/v1/operator/status";

/// `POST /v1/status` body: sent after registration and every 5 s.
/// Counters are cumulative since the uplink started (interfaces: since
/// their capture-worker started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub interfaces: Vec<InterfaceStatus>,
    pub packets_captured: u64,
    pub packets_delivered: u64,
    pub packets_dropped: u64,
    pub packets_held: u64,
    pub bytes_delivered: u64,
    pub spool_bytes: u64,
    pub spool_capacity_bytes: u64,
    /// Frames removed as duplicates across interfaces.
    #[serde(default)]
    pub duplicates_removed: u64,
    pub actions_in_force: u64,
    /// The uplink is stopping: the other sensors need not leave flows to
    /// this one any more.
    #[serde(default)]
    pub leaving: bool,
}

/// `POST /v1/status` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// The collector's filter for this sensor now (as in
    /// `RegisterResponse`), if it has one; the sensor applies it when it
    /// changed.
    #[serde(default)]
    pub filter: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    pub received: u64,
    pub dropped_kernel: u64,
    pub dropped_interface: u64,
    pub forwarded: u64,
}

/// Body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Sensor ids name folders on the collector: 1–64 of `[A-Za-z0-9._-]`, not
/// starting with a dot.
pub fn valid_sensor_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && !id.starts_with('.') && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Turns a host name into a valid sensor id.
pub fn sensor_id_from_hostname(host: &str) -> String {
    let mut id: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' { c } else { '_' }).take(64).collect();
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

    #[test]
    fn action_messages_are_tagged_json() {
        let set = SignedSet { payload: vec![1, 2, 0xab], signature: vec![0xcd; 64] };
        let m = ToSensor::Actions { signed: SignedSetHex::from_set(&set) };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, format!(r#"{{"type":"actions","signed":{{"payload":"0102ab","signature":"{}"}}}}"#, "cd".repeat(64)));
        assert_eq!(serde_json::from_str::<ToSensor>(&text).unwrap(), m);
        let ToSensor::Actions { signed } = m;
        assert_eq!(signed.to_set(), Some(set));
        assert_eq!(SignedSetHex { payload: "zz".into(), signature: String::new() }.to_set(), None);
        let r: FromSensor =
            serde_json::from_str(r#"{"type":"report","actions":[{"id":3,"connections_reset":1,"connections_refused":0,"resets_sent":2,"probes_sent":2}]}"#)
                .unwrap();
        let FromSensor::Report { actions } = r;
        assert_eq!(actions[0].stats.resets_sent, 2);
        assert!(serde_json::from_str::<FromSensor>(r#"{"type":"exec","cmd":"rm"}"#).is_err());
    }
}
