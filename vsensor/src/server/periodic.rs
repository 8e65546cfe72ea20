//! The periodic driver: every second closes the files that are too old and
//! runs retention after a close, writes the book of actions if sensors'
//! reports changed it; every 10 s writes the per-sensor statistics line and
//! flushes the registry. And the last writes at shutdown ([`close_all`]).

use crate::state::{self, App};
use crate::store::CloseReason;
use ossensor_host::log;
use std::sync::Arc;
use std::time::Duration;

/// How often the statistics line is written (level 1).
const STATS_INTERVAL: Duration = Duration::from_secs(10);

/// Every second: close files past their age limit (then run retention);
/// every [`STATS_INTERVAL`]: the statistics line and a registry flush.
/// Runs until dropped/aborted.
pub async fn periodic(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_stats = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let limits = app.store.limits;
        let mut closed_any = false;
        for sensor in app.store.all_sensors() {
            // A sensor busy appending checks its own rotation.
            let Ok(guard) = sensor.try_lock_owned() else { continue };
            let now = ossensor_host::clock::now_ns();
            let mut guard = guard;
            match tokio::task::spawn_blocking(move || guard.close_if_due(now, &limits)).await {
                Ok(Ok(true)) => closed_any = true,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => log!(log::BASIC, "cannot close a file: {e}"),
                Err(e) => log!(log::BASIC, "rotation task failed: {e}"),
            }
        }
        if closed_any {
            state::spawn_retention(app.store.clone());
        }
        let app2 = app.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || app2.actions.save_if_reported()).await {
            log!(log::BASIC, "cannot write the response actions: {e}");
        }
        if last_stats.elapsed() >= STATS_INTERVAL {
            last_stats = tokio::time::Instant::now();
            for sensor in app.store.all_sensors() {
                let mut s = sensor.lock().await;
                let i = std::mem::take(&mut s.interval);
                if i.chunks > 0 || i.duplicates > 0 {
                    log!(
                        log::STATS,
                        "stats sensor {}: last {}s: {} chunks, {} packets, {} bytes stored, {} duplicates; since start: {} chunks, {} packets, {} bytes, {} duplicates",
                        s.id(),
                        STATS_INTERVAL.as_secs(),
                        i.chunks,
                        i.packets,
                        i.bytes,
                        i.duplicates,
                        s.total.chunks,
                        s.total.packets,
                        s.total.bytes,
                        s.total.duplicates
                    );
                }
            }
            let app2 = app.clone();
            let flushed = tokio::task::spawn_blocking(move || app2.fleet.registry().flush()).await;
            if let Ok(Err(e)) = flushed {
                log!(log::BASIC, "cannot write the registry: {e}");
            }
        }
    }
}

/// Closes (and syncs) every open file and writes the registry. Call after
/// [`super::serve`] returned.
pub async fn close_all(app: Arc<App>) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        let mut first_err = None;
        for sensor in app.store.all_sensors() {
            let mut s = sensor.blocking_lock();
            if let Err(e) = s.close(CloseReason::Shutdown) {
                log!(log::BASIC, "sensor {}: cannot close its file: {e}", s.id());
                first_err.get_or_insert(e);
            }
        }
        if let Err(e) = app.fleet.registry().flush() {
            log!(log::BASIC, "cannot write the registry: {e}");
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    })
    .await
    .map_err(std::io::Error::other)?
}
