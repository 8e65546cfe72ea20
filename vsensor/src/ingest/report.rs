//! `POST /v1/status`, every 5 s from each sensor: its running state (kept
//! for the status page), and in the answer the filter it should use now
//! (the fleet part changes as sensors come and go). A sensor that says it
//! is stopping leaves the others' filters at once.

use super::{Authenticated, MAX_INTERFACES, MAX_TEXT};
use crate::http::{json, refusal, Refusal, Request, StatusCode};
use crate::state::{unix_now, App};
use ossensor_host::log;
use ossensor_shared::control;

/// `POST /v1/status`: keeps the sensor's running state for the status page.
pub fn handle(app: &App, req: &Request, h: &Authenticated) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let r: control::StatusReport = serde_json::from_slice(&h.body).map_err(|e| bad(format!("bad status report: {e}")))?;
    if r.interfaces.len() > MAX_INTERFACES || r.interfaces.iter().any(|i| i.name.len() > MAX_TEXT) {
        return Err(bad(format!("status report: at most {MAX_INTERFACES} interfaces with names of at most {MAX_TEXT} bytes")));
    }
    let leaving = r.leaving;
    app.reports.push(&h.sensor, ossensor_host::clock::now_ns(), r);
    app.fleet.registry().seen(&h.sensor, h.epoch, &req.conn.remote.to_string(), unix_now());
    if leaving {
        app.fleet.leaving(&h.sensor);
        log!(log::BASIC, "sensor {} is stopping: the others' filters no longer leave flows to it", h.sensor);
        return Ok(json(&control::StatusAnswer::default()));
    }
    Ok(json(&control::StatusAnswer { filter: app.fleet.filter_for(&h.sensor) }))
}
