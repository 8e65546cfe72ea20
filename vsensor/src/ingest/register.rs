//! `POST /v1/register`: a sensor says who it is, where it resolved this
//! collector and what it captures. The answer is the filter that keeps it
//! from capturing its own uplink (built from parsed addresses only,
//! `ossensor_shared::filter`), the last sequence stored for its epoch and
//! the public action key. The registry is written at once.

use super::{Authenticated, MAX_COLLECTOR_ADDRESSES, MAX_INTERFACES, MAX_TEXT};
use crate::http::{json, refusal, Refusal, Request, StatusCode};
use crate::state::{unix_now, App};
use ossensor_host::log;
use ossensor_shared::auth;
use ossensor_shared::chunk;
use ossensor_shared::control::{RegisterRequest, RegisterResponse};
use std::net::IpAddr;

pub async fn handle(app: &App, req: &Request, h: &Authenticated) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let reg: RegisterRequest = serde_json::from_slice(&h.body).map_err(|e| bad(format!("bad registration body: {e}")))?;
    if reg.sensor_id != h.sensor {
        return Err(bad(format!("sensor_id {:?} in the body differs from header {} {:?}", reg.sensor_id, auth::H_SENSOR, h.sensor)));
    }
    if reg.epoch != h.epoch {
        return Err(bad(format!("epoch {} in the body differs from header {} {}", reg.epoch, auth::H_EPOCH, h.epoch)));
    }
    if reg.hostname.len() > MAX_TEXT || reg.version.len() > MAX_TEXT {
        return Err(bad(format!("hostname or version longer than {MAX_TEXT} bytes")));
    }
    if reg.interfaces.len() > MAX_INTERFACES {
        return Err(bad(format!("{} interfaces (at most {MAX_INTERFACES})", reg.interfaces.len())));
    }
    if reg.collector_addresses.len() > MAX_COLLECTOR_ADDRESSES {
        return Err(bad(format!("{} collector addresses (at most {MAX_COLLECTOR_ADDRESSES})", reg.collector_addresses.len())));
    }
    let mut addrs = Vec::with_capacity(reg.collector_addresses.len());
    for a in &reg.collector_addresses {
        // Parsed, not pasted: the filter text must not carry anything else.
        let ip: IpAddr = a.parse().map_err(|_| bad(format!("collector address {:?} is not an IP address", a.chars().take(80).collect::<String>())))?;
        addrs.push(ip);
    }
    let base = ossensor_shared::filter::exclude_collector(&addrs, Some(req.conn.local), reg.collector_port);
    let files =
        app.store.sensor(&h.sensor).map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot open the sensor's state: {e}")))?;
    let last_seq = files.lock().await.last_seq(h.epoch);
    app.fleet
        .registry()
        .register(&reg, &req.conn.remote.to_string(), unix_now())
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot write the registry: {e}")))?;
    app.fleet.registered(&h.sensor, base.clone());
    let filter = app.fleet.filter_for(&h.sensor).unwrap_or(base);
    log!(
        log::BASIC,
        "registered sensor {} (host {:?}, version {}, epoch {}, {} interfaces) from {}; last seq {:?}; filter: {filter}",
        reg.sensor_id,
        reg.hostname,
        reg.version,
        reg.epoch,
        reg.interfaces.len(),
        req.conn.remote,
        last_seq
    );
    Ok(json(&RegisterResponse { filter, max_chunk_bytes: chunk::MAX_RAW_CHUNK as u64, last_seq, action_key: Some(app.actions.key.public.to_string()) }))
}
