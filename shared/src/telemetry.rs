//! Typed telemetry: one snapshot per process, and everything shown from it.
//! The uplink's [`UplinkSnapshot`] renders its level-1 lines, its
//! Prometheus page and the status report it sends the collector; a
//! capture-worker's [`WorkerSnapshot`] its statistics line. Each snapshot
//! also goes to the log as one JSON line after [`JSON_MARK`], a format kept
//! stable for scripts and tests (they read the numbers there, never out of
//! the human sentences, so rewording a sentence breaks nothing).
//!
//! Counter names live here once. Pure: values in, text out.

use crate::actions::ActionStats;
use crate::control::{ActionReport, InterfaceStatus, StatusReport};
use crate::delivery::Accounting;
use crate::ipc::CaptureStats;
use crate::metrics::{Exposition, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every JSON telemetry line starts with this, then the snapshot.
pub const JSON_MARK: &str = "ossensor-telemetry ";

/// The uplink at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkSnapshot {
    pub process: String,
    pub sensor_id: String,
    pub version: String,
    pub accounting: Accounting,
    /// Packets in the spool, in flight, or in the chunk being built.
    pub held: u64,
    pub spool_chunks: u64,
    pub spool_bytes: u64,
    pub spool_capacity_bytes: u64,
    /// Copies dropped because another interface's copy was kept, per
    /// interface of the dropped copy.
    pub duplicates: BTreeMap<String, u64>,
    /// Each capture-worker's latest counters.
    pub interfaces: BTreeMap<String, CaptureStats>,
    pub actions_in_force: u64,
    /// Each response action's counters, summed over the interfaces.
    pub actions: Vec<ActionReport>,
}

/// A capture-worker at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    pub process: String,
    pub interface: String,
    pub capture: CaptureStats,
    /// True in the last snapshot, written as the worker stops.
    pub stopping: bool,
}

impl WorkerSnapshot {
    pub fn new(interface: &str, capture: CaptureStats, stopping: bool) -> WorkerSnapshot {
        WorkerSnapshot { process: "capture-worker".into(), interface: interface.into(), capture, stopping }
    }

    pub fn line(&self) -> String {
        let s = &self.capture;
        format!(
            "{}{}: received {} dropped by kernel {} dropped by interface {} forwarded {}",
            if self.stopping { "stopping: " } else { "" },
            self.interface,
            s.received,
            s.dropped_kernel,
            s.dropped_interface,
            s.forwarded
        )
    }

    pub fn json_line(&self) -> String {
        format!("{JSON_MARK}{}", serde_json::to_string(self).expect("serialisable"))
    }
}

