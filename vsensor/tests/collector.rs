//! The collector end to end: the real server on 127.0.0.1:0 with a temp data
//! folder, a real TLS client (rustls, recording the served certificate's
//! SHA-256), requests signed with the shared crate, files read back from
//! disk; and the real binary stopped with SIGTERM, its files read by tshark.

use ossensor_shared::auth::{self, RequestMeta};
use ossensor_shared::chunk::{self, Encoding};
use ossensor_shared::control::{ChunkAck, ErrorBody, InterfaceInfo, RegisterRequest, RegisterResponse};
use ossensor_shared::pcapng::{Direction, SectionWriter};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use vsensor::config::RawConfig;
use vsensor::Collector;

const KEY: &[u8] = b"integration-test-key";

// ---------------------------------------------------------------------------
// Helpers: packets, server, TLS client, signing
// ---------------------------------------------------------------------------

fn section(packets: usize, tag: u8) -> Vec<u8> {
    let mut w = SectionWriter::new();
    w.begin("vsensor-test");
    let i = w.add_interface("veth0", 1, 65535);
    for k in 0..packets {
        // A plausible Ethernet + IPv4 frame, so tshark has something to chew.
        let mut frame = vec![0u8; 60];
        frame[12] = 0x08;
        frame[14] = 0x45;
        frame[59] = tag;
        frame[58] = k as u8;
        w.add_packet(i, 1_795_826_490_000_000_000 + k as u64 * 1000, 60, &frame, Direction::Inbound);
    }
    w.bytes().to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Server {
    addr: SocketAddr,
    /// The operators' listener, with `VSENSOR_OPERATOR_LISTEN`.
    operator_addr: Option<SocketAddr>,
    cert_sha256: [u8; 32],
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(data_dir: &Path, extra: &[(&str, &str)]) -> Server {
        let dir = data_dir.to_str().unwrap().to_string();
        let key = String::from_utf8(KEY.to_vec()).unwrap();
        let mut pairs: Vec<(&str, &str)> = vec![("VSENSOR_HMAC_KEY", &key), ("VSENSOR_LISTEN", "127.0.0.1:0"), ("VSENSOR_DATA_DIR", &dir)];
        pairs.extend_from_slice(extra);
        let config = RawConfig::from_pairs(&pairs).validate().unwrap();
        let collector = Collector::open(&config).unwrap();
        let cert_sha256 = collector.cert_sha256();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // As the binary does: a second listener for the operators if asked,
        // and operator.json names where operators reach the collector.
        let operators = match config.operator_listen {
            Some(a) => Some(tokio::net::TcpListener::bind(a).await.unwrap()),
            None => None,
        };
        let operator_addr = operators.as_ref().map(|l| l.local_addr().unwrap());
        collector.write_operator_file(operator_addr.unwrap_or(addr)).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(collector.run_listeners(listener, operators, async move {
            let _ = rx.await;
        }));
        Server { addr, operator_addr, cert_sha256, stop: Some(tx), task: Some(task) }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Accepts any certificate and records the SHA-256 of the leaf, which the
/// collector's proof must then bind.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Option<[u8; 32]>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = Some(auth::sha256(end_entity.as_ref()));
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json::<ErrorBody>().error
    }
}

/// A hand-written HTTP/1.1 client over one TLS connection (keep-alive), so
/// the tests control every byte they send.
struct Client {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
    cert_sha256: [u8; 32],
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = Arc::new(Mutex::new(None));
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recorder { seen: seen.clone(), provider }))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let cert_sha256 = seen.lock().unwrap().expect("certificate seen");
        Client { tls, buf: Vec::new(), cert_sha256 }
    }

    async fn send_head(&mut self, method: &str, path: &str, headers: &[(String, String)], content_length: usize) {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {content_length}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.tls.write_all(head.as_bytes()).await.unwrap();
    }

    async fn request(&mut self, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Resp {
        self.send_head(method, path, headers, body.len()).await;
        self.tls.write_all(body).await.unwrap();
        self.tls.flush().await.unwrap();
        self.read_response().await
    }

    async fn read_response(&mut self) -> Resp {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut tmp = [0u8; 8192];
            let n = self.tls.read(&mut tmp).await.unwrap();
            assert!(n > 0, "connection closed before a response");
            self.buf.extend_from_slice(&tmp[..n]);
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: HashMap<String, String> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let len: usize = headers.get("content-length").map_or(0, |v| v.parse().unwrap());
        while self.buf.len() < len {
            let mut tmp = [0u8; 8192];
            let n = self.tls.read(&mut tmp).await.unwrap();
            assert!(n > 0, "connection closed inside a body");
            self.buf.extend_from_slice(&tmp[..n]);
        }
        let body = self.buf.drain(..len).collect();
        Resp { status, headers, body }
    }
}

struct Signed {
    headers: Vec<(String, String)>,
    nonce: String,
}

/// A collector on a fresh data directory and a client connected to it.
async fn started() -> (tempfile::TempDir, Server, Client) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let c = Client::connect(server.addr).await;
    (dir, server, c)
}

/// A section of `packets` packets on one interface, and its zstd body.
fn zstd_chunk(packets: usize) -> (Vec<u8>, Vec<u8>) {
    let raw = section(packets, 1);
    let mut body = Vec::new();
    chunk::compress(&raw, 1, &mut body).unwrap();
    (raw, body)
}

