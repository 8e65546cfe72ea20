//! `DATA_DIR/operator.json`: where operators reach this collector and the
//! two operators' tokens.
//!
//! - `read_token`: sees the fleet (`/status`, `/metrics`,
//!   `/v1/operator/status`, the list of actions). Browsers and Prometheus
//!   hold it.
//! - `action_token`: also orders and cancels response actions. Only
//!   `vsensor action` (as Bearer) uses it, so no browser caches it.
//!
//! The file is written atomically (temporary file, fsync, rename, fsync of
//! the folder), mode 0600, under an exclusive lock on the data folder, so
//! the collector's own write at start and `vsensor operator rotate-tokens`
//! never lose each other's change. The running collector re-reads it when
//! it changes ([`LiveTokens`]), so a rotation needs no restart.

use ossensor_host::log;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const OPERATOR_FILE: &str = "operator.json";

/// How often the running collector looks whether the file changed.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Random bytes in a new token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// The file as written.
#[derive(Serialize)]
pub struct OperatorFile {
    /// Where `vsensor action` reaches this collector (from this host).
    pub url: String,
    pub read_token: String,
    pub action_token: String,
}

impl std::fmt::Debug for OperatorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorFile").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The file as read: any field may be missing; `token` is the single token
/// of versions before the split.
#[derive(Default, Deserialize)]
struct StoredFile {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    read_token: Option<String>,
    #[serde(default)]
    action_token: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// The two tokens in force.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub read: String,
    pub action: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { <redacted> }")
    }
}

/// A token this collector accepts from the file: long enough to be random,
/// and only visible ASCII (it travels in a header).
fn usable(t: &str) -> bool {
    t.len() >= TOKEN_BYTES && t.bytes().all(|b| b.is_ascii_graphic())
}

/// A new token: [`TOKEN_BYTES`] random bytes, hex.
pub fn new_token() -> Result<String, String> {
    let mut raw = [0u8; TOKEN_BYTES];
    getrandom::getrandom(&mut raw).map_err(|e| format!("no randomness for an operators' token: {e}"))?;
    Ok(hex::encode(raw))
}

/// What [`complete`] did to the file's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Taken from `read_token` / `action_token`.
    Kept,
    /// The old single `token`, kept as the read token.
    Migrated,
    /// Made now (none, or an unusable one, was in the file).
    Made,
}

/// The tokens of a stored file, making what is missing or unusable. The
/// old single `token` becomes the read token, so existing Prometheus
/// configurations and browsers keep working; an action token is never
/// taken from it (it may sit in browsers and Prometheus configurations).
fn complete(stored: &StoredFile) -> Result<(Tokens, Origin, Origin), String> {
    let (read, read_origin) = match (&stored.read_token, &stored.token) {
        (Some(t), _) if usable(t) => (t.clone(), Origin::Kept),
        (None, Some(t)) if usable(t) => (t.clone(), Origin::Migrated),
        _ => (new_token()?, Origin::Made),
    };
    let (action, action_origin) = match &stored.action_token {
        Some(t) if usable(t) && *t != read => (t.clone(), Origin::Kept),
        _ => (new_token()?, Origin::Made),
    };
    Ok((Tokens { read, action }, read_origin, action_origin))
}

/// The file's identity and version: a change of any of these means it was
/// written again (a rename gives a new inode even within the same
/// nanosecond and at the same size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp { dev: m.dev(), ino: m.ino(), size: m.size(), mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128 }
    }
}

/// Holds an exclusive lock on the data folder (flock on the folder itself:
/// no extra file) while operator.json is read, changed and written.
struct Locked {
    /// The locked folder: closing it releases the lock.
    _lock: File,
    data_dir: PathBuf,
}

impl Locked {
    fn take(data_dir: &Path) -> std::io::Result<Locked> {
        use std::os::unix::io::AsRawFd;
        let dir = File::open(data_dir)?;
        // SAFETY: flock on a descriptor we own; released when it is closed.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Locked { _lock: dir, data_dir: data_dir.to_path_buf() })
    }

