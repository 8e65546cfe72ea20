//! What operators see of the fleet: every sensor's registration (registry),
//! its latest running state (`POST /v1/status`), and the response actions.
//! One view, three renderings: JSON (`/v1/operator/status`), a page that
//! refreshes itself (`/status`, no external asset), and Prometheus metrics
//! (`/metrics`). All three need the operators' read token (or the action
//! token; [`super::auth`]).

use super::auth::may_read;
use crate::http::{error_body, header, json, refused, HeaderValue, Method, Request, Response, StatusCode};
use crate::state::App;
use ossensor_shared::control::InterfaceStatus;
use ossensor_shared::metrics::{Exposition, Kind};
use ossensor_shared::{timefmt, VERSION};
use serde::Serialize;
use std::collections::BTreeMap;

/// How the view is rendered (the router tells from the path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    /// `/status`: the page for browsers.
    Page,
    /// `/v1/operator/status`: JSON.
    Json,
    /// `/metrics`: Prometheus text.
    Metrics,
}

/// GET only, with the read token (or the action token).
pub async fn handle(app: &App, req: &Request, rendering: Rendering) -> Response {
    let path = req.path.as_str();
    if let Err(r) = may_read(&app.operator_tokens.current(), &req.headers) {
        let mut resp = refused(app, req, None, &r);
        if rendering == Rendering::Page {
            // Lets a browser ask for the token.
            resp.headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"vsensor\""));
        }
        return resp;
    }
    if req.method != Method::GET {
        return Response::json(StatusCode::METHOD_NOT_ALLOWED, error_body(&format!("{} not allowed on {path} (GET)", req.method)));
    }
    let view = view(app).await;
    match rendering {
        Rendering::Page => Response::new(StatusCode::OK, page(&view).into_bytes(), "text/html; charset=utf-8"),
        Rendering::Metrics => Response::new(StatusCode::OK, metrics(&view).into_bytes(), ossensor_shared::metrics::CONTENT_TYPE),
        Rendering::Json => Response::json(StatusCode::OK, json(&view)),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InterfaceView {
    pub name: String,
    pub addresses: Vec<String>,
    #[serde(flatten)]
    pub capture: InterfaceStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct SensorView {
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub remote_address: String,
    pub interfaces: Vec<InterfaceView>,
    /// RFC 3339 UTC, and how long ago.
    pub last_seen: String,
    pub last_seen_seconds_ago: i64,
    pub packets_per_second: f64,
    pub bytes_per_second: f64,
    pub kernel_drops: u64,
    pub packets_dropped: u64,
    pub spool_bytes: u64,
    pub spool_capacity_bytes: u64,
    pub duplicates_removed: u64,
    pub actions_in_force: u64,
    pub action_channel_open: bool,
    /// What the collector stored from it since the collector started.
    pub stored_chunks: u64,
    pub stored_packets: u64,
    pub stored_bytes: u64,
    pub duplicate_chunks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    pub collector_version: String,
    pub generated: String,
    pub actions_active: usize,
    pub sensors: Vec<SensorView>,
}

/// The view, now.
pub async fn view(app: &App) -> StatusView {
    let now_ns = ossensor_host::clock::now_ns();
    let now_s = (now_ns / 1_000_000_000) as i64;
    let registry: Vec<(String, crate::registry::SensorRecord)> = {
        let r = app.fleet.registry();
        r.all().map(|(id, rec)| (id.to_string(), rec.clone())).collect()
    };
    let reports = app.reports.snapshot();
    let channels = app.actions.channels_open();
    let mut stored: BTreeMap<String, crate::store::Stats> = BTreeMap::new();
    for s in app.store.all_sensors() {
        let s = s.lock().await;
        stored.insert(s.id().to_string(), s.total);
    }
    let sensors = registry
        .into_iter()
        .map(|(id, rec)| {
            let rep = reports.get(&id).cloned().unwrap_or_default();
            let latest = rep.latest.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
            let (pps, bps) = rep.rates();
            let interfaces = rec
                .interfaces
                .iter()
                .map(|i| InterfaceView {
                    name: i.name.clone(),
                    addresses: i.addresses.clone(),
                    capture: latest
                        .interfaces
                        .iter()
                        .find(|c| c.name == i.name)
                        .cloned()
                        .unwrap_or(InterfaceStatus { name: i.name.clone(), ..Default::default() }),
                })
                .collect();
            let st = stored.get(&id).copied().unwrap_or_default();
            SensorView {
                hostname: rec.hostname.clone(),
                version: rec.version.clone(),
                remote_address: rec.remote_address.clone(),
                interfaces,
                last_seen: timefmt::rfc3339_millis(rec.last_seen.max(0) as u64 * 1_000_000_000),
                last_seen_seconds_ago: now_s - rec.last_seen,
                packets_per_second: pps,
                bytes_per_second: bps,
                kernel_drops: latest.interfaces.iter().map(|i| i.dropped_kernel).sum(),
                packets_dropped: latest.packets_dropped,
                spool_bytes: latest.spool_bytes,
                spool_capacity_bytes: latest.spool_capacity_bytes,
                duplicates_removed: latest.duplicates_removed,
                actions_in_force: latest.actions_in_force,
                action_channel_open: channels.contains(&id),
                stored_chunks: st.chunks,
                stored_packets: st.packets,
                stored_bytes: st.bytes,
                duplicate_chunks: st.duplicates,
                id,
            }
        })
        .collect();
    let actions_active = app.actions.book().in_force(now_ns).len();
    StatusView { collector_version: VERSION.to_string(), generated: timefmt::rfc3339_millis(now_ns), actions_active, sensors }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1} G", v / 1e9),
        v if v >= 1e6 => format!("{:.1} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0} "),
    }
}

