//! Environment files, read exactly as `docker run --env-file` reads them
//! (docker/cli `opts/kvfile.go`), so a user's existing file means the same
//! thing to `ossensor --env-file FILE` as to the container runtime.
//!
//! The rules, line by line:
//! - a UTF-8 byte order mark at the very start of the file is dropped;
//! - lines end at `\n`; one trailing `\r` is dropped (CRLF files);
//! - leading whitespace is dropped; blank lines and lines whose first
//!   character is then `#` are skipped;
//! - the line splits at the first `=`: the key must be non-empty and contain
//!   no space or tab; the value is everything after the `=`, verbatim —
//!   quotes, trailing spaces, `#` and `${A}` all stay (Docker does no quote
//!   stripping, comment stripping or expansion, unlike dotenv parsers);
//! - a line without `=` names a variable to copy from the process
//!   environment; if the process has no such variable the line is dropped;
//! - a line that is not valid UTF-8 is an error naming the file and line.
//!
//! Docker only considers space and tab when checking a key for whitespace;
//! so do we, so that every file Docker accepts is accepted here.

use std::fmt;
use std::path::Path;

/// What went wrong, and where. `file` is empty when the text did not come
/// from a file ([`parse`]); [`read`] fills it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub file: String,
    /// 1-based; 0 when the whole file could not be read.
    pub line: usize,
    pub kind: EnvFileErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvFileErrorKind {
    /// The key (text before the first `=`) contains a space or a tab.
    KeyHasWhitespace { key: String },
    /// The line starts with `=`.
    EmptyKey,
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The file could not be opened or read.
    Io(String),
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = if self.file.is_empty() { "environment file" } else { &self.file };
        match &self.kind {
            EnvFileErrorKind::Io(e) => write!(f, "--env-file {file}: cannot read: {e}"),
            EnvFileErrorKind::KeyHasWhitespace { key } => {
                write!(f, "--env-file {file} line {}: variable name \"{}\" contains whitespace", self.line, key.escape_debug())
            }
            EnvFileErrorKind::EmptyKey => {
                write!(f, "--env-file {file} line {}: no variable name before '='", self.line)
            }
            EnvFileErrorKind::NotUtf8 => {
                write!(f, "--env-file {file} line {}: not valid UTF-8", self.line)
            }
        }
    }
}

impl std::error::Error for EnvFileError {}

const BOM: &str = "\u{feff}";