    fn path(&self) -> PathBuf {
        self.data_dir.join(OPERATOR_FILE)
    }

    /// The stored file, or None if there is none.
    fn read(&self) -> Result<Option<(StoredFile, std::fs::Metadata)>, String> {
        let path = self.path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let meta = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let stored = parse(&read_limited(file).map_err(|e| format!("cannot read {}: {e}", path.display()))?).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some((stored, meta)))
    }

    /// Replaces the file ([`crate::atomic_file`]): mode 0600, the old
    /// file's owner, so a rotation by root leaves it readable by the
    /// collector's user.
    fn write(&self, f: &OperatorFile, owner: Option<(u32, u32)>) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(f).map_err(std::io::Error::other)?;
        crate::atomic_file::write_atomic_owned(&self.path(), &bytes, 0o600, owner)
    }
}

/// At most this much of the file is read (it holds a URL and two tokens).
const MAX_FILE: u64 = 64 * 1024;

fn read_limited(file: File) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("longer than {MAX_FILE} bytes")));
    }
    Ok(bytes)
}

fn parse(bytes: &[u8]) -> Result<StoredFile, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// The URL a local client uses for a listening address (a wildcard
/// address becomes loopback): what the file's `url` says.
pub fn local_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v) if v.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(v) if v.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    match ip {
        std::net::IpAddr::V6(v) => format!("https://[{v}]:{}", addr.port()),
        v4 => format!("https://{v4}:{}", addr.port()),
    }
}

/// The collector at start: the tokens in the file, completed (made on the
/// first start, migrated from the old single token) and written back if
/// anything was made. `url` is written only when the file has none yet.
pub fn open(data_dir: &Path, url: &str) -> Result<LiveTokens, String> {
    let lock = Locked::take(data_dir).map_err(|e| format!("cannot lock {}: {e}", data_dir.display()))?;
    let stored = lock.read()?;
    let existed = stored.is_some();
    let owner = stored.as_ref().map(|(_, m)| (m.uid(), m.gid()));
    let stored = stored.map(|(s, _)| s).unwrap_or_default();
    let (tokens, read_origin, action_origin) = complete(&stored)?;
    let path = lock.path();
    if (read_origin, action_origin) != (Origin::Kept, Origin::Kept) {
        let f = OperatorFile {
            url: stored.url.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| url.to_string()),
            read_token: tokens.read.clone(),
            action_token: tokens.action.clone(),
        };
        lock.write(&f, owner).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        if read_origin == Origin::Migrated {
            log!(
                log::BASIC,
                "{}: the single operators' token of earlier versions is now the read-only token (status page, metrics, \
                 listing actions: existing browsers and Prometheus keep working); a new action token was made for \
                 ordering and cancelling actions (vsensor action reads it)",
                path.display()
            );
            log::audit(log::AuditSeverity::Notice, "operator_tokens_changed", &[("read", "migrated"), ("action", "new")]);
        } else if existed {
            log!(log::BASIC, "{}: made a new {} (the file had none usable)", path.display(), made_names(read_origin, action_origin));
            log::audit(log::AuditSeverity::Notice, "operator_tokens_changed", &[("read", origin_word(read_origin)), ("action", origin_word(action_origin))]);
        } else {
            log!(log::BASIC, "{}: made the operators' read token and action token", path.display());
        }
    }
    let stamp = std::fs::metadata(&path).ok().map(|m| Stamp::of(&m));
    drop(lock);
    Ok(LiveTokens { path, live: Mutex::new(Live { tokens, stamp, checked: Instant::now() }) })
}

fn origin_word(o: Origin) -> &'static str {
    match o {
        Origin::Kept => "kept",
        Origin::Migrated => "migrated",
        Origin::Made => "new",
    }
}

fn made_names(read: Origin, action: Origin) -> &'static str {
    match (read == Origin::Made, action == Origin::Made) {
        (true, true) => "read token and action token",
        (true, false) => "read token",
        _ => "action token",
    }
}

