//! The uplink's HTTPS client to the collector (ureq over rustls, through
//! [`crate::tls_stream`], which writes a chunk in a few large writes).
//!
//! Trust works without certificate management: the TLS verifier records the
//! SHA-256 of whatever certificate the collector presents (still checking the
//! handshake signature against it), and registration succeeds only if the
//! answer carries the collector's proof, an HMAC with the shared key over
//! our nonce and that certificate's hash. From then on the verifier accepts
//! only that certificate, so no packet is ever sent to anyone else. If the
//! collector's certificate changes, the sensor registers again and the new
//! certificate must prove the key too. With VSENSOR_CA_FILE the chain is also
//! verified against that CA.

use ossensor_shared::auth::{self, RequestMeta, H_PROOF};
use ossensor_shared::control::{ChunkAck, ErrorBody, RegisterRequest, RegisterResponse, StatusAnswer, StatusReport, PATH_CHUNKS, PATH_REGISTER, PATH_STATUS};
use ossensor_shared::chunk::{Encoding, H_ENCODING, H_PACKETS, H_RAW_LENGTH};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PIN_MISMATCH: &str = "collector certificate differs from the one that proved the key";

#[derive(Debug, Default)]
struct PinState {
    pinned: Option<[u8; 32]>,
    last_seen: Option<[u8; 32]>,
}

#[derive(Debug)]
struct PinningVerifier {
    provider: Arc<CryptoProvider>,
    ca: Option<Arc<dyn ServerCertVerifier>>,
    state: Mutex<PinState>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(ca) = &self.ca {
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let hash = auth::sha256(end_entity.as_ref());
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.last_seen = Some(hash);
        match st.pinned {
            Some(p) if p != hash => Err(rustls::Error::General(PIN_MISMATCH.into())),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Debug)]
pub enum SendError {
    /// No answer (connection refused, timeout, TLS failure...): retry.
    Transport(String),
    /// The collector's certificate changed since it proved the key: register again.
    CertificateChanged,
    /// The answer did not carry a valid proof: whoever answered does not hold
    /// the key. Nothing more is sent until a registration proves it.
    BadProof(u16),
    /// The collector refused the request.
    Refused { status: u16, reason: String },
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Transport(e) => write!(f, "collector unreachable: {e}"),
            SendError::CertificateChanged => write!(f, "{PIN_MISMATCH}"),
            SendError::BadProof(s) => write!(
                f,
                "answer (status {s}) does not prove knowledge of VSENSOR_HMAC_KEY for the certificate presented: \
                 wrong key on the collector, or a man in the middle; not sending packets"
            ),
            SendError::Refused { status, reason } => write!(f, "collector refused the request with {status}: {reason}"),
        }
    }
}

pub struct Collector {
    host: String,
    port: u16,
    base_url: String,
    key: Vec<u8>,
    pub sensor_id: String,
    pub epoch: u64,
    verifier: Arc<PinningVerifier>,
    tls: Arc<rustls::ClientConfig>,
    agent: ureq::Agent,
}