/// The status page: one table, refreshed by the browser every 5 s.
pub fn page(v: &StatusView) -> String {
    let mut rows = String::new();
    for s in &v.sensors {
        let ifs = s
            .interfaces
            .iter()
            .map(|i| format!("{} <span class=\"dim\">{}</span>", esc(&i.name), esc(&i.addresses.join(", "))))
            .collect::<Vec<_>>()
            .join("<br>");
        let spool = if s.spool_capacity_bytes > 0 { 100.0 * s.spool_bytes as f64 / s.spool_capacity_bytes as f64 } else { 0.0 };
        rows.push_str(&format!(
            "<tr data-sensor=\"{id}\"><td class=\"id\">{id}</td><td>{host}</td><td>{ver}</td><td>{ifs}</td><td title=\"{seen}\">{ago} s ago</td>\
             <td class=\"num pps\">{pps}pkt/s</td><td class=\"num bps\">{bps}B/s</td><td class=\"num drops\">{drops}</td>\
             <td class=\"num spool\">{spool:.1} %</td><td class=\"num dups\">{dups}</td><td class=\"num actions\">{acts}{chan}</td></tr>\n",
            id = esc(&s.id),
            host = esc(&s.hostname),
            ver = esc(&s.version),
            seen = esc(&s.last_seen),
            ago = s.last_seen_seconds_ago,
            pps = si(s.packets_per_second),
            bps = si(s.bytes_per_second),
            drops = s.kernel_drops,
            dups = s.duplicates_removed,
            acts = s.actions_in_force,
            chan = if s.action_channel_open { "" } else { " <span class=\"dim\">(no channel)</span>" },
        ));
    }
    if v.sensors.is_empty() {
        rows.push_str("<tr><td colspan=\"11\" class=\"dim\">no sensor has registered yet</td></tr>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>vsensor: {n} sensors</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse}}\
         th,td{{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}}\
         .num{{text-align:right;font-variant-numeric:tabular-nums}}.dim{{color:#888}}</style></head>\n\
         <body><h1>vsensor {ver}</h1><p id=\"summary\">{n} sensors, {a} response actions active. Updated {gen}; this page refreshes every 5 s.</p>\n\
         <table id=\"sensors\"><thead><tr><th>sensor</th><th>host</th><th>version</th><th>interfaces and addresses</th><th>last seen</th>\
         <th>packets</th><th>bytes</th><th>kernel drops</th><th>spool</th><th>duplicates removed</th><th>actions</th></tr></thead>\n<tbody>\n{rows}</tbody></table></body></html>\n",
        n = v.sensors.len(),
        ver = esc(&v.collector_version),
        a = v.actions_active,
        gen = esc(&v.generated),
    )
}

/// The collector's Prometheus metrics.
pub fn metrics(v: &StatusView) -> String {
    let mut e = Exposition::new();
    e.family("vsensor_build_info", Kind::Gauge, "Always 1; the label says which version.", &[(&[("version", &v.collector_version)], 1.0)]);
    e.single("vsensor_sensors_registered", Kind::Gauge, "Sensors in the registry.", v.sensors.len() as f64);
    e.single("vsensor_response_actions_active", Kind::Gauge, "Response actions in force.", v.actions_active as f64);
    let per = |f: fn(&SensorView) -> f64| -> Vec<(Vec<(&str, &str)>, f64)> { v.sensors.iter().map(|s| (vec![("sensor", s.id.as_str())], f(s))).collect() };
    for (name, kind, help, f) in [
        (
            "vsensor_stored_chunks_total",
            Kind::Counter,
            "Chunks stored per sensor since the collector started.",
            (|s: &SensorView| s.stored_chunks as f64) as fn(&SensorView) -> f64,
        ),
        ("vsensor_stored_packets_total", Kind::Counter, "Packets stored per sensor since the collector started.", |s| s.stored_packets as f64),
        ("vsensor_stored_bytes_total", Kind::Counter, "Bytes of pcapng stored per sensor since the collector started.", |s| s.stored_bytes as f64),
        ("vsensor_duplicate_chunks_total", Kind::Counter, "Chunks received again (retries) and not stored twice.", |s| s.duplicate_chunks as f64),
        ("vsensor_sensor_last_seen_timestamp_seconds", Kind::Gauge, "Unix time of the sensor's last authenticated request.", |s| {
            (ossensor_host::clock::now_ns() / 1_000_000_000) as f64 - s.last_seen_seconds_ago as f64
        }),
        ("vsensor_sensor_packets_per_second", Kind::Gauge, "Packets per second the sensor delivered (between its last two reports).", |s| s.packets_per_second),
        ("vsensor_sensor_kernel_drops", Kind::Gauge, "Packets the sensor's kernel rings dropped, as last reported.", |s| s.kernel_drops as f64),
        ("vsensor_sensor_spool_bytes", Kind::Gauge, "Bytes waiting in the sensor's spool, as last reported.", |s| s.spool_bytes as f64),
        ("vsensor_sensor_action_channel_open", Kind::Gauge, "1 while the sensor's response-action WebSocket is open.", |s| s.action_channel_open as u8 as f64),
    ] {
        let samples = per(f);
        let borrowed: Vec<(&[(&str, &str)], f64)> = samples.iter().map(|(l, x)| (l.as_slice(), *x)).collect();
        e.family(name, kind, help, &borrowed);
    }
    e.into_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(id: &str) -> SensorView {
        SensorView {
            id: id.into(),
            hostname: "<b>host</b>".into(),
            version: "0.1.0".into(),
            remote_address: "127.0.0.1:1".into(),
            interfaces: vec![InterfaceView { name: "eth0".into(), addresses: vec!["198.18.0.1".into()], capture: InterfaceStatus::default() }],
            last_seen: "2026-11-28T00:00:00.000Z".into(),
            last_seen_seconds_ago: 3,
            packets_per_second: 1500.0,
            bytes_per_second: 2.5e6,
            kernel_drops: 7,
            packets_dropped: 0,
            spool_bytes: 1 << 20,
            spool_capacity_bytes: 64 << 20,
            duplicates_removed: 0,
            actions_in_force: 1,
            action_channel_open: true,
            stored_chunks: 1,
            stored_packets: 2,
            stored_bytes: 3,
            duplicate_chunks: 0,
        }
    }

    #[test]
    fn the_page_escapes_what_sensors_sent_and_needs_no_external_asset() {
        let v = StatusView { collector_version: "0.1.0".into(), generated: "now".into(), actions_active: 1, sensors: vec![sensor("node1")] };
        let p = page(&v);
        assert!(p.contains("&lt;b&gt;host&lt;/b&gt;") && !p.contains("<b>host</b>"));
        assert!(p.contains("http-equiv=\"refresh\""));
        assert!(p.contains("1.5 kpkt/s") && p.contains("2.5 MB/s") && p.contains("1.6 %"));
        assert!(!p.contains("src=") && !p.contains("href="), "no external asset");
    }
}
