//! The collector's TLS identity: the operator's PEM files, or a self-signed
//! certificate made once with rcgen and kept in `DATA_DIR/tls/`.
//!
//! Sensors need no CA: every answer carries an HMAC over the SHA-256 of the
//! leaf certificate served here (`cert_sha256`), so a man in the middle with
//! another certificate cannot produce a valid proof.

use crate::config::TlsSource;
use ossensor_shared::auth::sha256;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// A ready server configuration and what sensors can pin.
pub struct TlsIdentity {
    pub server_config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the DER of the leaf certificate served.
    pub cert_sha256: [u8; 32],
    /// Where the certificate came from (for the start-up log).
    pub cert_path: PathBuf,
    /// True when this start made a new self-signed certificate.
    pub generated: bool,
}

/// `AA:BB:...`, the form `openssl x509 -fingerprint -sha256` prints.
pub fn fingerprint(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Loads or makes the identity `source` describes.
pub fn load(source: &TlsSource, data_dir: &Path) -> Result<TlsIdentity, TlsError> {
    let (cert_path, key_path, generated) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone(), false),
        TlsSource::SelfSigned { sans } => {
            let dir = data_dir.join("tls");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            let generated = if cert.exists() && key.exists() {
                false
            } else {
                make_self_signed(sans, &dir, &cert, &key)?;
                true
            };
            (cert, key, generated)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| TlsError(format!("certificate {}: {e}", cert_path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("certificate {}: {e}", cert_path.display())))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError(format!("certificate {}: no CERTIFICATE block", cert_path.display())));
    };
    let cert_sha256 = sha256(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError(format!("private key {}: {e}", key_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("certificate {} and key {}: {e}", cert_path.display(), key_path.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsIdentity { server_config: Arc::new(config), cert_sha256, cert_path, generated })
}

fn make_self_signed(sans: &[String], dir: &Path, cert: &Path, key: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError(format!("cannot create {}: {e}", dir.display())))?;
    let mut params = rcgen::CertificateParams::new(sans.to_vec()).map_err(|e| TlsError(format!("certificate names {sans:?}: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "vsensor collector");
    // Valid from yesterday (clock skew) for ten years: nothing renews it.
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
    params.not_after = (now + std::time::Duration::from_secs(10 * 366 * 86_400)).into();
    let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError(format!("key generation: {e}")))?;
    let c = params.self_signed(&key_pair).map_err(|e| TlsError(format!("self-signing: {e}")))?;
    // The key first, private from its first byte; each written whole, then renamed.
    write_atomic(key, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(cert, c.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    crate::atomic_file::write_atomic(path, data, mode).map_err(|e| TlsError(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn self_signed_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let src = TlsSource::SelfSigned { sans: vec!["localhost".into(), "127.0.0.1".into()] };
        let a = load(&src, dir.path()).unwrap();
        assert!(a.generated);
        let mode = std::fs::metadata(dir.path().join("tls/key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load(&src, dir.path()).unwrap();
        assert!(!b.generated);
        assert_eq!(a.cert_sha256, b.cert_sha256);
        assert_eq!(fingerprint(&a.cert_sha256).len(), 32 * 3 - 1);
    }

    #[test]
    fn operator_files_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let made = load(&TlsSource::SelfSigned { sans: vec!["localhost".into()] }, dir.path()).unwrap();
        let files = TlsSource::Files { cert: dir.path().join("tls/cert.pem"), key: dir.path().join("tls/key.pem") };
        assert_eq!(load(&files, dir.path()).unwrap().cert_sha256, made.cert_sha256);
        let missing = TlsSource::Files { cert: dir.path().join("nope.pem"), key: dir.path().join("tls/key.pem") };
        assert!(load(&missing, dir.path()).err().expect("missing file refused").0.contains("nope.pem"));
    }
}
