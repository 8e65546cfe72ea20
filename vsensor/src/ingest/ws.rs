//! The sensors' WebSocket for response actions (`GET /v1/actions/ws`, signed
//! like every request; see [`super`]). On connection, whenever the set
//! changes, and every minute (a fresh signature, which workers need: they
//! refuse a set signed too long ago), the collector sends every action in
//! force, signed with its action key; the sensor sends reports, which go
//! into the book. Pings every 20 s find dead peers.
//!
//! The one handler tied to a connection: its 101 answer is plain data like
//! every other, but the channel runs on the stream the server's adapter
//! hands over afterwards (hyper's upgraded connection), so a test calling
//! the router sees the 101 only (it may pass the callback any byte stream).

use super::Authenticated;
use crate::http::header::{CONNECTION, UPGRADE};
use crate::http::{refusal, HeaderMap, HeaderValue, Refusal, Request, Response, StatusCode, Upgraded};
use crate::state::App;
use futures_util::{SinkExt, StreamExt};
use ossensor_host::log;
use ossensor_shared::actions::signed::RESIGN_EVERY_NS;
use ossensor_shared::control::{FromSensor, SignedSetHex, ToSensor};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const PING_EVERY: Duration = Duration::from_secs(20);
/// Largest message a sensor may send (a report of many actions).
const MAX_MESSAGE: usize = 1 << 20;

/// Answers an authenticated upgrade request with 101, and the server's
/// adapter then hands the connection to `serve`; 400 if the request is
/// not a WebSocket upgrade.
pub fn accept(app: Arc<App>, a: &Authenticated, req: &Request) -> Result<Response, Refusal> {
    let not_an_upgrade =
        || refusal(StatusCode::BAD_REQUEST, "malformed", "a WebSocket upgrade is expected (Upgrade: websocket, Sec-WebSocket-Version: 13, Sec-WebSocket-Key)");
    if !req.can_upgrade {
        return Err(not_an_upgrade());
    }
    let headers = &req.headers;
    let wants = headers.get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = headers.get("sec-websocket-key").ok_or_else(not_an_upgrade)?;
    if !wants || headers.get("sec-websocket-version").and_then(|v| v.to_str().ok()) != Some("13") {
        return Err(not_an_upgrade());
    }
    let accept = derive_accept_key(key.as_bytes());
    let sensor = a.sensor.clone();
    let mut h = HeaderMap::new();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("base64"));
    Ok(Response {
        status: StatusCode::SWITCHING_PROTOCOLS,
        headers: h,
        body: Vec::new(),
        on_upgrade: Some(Box::new(move |upgraded| {
            Box::pin(async move {
                match upgraded {
                    Ok(io) => {
                        let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
                        config.max_message_size = Some(MAX_MESSAGE);
                        config.max_frame_size = Some(MAX_MESSAGE);
                        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                        serve(app, sensor, ws).await;
                    }
                    Err(e) => log!(log::SENDS, "WebSocket upgrade failed: {e}"),
                }
            })
        })),
    })
}

async fn serve(app: Arc<App>, sensor: String, ws: WebSocketStream<Upgraded>) {
    let (mut tx, mut rx) = ws.split();
    let mut changed = app.actions.watch();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut resign = tokio::time::interval(Duration::from_nanos(RESIGN_EVERY_NS));
    resign.tick().await; // the first tick is now: the set is sent below
                         // A sensor that sends garbage must not flood the log.
    let mut said_malformed = false;
    app.actions.set_channel_open(&sensor, true);
    log!(log::BASIC, "sensor {sensor}: response-action channel open");
    let why = loop {
        // Send the set now (first pass, after a change, or to sign it again).
        let signed = app.actions.signed();
        let text = serde_json::to_string(&ToSensor::Actions { signed: SignedSetHex::from_set(&signed) }).expect("serialisable");
        if let Err(e) = tx.send(Message::text(text)).await {
            break e.to_string();
        }
        log!(log::ACTIONS, "sensor {sensor}: sent the signed set of actions in force ({} bytes)", signed.payload.len());
        let next = loop {
            tokio::select! {
                c = changed.changed() => break if c.is_ok() { None } else { Some("stopping".to_string()) },
                _ = resign.tick() => break None,
                _ = ping.tick() => {
                    if let Err(e) = tx.send(Message::Ping(Vec::new().into())).await {
                        break Some(e.to_string());
                    }
                }
                msg = rx.next() => match msg {
                    None => break Some("closed".into()),
                    Some(Err(e)) => break Some(e.to_string()),
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<FromSensor>(t.as_str()) {
                        Ok(FromSensor::Report { actions }) => {
                            let pairs: Vec<_> = actions.iter().map(|a| (a.id, a.stats)).collect();
                            app.actions.book().report(ossensor_host::clock::now_ns(), &sensor, &pairs);
                            app.actions.reported();
                            for a in &actions {
                                log!(log::ACTIONS, "sensor {sensor}: action {} report: {} connections reset, {} refused, {} resets, {} probes", a.id, a.stats.connections_reset, a.stats.connections_refused, a.stats.resets_sent, a.stats.probes_sent);
                            }
                        }
                        Err(e) if !said_malformed => {
                            said_malformed = true;
                            log!(log::BASIC, "sensor {sensor}: ignored a malformed message on the action channel (further ones on this connection are not logged): {e}");
                        }
                        Err(_) => {}
                    },
                    Some(Ok(Message::Close(_))) => break Some("closed by the sensor".into()),
                    Some(Ok(_)) => {}
                },
            }
        };
        if let Some(why) = next {
            break why;
        }
    };
    app.actions.set_channel_open(&sensor, false);
    log!(log::BASIC, "sensor {sensor}: response-action channel closed ({why})");
}
