//! `POST /v1/chunks`: one compressed pcapng chunk. It is decompressed and
//! checked block by block (`ossensor_shared::chunk`, on a blocking thread),
//! then appended to the sensor's current file and synced, and only then
//! acknowledged. A sequence already stored for the epoch is a retry:
//! acknowledged, not stored twice. Appends of one sensor are serialised by
//! its lock in the store.

use super::{parsed, required, Authenticated};
use crate::http::{json, refusal, Refusal, Request, StatusCode};
use crate::state::{unix_now, App};
use crate::store::AppendOutcome;
use ossensor_host::log;
use ossensor_shared::chunk::{self, Encoding};
use ossensor_shared::control::ChunkAck;
use ossensor_shared::timefmt;

pub async fn handle(app: &App, req: &Request, h: &Authenticated) -> Result<Vec<u8>, Refusal> {
    let bad = |reason: String| refusal(StatusCode::BAD_REQUEST, "malformed", reason);
    let req400 = StatusCode::BAD_REQUEST;
    let headers = &req.headers;
    let encoding_text = required(headers, chunk::H_ENCODING, req400)?;
    let encoding =
        Encoding::parse(encoding_text).ok_or_else(|| bad(format!("bad value {encoding_text:?} in header {} (zstd or identity)", chunk::H_ENCODING)))?;
    let raw_len: usize = parsed(chunk::H_RAW_LENGTH, required(headers, chunk::H_RAW_LENGTH, req400)?)?;
    let packets: u64 = parsed(chunk::H_PACKETS, required(headers, chunk::H_PACKETS, req400)?)?;
    let body = h.body.clone();
    let compressed = body.len();

    // Decompression and the block walk are CPU work: off the reactor.
    let decoded = tokio::task::spawn_blocking(move || chunk::decode(encoding, &body, raw_len, packets))
        .await
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("chunk check failed: {e}")))?;
    let (raw, summary) = decoded.map_err(|e| bad(format!("bad chunk: {e}")))?;

    let files =
        app.store.sensor(&h.sensor).map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot open the sensor's folder: {e}")))?;
    let mut guard = files.lock_owned().await;
    let limits = app.store.limits;
    let (epoch, seq) = (h.epoch, h.seq);
    let raw_bytes = raw.len();
    let outcome = tokio::task::spawn_blocking(move || guard.append(epoch, seq, &raw, packets, ossensor_host::clock::now_ns(), &limits))
        .await
        .map_err(|e| refusal(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("store task failed: {e}")))?;
    let stored = match outcome {
        Err(e) => {
            return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, "storage", format!("cannot store the chunk: {e}")));
        }
        Ok(AppendOutcome::Duplicate) => false,
        Ok(AppendOutcome::Stored { closed, .. }) => {
            if closed {
                crate::state::spawn_retention(app.store.clone());
            }
            true
        }
    };
    app.fleet.registry().seen(&h.sensor, h.epoch, &req.conn.remote.to_string(), unix_now());
    if log::enabled(log::CHUNKS) {
        let span = match (summary.first_ts_ns, summary.last_ts_ns) {
            (Some(a), Some(b)) => format!("{} .. {}", timefmt::rfc3339_millis(a), timefmt::rfc3339_millis(b)),
            _ => "no packets".to_string(),
        };
        log!(
            log::CHUNKS,
            "chunk sensor {} epoch {} seq {}: {} packets, {} sections, raw {raw_bytes} bytes, {} {compressed} bytes, {span}; {}",
            h.sensor,
            h.epoch,
            h.seq,
            summary.packets,
            summary.sections,
            encoding.as_str(),
            if stored { "stored" } else { "duplicate, not stored" }
        );
    }
    Ok(json(&ChunkAck { seq: h.seq, stored }))
}
