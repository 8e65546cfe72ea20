//! Response actions, the uplink's part (ANTIGENA_ENABLED): a WebSocket to
//! the collector, opened once registration has pinned the collector's
//! certificate and reopened after any loss. The collector pushes the set of
//! actions in force, signed with its action key; the uplink relays it as it
//! is to every capture-worker (which verify it, then enforce it on the
//! flows they see) and reports what each action did every
//! ANTIGENA_TIME_PERIOD seconds. It reads the set only to log and count it.
//!
//! The upgrade request is signed like every other request, and the
//! connection is refused unless the collector presents the certificate that
//! proved the key at registration.

use crate::intake::Filters;
use ossensor_host::log;
use ossensor_host::log::{audit, AuditSeverity, ACTIONS, BASIC, SENDS};
use ossensor_shared::actions::signed;
use ossensor_shared::actions::ActionStats;
use ossensor_shared::auth::{self, RequestMeta};
use ossensor_shared::control::{ActionReport, FromSensor, ToSensor, PATH_ACTIONS_WS};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

type Socket = WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// How to reach the collector, set by the sender after each registration.
#[derive(Clone)]
pub struct Dialer {
    pub host: String,
    pub port: u16,
    pub tls: Arc<ClientConfig>,
    pub key: Vec<u8>,
    pub sensor_id: String,
    pub epoch: u64,
    /// SHA-256 of the certificate that proved the key.
    pub pinned: [u8; 32],
}

/// What the uplink's threads share about actions.
#[derive(Default)]
pub struct ActionsShared {
    pub dialer: Mutex<Option<Dialer>>,
    /// Per interface, the workers' cumulative counters per action.
    pub stats: Mutex<BTreeMap<Arc<str>, BTreeMap<u64, ActionStats>>>,
}

/// Reconnection backoff cap: an action pushed while we are away waits at
/// most this long once the collector is back.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The socket's read timeout: how often the loop looks at its clock.
const READ_TICK: Duration = Duration::from_millis(500);