impl UplinkSnapshot {
    /// The level-1 lines: one per interface, then the accounting.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .interfaces
            .iter()
            .map(|(i, s)| {
                format!(
                    "capture {i}: received {} dropped by kernel {} dropped by interface {} forwarded {}",
                    s.received, s.dropped_kernel, s.dropped_interface, s.forwarded
                )
            })
            .collect();
        let a = &self.accounting;
        let dups: u64 = self.duplicates.values().sum();
        let dup_text = if dups == 0 {
            "0".to_string()
        } else {
            format!("{dups} ({})", self.duplicates.iter().map(|(i, n)| format!("{i} {n}")).collect::<Vec<_>>().join(", "))
        };
        out.push(format!(
            "packets: captured {} delivered {} dropped (spool full {}, refused {}, at exit {}) held {} in {} chunks ({} KiB); duplicates removed {dup_text}",
            a.captured,
            a.delivered,
            a.dropped_spool_full,
            a.dropped_refused,
            a.dropped_at_exit,
            self.held,
            self.spool_chunks,
            self.spool_bytes / 1024,
        ));
        out
    }

    pub fn json_line(&self) -> String {
        format!("{JSON_MARK}{}", serde_json::to_string(self).expect("serialisable"))
    }

    /// What `POST /v1/status` carries.
    pub fn status_report(&self, leaving: bool) -> StatusReport {
        let a = &self.accounting;
        StatusReport {
            interfaces: self
                .interfaces
                .iter()
                .map(|(name, s)| InterfaceStatus {
                    name: name.clone(),
                    received: s.received,
                    dropped_kernel: s.dropped_kernel,
                    dropped_interface: s.dropped_interface,
                    forwarded: s.forwarded,
                })
                .collect(),
            packets_captured: a.captured,
            packets_delivered: a.delivered,
            packets_dropped: a.dropped(),
            packets_held: self.held,
            bytes_delivered: a.bytes_delivered,
            spool_bytes: self.spool_bytes,
            spool_capacity_bytes: self.spool_capacity_bytes,
            duplicates_removed: self.duplicates.values().sum(),
            actions_in_force: self.actions_in_force,
            leaving,
        }
    }

    /// The Prometheus page (docs/operations.md lists every family).
    pub fn prometheus(&self) -> String {
        let mut e = Exposition::new();
        let a = &self.accounting;
        e.family(
            "ossensor_build_info",
            Kind::Gauge,
            "Always 1; the labels say which sensor and version.",
            &[(&[("version", self.version.as_str()), ("sensor", self.sensor_id.as_str())], 1.0)],
        );
        e.single("ossensor_packets_captured_total", Kind::Counter, "Packets the uplink received from the capture-workers.", a.captured as f64);
        e.single("ossensor_packets_delivered_total", Kind::Counter, "Packets the collector acknowledged.", a.delivered as f64);
        e.family(
            "ossensor_packets_dropped_total",
            Kind::Counter,
            "Packets the uplink dropped, by reason.",
            &[
                (&[("reason", "spool_full")], a.dropped_spool_full as f64),
                (&[("reason", "refused")], a.dropped_refused as f64),
                (&[("reason", "at_exit")], a.dropped_at_exit as f64),
            ],
        );
        e.single("ossensor_packets_held", Kind::Gauge, "Packets in the spool, in flight to the collector, or in the chunk being built.", self.held as f64);
        e.single("ossensor_chunks_delivered_total", Kind::Counter, "Chunks the collector acknowledged.", a.chunks_delivered as f64);
        e.single(
            "ossensor_delivered_bytes_total",
            Kind::Counter,
            "Bytes of chunk bodies the collector acknowledged, as sent (compressed).",
            a.bytes_delivered as f64,
        );
        e.single(
            "ossensor_delivered_raw_bytes_total",
            Kind::Counter,
            "Bytes of pcapng the collector acknowledged, before compression.",
            a.raw_bytes_delivered as f64,
        );
        e.single("ossensor_spool_chunks", Kind::Gauge, "Chunks waiting in the spool.", self.spool_chunks as f64);
        e.single("ossensor_spool_bytes", Kind::Gauge, "Bytes waiting in the spool.", self.spool_bytes as f64);
        e.single("ossensor_spool_capacity_bytes", Kind::Gauge, "The spool's bound (OSSENSOR_SPOOL_MB).", self.spool_capacity_bytes as f64);

        let per_if = |f: fn(&CaptureStats) -> u64| -> Vec<(Vec<(&str, &str)>, f64)> {
            self.interfaces.iter().map(|(i, s)| (vec![("interface", i.as_str())], f(s) as f64)).collect()
        };
        family(
            &mut e,
            "ossensor_interface_packets_received_total",
            Kind::Counter,
            "Packets the kernel passed to the capture of each interface (after the filter).",
            &per_if(|s| s.received),
        );
        family(
            &mut e,
            "ossensor_interface_packets_forwarded_total",
            Kind::Counter,
            "Packets each capture-worker sent to the uplink.",
            &per_if(|s| s.forwarded),
        );
        let dropped: Vec<(Vec<(&str, &str)>, f64)> = self
            .interfaces
            .iter()
            .flat_map(|(i, s)| {
                [
                    (vec![("interface", i.as_str()), ("where", "kernel")], s.dropped_kernel as f64),
                    (vec![("interface", i.as_str()), ("where", "interface")], s.dropped_interface as f64),
                ]
            })
            .collect();
        family(
            &mut e,
            "ossensor_interface_packets_dropped_total",
            Kind::Counter,
            "Packets lost before capture: the ring was full (kernel) or the interface dropped them.",
            &dropped,
        );
        let dups: Vec<(Vec<(&str, &str)>, f64)> = self.duplicates.iter().map(|(i, n)| (vec![("interface", i.as_str())], *n as f64)).collect();
        family(
            &mut e,
            "ossensor_duplicates_removed_total",
            Kind::Counter,
            "Copies of frames dropped because the same frame was kept from another interface, per interface of the dropped copy.",
            &dups,
        );
        e.single("ossensor_response_actions_in_force", Kind::Gauge, "Response actions the sensor enforces now.", self.actions_in_force as f64);
        let ids: Vec<String> = self.actions.iter().map(|a| a.id.to_string()).collect();
        for (name, help, value) in ACTION_COUNTERS {
            let v: Vec<(Vec<(&str, &str)>, f64)> =
                self.actions.iter().zip(&ids).map(|(a, id)| (vec![("action", id.as_str())], value(&a.stats) as f64)).collect();
            family(&mut e, name, Kind::Counter, help, &v);
        }
        e.into_text()
    }
}

/// One response-action counter: its name, help text and how to read it.
type ActionCounter = fn(&ActionStats) -> u64;

