//! The collector's action key: an Ed25519 key pair made at first start and
//! kept in `DATA_DIR/action-key.pk8` (PKCS#8, mode 0600). Every set of
//! response actions the sensors receive is signed with it, and each
//! capture-worker verifies the signature with the public half its
//! supervisor pinned, so neither a sensor's uplink nor a holder of the
//! shared HMAC key can order an action. The public half is also written to
//! `DATA_DIR/action-key.pub` (what `OSSENSOR_ACTION_KEY` takes).

use crate::atomic_file::write_atomic;
use ossensor_shared::actions::signed::{self, ActionSet, PublicKey, SignedSet};
use ring::signature::Ed25519KeyPair;
use std::path::Path;

pub const PRIVATE_FILE: &str = "action-key.pk8";
pub const PUBLIC_FILE: &str = "action-key.pub";

pub struct ActionKey {
    pair: Ed25519KeyPair,
    pub public: PublicKey,
    /// True when this start made the key.
    pub generated: bool,
}

impl ActionKey {
    /// Loads the key pair from `data_dir`, or makes and saves one.
    pub fn load_or_make(data_dir: &Path) -> Result<ActionKey, String> {
        let path = data_dir.join(PRIVATE_FILE);
        let (pair, generated) = match std::fs::read(&path) {
            Ok(der) => (Ed25519KeyPair::from_pkcs8(&der).map_err(|e| format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?, false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| format!("cannot make the action key: {e}"))?;
                write_atomic(&path, der.as_ref(), 0o600).map_err(|e| format!("{}: {e}", path.display()))?;
                (Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|e| format!("the new action key: {e}"))?, true)
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let public = signed::public_key(&pair);
        let pub_path = data_dir.join(PUBLIC_FILE);
        if std::fs::read_to_string(&pub_path).ok().and_then(|t| PublicKey::parse(&t).ok()) != Some(public) {
            write_atomic(&pub_path, format!("{public}\n").as_bytes(), 0o644).map_err(|e| format!("{}: {e}", pub_path.display()))?;
        }
        Ok(ActionKey { pair, public, generated })
    }

    pub fn sign(&self, set: &ActionSet) -> SignedSet {
        signed::sign(&self.pair, set)
    }
}

/// The public key a data folder holds, for `vsensor action key`.
pub fn read_public(data_dir: &Path) -> Result<PublicKey, String> {
    let path = data_dir.join(PUBLIC_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {} (has the collector started with this data folder?): {e}", path.display()))?;
    PublicKey::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossensor_shared::actions::signed::SetVerifier;

    #[test]
    fn the_key_is_made_once_kept_private_and_signs_what_workers_verify() {
        let dir = tempfile::tempdir().unwrap();
        let k = ActionKey::load_or_make(dir.path()).unwrap();
        assert!(k.generated);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join(PRIVATE_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read_public(dir.path()).unwrap(), k.public);
        let again = ActionKey::load_or_make(dir.path()).unwrap();
        assert!(!again.generated);
        assert_eq!(again.public, k.public);
        let set = ActionSet { version: 1, issued_ns: 5, actions: vec![] };
        assert!(SetVerifier::new(Some(k.public)).accept(5, &again.sign(&set)).is_ok());
    }

    #[test]
    fn a_damaged_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PRIVATE_FILE), b"junk").unwrap();
        let e = ActionKey::load_or_make(dir.path()).err().unwrap();
        assert!(e.contains(PRIVATE_FILE), "{e}");
    }
}
