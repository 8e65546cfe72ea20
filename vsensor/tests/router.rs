//! The collector's real handlers without a socket: requests built as plain
//! values and passed to `router::handle`, no TCP, no TLS, no hyper. A sensor
//! registers and stores a chunk; the answers' proofs verify and the stored
//! file holds exactly the chunk's pcapng.

use ossensor_shared::auth::{self, RequestMeta};
use ossensor_shared::chunk;
use ossensor_shared::control::{ChunkAck, ErrorBody, InterfaceInfo, RegisterRequest, RegisterResponse};
use ossensor_shared::pcapng::{Direction, SectionWriter};
use std::net::SocketAddr;
use vsensor::config::RawConfig;
use vsensor::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use vsensor::router::{self, Serves};
use vsensor::Collector;

const KEY: &str = "router-test-key";
const SENSOR: &str = "node-7";
const EPOCH: u64 = 1_795_826_490_000_000_000;

/// Where the request "came from" and "arrived": only addresses, nothing is bound.
fn remote() -> SocketAddr {
    "198.18.0.2:40312".parse().unwrap()
}
fn local() -> SocketAddr {
    "198.18.0.1:8443".parse().unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A signed request of the sensor; the nonce, to check the proof.
fn signed(method: Method, path: &str, seq: u64, body: Vec<u8>, extra: &[(&'static str, String)]) -> (Request, String) {
    let nonce = ossensor_host::nonce();
    let timestamp = now();
    let meta = RequestMeta {
        method: method.as_str().into(),
        path: path.into(),
        sensor_id: SENSOR.into(),
        epoch: EPOCH,
        seq,
        timestamp,
        nonce: nonce.clone(),
        body_sha256: auth::sha256(&body),
    };
    let mut h = HeaderMap::new();
    let text = |v: String| HeaderValue::from_str(&v).unwrap();
    h.insert(auth::H_SENSOR, text(SENSOR.into()));
    h.insert(auth::H_EPOCH, text(EPOCH.to_string()));
    h.insert(auth::H_SEQ, text(seq.to_string()));
    h.insert(auth::H_TIMESTAMP, text(timestamp.to_string()));
    h.insert(auth::H_NONCE, text(nonce.clone()));
    h.insert(auth::H_SIGNATURE, text(auth::sign(KEY.as_bytes(), &meta)));
    for (k, v) in extra {
        h.insert(*k, text(v.clone()));
    }
    (Request::new(method, path, h, body, remote(), local()), nonce)
}

fn proof_verifies(collector: &Collector, nonce: &str, r: &Response) -> bool {
    let proof = r.headers.get(auth::H_PROOF).expect("a proof").to_str().unwrap();
    auth::verify_response_proof(KEY.as_bytes(), nonce, &collector.cert_sha256(), r.status.as_u16(), &r.body, proof)
}

fn json<T: serde::de::DeserializeOwned>(r: &Response) -> T {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)))
}

fn section(packets: usize) -> Vec<u8> {
    let mut w = SectionWriter::new();
    w.begin("router-test");
    let i = w.add_interface("eth0", 1, 65535);
    for k in 0..packets {
        let mut frame = vec![0u8; 60];
        frame[12] = 0x08;
        frame[14] = 0x45;
        frame[59] = k as u8;
        w.add_packet(i, EPOCH + k as u64 * 1000, 60, &frame, Direction::Outbound);
    }
    w.bytes().to_vec()
}

