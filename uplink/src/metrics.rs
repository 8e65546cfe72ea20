//! Prometheus metrics (OSSENSOR_METRICS_ADDR, off by default): a plain-HTTP
//! `GET /metrics` served by the unprivileged uplink, from the counters it
//! already keeps. One thread, one request at a time, requests read with a
//! size and time limit.

use crate::actions::ActionsShared;
use crate::intake::Filters;
use crate::sender::Shared;
use ossensor_shared::ipc::CaptureStats;
use ossensor_shared::log::BASIC;
use ossensor_shared::metrics::{Exposition, Kind, CONTENT_TYPE};
use ossensor_shared::response::ActionStats;
use ossensor_shared::{log, VERSION};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One response-action counter: its name, help text and how to read it.
type ActionCounter = fn(&ActionStats) -> u64;

/// What the page is built from.
pub struct Sources {
    pub shared: Arc<Shared>,
    pub workers: Arc<crate::sender::WorkerStats>,
    pub actions: Arc<ActionsShared>,
    pub filters: Arc<Mutex<Filters>>,
    pub sensor_id: String,
}

pub fn bind(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("OSSENSOR_METRICS_ADDR={addr}: cannot listen: {e}"))
}

pub fn serve(listener: TcpListener, sources: Sources) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                if let Err(e) = answer(s, &sources) {
                    log!(ossensor_shared::log::SENDS, "metrics request: {e}");
                }
            }
            Err(e) => {
                log!(BASIC, "metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut s: TcpStream, sources: &Sources) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    // The request head, at most 8 KiB.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, page(sources)),
        ("GET", _) => ("404 Not Found", "text/plain", "only /metrics is served here\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics only\n".to_string()),
    };
    write!(s, "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())?;
    s.flush()
}

/// The metrics page.
pub fn page(src: &Sources) -> String {
    let mut e = Exposition::new();
    let id = src.sensor_id.as_str();
    e.family("ossensor_build_info", Kind::Gauge, "Always 1; the labels say which sensor and version.", &[(&[("version", VERSION), ("sensor", id)], 1.0)]);
    let (acc, held, chunks, bytes, capacity, dups) = {
        let st = src.shared.lock();
        (st.spool.accounting, st.spool.held_packets() + st.in_flight_packets, st.spool.len(), st.spool.bytes(), st.spool.capacity(), st.duplicates.clone())
    };
    e.single("ossensor_packets_captured_total", Kind::Counter, "Packets the uplink received from the capture-workers.", acc.captured as f64);
    e.single("ossensor_packets_delivered_total", Kind::Counter, "Packets the collector acknowledged.", acc.delivered as f64);
    e.family(
        "ossensor_packets_dropped_total",
        Kind::Counter,
        "Packets the uplink dropped, by reason.",
        &[
            (&[("reason", "spool_full")], acc.dropped_spool_full as f64),
            (&[("reason", "refused")], acc.dropped_refused as f64),
            (&[("reason", "at_exit")], acc.dropped_at_exit as f64),
        ],
    );
    e.single("ossensor_packets_held", Kind::Gauge, "Packets in the spool or in flight to the collector.", held as f64);
    e.single("ossensor_chunks_delivered_total", Kind::Counter, "Chunks the collector acknowledged.", acc.chunks_delivered as f64);
    e.single("ossensor_delivered_bytes_total", Kind::Counter, "Bytes of chunk bodies the collector acknowledged, as sent (compressed).", acc.bytes_delivered as f64);
    e.single("ossensor_delivered_raw_bytes_total", Kind::Counter, "Bytes of pcapng the collector acknowledged, before compression.", acc.raw_bytes_delivered as f64);
    e.single("ossensor_spool_chunks", Kind::Gauge, "Chunks waiting in the spool.", chunks as f64);
    e.single("ossensor_spool_bytes", Kind::Gauge, "Bytes waiting in the spool.", bytes as f64);
    e.single("ossensor_spool_capacity_bytes", Kind::Gauge, "The spool's bound (OSSENSOR_SPOOL_MB).", capacity as f64);

    let workers = src.workers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let per_if = |f: fn(&CaptureStats) -> u64| -> Vec<(Vec<(&str, &str)>, f64)> {
        workers.iter().map(|(i, s)| (vec![("interface", i.as_ref())], f(s) as f64)).collect()
    };
    let received = per_if(|s| s.received);
    let forwarded = per_if(|s| s.forwarded);
    family(&mut e, "ossensor_interface_packets_received_total", Kind::Counter, "Packets the kernel passed to the capture of each interface (after the filter).", &received);
    family(&mut e, "ossensor_interface_packets_forwarded_total", Kind::Counter, "Packets each capture-worker sent to the uplink.", &forwarded);
    let dropped: Vec<(Vec<(&str, &str)>, f64)> = workers
        .iter()
        .flat_map(|(i, s)| {
            [
                (vec![("interface", i.as_ref()), ("where", "kernel")], s.dropped_kernel as f64),
                (vec![("interface", i.as_ref()), ("where", "interface")], s.dropped_interface as f64),
            ]
        })
        .collect();
    family(&mut e, "ossensor_interface_packets_dropped_total", Kind::Counter, "Packets lost before capture: the ring was full (kernel) or the interface dropped them.", &dropped);

    let dup_samples: Vec<(Vec<(&str, &str)>, f64)> = dups.iter().map(|(i, n)| (vec![("interface", i.as_str())], *n as f64)).collect();
    family(&mut e, "ossensor_duplicates_removed_total", Kind::Counter, "Copies of frames dropped because the same frame was kept from another interface, per interface of the dropped copy.", &dup_samples);

    let in_force = src.filters.lock().unwrap_or_else(|e| e.into_inner()).actions_in_force();
    e.single("ossensor_response_actions_in_force", Kind::Gauge, "Response actions the sensor enforces now.", in_force as f64);
    let totals = crate::actions::totals(&src.actions.stats.lock().unwrap_or_else(|e| e.into_inner()));
    let ids: Vec<String> = totals.iter().map(|a| a.id.to_string()).collect();
    let counter: [(&str, &str, ActionCounter); 5] = [
        ("ossensor_response_connections_reset_total", "Connections reset at both ends, per action.", |s| s.connections_reset),
        ("ossensor_response_connections_refused_total", "New connections refused at the handshake, per action.", |s| s.connections_refused),
        ("ossensor_response_resets_sent_total", "RST segments sent, per action.", |s| s.resets_sent),
        ("ossensor_response_probes_sent_total", "ACK probes sent to quiet connections, per action.", |s| s.probes_sent),
        ("ossensor_response_frames_suppressed_total", "Resets and probes not sent because of the interface's rate limit, per action.", |s| s.frames_suppressed),
    ];
    for (name, help, value) in counter {
        let v: Vec<(Vec<(&str, &str)>, f64)> = totals.iter().zip(&ids).map(|(a, id)| (vec![("action", id.as_str())], value(&a.stats) as f64)).collect();
        family(&mut e, name, Kind::Counter, help, &v);
    }
    e.into_text()
}

/// A family whose samples carry owned label lists.
fn family(e: &mut Exposition, name: &str, kind: Kind, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
    let borrowed: Vec<(&[(&str, &str)], f64)> = samples.iter().map(|(l, v)| (l.as_slice(), *v)).collect();
    e.family(name, kind, help, &borrowed);
}
