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

use ossensor_shared::auth::{self, H_PROOF};
use ossensor_shared::control::{RegisterRequest, RegisterResponse, StatusAnswer, StatusReport};
use ossensor_shared::delivery::{Chunk, Outcome};
pub use ossensor_shared::requests::SendError;
use ossensor_shared::requests::{self, Answer, Request, Signer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
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

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The HTTPS client: it carries the requests of `requests` and brings back
/// their answers, checked.
pub struct Collector {
    host: String,
    port: u16,
    base_url: String,
    signer: Signer,
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
            signer: Signer { sensor_id: sensor_id.to_string(), epoch, key: key.as_bytes().to_vec() },
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
        let req = self.signer.register(ossensor_host::clock::now_ns(), ossensor_host::nonce(), req);
        let (body, cert) = self.post(&req)?;
        let resp = requests::registered(&body)?;
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
            key: self.signer.key.clone(),
            sensor_id: self.signer.sensor_id.clone(),
            epoch: self.signer.epoch,
            pinned,
        })
    }

    pub fn pinned_fingerprint(&self) -> Option<String> {
        self.verifier.state.lock().unwrap_or_else(|e| e.into_inner()).pinned.map(hex_fingerprint)
    }

    /// Sends a chunk; the outcome for delivery, and the error behind a
    /// failure (for the log).
    pub fn send_chunk(&self, chunk: &Chunk) -> (Outcome, Option<SendError>) {
        let req = self.signer.chunk(ossensor_host::clock::now_ns(), ossensor_host::nonce(), chunk);
        requests::chunk_outcome(self.post(&req).map(|(body, _)| body))
    }

    /// Reports the sensor's running state (`POST /v1/status`); the answer
    /// carries the collector's filter for this sensor now.
    pub fn send_status(&self, report: &StatusReport) -> Result<StatusAnswer, SendError> {
        let req = self.signer.status(ossensor_host::clock::now_ns(), ossensor_host::nonce(), report);
        requests::status_answered(&self.post(&req)?.0)
    }

    /// Sends one request and checks the answer's proof (`requests::check`).
    /// Returns the body of a proven 200 and the certificate it covered.
    fn post(&self, r: &Request) -> Result<(Vec<u8>, [u8; 32]), SendError> {
        let mut req = self.agent.post(&format!("{}{}", self.base_url, r.path));
        for (k, v) in &r.headers {
            req = req.set(k, v);
        }
        let resp = match req.send_bytes(&r.body) {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
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
        let mut body = Vec::new();
        resp.into_reader().take(1 << 20).read_to_end(&mut body).map_err(|e| SendError::Transport(format!("reading the answer: {e}")))?;
        let st = self.verifier.state.lock().unwrap_or_else(|e| e.into_inner());
        let pinned = st.pinned.is_some();
        let cert = st.pinned.or(st.last_seen).ok_or_else(|| SendError::Transport("no certificate seen".into()))?;
        drop(st);
        let body = requests::check(&self.signer.key, r, &cert, pinned, &Answer { status, proof, body })?;
        Ok((body, cert))
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

fn ca_verifier(path: &str, provider: Arc<CryptoProvider>) -> Result<Arc<dyn ServerCertVerifier>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))? {
        let cert = cert.map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))?;
        roots.add(cert).map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))?;
    }
    let v =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| format!("VSENSOR_CA_FILE={path:?}: {e}"))?;
    Ok(v)
}

pub fn hex_fingerprint(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}