#[tokio::test]
async fn a_sensor_registers_and_stores_a_chunk_without_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let config = RawConfig::from_pairs(&[("VSENSOR_HMAC_KEY", KEY), ("VSENSOR_DATA_DIR", &data_dir)]).validate().unwrap();
    let collector = Collector::open(&config).unwrap();
    let app = collector.app();

    // Registration: the filter is built from the addresses given, the one
    // the "connection" arrived on and the sensor's configured port.
    let registration = RegisterRequest {
        sensor_id: SENSOR.into(),
        hostname: "node-7.test".into(),
        version: "0.1.0".into(),
        epoch: EPOCH,
        interfaces: vec![InterfaceInfo { name: "eth0".into(), addresses: vec!["198.18.0.2".into()] }],
        collector_addresses: vec!["198.18.0.1".into(), "198.18.0.9".into()],
        collector_port: 443,
    };
    let (req, nonce) = signed(Method::POST, "/v1/register", 0, serde_json::to_vec(&registration).unwrap(), &[]);
    let r = router::handle(&app, Serves::All, req).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(proof_verifies(&collector, &nonce, &r));
    let answer: RegisterResponse = json(&r);
    assert_eq!(answer.filter, "not (tcp and (host 198.18.0.1 or host 198.18.0.9) and (port 8443 or port 443))");
    assert_eq!(answer.last_seq, None);

    // A chunk: stored, acknowledged with a proof.
    let raw = section(3);
    let mut body = Vec::new();
    chunk::compress(&raw, 3, &mut body).unwrap();
    let chunk_headers = [(chunk::H_ENCODING, "zstd".to_string()), (chunk::H_RAW_LENGTH, raw.len().to_string()), (chunk::H_PACKETS, "3".to_string())];
    let (req, nonce) = signed(Method::POST, "/v1/chunks", 1, body.clone(), &chunk_headers);
    let r = router::handle(&app, Serves::All, req).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(proof_verifies(&collector, &nonce, &r));
    let ack: ChunkAck = json(&r);
    assert!(ack.stored && ack.seq == 1);

    // The same seq again is a retry: acknowledged, not stored twice.
    let (req, _) = signed(Method::POST, "/v1/chunks", 1, body, &chunk_headers);
    let ack: ChunkAck = json(&router::handle(&app, Serves::All, req).await);
    assert!(!ack.stored && ack.seq == 1);

    // A replayed request is refused, with the proof (it was authenticated).
    let (req, nonce) = signed(Method::POST, "/v1/register", 0, serde_json::to_vec(&registration).unwrap(), &[]);
    let replayed = req.clone();
    assert_eq!(router::handle(&app, Serves::All, req).await.status, StatusCode::OK);
    let r = router::handle(&app, Serves::All, replayed).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(proof_verifies(&collector, &nonce, &r));
    assert!(json::<ErrorBody>(&r).error.contains("replay"), "{r:?}");
    // Registered again: the answer says what was stored.
    let (req, _) = signed(Method::POST, "/v1/register", 0, serde_json::to_vec(&registration).unwrap(), &[]);
    assert_eq!(json::<RegisterResponse>(&router::handle(&app, Serves::All, req).await).last_seq, Some(1));

    // Without a signature, nothing but a 401, and no proof.
    let unsigned = Request::new(Method::POST, "/v1/chunks", HeaderMap::new(), Vec::new(), remote(), local());
    let r = router::handle(&app, Serves::All, unsigned).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get(auth::H_PROOF).is_none());

    // The stored file is the chunk's pcapng, byte for byte, once.
    vsensor::server::close_all(app).await.unwrap();
    let folder = dir.path().join("sensors").join(SENSOR);
    let files: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "pcapng")).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), raw);
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs"][EPOCH.to_string()], 1);
}

#[tokio::test]
async fn the_health_check_and_each_listener_s_paths() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_string();
    let config = RawConfig::from_pairs(&[("VSENSOR_HMAC_KEY", KEY), ("VSENSOR_DATA_DIR", &data_dir)]).validate().unwrap();
    let app = Collector::open(&config).unwrap().app();
    let get = |path: &str| Request::new(Method::GET, path, HeaderMap::new(), Vec::new(), remote(), local());

    let r = router::handle(&app, Serves::Operators, get("/healthz")).await;
    assert_eq!((r.status, r.body.as_slice()), (StatusCode::OK, &b"ok"[..]));
    // The operators' API without a token; and not at all on the sensors' listener.
    assert_eq!(router::handle(&app, Serves::All, get("/v1/operator/status")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(router::handle(&app, Serves::Sensors, get("/v1/operator/status")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(router::handle(&app, Serves::Operators, get("/v1/register")).await.status, StatusCode::NOT_FOUND);
}
