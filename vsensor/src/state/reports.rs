//! Each sensor's last two status reports (`POST /v1/status`, every 5 s),
//! in memory only: the status page's running state and its rates.

use super::lock;
use ossensor_shared::control::StatusReport;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The last two reports of a sensor (two, for rates), in memory only.
#[derive(Debug, Clone, Default)]
pub struct Reports {
    pub latest: Option<(u64, StatusReport)>,
    pub previous: Option<(u64, StatusReport)>,
}

impl Reports {
    pub fn push(&mut self, now_ns: u64, r: StatusReport) {
        self.previous = self.latest.take();
        self.latest = Some((now_ns, r));
    }

    /// (packets, bytes) per second between the last two reports.
    pub fn rates(&self) -> (f64, f64) {
        match (&self.previous, &self.latest) {
            (Some((t0, a)), Some((t1, b))) if t1 > t0 => {
                let secs = (t1 - t0) as f64 / 1e9;
                (b.packets_delivered.saturating_sub(a.packets_delivered) as f64 / secs, b.bytes_delivered.saturating_sub(a.bytes_delivered) as f64 / secs)
            }
            _ => (0.0, 0.0),
        }
    }
}

/// Every sensor's [`Reports`].
#[derive(Default)]
pub struct StatusReports {
    by_sensor: Mutex<BTreeMap<String, Reports>>,
}

impl StatusReports {
    pub fn push(&self, sensor: &str, now_ns: u64, r: StatusReport) {
        lock(&self.by_sensor).entry(sensor.to_string()).or_default().push(now_ns, r);
    }

    /// A copy of every sensor's reports.
    pub fn snapshot(&self) -> BTreeMap<String, Reports> {
        lock(&self.by_sensor).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_last_two_reports() {
        let mut r = Reports::default();
        assert_eq!(r.rates(), (0.0, 0.0));
        r.push(0, StatusReport { packets_delivered: 100, bytes_delivered: 1000, ..Default::default() });
        r.push(2_000_000_000, StatusReport { packets_delivered: 300, bytes_delivered: 5000, ..Default::default() });
        assert_eq!(r.rates(), (100.0, 2000.0));
    }
}