/// Sets the URL in the file, keeping the tokens it holds now (a rotation
/// may have replaced them since [`open`]); `fallback` fills in tokens if
/// the file went missing or broken meanwhile.
pub fn write_url(data_dir: &Path, url: &str, fallback: &Tokens) -> Result<(), String> {
    let lock = Locked::take(data_dir).map_err(|e| format!("cannot lock {}: {e}", data_dir.display()))?;
    let stored = lock.read().unwrap_or_default();
    let owner = stored.as_ref().map(|(_, m)| (m.uid(), m.gid()));
    let tokens = match stored.map(|(s, _)| s) {
        Some(StoredFile { read_token: Some(r), action_token: Some(a), .. }) if usable(&r) && usable(&a) && r != a => Tokens { read: r, action: a },
        _ => fallback.clone(),
    };
    let f = OperatorFile { url: url.to_string(), read_token: tokens.read, action_token: tokens.action };
    lock.write(&f, owner).map_err(|e| format!("cannot write {}: {e}", lock.path().display()))
}

/// Which tokens to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotate {
    pub read: bool,
    pub action: bool,
}

/// What [`rotate`] changed, per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub read: Origin,
    pub action: Origin,
}

/// Replaces the chosen tokens with new ones (and makes any the file lacks).
/// The file must exist: it is the collector's.
pub fn rotate(data_dir: &Path, which: Rotate) -> Result<Rotated, String> {
    let path = data_dir.join(OPERATOR_FILE);
    let lock = Locked::take(data_dir).map_err(|e| format!("cannot read {}: its folder: {e}", path.display()))?;
    let (stored, meta) =
        lock.read()?.ok_or_else(|| format!("cannot read {}: no such file (has a collector ever started with this data folder?)", path.display()))?;
    let (mut tokens, mut read_origin, mut action_origin) = complete(&stored)?;
    if which.read {
        tokens.read = new_token()?;
        read_origin = Origin::Made;
    }
    if which.action || tokens.action == tokens.read {
        tokens.action = new_token()?;
        action_origin = Origin::Made;
    }
    let f = OperatorFile { url: stored.url.unwrap_or_default(), read_token: tokens.read, action_token: tokens.action };
    lock.write(&f, Some((meta.uid(), meta.gid()))).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(Rotated { read: read_origin, action: action_origin })
}

/// The tokens in force in the running collector: re-reads the file when it
/// changed (identity, size or modification time), looking at most once per
/// [`RECHECK`]. A file that went missing or broken, or lacks a token, is
/// logged once and the tokens in force are kept.
pub struct LiveTokens {
    path: PathBuf,
    live: Mutex<Live>,
}

impl std::fmt::Debug for LiveTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTokens").field("path", &self.path).finish_non_exhaustive()
    }
}

struct Live {
    tokens: Tokens,
    /// The file's stamp when last read (None: it was missing).
    stamp: Option<Stamp>,
    checked: Instant,
}

impl LiveTokens {
    /// The tokens in force now.
    pub fn current(&self) -> Tokens {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if live.checked.elapsed() >= RECHECK {
            live.checked = Instant::now();
            self.reload_if_changed(&mut live);
        }
        live.tokens.clone()
    }

