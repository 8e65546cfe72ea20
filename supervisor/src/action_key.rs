//! The collector's action key, pinned by the supervisor: every response
//! action is signed with it, and the capture-workers verify them with the
//! key the supervisor hands them, never one the uplink does.
//!
//! Where the pin comes from, in order: `OSSENSOR_ACTION_KEY` (pinned from
//! the first start); the state file `OSSENSOR_STATE_DIR/action-key`
//! (written when a key was first pinned); else the first key the uplink
//! offers after a registration (the collector's answer proved the shared
//! key). Once pinned, a different key is refused and audited: replacing
//! it takes an operator (the variable, or deleting the state file).

use ossensor_shared::actions::signed::PublicKey;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "action-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Variable,
    StateFile,
    FirstRegistration,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Variable => "OSSENSOR_ACTION_KEY",
            Source::StateFile => "state_file",
            Source::FirstRegistration => "first_registration",
        }
    }
}

/// What an offer of the uplink did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Nothing was pinned: now this is. `saved`: the state file was written
    /// (else why not: the pin then lasts until the supervisor stops).
    Pinned { saved: Result<(), String> },
    /// The key already pinned.
    Same,
    /// Another key than the pinned one: refused. `first`: the first offer
    /// of this key (audit it once, not at every registration).
    Refused { pinned: PublicKey, first: bool },
}

#[derive(Debug)]
pub struct Pin {
    key: Option<(PublicKey, Source)>,
    state_file: PathBuf,
    refused: Vec<PublicKey>,
}

impl Pin {
    /// The variable's key, else the state file's; an unreadable or
    /// malformed state file is an error naming it.
    pub fn load(variable: Option<PublicKey>, state_dir: &Path) -> Result<Pin, String> {
        let state_file = state_dir.join(STATE_FILE);
        let saved = match std::fs::read_to_string(&state_file) {
            Ok(text) => Some(PublicKey::parse(&text).map_err(|e| format!("{}: {e} (delete it to pin the collector's key again)", state_file.display()))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", state_file.display())),
        };
        let key = match (variable, saved) {
            (Some(k), _) => Some((k, Source::Variable)),
            (None, Some(k)) => Some((k, Source::StateFile)),
            (None, None) => None,
        };
        Ok(Pin { key, state_file, refused: Vec::new() })
    }

    pub fn key(&self) -> Option<PublicKey> {
        self.key.map(|(k, _)| k)
    }

    pub fn source(&self) -> Option<Source> {
        self.key.map(|(_, s)| s)
    }

    pub fn state_file(&self) -> &Path {
        &self.state_file
    }

    /// The key the collector named at a registration, as the uplink relays it.
    pub fn offer(&mut self, key: PublicKey) -> Offer {
        match self.key {
            Some((pinned, _)) if pinned == key => Offer::Same,
            Some((pinned, _)) => {
                let first = !self.refused.contains(&key);
                if first {
                    self.refused.push(key);
                }
                Offer::Refused { pinned, first }
            }
            None => {
                self.key = Some((key, Source::FirstRegistration));
                Offer::Pinned { saved: self.save(key) }
            }
        }
    }

    /// Writes the state file: 0600, temporary file, fsync, rename, fsync
    /// of the directory, so a crash leaves the old file or the new one.
    fn save(&self, key: PublicKey) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let fail = |e: std::io::Error| format!("{}: {e}", self.state_file.display());
        let dir = self.state_file.parent().unwrap_or(Path::new("/"));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
        let tmp = self.state_file.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(fail)?;
        f.write_all(format!("{key}\n").as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &self.state_file).map_err(fail)?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offer_is_pinned_saved_and_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let mut pin = Pin::load(None, &state).unwrap();
        assert_eq!(pin.key(), None);
        assert_eq!(pin.offer(a), Offer::Pinned { saved: Ok(()) });
        assert_eq!(pin.offer(a), Offer::Same);
        assert_eq!(pin.offer(b), Offer::Refused { pinned: a, first: true });
        assert_eq!(pin.offer(b), Offer::Refused { pinned: a, first: false });
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(state.join(STATE_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Pin::load(None, &state).unwrap();
        assert_eq!((again.key(), again.source()), (Some(a), Some(Source::StateFile)));
        // The variable wins over the state file.
        let var = Pin::load(Some(b), &state).unwrap();
        assert_eq!((var.key(), var.source()), (Some(b), Some(Source::Variable)));
    }

    #[test]
    fn a_damaged_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "not a key").unwrap();
        let e = Pin::load(None, dir.path()).unwrap_err();
        assert!(e.contains("action-key") && e.contains("delete it"), "{e}");
    }

    #[test]
    fn an_unwritable_state_dir_still_pins_for_this_run() {
        let mut pin = Pin::load(None, Path::new("/proc/ossensor-state")).unwrap();
        let Offer::Pinned { saved } = pin.offer(PublicKey([3; 32])) else { panic!("not pinned") };
        assert!(saved.unwrap_err().contains("/proc/ossensor-state"));
        assert_eq!(pin.key(), Some(PublicKey([3; 32])));
    }
}