/// Runs until `stop`.
pub fn run(shared: &ActionsShared, filters: &Mutex<Filters>, report_every: Duration, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(500);
    let mut last_error = String::new();
    // Actions audited as received: once each, not at every push of the set
    // (the collector sends it again after each reconnection).
    let mut known = std::collections::BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let dialer = shared.dialer.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(dialer) = dialer else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        match connect(&dialer) {
            Ok(ws) => {
                log!(BASIC, "response actions: connected to the collector");
                last_error.clear();
                backoff = Duration::from_millis(500);
                let why = session(ws, shared, filters, report_every, stop, &mut known);
                log!(BASIC, "response actions: connection to the collector lost ({why}); reconnecting");
            }
            Err(e) => {
                if e != last_error {
                    log!(BASIC, "response actions: cannot connect to the collector: {e}");
                    last_error = e;
                } else {
                    log!(SENDS, "response actions: cannot connect to the collector: {last_error}");
                }
            }
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn connect(d: &Dialer) -> Result<Socket, String> {
    let addr = (d.host.as_str(), d.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}:{}: {e}", d.host, d.port))?
        .next()
        .ok_or_else(|| format!("{}: no address", d.host))?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("{addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let name = ServerName::try_from(d.host.clone()).map_err(|e| format!("server name {:?}: {e}", d.host))?;
    let mut conn = ClientConnection::new(d.tls.clone(), name).map_err(|e| e.to_string())?;
    conn.complete_io(&mut tcp).map_err(|e| format!("TLS: {e}"))?;
    let cert = conn.peer_certificates().and_then(|c| c.first()).ok_or("no certificate")?;
    if auth::sha256(cert.as_ref()) != d.pinned {
        return Err("the collector's certificate is not the one that proved the key".into());
    }

    let host = if d.host.contains(':') { format!("[{}]", d.host) } else { d.host.clone() };
    let mut req = format!("wss://{host}:{}{PATH_ACTIONS_WS}", d.port).into_client_request().map_err(|e| e.to_string())?;
    let meta = RequestMeta::with_nonce("GET", PATH_ACTIONS_WS, &d.sensor_id, d.epoch, 0, ossensor_host::clock::now_ns(), ossensor_host::nonce(), b"");
    let h = req.headers_mut();
    for (k, v) in meta.signed_headers(&d.key) {
        h.insert(k, HeaderValue::from_str(&v).map_err(|e| e.to_string())?);
    }
    let (ws, _) = tungstenite::client::client(req, StreamOwned::new(conn, tcp)).map_err(|e| format!("WebSocket handshake: {e}"))?;
    ws.get_ref().sock.set_read_timeout(Some(READ_TICK)).map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Reads pushed actions and sends reports until the connection fails.
fn session(
    mut ws: Socket,
    shared: &ActionsShared,
    filters: &Mutex<Filters>,
    report_every: Duration,
    stop: &AtomicBool,
    known: &mut std::collections::BTreeSet<u64>,
) -> String {
    let mut last_report = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return "stopping".into();
        }
        match ws.read() {
            Ok(Message::Text(text)) => match serde_json::from_str::<ToSensor>(text.as_str()).map(|ToSensor::Actions { signed }| signed.to_set()) {
                Ok(Some(set_signed)) => {
                    let now = ossensor_host::clock::now_ns();
                    // Read, not verified: for the log and the audit trail.
                    match signed::decode(&set_signed.payload) {
                        Ok(set) => {
                            for a in &set.actions {
                                let ms = a.until_ns.saturating_sub(set.issued_ns) / 1_000_000;
                                log!(ACTIONS, "response action {} received: {:?} for {ms} ms", a.id, a.target);
                                if known.insert(a.id) {
                                    audit(
                                        AuditSeverity::Notice,
                                        "action_received",
                                        &[("id", &a.id.to_string()), ("target", &format!("{:?}", a.target)), ("seconds", &(ms / 1000).to_string())],
                                    );
                                }
                            }
                            log!(ACTIONS, "response actions in force: {} (set version {})", set.actions.len(), set.version);
                        }
                        Err(e) => log!(BASIC, "response actions: the collector's set does not decode ({e}); relayed, the workers will refuse it"),
                    }
                    filters.lock().unwrap_or_else(|e| e.into_inner()).set_actions(set_signed, now);
                }
                Ok(None) => log!(BASIC, "response actions: ignored a set whose payload or signature is not hex"),
                Err(e) => log!(BASIC, "response actions: ignored a message the collector sent: {e}"),
            },
            Ok(Message::Close(_)) => return "closed by the collector".into(),
            Ok(_) => {} // pings are answered by tungstenite on the next write
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return e.to_string(),
        }
        if last_report.elapsed() >= report_every {
            last_report = Instant::now();
            let actions = totals(&shared.stats.lock().unwrap_or_else(|e| e.into_inner()));
            if !actions.is_empty() {
                log_stats(&actions);
                let text = serde_json::to_string(&FromSensor::Report { actions }).expect("serialisable");
                if let Err(e) = ws.send(Message::text(text)) {
                    return e.to_string();
                }
            }
        }
        // Answers pings even when there is nothing to report.
        if let Err(e) = ws.flush() {
            if !matches!(&e, tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock) {
                return e.to_string();
            }
        }
    }
}

/// Sums each action's counters over the interfaces.
pub fn totals(per_interface: &BTreeMap<Arc<str>, BTreeMap<u64, ActionStats>>) -> Vec<ActionReport> {
    let mut sum: BTreeMap<u64, ActionStats> = BTreeMap::new();
    for stats in per_interface.values() {
        for (id, s) in stats {
            let t = sum.entry(*id).or_default();
            t.connections_reset += s.connections_reset;
            t.connections_refused += s.connections_refused;
            t.resets_sent += s.resets_sent;
            t.probes_sent += s.probes_sent;
            t.frames_suppressed += s.frames_suppressed;
        }
    }
    sum.into_iter().map(|(id, stats)| ActionReport { id, stats }).collect()
}

fn log_stats(actions: &[ActionReport]) {
    for a in actions {
        let s = a.stats;
        log!(
            ossensor_host::log::STATS,
            "response action {}: {} connections reset, {} refused, {} resets and {} probes sent",
            a.id,
            s.connections_reset,
            s.connections_refused,
            s.resets_sent,
            s.probes_sent
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_interfaces() {
        let mut m: BTreeMap<Arc<str>, BTreeMap<u64, ActionStats>> = BTreeMap::new();
        let s = ActionStats { connections_reset: 1, connections_refused: 2, resets_sent: 3, probes_sent: 4, frames_suppressed: 5 };
        m.entry("eth0".into()).or_default().insert(7, s);
        m.entry("eth1".into()).or_default().insert(7, s);
        m.entry("eth1".into()).or_default().insert(9, s);
        let t = totals(&m);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].id, 7);
        assert_eq!(t[0].stats, ActionStats { connections_reset: 2, connections_refused: 4, resets_sent: 6, probes_sent: 8, frames_suppressed: 10 });
        assert_eq!(t[1].stats, s);
    }
}