    fn reload_if_changed(&self, live: &mut Live) {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) => {
                if live.stamp.take().is_some() {
                    log!(log::BASIC, "cannot read {}: {e}; keeping the operators' tokens in force", self.path.display());
                }
                return;
            }
        };
        // The stamp of the very file opened, so a write between stat and
        // read cannot be missed.
        let Ok(meta) = file.metadata() else { return };
        let stamp = Stamp::of(&meta);
        if live.stamp == Some(stamp) {
            return;
        }
        live.stamp = Some(stamp);
        let stored = match read_limited(file).map_err(|e| e.to_string()).and_then(|b| parse(&b)) {
            Ok(s) => s,
            Err(e) => {
                log!(log::BASIC, "{}: {e}; keeping the operators' tokens in force", self.path.display());
                return;
            }
        };
        let (Some(read), Some(action)) = (stored.read_token.filter(|t| usable(t)), stored.action_token.filter(|t| usable(t))) else {
            log!(log::BASIC, "{}: no usable read_token and action_token; keeping the operators' tokens in force", self.path.display());
            return;
        };
        if read == action {
            log!(log::BASIC, "{}: read_token and action_token are the same; keeping the operators' tokens in force", self.path.display());
            return;
        }
        let new = Tokens { read, action };
        if new != live.tokens {
            let word = |changed: bool| if changed { "new" } else { "kept" };
            let (r, a) = (word(new.read != live.tokens.read), word(new.action != live.tokens.action));
            log!(log::BASIC, "{}: operators' tokens changed (read token {r}, action token {a}); the old ones are refused from now on", self.path.display());
            log::audit(log::AuditSeverity::Notice, "operator_tokens_changed", &[("read", r), ("action", a)]);
            live.tokens = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls() {
        assert_eq!(local_url("0.0.0.0:8443".parse().unwrap()), "https://127.0.0.1:8443");
        assert_eq!(local_url("[::]:8443".parse().unwrap()), "https://[::1]:8443");
        assert_eq!(local_url("198.18.0.1:9".parse().unwrap()), "https://198.18.0.1:9");
    }
    use std::os::unix::fs::PermissionsExt;

    /// As if RECHECK had passed since the last look.
    fn expire(live: &LiveTokens) {
        let mut l = live.live.lock().unwrap();
        l.checked = l.checked.checked_sub(RECHECK).unwrap();
    }

    fn stored(dir: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(OPERATOR_FILE)).unwrap()).unwrap()
    }

    #[test]
    fn first_start_makes_two_different_tokens_kept_across_starts() {
        let dir = tempfile::tempdir().unwrap();
        let t = open(dir.path(), "https://127.0.0.1:1").unwrap().current();
        assert_eq!((t.read.len(), t.action.len()), (64, 64));
        assert_ne!(t.read, t.action);
        let f = stored(dir.path());
        assert_eq!((f["read_token"].as_str(), f["action_token"].as_str()), (Some(t.read.as_str()), Some(t.action.as_str())));
        assert_eq!(f["url"], "https://127.0.0.1:1");
        assert_eq!(std::fs::metadata(dir.path().join(OPERATOR_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("operator.json.tmp").exists());
        assert_eq!(open(dir.path(), "https://127.0.0.1:2").unwrap().current(), t);
        assert_eq!(stored(dir.path())["url"], "https://127.0.0.1:1", "a start does not rewrite a complete file");
    }

    #[test]
    fn the_old_single_token_becomes_the_read_token() {
        let dir = tempfile::tempdir().unwrap();
        let old = "a".repeat(64);
        std::fs::write(dir.path().join(OPERATOR_FILE), format!(r#"{{"url":"https://127.0.0.1:9","token":"{old}"}}"#)).unwrap();
        let t = open(dir.path(), "https://127.0.0.1:1").unwrap().current();
        assert_eq!(t.read, old);
        assert!(t.action != old && t.action.len() == 64);
        let f = stored(dir.path());
        assert_eq!(f["read_token"], old.as_str());
        assert_eq!(f["action_token"], t.action.as_str());
        assert_eq!(f["url"], "https://127.0.0.1:9");
        assert!(f.get("token").is_none(), "the old field is gone");
        assert_eq!(open(dir.path(), "x").unwrap().current(), t, "migrated once");
    }

    #[test]
    fn unusable_or_equal_tokens_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let same = "b".repeat(40);
        std::fs::write(dir.path().join(OPERATOR_FILE), format!(r#"{{"url":"u","read_token":"short","action_token":"{same}"}}"#)).unwrap();
        let t = open(dir.path(), "u").unwrap().current();
        assert_eq!(t.read.len(), 64);
        assert_eq!(t.action, same);
        std::fs::write(dir.path().join(OPERATOR_FILE), format!(r#"{{"url":"u","read_token":"{same}","action_token":"{same}"}}"#)).unwrap();
        let t = open(dir.path(), "u").unwrap().current();
        assert_eq!(t.read, same);
        assert_ne!(t.action, same, "an action token equal to the read token is not kept");
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OPERATOR_FILE), "{not json").unwrap();
        let e = open(dir.path(), "u").unwrap_err();
        assert!(e.contains("operator.json"), "{e}");
        let e = rotate(dir.path(), Rotate { read: true, action: true }).unwrap_err();
        assert!(e.contains("operator.json"), "{e}");
    }

    #[test]
    fn rotation_replaces_only_what_was_asked_and_the_collector_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let live = open(dir.path(), "https://127.0.0.1:1").unwrap();
        let before = live.current();
        let r = rotate(dir.path(), Rotate { read: false, action: true }).unwrap();
        assert_eq!(r, Rotated { read: Origin::Kept, action: Origin::Made });
        let f = stored(dir.path());
        assert_eq!(f["read_token"], before.read.as_str());
        assert_ne!(f["action_token"], before.action.as_str());
        assert_eq!(f["url"], "https://127.0.0.1:1");
        assert_eq!(std::fs::metadata(dir.path().join(OPERATOR_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        // Not before RECHECK; then at once.
        assert_eq!(live.current(), before);
        expire(&live);
        let after = live.current();
        assert_eq!(after.read, before.read);
        assert_eq!(after.action, f["action_token"].as_str().unwrap());

        rotate(dir.path(), Rotate { read: true, action: false }).unwrap();
        expire(&live);
        let again = live.current();
        assert_ne!(again.read, after.read);
        assert_eq!(again.action, after.action);
    }

    #[test]
    fn a_missing_or_broken_file_keeps_the_tokens_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let live = open(dir.path(), "u").unwrap();
        let before = live.current();
        for text in [None, Some("{"), Some(r#"{"url":"u","read_token":"x"}"#)] {
            match text {
                None => std::fs::remove_file(dir.path().join(OPERATOR_FILE)).unwrap(),
                Some(t) => std::fs::write(dir.path().join(OPERATOR_FILE), t).unwrap(),
            }
            expire(&live);
            assert_eq!(live.current(), before, "{text:?}");
        }
    }

    #[test]
    fn rotation_needs_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = rotate(dir.path(), Rotate { read: true, action: true }).unwrap_err();
        assert!(e.contains("operator.json") && e.contains("no such file"), "{e}");
        let e = rotate(&dir.path().join("nowhere"), Rotate { read: true, action: true }).unwrap_err();
        assert!(e.contains("nowhere"), "{e}");
    }

    #[test]
    fn rotation_by_root_keeps_the_owner() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to give the file another owner");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        open(dir.path(), "u").unwrap();
        let path = dir.path().join(OPERATOR_FILE);
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        rotate(dir.path(), Rotate { read: true, action: true }).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!((m.uid(), m.gid(), m.permissions().mode() & 0o777), (65534, 65534, 0o600), "still readable by the collector's user only");
    }

    #[test]
    fn write_url_keeps_rotated_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let live = open(dir.path(), "https://127.0.0.1:0").unwrap();
        let first = live.current();
        rotate(dir.path(), Rotate { read: true, action: true }).unwrap();
        write_url(dir.path(), "https://127.0.0.1:8443", &first).unwrap();
        let f = stored(dir.path());
        assert_eq!(f["url"], "https://127.0.0.1:8443");
        assert_ne!(f["read_token"], first.read.as_str());
        assert_ne!(f["action_token"], first.action.as_str());
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let t = Tokens { read: "r".repeat(64), action: "a".repeat(64) };
        assert!(!format!("{t:?}").contains("rrrr") && !format!("{t:?}").contains("aaaa"));
        let f = OperatorFile { url: "u".into(), read_token: t.read.clone(), action_token: t.action.clone() };
        assert!(!format!("{f:?}").contains("rrrr"));
    }
}