/// Adds a chunk's headers to signed authentication headers.
fn with_chunk_headers(mut s: Signed, enc: Encoding, raw_len: usize, packets: u64) -> Signed {
    s.headers.push((chunk::H_ENCODING.into(), enc.as_str().into()));
    s.headers.push((chunk::H_RAW_LENGTH.into(), raw_len.to_string()));
    s.headers.push((chunk::H_PACKETS.into(), packets.to_string()));
    s
}

#[allow(clippy::too_many_arguments)]
fn sign(key: &[u8], method: &str, path: &str, sensor: &str, epoch: u64, seq: u64, timestamp: i64, body: &[u8]) -> Signed {
    let nonce = ossensor_host::nonce();
    let meta = RequestMeta {
        method: method.into(),
        path: path.into(),
        sensor_id: sensor.into(),
        epoch,
        seq,
        timestamp,
        nonce: nonce.clone(),
        body_sha256: auth::sha256(body),
    };
    let signature = auth::sign(key, &meta);
    let headers = vec![
        (auth::H_SENSOR.to_string(), sensor.to_string()),
        (auth::H_EPOCH.to_string(), epoch.to_string()),
        (auth::H_SEQ.to_string(), seq.to_string()),
        (auth::H_TIMESTAMP.to_string(), timestamp.to_string()),
        (auth::H_NONCE.to_string(), nonce.clone()),
        (auth::H_SIGNATURE.to_string(), signature),
    ];
    Signed { headers, nonce }
}

fn proof_ok(c: &Client, nonce: &str, r: &Resp) -> bool {
    match r.headers.get(auth::H_PROOF) {
        Some(p) => auth::verify_response_proof(KEY, nonce, &c.cert_sha256, r.status, &r.body, p),
        None => false,
    }
}

fn register_body(sensor: &str, epoch: u64) -> Vec<u8> {
    serde_json::to_vec(&RegisterRequest {
        sensor_id: sensor.into(),
        hostname: format!("{sensor}.test"),
        version: "0.1.0".into(),
        epoch,
        interfaces: vec![InterfaceInfo { name: "veth0".into(), addresses: vec!["198.18.0.2".into()] }],
        collector_addresses: vec!["127.0.0.1".into(), "198.18.0.1".into()],
        collector_port: 443,
    })
    .unwrap()
}

async fn register(c: &mut Client, sensor: &str, epoch: u64) -> (Resp, String) {
    let body = register_body(sensor, epoch);
    let s = sign(KEY, "POST", "/v1/register", sensor, epoch, 0, now(), &body);
    (c.request("POST", "/v1/register", &s.headers, &body).await, s.nonce)
}

/// Signs and sends one chunk; `tweak` may change the chunk headers after
/// signing (they are not covered by the signature).
async fn send_chunk(c: &mut Client, sensor: &str, epoch: u64, seq: u64, raw: &[u8], packets: u64) -> (Resp, String) {
    let mut body = Vec::new();
    chunk::compress(raw, 3, &mut body).unwrap();
    send_body(c, sensor, epoch, seq, Encoding::Zstd, &body, raw.len(), packets).await
}

#[allow(clippy::too_many_arguments)]
async fn send_body(c: &mut Client, sensor: &str, epoch: u64, seq: u64, enc: Encoding, body: &[u8], raw_len: usize, packets: u64) -> (Resp, String) {
    let s = with_chunk_headers(sign(KEY, "POST", "/v1/chunks", sensor, epoch, seq, now(), body), enc, raw_len, packets);
    (c.request("POST", "/v1/chunks", &s.headers, body).await, s.nonce)
}

fn pcapng_files(data_dir: &Path, sensor: &str) -> Vec<PathBuf> {
    let dir = data_dir.join("sensors").join(sensor);
    let mut v: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "pcapng")).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn all_bytes(data_dir: &Path, sensor: &str) -> Vec<u8> {
    pcapng_files(data_dir, sensor).iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
}

// ---------------------------------------------------------------------------
// Tests against the library server
// ---------------------------------------------------------------------------

#[tokio::test]
async fn register_answers_with_filter_and_a_proof_bound_to_the_served_certificate() {
    let (dir, server, mut c) = started().await;
    assert_eq!(c.cert_sha256, server.cert_sha256, "the hash the collector binds is the one it serves");
    // The same certificate file is reused, and is what sensors may pin.
    let pem = std::fs::read_to_string(dir.path().join("tls/cert.pem")).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE"));

    let (r, nonce) = register(&mut c, "sensor-a", 7).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(proof_ok(&c, &nonce, &r), "response proof verifies against the served certificate");
    // A proof for another certificate (a man in the middle) does not.
    let p = r.headers.get(auth::H_PROOF).unwrap();
    assert!(!auth::verify_response_proof(KEY, &nonce, &auth::sha256(b"other"), r.status, &r.body, p));
    let reg: RegisterResponse = r.json();
    let port = server.addr.port();
    assert_eq!(reg.filter, format!("not (tcp and (host 127.0.0.1 or host 198.18.0.1) and (port {port} or port 443))"));
    assert_eq!(reg.max_chunk_bytes, chunk::MAX_RAW_CHUNK as u64);
    assert_eq!(reg.last_seq, None);

    let registry: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("registry.json")).unwrap()).unwrap();
    assert_eq!(registry["sensors"]["sensor-a"]["hostname"], "sensor-a.test");
    assert_eq!(registry["sensors"]["sensor-a"]["epoch"], 7);

    // Health check without authentication; unknown paths and methods.
    let r = c.request("GET", "/healthz", &[], b"").await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    let s = sign(KEY, "POST", "/v1/nothing", "sensor-a", 7, 0, now(), b"");
    let r = c.request("POST", "/v1/nothing", &s.headers, b"").await;
    assert_eq!(r.status, 404);
    assert!(proof_ok(&c, &s.nonce, &r), "an authenticated 404 carries the proof");
    let s = sign(KEY, "GET", "/v1/register", "sensor-a", 7, 0, now(), b"");
    let r = c.request("GET", "/v1/register", &s.headers, b"").await;
    assert_eq!(r.status, 405);
    assert!(r.error().contains("GET"));
    server.stop().await;
}

