//! The generated config file: the resolved configuration in the reference
//! sensor's INI shape, written to OSSENSOR_CONFIG_PATH at start (mode 0600:
//! it holds the key), and read back by `ossensor -c FILE`.
//!
//! Shape: one `[osSensor]` section of `key=value` lines: the reference
//! sensor's keys in its order, then this sensor's extensions below a
//! comment line. Every key but two holds a variable (the table in
//! [`crate::variables`] says which). The two, `device` and
//! `blacklist_device`, record the interfaces as the reference's entrypoint
//! writes them: `device` the interfaces selected at start (sorted, `,any`
//! appended when NETWORK_DEVICE_ANY=1, which is read back from it), and
//! `blacklist_device` the interfaces present at start that the exclude list
//! matches. The rules they came from are kept in the extensions
//! `networkDevice`, `whitelist_device` and `blacklist_pattern`, so the file
//! runs the same sensor with `-c`: the same rules, applied to the
//! interfaces present then. A file without `networkDevice` or
//! `blacklist_pattern` (written by an earlier version, or by hand in the
//! reference's shape) is read as it always was: `device` the
//! OSSENSOR_NETWORK_DEVICE list and `blacklist_device` the exclude patterns
//! (each variable's `old_key`).
//!
//! Reading: a UTF-8 BOM and CRLF line ends are accepted; blank lines and
//! lines starting with `#` or `;` are comments; the key is trimmed, the
//! value after the first `=` is kept verbatim (so a key with trailing spaces
//! survives the round trip); unknown keys, repeated keys, other sections and
//! keys outside the section are errors. A key that is absent means the
//! variable is unset (its default applies).
//!
//! [`render`] then [`parse`] then [`crate::config::validate`] gives back the
//! same [`Config`] (with `config_path` = the file read), whatever the
//! interfaces recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::variables::{parse_bool, Config, Key, VARIABLES};

/// The section every key lives in.
pub const SECTION: &str = "osSensor";

/// The reference sensor's keys, in the order its entrypoint writes them.
/// Every other key a variable has is one of this sensor's extensions,
/// written after them below a comment line.
const REFERENCE_KEYS: &[&str] =
    &["Debug", "vSensor", "key", "device", "logfile", "useAntigena", "useWebsocket", "sendAntigenaActionDelta", "blacklist_device", "bpf"];

/// A key no variable has: it repeats the value of another (the reference
/// writes `useWebsocket` = `useAntigena`; this sensor keeps the WebSocket
/// exactly when response actions are on).
const MIRROR: (&str, &str) = ("useWebsocket", "useAntigena");

/// The interfaces at start, as the reference's entrypoint records them.
#[derive(Debug, Clone, Copy, Default)]
pub struct AtStart<'a> {
    /// The interfaces selected (`device=`).
    pub selected: &'a [String],
    /// Every interface present that the exclude list matches, loopback
    /// included (`blacklist_device=`).
    pub excluded: &'a [String],
}

impl AtStart<'_> {
    /// What `key` records, sorted (the reference sorts its lists).
    fn record(&self, key: &str) -> String {
        let mut names: Vec<&str> = match key {
            "device" => self.selected,
            "blacklist_device" => self.excluded,
            _ => &[],
        }
        .iter()
        .map(String::as_str)
        .collect();
        names.sort_unstable();
        names.dedup();
        names.join(",")
    }
}

/// The value of `key`: what it records of the interfaces, then the parts
/// of the variables that have it, in table order.
fn value(cfg: &Config, at_start: &AtStart, key: &str) -> String {
    let key = if key == MIRROR.0 { MIRROR.1 } else { key };
    let mut out = at_start.record(key);
    for var in VARIABLES.iter().filter(|v| v.key.name() == Some(key)) {
        var.key.write(&(var.text)(cfg), &mut out);
    }
    out
}

/// The file's text. Values are one line each: validation refuses line
/// breaks in the key and paths, and turns them into spaces in BPF.
pub fn render(cfg: &Config, at_start: &AtStart) -> String {
    let mut extensions: Vec<&str> = Vec::new();
    for k in VARIABLES.iter().filter_map(|v| v.key.name()) {
        if !REFERENCE_KEYS.contains(&k) && !extensions.contains(&k) {
            extensions.push(k);
        }
    }
    let line = |k: &&str| format!("{k}={}\n", value(cfg, at_start, k));
    let mut s = format!("[{SECTION}]\n");
    s.extend(REFERENCE_KEYS.iter().map(line));
    s.push_str("# ossensor extensions\n");
    s.extend(extensions.iter().map(line));
    s
}

/// What a config file sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// Variable → its text.
    pub vars: BTreeMap<String, String>,
    /// Variable → the key it was read from (an old key in an older file).
    pub keys: BTreeMap<String, String>,
}

/// A malformed config file: the line (1-based) and key where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgError {
    pub line: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for CfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "line {}: {}: {}", self.line, k.escape_debug(), self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for CfgError {}

