//! The sensors as a fleet: the registry (`registry.json`) and what each
//! sensor's filter is made of: its base (its uplink to us excluded), fixed
//! at its registration, and the fleet part ([`crate::fleet`]) from the
//! other active sensors, computed on every ask.

use super::{lock, unix_now};
use crate::registry::{Registry, SensorRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

pub struct Fleet {
    registry: Mutex<Registry>,
    /// Each sensor's base filter, from its registration.
    base_filters: Mutex<BTreeMap<String, String>>,
    /// Sensors that said they were stopping, until they register again.
    left: Mutex<BTreeSet<String>>,
}

impl Fleet {
    pub fn new(registry: Registry) -> Fleet {
        Fleet { registry: Mutex::new(registry), base_filters: Mutex::default(), left: Mutex::default() }
    }

    /// The registry, locked.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// `sensor` registered (the registry already has it) with `base`: it
    /// takes part in the others' filters again.
    pub fn registered(&self, sensor: &str, base: String) {
        lock(&self.base_filters).insert(sensor.to_string(), base);
        lock(&self.left).remove(sensor);
    }

    /// `sensor` said it is stopping: the others take its flows back.
    pub fn leaving(&self, sensor: &str) {
        lock(&self.left).insert(sensor.to_string());
    }

    /// The filter `sensor` should use now: its base and the fleet
    /// exclusion. None before it registered with this collector process.
    pub fn filter_for(&self, sensor: &str) -> Option<String> {
        let base = lock(&self.base_filters).get(sensor)?.clone();
        let now = unix_now();
        let left = lock(&self.left).clone();
        let registry = self.registry();
        let addresses = |rec: &SensorRecord| -> Vec<IpAddr> { rec.interfaces.iter().flat_map(|i| i.addresses.iter()).filter_map(|a| a.parse().ok()).collect() };
        let own = registry.get(sensor).map(addresses).unwrap_or_default();
        let peers: Vec<IpAddr> = registry
            .all()
            .filter(|(id, rec)| *id < sensor && now - rec.last_seen <= crate::fleet::ACTIVE_SECONDS && !left.contains(*id))
            .flat_map(|(_, rec)| addresses(rec))
            .collect();
        Some(ossensor_shared::bpf::combine(&base, &crate::fleet::exclusion(&own, &peers)))
    }
}