#[tokio::test]
async fn chunks_are_stored_exactly_once_in_order() {
    let (dir, server, mut c) = started().await;
    register(&mut c, "s1", 1).await;

    let a = section(5, 1);
    let (r, nonce) = send_chunk(&mut c, "s1", 1, 1, &a, 5).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(proof_ok(&c, &nonce, &r));
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 1, stored: true });
    let files = pcapng_files(dir.path(), "s1");
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read(&files[0]).unwrap(), a, "the file holds exactly the section");

    // A retry (same seq, new nonce) is acknowledged but not stored again.
    let (r, _) = send_chunk(&mut c, "s1", 1, 1, &a, 5).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 1, stored: false });
    assert_eq!(std::fs::read(&files[0]).unwrap(), a, "file unchanged by the retry");

    // A gap is accepted; identity encoding too.
    let b = section(3, 2);
    let (r, _) = send_body(&mut c, "s1", 1, 4, Encoding::Identity, &b, b.len(), 3).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 4, stored: true });
    let (r, _) = send_chunk(&mut c, "s1", 1, 3, &section(1, 3), 1).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 3, stored: false }, "below last_seq is a retry");
    assert_eq!(all_bytes(dir.path(), "s1"), [a.clone(), b.clone()].concat());
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("sensors/s1/state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs"]["1"], 4);

    // Registering again reports where the collector stands.
    let (r, _) = register(&mut c, "s1", 1).await;
    assert_eq!(r.json::<RegisterResponse>().last_seq, Some(4));
    // A sensor that never registered may send too.
    let (r, _) = send_chunk(&mut c, "unregistered", 9, 1, &a, 5).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 1, stored: true });
    server.stop().await;
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_stored() {
    let (dir, server, mut c) = started().await;
    let (raw, body) = zstd_chunk(2);
    let s = with_chunk_headers(sign(b"wrong key", "POST", "/v1/chunks", "evil", 1, 1, now(), &body), Encoding::Zstd, raw.len(), 2);
    let r = c.request("POST", "/v1/chunks", &s.headers, &body).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("signature"), "{}", r.error());
    assert!(!r.headers.contains_key(auth::H_PROOF), "no proof without a valid request");

    // Right key, but the body changed after signing.
    let s = with_chunk_headers(sign(KEY, "POST", "/v1/chunks", "evil", 1, 1, now(), b"something else"), Encoding::Zstd, raw.len(), 2);
    assert_eq!(c.request("POST", "/v1/chunks", &s.headers, &body).await.status, 401);

    // No authentication headers at all.
    let r = c.request("POST", "/v1/register", &[], &register_body("evil", 1)).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("missing header"), "{}", r.error());
    // A malformed header value.
    let mut s = sign(KEY, "POST", "/v1/register", "evil", 1, 0, now(), b"{}");
    s.headers[1].1 = "not-a-number".into();
    let r = c.request("POST", "/v1/register", &s.headers, b"{}").await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains(auth::H_EPOCH), "{}", r.error());

    assert!(!dir.path().join("sensors/evil").exists(), "nothing stored for refused requests");
    assert!(!dir.path().join("registry.json").exists());
    server.stop().await;
}

/// A request signed for one sensor, sent under another's name (a forged
/// sensor id), or with its sequence number or epoch changed: 401, nothing
/// stored for either sensor.
#[tokio::test]
async fn a_signature_for_another_sensor_or_sequence_is_refused() {
    let (dir, server, mut c) = started().await;
    let (raw, body) = zstd_chunk(2);
    for (header, forged) in [(auth::H_SENSOR, "victim"), (auth::H_SEQ, "2"), (auth::H_EPOCH, "9")] {
        let mut s = with_chunk_headers(sign(KEY, "POST", "/v1/chunks", "signer", 1, 1, now(), &body), Encoding::Zstd, raw.len(), 2);
        let h = s.headers.iter_mut().find(|(k, _)| k == header).unwrap();
        h.1 = forged.to_string();
        let r = c.request("POST", "/v1/chunks", &s.headers, &body).await;
        assert_eq!(r.status, 401, "{header} changed after signing");
        assert!(r.error().contains("signature"), "{}", r.error());
    }
    assert!(!dir.path().join("sensors/victim").exists() && !dir.path().join("sensors/signer").exists(), "nothing stored");
    server.stop().await;
}

