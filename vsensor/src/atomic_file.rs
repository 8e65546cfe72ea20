//! The one way the collector writes a file whole (`state.json`,
//! `registry.json`, `actions.json`, `operator.json`, the TLS key and
//! certificate, the action key): a temporary file beside it, written,
//! fsynced, renamed over it, then the folder fsynced. A reader (or a crash)
//! sees the old file or the new one, never a part; once this returns, the
//! new one survives a power cut.
//!
//! The temporary file is `<name>.tmp` in the same folder (a rename does not
//! cross file systems) and is made with `create_new` and the final mode, so
//! a secret is never readable by others, not even for a moment, and a
//! temporary file left by a crash (perhaps with a wider mode) is removed
//! first, never reused. The mode is what the caller asks for less the
//! process's umask.
//!
//! Trade-off: one fixed temporary name per file, so two writers of the same
//! file must not run at once. Every caller serialises its writes (a mutex in
//! the process, and `flock` for `operator.json`, which `vsensor operator`
//! also writes).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The temporary file a write of `path` goes through: its name with
/// `.tmp` appended, in the same folder.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes`, mode `mode` (less the umask): temporary
/// file, write, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_owned(path, bytes, mode, None)
}

/// As [`write_atomic`]; with `owner` (uid, gid), the new file gets that
/// owner before anything is written into it (a rewrite by root keeps a
/// file readable by the collector's own user).
pub fn write_atomic_owned(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    let tmp = temp_path(path);
    // Left by a crash: create_new below would refuse it, and its mode may be wider.
    let _ = std::fs::remove_file(&tmp);
    let mut out = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
    let written = chown(&out, owner).and_then(|()| out.write_all(bytes)).and_then(|()| out.sync_all()).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    File::open(folder(path))?.sync_all()
}

fn chown(file: &File, owner: Option<(u32, u32)>) -> io::Result<()> {
    let Some((uid, gid)) = owner else { return Ok(()) };
    let m = file.metadata()?;
    if (m.uid(), m.gid()) != (uid, gid) {
        std::os::unix::fs::fchown(file, Some(uid), Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot give the new file the old one's owner (uid {uid}, gid {gid}): {e}")))?;
    }
    Ok(())
}

/// The folder holding `path` (`.` for a bare name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_the_content_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key.pem");
        write_atomic(&secret, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
        assert_eq!(mode(&secret), 0o600);
        // Never more than asked for, whatever the umask.
        let public = dir.path().join("cert.pem");
        write_atomic(&public, b"public", 0o644).unwrap();
        assert_eq!(mode(&public) & !0o644, 0);
        assert!(!temp_path(&secret).exists() && !temp_path(&public).exists());
        assert_eq!(temp_path(&secret), dir.path().join("key.pem.tmp"));
    }

    #[test]
    fn replaces_a_file_and_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old and longer").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path) & !0o640, 0);
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("operator.json");
        let tmp = temp_path(&path);
        std::fs::write(&tmp, b"half a file from a crash, much longer than the new one").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"{}", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(mode(&path), 0o600, "a new temporary file, not the world-readable leftover");
        assert!(!tmp.exists());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A rename cannot replace a non-empty folder.
        let path = dir.path().join("registry.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"{}", 0o640).is_err());
        assert!(path.is_dir() && !temp_path(&path).exists());
        // No folder to write into: the error, nothing else.
        assert!(write_atomic(&dir.path().join("missing/state.json"), b"{}", 0o640).is_err());
    }

    #[test]
    fn a_bare_name_is_in_the_current_folder() {
        assert_eq!(folder(Path::new("state.json")), Path::new("."));
        assert_eq!(folder(Path::new("/data/state.json")), Path::new("/data"));
    }
}