/// Parses the text of an environment file. `lookup` answers bare `KEY`
/// lines from the process environment. Pairs come out in file order; a key
/// repeated later overrides an earlier one when collected into a map.
pub fn parse(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in lines(text).enumerate() {
        if let Some(pair) = parse_line(raw, i + 1, &lookup)? {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Like [`parse`] for raw bytes: a line that is not UTF-8 is an error with
/// its line number (Docker checks line by line, so a bad line after an
/// error-free prefix is reported where it is).
pub fn parse_bytes(bytes: &[u8], lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, EnvFileError> {
    let bytes = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut line_no = 0;
    while !rest.is_empty() {
        line_no += 1;
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(n) => (&rest[..n], &rest[n + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = std::str::from_utf8(line).map_err(|_| EnvFileError { file: String::new(), line: line_no, kind: EnvFileErrorKind::NotUtf8 })?;
        if let Some(pair) = parse_line(line, line_no, &lookup)? {
            out.push(pair);
        }
    }
    Ok(out)
}

/// Reads and parses one file; errors carry the file's name.
pub fn read(path: &Path, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>, EnvFileError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| EnvFileError { file: file.clone(), line: 0, kind: EnvFileErrorKind::Io(e.to_string()) })?;
    parse_bytes(&bytes, lookup).map_err(|e| EnvFileError { file, ..e })
}

/// Lines as Go's `bufio.ScanLines` yields them: split at `\n`, one trailing
/// `\r` dropped, no empty final line after a final `\n`.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    body.split('\n').filter(move |_| !empty)
}

fn parse_line(raw: &str, line_no: usize, lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<(String, String)>, EnvFileError> {
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let line = raw.trim_start(); // Go: strings.TrimLeftFunc(unicode.IsSpace)
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (key, value) = match line.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (line, None),
    };
    let err = |kind| EnvFileError { file: String::new(), line: line_no, kind };
    if key.contains([' ', '\t']) {
        return Err(err(EnvFileErrorKind::KeyHasWhitespace { key: key.to_string() }));
    }
    if key.is_empty() {
        return Err(err(EnvFileErrorKind::EmptyKey));
    }
    Ok(match value {
        Some(v) => Some((key.to_string(), v.to_string())),
        None => lookup(key).map(|v| (key.to_string(), v)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn p(text: &str) -> Vec<(String, String)> {
        parse(text, none).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn values_are_verbatim() {
        assert_eq!(
            p("A=\"quoted\"\nB='single'\nC=trailing  \nD=x # not a comment\nE=${A}\nF=\nG==x=y\n"),
            vec![
                kv("A", "\"quoted\""),
                kv("B", "'single'"),
                kv("C", "trailing  "),
                kv("D", "x # not a comment"),
                kv("E", "${A}"),
                kv("F", ""),
                kv("G", "=x=y")
            ]
        );
    }

    #[test]
    fn comments_blank_lines_and_leading_whitespace() {
        assert_eq!(p("# c\n\n   \n  # indented comment\n\t  A=1\n"), vec![kv("A", "1")]);
        // '#' only starts a comment at the beginning of the (trimmed) line.
        assert_eq!(p("A#=1"), vec![kv("A#", "1")]);
    }

    #[test]
    fn bom_and_crlf_are_stripped() {
        assert_eq!(p("\u{feff}A=1\r\nB=2 \r\n"), vec![kv("A", "1"), kv("B", "2 ")]);
        // Only one \r, only at the end.
        assert_eq!(p("A=x\r\r\n"), vec![kv("A", "x\r")]);
        assert_eq!(parse_bytes(b"\xef\xbb\xbfA=1", none).unwrap(), vec![kv("A", "1")]);
    }

    #[test]
    fn last_line_without_newline() {
        assert_eq!(p("A=1\nB=2"), vec![kv("A", "1"), kv("B", "2")]);
        assert_eq!(p(""), vec![]);
        assert_eq!(p("\n"), vec![]);
    }

    #[test]
    fn bare_key_comes_from_the_process_or_is_dropped() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(parse("HOME\nMISSING\nA=1\n", lookup).unwrap(), vec![kv("HOME", "/root"), kv("A", "1")]);
    }

    #[test]
    fn bad_keys_name_the_line_and_key() {
        let e = parse("A=1\nMY KEY=2\n", none).unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, EnvFileErrorKind::KeyHasWhitespace { key: "MY KEY".into() });
        assert!(e.to_string().contains("line 2") && e.to_string().contains("MY KEY"), "{e}");
        let e = parse("\n=value\n", none).unwrap_err();
        assert_eq!((e.line, e.kind), (2, EnvFileErrorKind::EmptyKey));
        // A bare key with a trailing tab is a key with whitespace (Docker agrees).
        let e = parse("KEY\t\n", none).unwrap_err();
        assert!(matches!(e.kind, EnvFileErrorKind::KeyHasWhitespace { .. }));
        // Whitespace in the value is fine.
        assert_eq!(p("K=a b\tc"), vec![kv("K", "a b\tc")]);
    }

    #[test]
    fn non_utf8_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sensor.env");
        std::fs::write(&path, b"A=1\nB=\xff\xfe\n").unwrap();
        let e = read(&path, none).unwrap_err();
        assert_eq!((e.line, &e.kind), (2, &EnvFileErrorKind::NotUtf8));
        let msg = e.to_string();
        assert!(msg.contains("sensor.env") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let e = read(Path::new("/nonexistent/x.env"), none).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.env"), "{e}");
    }

    fn key() -> impl Strategy<Value = String> {
        // No whitespace or '=', not starting with '#'; any other characters.
        "[A-Za-z_][^=\\s]{0,12}"
    }

    fn value() -> impl Strategy<Value = String> {
        // Anything on one line that does not end in '\r'.
        "[^\n]{0,20}".prop_filter("no trailing CR", |v| !v.ends_with('\r'))
    }

    proptest! {
        #[test]
        fn round_trip(pairs in proptest::collection::vec((key(), value(), "[ \t]{0,2}", proptest::bool::ANY), 0..12), crlf in proptest::bool::ANY) {
            let mut text = String::new();
            for (k, v, indent, comment) in &pairs {
                if *comment { text.push_str("# comment\n\n"); }
                text.push_str(&format!("{indent}{k}={v}{}\n", if crlf { "\r" } else { "" }));
            }
            let want: Vec<_> = pairs.iter().map(|(k, v, _, _)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(parse(&text, none).unwrap(), want.clone());
            prop_assert_eq!(parse_bytes(text.as_bytes(), none).unwrap(), want);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_bytes(&bytes, |_| Some("x".into()));
            if let Ok(s) = std::str::from_utf8(&bytes) {
                // Both entry points agree on valid UTF-8.
                prop_assert_eq!(parse(s, |_| None), parse_bytes(&bytes, |_| None));
            }
        }
    }
}