/// The inverse of [`render`]: the file's keys as the variables they stand
/// for, values as written (validation interprets them). In a file that has
/// none of the keys that replaced old ones (an older file), a variable with
/// an old key is read from it.
pub fn parse(text: &str) -> Result<Parsed, CfgError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let known = |key: &str| key == MIRROR.0 || VARIABLES.iter().any(|v| v.key.name() == Some(key) || v.old_key.and_then(Key::name) == Some(key));
    let mut values: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    let mut in_section = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |key: Option<&str>, message: String| CfgError { line: line_no, key: key.map(str::to_string), message };
        if line.starts_with('[') {
            if line.trim_end() != format!("[{SECTION}]") {
                return Err(err(None, format!("unknown section {:?}: only [{SECTION}] is read", line.trim_end())));
            }
            if in_section {
                return Err(err(None, format!("[{SECTION}] appears twice")));
            }
            in_section = true;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(None, format!("expected key=value, found {:?}", line)));
        };
        let key = key.trim_end();
        if !in_section {
            return Err(err(Some(key), format!("comes before [{SECTION}]")));
        }
        if let Some((first, _)) = values.insert(key, (line_no, value)) {
            return Err(err(Some(key), format!("already set on line {first}")));
        }
        if !known(key) {
            return Err(err(Some(key), "unknown key".to_string()));
        }
    }
    // A file with any key that replaced an old one is of this version: no
    // variable is read from an old key then (in such a file those keys only
    // record the interfaces at start).
    let older = !VARIABLES.iter().any(|v| v.old_key.is_some() && v.key.name().is_some_and(|k| values.contains_key(k)));
    let mut parsed = Parsed::default();
    for var in VARIABLES {
        let keys = [Some(var.key), var.old_key.filter(|_| older)];
        let Some((key, value)) = keys.into_iter().flatten().find_map(|k| Some(k).zip(values.get(k.name()?))) else {
            continue;
        };
        if let Some(text) = key.read(value.1) {
            parsed.vars.insert(var.name.to_string(), text);
            parsed.keys.insert(var.name.to_string(), key.name().unwrap_or_default().to_string());
        }
    }
    if let Some(&(line, ws)) = values.get(MIRROR.0) {
        // The reference writes useWebsocket = useAntigena; this sensor keeps
        // the WebSocket exactly when response actions are on.
        let mirrored = VARIABLES.iter().find(|v| v.key == Key::Plain(MIRROR.1)).map_or("", |v| v.name);
        let antigena = parsed.vars.get(mirrored).map(String::as_str).filter(|v| !v.is_empty());
        let want = antigena.map_or(Some(true), parse_bool);
        let got = if ws.is_empty() { want } else { parse_bool(ws) };
        if got.is_none() || (want.is_some() && got != want) {
            return Err(CfgError {
                line,
                key: Some("useWebsocket".into()),
                message: format!(
                    "{:?} must equal useAntigena ({:?}): the WebSocket is kept exactly when response actions are on",
                    ws,
                    antigena.unwrap_or("true")
                ),
            });
        }
    }
    Ok(parsed)
}

/// Writing the file failed; names OSSENSOR_CONFIG_PATH and the path.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OSSENSOR_CONFIG_PATH=\"{}\": cannot write the generated config file: {}", self.path.display().to_string().escape_debug(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes `text` to `path` atomically: missing parent directories are
/// created (0755), the text goes to a new temporary file in the same
/// directory created with mode 0600 (never wider, not even briefly), is
/// synced, then renamed over `path`; the directory is synced last.
pub fn write(path: &Path, text: &str) -> Result<(), WriteError> {
    let fail = |source| WriteError { path: path.to_path_buf(), source };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::new(std::io::ErrorKind::InvalidInput, "does not name a file")))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(&dir).map_err(fail)?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn parse_errors_name_line_and_key() {
        let e = parse("[osSensor]\nDebug=1\nfoo=bar\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (3, Some("foo")));
        assert!(e.to_string().contains("line 3") && e.to_string().contains("foo"), "{e}");
        let e = parse("Debug=1\n[osSensor]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (1, Some("Debug")));
        let e = parse("[other]\n").unwrap_err();
        assert!(e.to_string().contains("other"), "{e}");
        let e = parse("[osSensor]\nDebug=1\nDebug=2\n").unwrap_err();
        assert!(e.to_string().contains("line 3") && e.to_string().contains("line 2"), "{e}");
        let e = parse("[osSensor]\njust text\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("[osSensor]\nuseAntigena=false\nuseWebsocket=true\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("useWebsocket"));
        assert!(parse("[osSensor]\nuseAntigena=FALSE\nuseWebsocket=0\n").is_ok());
    }

    #[test]
    fn comments_crlf_bom_and_spacing() {
        let vars = parse("\u{feff}; c\r\n# c\r\n[osSensor]\r\n  Debug = 3\r\nkey= spaced \r\n").unwrap();
        assert_eq!(vars.vars["OSSENSOR_DEBUG"], " 3");
        assert_eq!(vars.vars["VSENSOR_HMAC_KEY"], " spaced ");
    }

    #[test]
    fn write_is_0600_atomic_and_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/ossensor.cfg");
        write(&path, "one").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("a/b")).unwrap().permissions().mode() & 0o777, 0o755);
        // Replacing a world-readable file leaves a 0600 one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temporary left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("a/b")).unwrap().count(), 1);
    }

    #[test]
    fn write_error_names_the_variable_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("ossensor.cfg"); // parent is a regular file
        let e = write(&path, "x").unwrap_err().to_string();
        assert!(e.starts_with("OSSENSOR_CONFIG_PATH=") && e.contains(&path.display().to_string()), "{e}");
        let e = write(dir.path(), "x").unwrap_err().to_string(); // a directory
        assert!(e.contains("OSSENSOR_CONFIG_PATH"), "{e}");
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_section_lines(lines in proptest::collection::vec("[A-Za-z_]{1,20}=[^\n]{0,30}", 0..10)) {
            let text = format!("[osSensor]\n{}", lines.join("\n"));
            let _ = parse(&text);
        }
    }
}