#[tokio::test]
async fn replayed_and_stale_requests_are_refused() {
    let (dir, server, mut c) = started().await;
    let (raw, body) = zstd_chunk(2);
    let s = with_chunk_headers(sign(KEY, "POST", "/v1/chunks", "s1", 1, 1, now(), &body), Encoding::Zstd, raw.len(), 2);
    let r = c.request("POST", "/v1/chunks", &s.headers, &body).await;
    assert_eq!(r.status, 200);
    // The very same bytes again, also on a new connection.
    let mut c2 = Client::connect(server.addr).await;
    let r = c2.request("POST", "/v1/chunks", &s.headers, &body).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("replayed"), "{}", r.error());
    assert!(proof_ok(&c2, &s.nonce, &r), "the refusal of a signed request carries the proof");

    // A signed request from ten minutes ago.
    let s = with_chunk_headers(sign(KEY, "POST", "/v1/chunks", "s1", 1, 2, now() - 600, &body), Encoding::Zstd, raw.len(), 2);
    let r = c.request("POST", "/v1/chunks", &s.headers, &body).await;
    assert_eq!(r.status, 401);
    assert!(r.error().contains("timestamp"), "{}", r.error());
    assert_eq!(all_bytes(dir.path(), "s1"), raw, "stored once");
    server.stop().await;
}

#[tokio::test]
async fn malformed_chunks_get_400_with_the_reason() {
    let (dir, server, mut c) = started().await;
    let raw = section(4, 1);

    // Not pcapng.
    let junk = vec![0x55u8; 64];
    let (r, nonce) = send_body(&mut c, "s1", 1, 1, Encoding::Identity, &junk, junk.len(), 0).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("pcapng block at offset 0"), "{}", r.error());
    assert!(proof_ok(&c, &nonce, &r));
    // Wrong packet count.
    let (r, _) = send_chunk(&mut c, "s1", 1, 2, &raw, 5).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("declared 5 packets but the chunk holds 4"), "{}", r.error());
    // Not zstd.
    let (r, _) = send_body(&mut c, "s1", 1, 3, Encoding::Zstd, b"definitely not zstd", raw.len(), 4).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("cannot decompress"), "{}", r.error());
    // A lie about the raw length.
    let (r, _) = send_body(&mut c, "s1", 1, 4, Encoding::Identity, &raw, raw.len() + 4, 4).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains("declared raw length"), "{}", r.error());
    // A torn section.
    let torn = &raw[..raw.len() - 8];
    let (r, _) = send_body(&mut c, "s1", 1, 5, Encoding::Identity, torn, torn.len(), 4).await;
    assert_eq!(r.status, 400);
    // Unknown encoding.
    let mut s = sign(KEY, "POST", "/v1/chunks", "s1", 1, 6, now(), &raw);
    s.headers.push((chunk::H_ENCODING.into(), "gzip".into()));
    s.headers.push((chunk::H_RAW_LENGTH.into(), raw.len().to_string()));
    s.headers.push((chunk::H_PACKETS.into(), "4".into()));
    let r = c.request("POST", "/v1/chunks", &s.headers, &raw).await;
    assert_eq!(r.status, 400);
    assert!(r.error().contains(chunk::H_ENCODING), "{}", r.error());

    assert!(pcapng_files(dir.path(), "s1").is_empty(), "nothing stored");
    // The sequence numbers of refused chunks were not consumed.
    let (r, _) = send_chunk(&mut c, "s1", 1, 1, &raw, 4).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 1, stored: true });
    server.stop().await;
}

#[tokio::test]
async fn oversize_bodies_get_413_without_being_read() {
    let (dir, server, mut c) = started().await;
    let s = sign(KEY, "POST", "/v1/chunks", "s1", 1, 1, now(), b"");
    // Declare one byte over the limit and send only the head: the answer
    // must come without the body.
    c.send_head("POST", "/v1/chunks", &s.headers, chunk::MAX_BODY + 1).await;
    c.tls.flush().await.unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), c.read_response()).await.expect("answered at once");
    assert_eq!(r.status, 413);
    assert!(r.error().contains("exceeds the limit"), "{}", r.error());
    assert_eq!(r.headers.get("connection").map(String::as_str), Some("close"));
    assert!(pcapng_files(dir.path(), "s1").is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_last_seq_and_repairs_a_torn_file() {
    let dir = tempfile::tempdir().unwrap();
    let raw = section(3, 1);
    let server = Server::start(dir.path(), &[]).await;
    let mut c = Client::connect(server.addr).await;
    let (r, _) = send_chunk(&mut c, "s1", 5, 10, &raw, 3).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 10, stored: true });
    drop(c);
    server.stop().await;

    // Simulate a collector killed mid-write: a torn block at the end.
    let files = pcapng_files(dir.path(), "s1");
    assert_eq!(files.len(), 1);
    let mut torn = std::fs::read(&files[0]).unwrap();
    torn.extend_from_slice(&section(2, 2)[..30]); // inside the next section header
    std::fs::write(&files[0], &torn).unwrap();

    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(std::fs::read(&files[0]).unwrap(), raw, "torn tail cut back to the last whole block");
    let mut c = Client::connect(server.addr).await;
    let (r, _) = register(&mut c, "s1", 5).await;
    assert_eq!(r.json::<RegisterResponse>().last_seq, Some(10));
    let (r, _) = send_chunk(&mut c, "s1", 5, 10, &raw, 3).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 10, stored: false }, "a retry after restart is not stored twice");
    let next = section(1, 3);
    let (r, _) = send_chunk(&mut c, "s1", 5, 11, &next, 1).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 11, stored: true });
    let files2 = pcapng_files(dir.path(), "s1");
    assert_eq!(files2.len(), 2, "a restart starts a new file");
    assert_eq!(std::fs::read(&files[0]).unwrap(), raw, "the old file is never appended to");
    assert_eq!(all_bytes(dir.path(), "s1"), [raw, next].concat());
    server.stop().await;
}