impl Collector {
    pub fn new(host: &str, port: u16, key: &str, sensor_id: &str, epoch: u64, ca_file: Option<&str>) -> Result<Collector, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = match ca_file {
            None => None,
            Some(path) => Some(ca_verifier(path, provider.clone())?),
        };
        let verifier = Arc::new(PinningVerifier { provider: provider.clone(), ca, state: Mutex::default() });
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let tls = Arc::new(tls);
        let host_part = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        Ok(Collector {
            host: host.to_string(),
            port,
            base_url: format!("https://{host_part}:{port}"),
            key: key.as_bytes().to_vec(),
            sensor_id: sensor_id.to_string(),
            epoch,
            agent: agent(&tls),
            verifier,
            tls,
        })
    }

    /// Registers, proving the collector holds the key for the certificate
    /// it presents, and pins that certificate.
    pub fn register(&mut self, req: &RegisterRequest) -> Result<RegisterResponse, SendError> {
        {
            let mut st = self.verifier.state.lock().unwrap_or_else(|e| e.into_inner());
            st.pinned = None;
            st.last_seen = None;
        }
        // A fresh connection pool, so the certificate seen is this request's.
        self.agent = agent(&self.tls);
        let body = serde_json::to_vec(req).expect("serialisable");
        let (status, answer, cert) = self.post(PATH_REGISTER, 0, &body, &[])?;
        if status != 200 {
            return Err(refusal(status, &answer));
        }
        let resp: RegisterResponse = serde_json::from_slice(&answer)
            .map_err(|e| SendError::Refused { status, reason: format!("unreadable registration answer: {e}") })?;
        self.verifier.state.lock().unwrap_or_else(|e| e.into_inner()).pinned = Some(cert);
        Ok(resp)
    }

    /// What the response-action WebSocket needs, once a certificate is pinned.
    pub fn dialer(&self) -> Option<crate::actions::Dialer> {
        let pinned = self.verifier.state.lock().unwrap_or_else(|e| e.into_inner()).pinned?;
        Some(crate::actions::Dialer {
            host: self.host.clone(),
            port: self.port,
            tls: self.tls.clone(),
            key: self.key.clone(),
            sensor_id: self.sensor_id.clone(),
            epoch: self.epoch,
            pinned,
        })
    }

    pub fn pinned_fingerprint(&self) -> Option<String> {
        self.verifier.state.lock().unwrap_or_else(|e| e.into_inner()).pinned.map(hex_fingerprint)
    }

    pub fn send_chunk(&self, seq: u64, body: &[u8], raw_len: usize, packets: u64, enc: Encoding) -> Result<ChunkAck, SendError> {
        let (status, answer, _) = self.post(
            PATH_CHUNKS,
            seq,
            body,
            &[(H_ENCODING, enc.as_str().to_string()), (H_RAW_LENGTH, raw_len.to_string()), (H_PACKETS, packets.to_string())],
        )?;
        if status != 200 {
            return Err(refusal(status, &answer));
        }
        serde_json::from_slice(&answer).map_err(|e| SendError::Refused { status, reason: format!("unreadable acknowledgement: {e}") })
    }

    /// Reports the sensor's running state (`POST /v1/status`); the answer
    /// carries the collector's filter for this sensor now.
    pub fn send_status(&self, report: &StatusReport) -> Result<StatusAnswer, SendError> {
        let body = serde_json::to_vec(report).expect("serialisable");
        let (status, answer, _) = self.post(PATH_STATUS, 0, &body, &[])?;
        if status != 200 {
            return Err(refusal(status, &answer));
        }
        serde_json::from_slice(&answer).map_err(|e| SendError::Refused { status, reason: format!("unreadable status answer: {e}") })
    }

    /// Signs and sends one request; checks the proof of the answer. Returns
    /// the status, the body, and the certificate hash the proof covered.
    fn post(&self, path: &str, seq: u64, body: &[u8], extra: &[(&str, String)]) -> Result<(u16, Vec<u8>, [u8; 32]), SendError> {
        let meta = RequestMeta::new("POST", path, &self.sensor_id, self.epoch, seq, ossensor_shared::timefmt::now_ns(), body);
        let nonce = meta.nonce.clone();
        let mut req = self
            .agent
            .post(&format!("{}{}", self.base_url, path))
            .set("content-type", if path == PATH_CHUNKS { "application/octet-stream" } else { "application/json" });
        for (k, v) in meta.signed_headers(&self.key) {
            req = req.set(k, &v);
        }
        for (k, v) in extra {
            req = req.set(k, v);
        }
        let resp = match req.send_bytes(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                let text = t.to_string();
                if text.contains(PIN_MISMATCH) {
                    return Err(SendError::CertificateChanged);
                }
                return Err(SendError::Transport(text));
            }
        };
        let status = resp.status();
        let proof = resp.header(H_PROOF).map(str::to_string);
        let mut answer = Vec::new();
        resp.into_reader()
            .take(1 << 20)
            .read_to_end(&mut answer)
            .map_err(|e| SendError::Transport(format!("reading the answer: {e}")))?;
        let st = self.verifier.state.lock().unwrap_or_else(|e| e.into_inner());
        let pinned = st.pinned.is_some();
        let cert = st.pinned.or(st.last_seen).ok_or_else(|| SendError::Transport("no certificate seen".into()))?;
        drop(st);
        let proven = proof.is_some_and(|p| auth::verify_response_proof(&self.key, &nonce, &cert, status, &answer, &p));
        // A success must always be proven. A refusal on a pinned connection
        // comes from the collector that proved the key (the verifier accepts
        // no other certificate); the collector refuses some requests (too
        // large, malformed headers) before it authenticates them, so those
        // carry no proof.
        if !proven && (status == 200 || !pinned) {
            return Err(SendError::BadProof(status));
        }
        Ok((status, answer, cert))
    }
}

fn agent(tls: &Arc<rustls::ClientConfig>) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .tls_connector(Arc::new(crate::tls_stream::CoalescingTls(tls.clone())))
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .max_idle_connections_per_host(2)
        .build()
}

fn refusal(status: u16, answer: &[u8]) -> SendError {
    let reason = serde_json::from_slice::<ErrorBody>(answer)
        .map(|e| e.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned());
    SendError::Refused { status, reason }
}

fn ca_verifier(path: &str, provider: Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))? {
        let cert = cert.map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))?;
        roots.add(cert).map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))?;
    }
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))?;
    Ok(v)
}

pub fn hex_fingerprint(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