const ACTION_COUNTERS: [(&str, &str, ActionCounter); 5] = [
    ("ossensor_response_connections_reset_total", "Connections reset at both ends, per action.", |s| s.connections_reset),
    ("ossensor_response_connections_refused_total", "New connections refused at the handshake, per action.", |s| s.connections_refused),
    ("ossensor_response_resets_sent_total", "RST segments sent, per action.", |s| s.resets_sent),
    ("ossensor_response_probes_sent_total", "ACK probes sent to quiet connections, per action.", |s| s.probes_sent),
    ("ossensor_response_frames_suppressed_total", "Resets and probes not sent because of the interface's rate limit, per action.", |s| s.frames_suppressed),
];

/// A family whose samples carry owned label lists.
fn family(e: &mut Exposition, name: &str, kind: Kind, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
    let borrowed: Vec<(&[(&str, &str)], f64)> = samples.iter().map(|(l, v)| (l.as_slice(), *v)).collect();
    e.family(name, kind, help, &borrowed);
}

/// The last snapshot of `process` (and `interface`, for a worker) in a
/// log: what scripts and tests read.
pub fn last_json<T: for<'de> Deserialize<'de>>(log: &str, keep: impl Fn(&T) -> bool) -> Option<T> {
    log.lines().rev().filter_map(|l| l.find(JSON_MARK).map(|i| &l[i + JSON_MARK.len()..])).filter_map(|j| serde_json::from_str::<T>(j).ok()).find(|t| keep(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> UplinkSnapshot {
        let mut s = UplinkSnapshot { process: "uplink".into(), sensor_id: "node1".into(), version: "0.1.0".into(), ..Default::default() };
        s.accounting = Accounting {
            captured: 10,
            delivered: 6,
            dropped_spool_full: 1,
            dropped_refused: 1,
            dropped_at_exit: 0,
            chunks_delivered: 2,
            bytes_delivered: 300,
            raw_bytes_delivered: 900,
        };
        s.held = 2;
        s.spool_chunks = 1;
        s.spool_bytes = 4096;
        s.spool_capacity_bytes = 1 << 20;
        s.duplicates.insert("br0".into(), 3);
        s.interfaces.insert("eth0".into(), CaptureStats { received: 12, dropped_kernel: 2, dropped_interface: 0, forwarded: 10 });
        s.actions_in_force = 1;
        s.actions.push(ActionReport { id: 7, stats: ActionStats { resets_sent: 4, ..Default::default() } });
        s
    }

    #[test]
    fn one_snapshot_renders_the_lines_the_page_and_the_report_alike() {
        let s = snapshot();
        let lines = s.lines();
        assert_eq!(lines[0], "capture eth0: received 12 dropped by kernel 2 dropped by interface 0 forwarded 10");
        assert_eq!(
            lines[1],
            "packets: captured 10 delivered 6 dropped (spool full 1, refused 1, at exit 0) held 2 in 1 chunks (4 KiB); duplicates removed 3 (br0 3)"
        );
        let page = s.prometheus();
        for sample in [
            "ossensor_packets_captured_total 10",
            "ossensor_packets_dropped_total{reason=\"refused\"} 1",
            "ossensor_interface_packets_dropped_total{interface=\"eth0\",where=\"kernel\"} 2",
            "ossensor_response_resets_sent_total{action=\"7\"} 4",
            "ossensor_duplicates_removed_total{interface=\"br0\"} 3",
        ] {
            assert!(page.lines().any(|l| l == sample), "{sample} in\n{page}");
        }
        let r = s.status_report(false);
        assert_eq!((r.packets_captured, r.packets_dropped, r.packets_held, r.duplicates_removed, r.interfaces[0].dropped_kernel), (10, 2, 2, 3, 2));
    }

    #[test]
    fn the_json_line_reads_back_from_a_log() {
        let s = snapshot();
        let w = WorkerSnapshot::new("eth0", CaptureStats { received: 5, dropped_kernel: 0, dropped_interface: 0, forwarded: 5 }, true);
        let log = format!("2026 uplink L1: {}\n2026 capture-worker[eth0] L0: {}\nnoise {JSON_MARK}{{not json\n", s.json_line(), w.json_line());
        assert_eq!(last_json::<UplinkSnapshot>(&log, |u| u.process == "uplink"), Some(s));
        assert_eq!(last_json::<WorkerSnapshot>(&log, |w| w.process == "capture-worker" && w.interface == "eth0"), Some(w.clone()));
        assert_eq!(w.line(), "stopping: eth0: received 5 dropped by kernel 0 dropped by interface 0 forwarded 5");
    }
}