#[tokio::test]
async fn rotation_by_size_and_retention_across_sensors() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB files, 3 MiB in all.
    let server = Server::start(dir.path(), &[("VSENSOR_ROTATE_MB", "1"), ("VSENSOR_RETENTION_MB", "3")]).await;
    let mut c = Client::connect(server.addr).await;
    // ~700 KiB chunks: every second chunk closes a file.
    let big = {
        let mut w = SectionWriter::new();
        w.begin("t");
        let i = w.add_interface("veth0", 1, 65535);
        for k in 0..500u32 {
            w.add_packet(i, k as u64, 1400, &[(k % 251) as u8; 1400], Direction::Inbound);
        }
        w.bytes().to_vec()
    };
    for seq in 1..=6 {
        for sensor in ["a", "b"] {
            let (r, _) = send_chunk(&mut c, sensor, 1, seq, &big, 500).await;
            assert_eq!(r.status, 200);
        }
    }
    // Retention runs in the background after each rotation.
    let total = || -> u64 { ["a", "b"].iter().flat_map(|s| pcapng_files(dir.path(), s)).map(|p| std::fs::metadata(p).unwrap().len()).sum() };
    for _ in 0..50 {
        if total() <= 3 << 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(total() <= 3 << 20, "retention keeps the total under the limit: {}", total());
    for s in ["a", "b"] {
        for f in pcapng_files(dir.path(), s) {
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len < (1 << 20) + big.len() as u64, "{} is {len} bytes", f.display());
            ossensor_shared::pcapng::check_sections(&std::fs::read(&f).unwrap()).unwrap();
        }
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// The operators' API
// ---------------------------------------------------------------------------

fn operator_file(data_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data_dir.join("operator.json")).unwrap()).unwrap()
}

/// The operators' tokens in operator.json: (read token, action token).
fn operator_tokens(data_dir: &Path) -> (String, String) {
    let f = operator_file(data_dir);
    let field = |name: &str| f[name].as_str().unwrap_or_else(|| panic!("no {name} in operator.json")).to_string();
    (field("read_token"), field("action_token"))
}

