//! The sensors the collector knows, persisted in `DATA_DIR/registry.json`
//! (written whole: [`crate::atomic_file`]).
//!
//! Registration writes the file at once; "last seen" from chunks only marks
//! the registry dirty and the periodic timer (and shutdown) writes it, so a
//! busy sensor does not cost a file write per chunk.

use ossensor_shared::control::{InterfaceInfo, RegisterRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorRecord {
    pub hostname: String,
    pub version: String,
    pub epoch: u64,
    pub interfaces: Vec<InterfaceInfo>,
    /// Unix seconds of the last authenticated request.
    pub last_seen: i64,
    /// Unix seconds of the last registration.
    pub registered_at: i64,
    /// The address the last request came from.
    pub remote_address: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    sensors: BTreeMap<String, SensorRecord>,
}

pub struct Registry {
    path: PathBuf,
    sensors: BTreeMap<String, SensorRecord>,
    dirty: bool,
}

impl Registry {
    /// Loads `DATA_DIR/registry.json` (absent means empty).
    pub fn open(data_dir: &Path) -> io::Result<Registry> {
        let path = data_dir.join("registry.json");
        let sensors = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<File>(&b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?.sensors,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Registry { path, sensors, dirty: false })
    }

    pub fn get(&self, id: &str) -> Option<&SensorRecord> {
        self.sensors.get(id)
    }

    /// Every sensor, by id.
    pub fn all(&self) -> impl Iterator<Item = (&str, &SensorRecord)> {
        self.sensors.iter().map(|(id, r)| (id.as_str(), r))
    }

    pub fn len(&self) -> usize {
        self.sensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sensors.is_empty()
    }

    /// Records a registration and writes the file.
    pub fn register(&mut self, req: &RegisterRequest, remote: &str, now: i64) -> io::Result<()> {
        self.sensors.insert(
            req.sensor_id.clone(),
            SensorRecord {
                hostname: req.hostname.clone(),
                version: req.version.clone(),
                epoch: req.epoch,
                interfaces: req.interfaces.clone(),
                last_seen: now,
                registered_at: now,
                remote_address: remote.to_string(),
            },
        );
        self.dirty = true;
        self.flush()
    }

    /// Notes a chunk from a sensor (registered or not: chunks from any
    /// authenticated sensor are accepted).
    pub fn seen(&mut self, id: &str, epoch: u64, remote: &str, now: i64) {
        let rec = self.sensors.entry(id.to_string()).or_insert_with(|| SensorRecord {
            hostname: String::new(),
            version: String::new(),
            epoch,
            interfaces: Vec::new(),
            last_seen: now,
            registered_at: 0,
            remote_address: String::new(),
        });
        rec.last_seen = now;
        rec.epoch = rec.epoch.max(epoch);
        if rec.remote_address != remote {
            rec.remote_address = remote.to_string();
        }
        self.dirty = true;
    }

    /// Writes the file if anything changed since the last write.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let file = File { sensors: self.sensors.clone() };
        crate::atomic_file::write_atomic(&self.path, &serde_json::to_vec_pretty(&file).map_err(io::Error::other)?, 0o640)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        let req = RegisterRequest {
            sensor_id: "s1".into(),
            hostname: "h".into(),
            version: "0.1.0".into(),
            epoch: 9,
            interfaces: vec![InterfaceInfo { name: "eth0".into(), addresses: vec!["198.18.0.2".into()] }],
            collector_addresses: vec![],
            collector_port: 443,
        };
        r.register(&req, "127.0.0.1:5000", 100).unwrap();
        r.seen("s1", 9, "127.0.0.1:5001", 150);
        r.flush().unwrap();
        let r2 = Registry::open(dir.path()).unwrap();
        let rec = r2.get("s1").unwrap();
        assert_eq!((rec.epoch, rec.last_seen, rec.remote_address.as_str()), (9, 150, "127.0.0.1:5001"));
        assert_eq!(rec.interfaces[0].name, "eth0");
    }
}