/// Standard base64 with padding (RFC 4648).
fn base64(raw: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in raw.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            out.push(if i <= c.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn h(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

fn bearer(token: &str) -> (String, String) {
    h("authorization", &format!("Bearer {token}"))
}

/// What a browser sends with cached credentials: HTTP Basic.
fn basic(token: &str) -> (String, String) {
    h("authorization", &format!("Basic {}", base64(format!("operator:{token}").as_bytes())))
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn json_type() -> (String, String) {
    h(JSON.0, JSON.1)
}

const QUARANTINE: &[u8] = br#"{"target":{"quarantine":{"host":"198.18.0.9"}},"for_seconds":600}"#;

/// The actions the collector holds, read with the read token.
async fn action_list(c: &mut Client, read_token: &str) -> Vec<serde_json::Value> {
    let r = c.request("GET", "/v1/operator/actions", &[bearer(read_token)], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json::<serde_json::Value>()["actions"].as_array().unwrap().clone()
}

/// A refusal: a 4xx with a JSON reason.
fn assert_refused(r: &Resp, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", String::from_utf8_lossy(&r.body));
    assert!(!r.error().is_empty(), "{what}: a reason");
}

/// The cross-site request forgery the review found: a page on another
/// site posts an HTML form (`enctype="text/plain"`, the field name holding
/// JSON up to `"x":"`, its value `"}`), and the browser adds the Basic
/// credentials it cached for `/status`.
#[tokio::test]
async fn a_cross_site_form_post_with_cached_basic_credentials_orders_nothing() {
    let (dir, server, mut c) = started().await;
    let (read, action) = operator_tokens(dir.path());
    let form = [&br#"{"target":{"quarantine":{"host":"198.18.0.9"}},"for_seconds":31622400,"x":""#[..], b"=", b"\"}"].concat();
    assert!(serde_json::from_slice::<serde_json::Value>(&form).is_ok(), "the form body is JSON");
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        for token in [&action, &read] {
            let headers = [basic(token), h("content-type", content_type), h("origin", "https://evil.example"), h("sec-fetch-site", "cross-site")];
            let r = c.request("POST", "/v1/operator/actions", &headers, &form).await;
            assert!((400..500).contains(&r.status), "{content_type}: refused, not {} {}", r.status, String::from_utf8_lossy(&r.body));
            assert!(!r.error().is_empty());
        }
    }
    assert_eq!(action_list(&mut c, &read).await, Vec::<serde_json::Value>::new(), "no action was ordered");
    server.stop().await;
}

/// HTTP Basic is what browsers cache and send by themselves: refused for
/// ordering actions even with the right token, a JSON body and no Origin.
#[tokio::test]
async fn basic_credentials_cannot_order_actions() {
    let (dir, server, mut c) = started().await;
    let (read, action) = operator_tokens(dir.path());
    let r = c.request("POST", "/v1/operator/actions", &[basic(&action), json_type()], QUARANTINE).await;
    assert_refused(&r, 401, "Basic with the action token");
    assert_eq!(action_list(&mut c, &read).await, Vec::<serde_json::Value>::new(), "no action was ordered");
    server.stop().await;
}

/// Who may order, cancel and list: only the action token as Bearer, with a
/// JSON body, from no other origin.
#[tokio::test]
async fn only_the_action_token_as_bearer_orders_and_cancels_from_the_own_origin() {
    let (dir, server, mut c) = started().await;
    let (read, action) = operator_tokens(dir.path());
    assert_ne!(read, action);
    assert!(read.len() >= 64 && action.len() >= 64, "at least 32 random bytes, hex");
    let r = c.request("POST", "/v1/operator/actions", &[bearer(&read), json_type()], QUARANTINE).await;
    assert_refused(&r, 403, "the read token as Bearer");
    assert!(r.error().contains("read-only token cannot order actions"), "{}", r.error());
    let r = c.request("POST", "/v1/operator/actions", &[bearer(&"0".repeat(64)), json_type()], QUARANTINE).await;
    assert_refused(&r, 401, "a wrong token");
    let r = c.request("POST", "/v1/operator/actions", &[json_type()], QUARANTINE).await;
    assert_refused(&r, 401, "no token");

    let r = c.request("POST", "/v1/operator/actions", &[bearer(&action), json_type()], QUARANTINE).await;
    assert_eq!(r.status, 201, "the action token as Bearer, JSON, no Origin: {}", String::from_utf8_lossy(&r.body));
    let first = r.json::<serde_json::Value>()["id"].as_u64().unwrap();

    let r = c.request("POST", "/v1/operator/actions", &[bearer(&action), json_type(), h("origin", "https://evil.example")], QUARANTINE).await;
    assert_refused(&r, 403, "a foreign Origin");
    assert!(r.error().contains("evil.example"), "{}", r.error());
    for site in ["cross-site", "same-site"] {
        let r = c.request("POST", "/v1/operator/actions", &[bearer(&action), json_type(), h("sec-fetch-site", site)], QUARANTINE).await;
        assert_refused(&r, 403, site);
    }
    // The test client sends `host: localhost`.
    let own = [bearer(&action), h("content-type", "Application/JSON; charset=utf-8"), h("origin", "https://localhost"), h("sec-fetch-site", "same-origin")];
    let r = c.request("POST", "/v1/operator/actions", &own, QUARANTINE).await;
    assert_eq!(r.status, 201, "the collector's own origin: {}", String::from_utf8_lossy(&r.body));

    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let r = c.request("POST", "/v1/operator/actions", &[bearer(&action), h("content-type", content_type)], QUARANTINE).await;
        assert_refused(&r, 415, content_type);
        assert!(r.error().contains(content_type), "names what it got: {}", r.error());
    }
    let r = c.request("POST", "/v1/operator/actions", &[bearer(&action)], QUARANTINE).await;
    assert_refused(&r, 415, "no content type");

    let path = format!("/v1/operator/actions/{first}");
    let r = c.request("DELETE", &path, &[basic(&action)], b"").await;
    assert_refused(&r, 401, "DELETE with Basic");
    assert!(r.error().contains("Bearer"), "{}", r.error());
    let r = c.request("DELETE", &path, &[bearer(&read)], b"").await;
    assert_refused(&r, 403, "DELETE with the read token");
    let r = c.request("DELETE", &path, &[bearer(&action), h("origin", "https://evil.example")], b"").await;
    assert_refused(&r, 403, "DELETE from a foreign Origin");

    // Listing: the read token either way, the action token as Bearer.
    let states = |list: &[serde_json::Value]| list.iter().map(|a| a["state"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(states(&action_list(&mut c, &read).await), ["active", "active"], "every refusal changed nothing");
    let r = c.request("DELETE", &path, &[bearer(&action)], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json::<serde_json::Value>()["cancelled"], true);
    assert_eq!(states(&action_list(&mut c, &action).await), ["cancelled", "active"]);
    let r = c.request("GET", "/v1/operator/actions", &[basic(&read)], b"").await;
    assert_eq!(r.status, 200);
    let r = c.request("GET", "/v1/operator/actions", &[basic(&action)], b"").await;
    assert_refused(&r, 401, "the action token never as Basic");
    server.stop().await;
}

/// The read token opens the status page, the JSON status and the metrics,
/// as Basic (browsers) or Bearer (Prometheus, scripts).
#[tokio::test]
async fn the_read_token_reads_with_basic_or_bearer_and_wrong_tokens_are_refused() {
    let (dir, server, mut c) = started().await;
    let (read, action) = operator_tokens(dir.path());
    for path in ["/status", "/metrics", "/v1/operator/status"] {
        for auth in [basic(&read), bearer(&read), bearer(&action)] {
            let r = c.request("GET", path, std::slice::from_ref(&auth), b"").await;
            assert_eq!(r.status, 200, "{path} with {}", auth.1.split(' ').next().unwrap());
        }
        for auth in [basic("wrong"), bearer("wrong"), basic(&action), h("authorization", "Digest x")] {
            let r = c.request("GET", path, &[auth], b"").await;
            assert_refused(&r, 401, path);
        }
        let r = c.request("GET", path, &[], b"").await;
        assert_refused(&r, 401, path);
        assert_eq!(r.headers.contains_key("www-authenticate"), path == "/status", "only the page asks a browser for the token");
    }
    let r = c.request("GET", "/v1/operator/status", &[bearer(&read)], b"").await;
    assert!(r.json::<serde_json::Value>()["sensors"].is_array());
    server.stop().await;
}

/// An operator.json from before the split: its token stays valid for
/// reading (Prometheus and browsers keep working) and cannot act; a new
/// action token is made once.
#[tokio::test]
async fn an_old_single_token_becomes_the_read_token() {
    let dir = tempfile::tempdir().unwrap();
    let old = "5e".repeat(32);
    std::fs::write(dir.path().join("operator.json"), format!(r#"{{"url":"https://127.0.0.1:1","token":"{old}"}}"#)).unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let (read, action) = operator_tokens(dir.path());
    assert_eq!(read, old);
    assert!(action.len() == 64 && action != old);
    assert!(operator_file(dir.path()).get("token").is_none());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.path().join("operator.json")).unwrap().permissions().mode() & 0o777, 0o600);

    let mut c = Client::connect(server.addr).await;
    assert_eq!(c.request("GET", "/status", &[basic(&old)], b"").await.status, 200);
    assert_eq!(c.request("GET", "/metrics", &[bearer(&old)], b"").await.status, 200);
    assert_refused(&c.request("POST", "/v1/operator/actions", &[bearer(&old), json_type()], QUARANTINE).await, 403, "the old token");
    assert_eq!(c.request("POST", "/v1/operator/actions", &[bearer(&action), json_type()], QUARANTINE).await.status, 201);
    server.stop().await;

    // A second start keeps both.
    let server = Server::start(dir.path(), &[]).await;
    assert_eq!(operator_tokens(dir.path()), (read, action));
    server.stop().await;
}

/// Polls `check` every 100 ms for up to 5 s.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs the real `vsensor ARGS` (blocking, off the runtime the collector
/// runs on): (exit status, stdout, stderr).
async fn vsensor_command(args: &[&str]) -> (Option<i32>, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out =
        tokio::task::spawn_blocking(move || std::process::Command::new(env!("CARGO_BIN_EXE_vsensor")).env_clear().args(&args).output().unwrap()).await.unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `vsensor operator rotate-tokens` against a running collector: the old
/// tokens are refused and the new ones accepted within seconds, without a
/// restart.
#[tokio::test]
async fn rotated_tokens_take_effect_in_a_running_collector() {
    let (dir, server, mut c) = started().await;
    let d = dir.path().to_str().unwrap().to_string();
    let (read, action) = operator_tokens(dir.path());
    assert_eq!(c.request("POST", "/v1/operator/actions", &[bearer(&action), json_type()], QUARANTINE).await.status, 201);

    let (code, out, err) = vsensor_command(&["operator", "rotate-tokens", "--action", "--data-dir", &d]).await;
    assert_eq!(code, Some(0), "{err}");
    let (read2, action2) = operator_tokens(dir.path());
    assert_eq!(read2, read, "--action leaves the read token");
    assert_ne!(action2, action);
    assert!(!out.contains(&action2) && !err.contains(&action2), "the new token is not printed");
    // Polled with a request that changes nothing while it is accepted.
    eventually("the old action token refused", async || c.request("GET", "/v1/operator/actions", &[bearer(&action)], b"").await.status == 401).await;
    assert_refused(&c.request("POST", "/v1/operator/actions", &[bearer(&action), json_type()], QUARANTINE).await, 401, "the old action token");
    assert_eq!(c.request("POST", "/v1/operator/actions", &[bearer(&action2), json_type()], QUARANTINE).await.status, 201);
    assert_eq!(c.request("GET", "/status", &[basic(&read)], b"").await.status, 200, "the read token still works");

    // No flag: both.
    let (code, _, err) = vsensor_command(&["operator", "rotate-tokens", &format!("--data-dir={d}")]).await;
    assert_eq!(code, Some(0), "{err}");
    let (read3, action3) = operator_tokens(dir.path());
    assert!(read3 != read && action3 != action2);
    eventually("the old read token refused", async || c.request("GET", "/metrics", &[bearer(&read)], b"").await.status == 401).await;
    assert_eq!(c.request("GET", "/metrics", &[bearer(&read3)], b"").await.status, 200);
    assert_refused(&c.request("DELETE", "/v1/operator/actions/1", &[bearer(&action2)], b"").await, 401, "the previous action token");
    assert_eq!(c.request("DELETE", "/v1/operator/actions/1", &[bearer(&action3)], b"").await.status, 200);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(dir.path().join("operator.json")).unwrap().permissions().mode() & 0o777, 0o600);

    // `vsensor action` uses the (new) action token.
    let (code, out, err) = vsensor_command(&["action", "quarantine", "--host", "198.18.0.7", "--for", "60", "--data-dir", &d]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "3", "the new action's id");

    // Usage errors: 2, naming the option; failures: 1, naming the file.
    let (code, _, err) = vsensor_command(&["operator", "rotate-tokens", "--all", "--data-dir", &d]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("--all"), "{err}");
    let (code, _, err) = vsensor_command(&["operator", "rotate-tokens", "--data-dir"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("--data-dir"), "{err}");
    let missing = dir.path().join("nowhere");
    let (code, _, err) = vsensor_command(&["operator", "rotate-tokens", "--data-dir", missing.to_str().unwrap()]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert_eq!(operator_tokens(dir.path()), (read3, action3), "nothing changed by the refused commands");
    server.stop().await;
}

/// With `VSENSOR_OPERATOR_LISTEN`, the operators' API is only there; the
/// sensors' listener does not know it, and sensors still use the main one.
#[tokio::test]
async fn an_operator_listener_takes_the_operators_api_away_from_the_sensors_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("VSENSOR_OPERATOR_LISTEN", "127.0.0.1:0")]).await;
    let op_addr = server.operator_addr.expect("an operators' listener");
    assert_ne!(op_addr, server.addr);
    assert_eq!(operator_file(dir.path())["url"], format!("https://127.0.0.1:{}", op_addr.port()));
    let (read, action) = operator_tokens(dir.path());
    let mut sensors = Client::connect(server.addr).await;
    let mut operators = Client::connect(op_addr).await;
    assert_eq!(operators.cert_sha256, sensors.cert_sha256, "the same certificate");

    for path in ["/status", "/metrics", "/v1/operator/status", "/v1/operator/actions"] {
        assert_eq!(operators.request("GET", path, &[bearer(&read)], b"").await.status, 200, "{path} on the operators' listener");
        assert_refused(&sensors.request("GET", path, &[bearer(&read)], b"").await, 404, path);
    }
    assert_refused(&sensors.request("POST", "/v1/operator/actions", &[bearer(&action), json_type()], QUARANTINE).await, 404, "POST");
    assert_eq!(operators.request("POST", "/v1/operator/actions", &[bearer(&action), json_type()], QUARANTINE).await.status, 201);
    assert_refused(&sensors.request("DELETE", "/v1/operator/actions/1", &[bearer(&action)], b"").await, 404, "DELETE");

    let (r, nonce) = register(&mut sensors, "s1", 1).await;
    assert_eq!(r.status, 200, "sensors register on the main listener");
    assert!(proof_ok(&sensors, &nonce, &r));
    let (r, _) = send_chunk(&mut sensors, "s1", 1, 1, &section(2, 1), 2).await;
    assert_eq!(r.json::<ChunkAck>(), ChunkAck { seq: 1, stored: true });
    let (r, _) = register(&mut operators, "s2", 1).await;
    assert_refused(&r, 404, "no sensor on the operators' listener");
    for c in [&mut sensors, &mut operators] {
        assert_eq!(c.request("GET", "/healthz", &[], b"").await.status, 200);
    }

    // `vsensor action` finds the operators' listener through operator.json.
    let d = dir.path().to_str().unwrap().to_string();
    let (code, out, err) = vsensor_command(&["action", "list", "--json", "--data-dir", &d]).await;
    assert_eq!(code, Some(0), "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["actions"].as_array().unwrap().len(), 1);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_exits_2_on_bad_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vsensor")).env_clear().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VSENSOR_HMAC_KEY"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vsensor"))
        .env_clear()
        .env("VSENSOR_HMAC_KEY", "k")
        .env("VSENSOR_ROTATE_SECONDS", "soon")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("VSENSOR_ROTATE_SECONDS") && err.contains("soon") && !err.contains("\"k\""), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vsensor")).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("VSENSOR_RETENTION_MB"));
}

#[test]
fn a_bad_operator_listen_address_exits_2_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vsensor"))
        .env_clear()
        .env("VSENSOR_HMAC_KEY", "k")
        .env("VSENSOR_OPERATOR_LISTEN", "operators.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("VSENSOR_OPERATOR_LISTEN") && err.contains("operators.example"), "{err}");
}

#[test]
fn sigterm_exits_0_and_tshark_reads_every_file() {
    use std::io::BufRead;
    let tshark = Path::new("/usr/bin/tshark");
    assert!(tshark.exists(), "tshark is required at /usr/bin/tshark for this test (apt-get install tshark)");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_vsensor"))
            .env_clear()
            .env("VSENSOR_HMAC_KEY", std::str::from_utf8(KEY).unwrap())
            .args(["--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap(), "--debug", "4"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let addr: SocketAddr = loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(30)).expect("ready line");
        if let Some((_, a)) = line.split_once("vsensor: listening on ") {
            break a.trim().parse().unwrap();
        }
    };

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut expected = HashMap::new();
    rt.block_on(async {
        let mut c = Client::connect(addr).await;
        let (r, _) = register(&mut c, "bin-a", 1).await;
        assert_eq!(r.status, 200);
        for seq in 1..=3 {
            let (r, _) = send_chunk(&mut c, "bin-a", 1, seq, &section(4, seq as u8), 4).await;
            assert!(r.json::<ChunkAck>().stored);
        }
        // A new epoch opens a second file.
        let (r, _) = send_chunk(&mut c, "bin-a", 2, 1, &section(2, 9), 2).await;
        assert_eq!(r.status, 200);
        let (r, _) = send_chunk(&mut c, "bin-b", 1, 1, &section(6, 7), 6).await;
        assert_eq!(r.status, 200);
        expected.insert("bin-a", 14u64);
        expected.insert("bin-b", 6u64);
        // Keep this connection open (idle keep-alive) across the SIGTERM.
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) }, 0);
        drop(c);
    });
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let lines = reader.join().unwrap();
    assert!(lines.iter().any(|l| l.contains("SHA-256 fingerprint")), "fingerprint printed at start");
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{lines:#?}");

    for (sensor, packets) in expected {
        let files = pcapng_files(dir.path(), sensor);
        assert!(!files.is_empty());
        if sensor == "bin-a" {
            assert_eq!(files.len(), 2, "one file per epoch");
        }
        let mut seen = 0;
        for f in files {
            let out = std::process::Command::new(tshark).arg("-r").arg(&f).arg("-T").arg("fields").arg("-e").arg("frame.number").output().unwrap();
            assert!(out.status.success(), "tshark -r {}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
            seen += String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count() as u64;
        }
        assert_eq!(seen, packets, "tshark reads every packet of {sensor}");
    }
}
