//! Configuration in two stages: [`RawConfig`] is exactly what the operator
//! gave (environment, then flags on top), [`Config`] is the validated meaning.
//! Every error names the variable or flag it came from and the value.
//!
//! The doc comments on [`Config`] are the reference that docs/collector.md
//! and `--help` repeat.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:443";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/vsensor";
pub const DEFAULT_ROTATE_MB: u64 = 128;
pub const DEFAULT_ROTATE_SECONDS: u64 = 3600;
pub const DEFAULT_RETENTION_MB: u64 = 10240;
pub const DEFAULT_DEBUG: u8 = 1;

pub const HELP: &str = "\
vsensor: the ossensor collector. Registers sensors, verifies their signed
requests and stores their packets as pcapng files.

USAGE: vsensor [FLAGS]
       vsensor action COMMAND ...     order, cancel or list response actions
       vsensor operator rotate-tokens [--read] [--action]
                                      new operators' tokens, without a restart

Every setting comes from the environment; a flag given on the command line
wins over its variable.

  VSENSOR_HMAC_KEY          (required) shared key the sensors sign with.
  --hmac-key-file FILE      read the key from FILE instead (trailing newline
  VSENSOR_HMAC_KEY_FILE     removed). Never pass the key itself as a flag.
  --listen ADDR             address:port to listen on (HTTPS)
  VSENSOR_LISTEN            default 0.0.0.0:443
  --operator-listen ADDR    serve the operators' API (/status, /metrics,
  VSENSOR_OPERATOR_LISTEN   /v1/operator/*) only on this address:port, e.g.
                            127.0.0.1:8444 (same certificate); unset or
                            empty: on the --listen address with the sensors
  --data-dir DIR            where pcapng files, registry.json and the
  VSENSOR_DATA_DIR          self-signed certificate live; default /var/lib/vsensor
  --tls-cert FILE           PEM certificate chain to serve (with --tls-key);
  VSENSOR_TLS_CERT          without both, a self-signed certificate is made
  --tls-key FILE            once in DATA_DIR/tls/ and reused
  VSENSOR_TLS_KEY
  --tls-san LIST            extra names/addresses (comma list) for the
  VSENSOR_TLS_SAN           self-signed certificate (always: localhost,
                            127.0.0.1 and the host name)
  --rotate-mb N             close a file when it reaches N MiB; default 128
  VSENSOR_ROTATE_MB
  --rotate-seconds N        close a file N seconds after it was opened;
  VSENSOR_ROTATE_SECONDS    default 3600
  --retention-mb N          keep at most N MiB of pcapng across all sensors,
  VSENSOR_RETENTION_MB      deleting the oldest closed files; default 10240
  --debug N                 log level 0..5; default 1
  VSENSOR_DEBUG
  --logfile PATH            write the log to PATH (default: standard output)
  VSENSOR_LOGFILE_PATH
  --help, -h                this text
  --version, -V             the version

Ready line (level 0): `vsensor: listening on ADDR`.
Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime error, 2 on bad
configuration.
";

/// A configuration error: which setting, which value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable or flag, e.g. `VSENSOR_ROTATE_MB` or `--rotate-mb`.
    pub setting: String,
    /// The offending value (never the key).
    pub value: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}: bad value {:?}: {}", self.setting, v, self.reason),
            None => write!(f, "{}: {}", self.setting, self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One setting as given: where it came from (variable or flag) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub source: String,
    pub value: String,
}

/// Exactly what the operator gave, before any interpretation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RawConfig {
    pub hmac_key: Option<Given>,
    pub hmac_key_file: Option<Given>,
    pub listen: Option<Given>,
    pub operator_listen: Option<Given>,
    pub data_dir: Option<Given>,
    pub tls_cert: Option<Given>,
    pub tls_key: Option<Given>,
    pub tls_san: Option<Given>,
    pub rotate_mb: Option<Given>,
    pub rotate_seconds: Option<Given>,
    pub retention_mb: Option<Given>,
    pub debug: Option<Given>,
    pub logfile: Option<Given>,
}

impl fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawConfig")
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("hmac_key_file", &self.hmac_key_file)
            .field("listen", &self.listen)
            .field("operator_listen", &self.operator_listen)
            .field("data_dir", &self.data_dir)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_san", &self.tls_san)
            .field("rotate_mb", &self.rotate_mb)
            .field("rotate_seconds", &self.rotate_seconds)
            .field("retention_mb", &self.retention_mb)
            .field("debug", &self.debug)
            .field("logfile", &self.logfile)
            .finish()
    }
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Invocation {
    Run(Box<RawConfig>),
    Help,
    Version,
}

/// (variable, flag) for every setting but the key, which has no flag.
const SETTINGS: &[(&str, &str)] = &[
    ("VSENSOR_HMAC_KEY_FILE", "--hmac-key-file"),
    ("VSENSOR_LISTEN", "--listen"),
    ("VSENSOR_OPERATOR_LISTEN", "--operator-listen"),
    ("VSENSOR_DATA_DIR", "--data-dir"),
    ("VSENSOR_TLS_CERT", "--tls-cert"),
    ("VSENSOR_TLS_KEY", "--tls-key"),
    ("VSENSOR_TLS_SAN", "--tls-san"),
    ("VSENSOR_ROTATE_MB", "--rotate-mb"),
    ("VSENSOR_ROTATE_SECONDS", "--rotate-seconds"),
    ("VSENSOR_RETENTION_MB", "--retention-mb"),
    ("VSENSOR_DEBUG", "--debug"),
    ("VSENSOR_LOGFILE_PATH", "--logfile"),
];

impl RawConfig {
    fn slot(&mut self, var: &str) -> &mut Option<Given> {
        match var {
            "VSENSOR_HMAC_KEY" => &mut self.hmac_key,
            "VSENSOR_HMAC_KEY_FILE" => &mut self.hmac_key_file,
            "VSENSOR_LISTEN" => &mut self.listen,
            "VSENSOR_OPERATOR_LISTEN" => &mut self.operator_listen,
            "VSENSOR_DATA_DIR" => &mut self.data_dir,
            "VSENSOR_TLS_CERT" => &mut self.tls_cert,
            "VSENSOR_TLS_KEY" => &mut self.tls_key,
            "VSENSOR_TLS_SAN" => &mut self.tls_san,
            "VSENSOR_ROTATE_MB" => &mut self.rotate_mb,
            "VSENSOR_ROTATE_SECONDS" => &mut self.rotate_seconds,
            "VSENSOR_RETENTION_MB" => &mut self.retention_mb,
            "VSENSOR_DEBUG" => &mut self.debug,
            "VSENSOR_LOGFILE_PATH" => &mut self.logfile,
            _ => unreachable!("unknown setting {var}"),
        }
    }

    /// Reads the environment (through `env`, so tests pass a map) and then
    /// the arguments (without the program name). Flags take `--flag VALUE`
    /// or `--flag=VALUE`.
    pub fn gather(env: impl Fn(&str) -> Option<String>, args: &[String]) -> Result<Invocation, ConfigError> {
        let mut raw = RawConfig::default();
        for var in std::iter::once("VSENSOR_HMAC_KEY").chain(SETTINGS.iter().map(|(v, _)| *v)) {
            if let Some(value) = env(var) {
                *raw.slot(var) = Some(Given { source: var.to_string(), value });
            }
        }
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            match arg.as_str() {
                "--help" | "-h" => return Ok(Invocation::Help),
                "--version" | "-V" => return Ok(Invocation::Version),
                _ => {}
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            if name == "--hmac-key" {
                return Err(ConfigError {
                    setting: "--hmac-key".into(),
                    value: None,
                    reason: "the key is not taken on the command line (other users can read it there); \
                             use VSENSOR_HMAC_KEY or --hmac-key-file"
                        .into(),
                });
            }
            let Some((var, flag)) = SETTINGS.iter().find(|(_, f)| *f == name) else {
                return Err(ConfigError { setting: arg.clone(), value: None, reason: "unknown argument (see vsensor --help)".into() });
            };
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i).cloned().ok_or_else(|| ConfigError { setting: flag.to_string(), value: None, reason: "needs a value".into() })?
                }
            };
            *raw.slot(var) = Some(Given { source: flag.to_string(), value });
            i += 1;
        }
        Ok(Invocation::Run(Box::new(raw)))
    }

    /// Reads the process environment and arguments.
    pub fn from_process() -> Result<Invocation, ConfigError> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        RawConfig::gather(|k| std::env::var(k).ok(), &args)
    }

    /// Builds a raw config from `(variable, value)` pairs, for tests and
    /// embedding.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> RawConfig {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match RawConfig::gather(|k| map.get(k).cloned(), &[]) {
            Ok(Invocation::Run(raw)) => *raw,
            _ => unreachable!("no arguments given"),
        }
    }
}

/// Where the served certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `VSENSOR_TLS_CERT` + `VSENSOR_TLS_KEY`: PEM files the operator manages.
    Files { cert: PathBuf, key: PathBuf },
    /// Made once with these subject alternative names and kept in
    /// `DATA_DIR/tls/{cert,key}.pem`.
    SelfSigned { sans: Vec<String> },
}

/// The validated configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `VSENSOR_HMAC_KEY` / `--hmac-key-file`: the shared HMAC key (required).
    pub key: Vec<u8>,
    /// `VSENSOR_LISTEN` / `--listen`: address and port for HTTPS (default `0.0.0.0:443`).
    pub listen: SocketAddr,
    /// `VSENSOR_OPERATOR_LISTEN` / `--operator-listen`: where the operators'
    /// API is served instead of `listen` (default: none, all on `listen`).
    pub operator_listen: Option<SocketAddr>,
    /// `VSENSOR_DATA_DIR` / `--data-dir` (default `/var/lib/vsensor`).
    pub data_dir: PathBuf,
    /// `VSENSOR_TLS_CERT` + `VSENSOR_TLS_KEY`, or self-signed with
    /// `VSENSOR_TLS_SAN` extra names.
    pub tls: TlsSource,
    /// `VSENSOR_ROTATE_MB` (default 128), in bytes.
    pub rotate_bytes: u64,
    /// `VSENSOR_ROTATE_SECONDS` (default 3600).
    pub rotate_seconds: u64,
    /// `VSENSOR_RETENTION_MB` (default 10240), in bytes.
    pub retention_bytes: u64,
    /// `VSENSOR_DEBUG` 0..5 (default 1).
    pub debug: u8,
    /// `VSENSOR_LOGFILE_PATH` (default standard output).
    pub logfile: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("key", &format_args!("<redacted, {} bytes>", self.key.len()))
            .field("listen", &self.listen)
            .field("operator_listen", &self.operator_listen)
            .field("data_dir", &self.data_dir)
            .field("tls", &self.tls)
            .field("rotate_bytes", &self.rotate_bytes)
            .field("rotate_seconds", &self.rotate_seconds)
            .field("retention_bytes", &self.retention_bytes)
            .field("debug", &self.debug)
            .field("logfile", &self.logfile)
            .finish()
    }
}

fn bad(g: &Given, reason: impl Into<String>) -> ConfigError {
    ConfigError { setting: g.source.clone(), value: Some(g.value.clone()), reason: reason.into() }
}

/// A whole number in `min..=max`.
fn number(g: &Option<Given>, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    let Some(g) = g else { return Ok(default) };
    let n: u64 = g.value.trim().parse().map_err(|_| bad(g, "not a whole number"))?;
    if n < min || n > max {
        return Err(bad(g, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

fn path(g: &Option<Given>) -> Result<Option<PathBuf>, ConfigError> {
    match g {
        None => Ok(None),
        Some(g) if g.value.is_empty() => Err(bad(g, "empty path")),
        Some(g) if g.value.contains('\0') => Err(bad(g, "path contains a NUL byte")),
        Some(g) => Ok(Some(PathBuf::from(&g.value))),
    }
}

/// A DNS name or IP address acceptable in a certificate.
fn valid_san(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        })
}

/// This machine's host name, if it has a usable one.
pub fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success on Linux.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8(buf[..end].to_vec()).ok()?;
    (valid_san(&name)).then_some(name)
}

impl RawConfig {
    /// Interprets and checks every setting. Reads the key file, if one is
    /// named; touches nothing else.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let key = match (&self.hmac_key_file, &self.hmac_key) {
            // A flag wins over both variables; the file variable wins over
            // the key variable only when no key is given directly.
            (Some(file), _) if file.source.starts_with("--") || self.hmac_key.is_none() => {
                if file.value.is_empty() {
                    return Err(bad(file, "empty path"));
                }
                let text = std::fs::read(&file.value).map_err(|e| bad(file, format!("cannot read the key file: {e}")))?;
                let mut key = text;
                while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    key.pop();
                }
                if key.is_empty() {
                    return Err(bad(file, "the key file is empty"));
                }
                key
            }
            (_, Some(k)) => {
                if k.value.is_empty() {
                    return Err(ConfigError { setting: k.source.clone(), value: None, reason: "is empty; the collector needs the sensors' shared key".into() });
                }
                k.value.clone().into_bytes()
            }
            (None, None) => {
                return Err(ConfigError {
                    setting: "VSENSOR_HMAC_KEY".into(),
                    value: None,
                    reason: "is required (or --hmac-key-file FILE): the key the sensors sign with".into(),
                })
            }
            (Some(_), None) => unreachable!("covered by the first arm"),
        };

        let listen = match &self.listen {
            None => DEFAULT_LISTEN.parse().expect("default listen address"),
            Some(g) => g.value.trim().parse::<SocketAddr>().map_err(|_| bad(g, "expected ADDRESS:PORT, e.g. 0.0.0.0:443 or [::]:443"))?,
        };
        // Empty is unset, as an env file's `VSENSOR_OPERATOR_LISTEN=` means.
        let operator_listen = match &self.operator_listen {
            Some(g) if !g.value.trim().is_empty() => {
                let a = g.value.trim().parse::<SocketAddr>().map_err(|_| bad(g, "expected ADDRESS:PORT, e.g. 127.0.0.1:8444"))?;
                if a == listen && a.port() != 0 {
                    return Err(bad(g, format!("is the sensors' address too ({listen}); give the operators another port")));
                }
                Some(a)
            }
            _ => None,
        };

        let data_dir = path(&self.data_dir)?.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let tls = match (path(&self.tls_cert)?, path(&self.tls_key)?) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            (Some(_), None) => {
                return Err(ConfigError { setting: "VSENSOR_TLS_KEY".into(), value: None, reason: "is required when VSENSOR_TLS_CERT is set".into() })
            }
            (None, Some(_)) => {
                return Err(ConfigError { setting: "VSENSOR_TLS_CERT".into(), value: None, reason: "is required when VSENSOR_TLS_KEY is set".into() })
            }
            (None, None) => {
                let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
                if let Some(h) = hostname() {
                    sans.push(h);
                }
                if let Some(g) = &self.tls_san {
                    for s in g.value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if !valid_san(s) {
                            return Err(bad(g, format!("{s:?} is neither a DNS name nor an IP address")));
                        }
                        sans.push(s.to_string());
                    }
                }
                let mut seen = std::collections::HashSet::new();
                sans.retain(|s| seen.insert(s.to_ascii_lowercase()));
                TlsSource::SelfSigned { sans }
            }
        };
        if let (TlsSource::Files { .. }, Some(g)) = (&tls, &self.tls_san) {
            if !g.value.trim().is_empty() {
                return Err(bad(g, "only applies to the self-signed certificate, not with VSENSOR_TLS_CERT"));
            }
        }

        let rotate_mb = number(&self.rotate_mb, DEFAULT_ROTATE_MB, 1, 1 << 20)?;
        let rotate_seconds = number(&self.rotate_seconds, DEFAULT_ROTATE_SECONDS, 1, 366 * 86_400)?;
        let retention_mb = number(&self.retention_mb, DEFAULT_RETENTION_MB, 1, 1 << 40)?;
        let debug = number(&self.debug, DEFAULT_DEBUG as u64, 0, 5)? as u8;
        let logfile = match &self.logfile {
            Some(g) if g.value.contains('\0') => return Err(bad(g, "path contains a NUL byte")),
            Some(g) if !g.value.is_empty() => Some(g.value.clone()),
            _ => None,
        };

        Ok(Config {
            key,
            listen,
            operator_listen,
            data_dir,
            tls,
            rotate_bytes: rotate_mb << 20,
            rotate_seconds,
            retention_bytes: retention_mb << 20,
            debug,
            logfile,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)], args: &[&str]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match RawConfig::gather(|k| map.get(k).cloned(), &args)? {
            Invocation::Run(raw) => raw.validate(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[("VSENSOR_HMAC_KEY", "secret")], &[]).unwrap();
        assert_eq!(c.key, b"secret");
        assert_eq!(c.listen, "0.0.0.0:443".parse().unwrap());
        assert_eq!(c.operator_listen, None);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/vsensor"));
        assert_eq!(c.rotate_bytes, 128 << 20);
        assert_eq!(c.rotate_seconds, 3600);
        assert_eq!(c.retention_bytes, 10240 << 20);
        assert_eq!(c.debug, 1);
        assert_eq!(c.logfile, None);
        let TlsSource::SelfSigned { sans } = &c.tls else { panic!() };
        assert!(sans.contains(&"localhost".to_string()) && sans.contains(&"127.0.0.1".to_string()));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn missing_key_names_the_variable() {
        let e = run(&[], &[]).unwrap_err();
        assert_eq!(e.setting, "VSENSOR_HMAC_KEY");
        let e = run(&[("VSENSOR_HMAC_KEY", "")], &[]).unwrap_err();
        assert_eq!(e.setting, "VSENSOR_HMAC_KEY");
        assert!(run(&[], &["--hmac-key", "x"]).unwrap_err().to_string().contains("--hmac-key"));
    }

    #[test]
    fn key_file_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "from-file\n").unwrap();
        let c = run(&[("VSENSOR_HMAC_KEY", "env")], &["--hmac-key-file", f.to_str().unwrap()]).unwrap();
        assert_eq!(c.key, b"from-file");
        let e = run(&[], &["--hmac-key-file=/nonexistent/key"]).unwrap_err();
        assert_eq!(e.setting, "--hmac-key-file");
        assert!(e.to_string().contains("/nonexistent/key"));
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(run(&[], &["--hmac-key-file", f.to_str().unwrap()]).unwrap_err().setting, "--hmac-key-file");
    }

    #[test]
    fn flags_win_over_environment() {
        let c =
            run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_LISTEN", "127.0.0.1:1"), ("VSENSOR_DEBUG", "0")], &["--listen", "127.0.0.1:2", "--debug=3"]).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.debug, 3);
    }

    #[test]
    fn every_bad_value_names_its_variable_and_value() {
        let cases: &[(&str, &str)] = &[
            ("VSENSOR_LISTEN", "nowhere"),
            ("VSENSOR_LISTEN", "1.2.3.4"),
            ("VSENSOR_OPERATOR_LISTEN", "localhost"),
            ("VSENSOR_OPERATOR_LISTEN", "127.0.0.1:99999"),
            ("VSENSOR_OPERATOR_LISTEN", "0.0.0.0:443"),
            ("VSENSOR_DATA_DIR", ""),
            ("VSENSOR_TLS_SAN", "ok.example,bad name"),
            ("VSENSOR_ROTATE_MB", "0"),
            ("VSENSOR_ROTATE_MB", "ten"),
            ("VSENSOR_ROTATE_SECONDS", "-5"),
            ("VSENSOR_ROTATE_SECONDS", "0"),
            ("VSENSOR_RETENTION_MB", "1e3"),
            ("VSENSOR_RETENTION_MB", "0"),
            ("VSENSOR_DEBUG", "6"),
            ("VSENSOR_DEBUG", "high"),
            ("VSENSOR_LOGFILE_PATH", "a\0b"),
            ("VSENSOR_HMAC_KEY_FILE", "/nonexistent/key-file"),
        ];
        for (var, value) in cases {
            let mut pairs = vec![(*var, *value)];
            if *var != "VSENSOR_HMAC_KEY_FILE" {
                pairs.push(("VSENSOR_HMAC_KEY", "k"));
            }
            let e = run(&pairs, &[]).expect_err(&format!("{var}={value:?} must be refused"));
            assert_eq!(e.setting, *var, "{e}");
            assert_eq!(e.value.as_deref(), Some(*value), "{e}");
            let text = e.to_string();
            assert!(text.contains(var), "{text}");
        }
        // The same through flags names the flag.
        let e = run(&[("VSENSOR_HMAC_KEY", "k")], &["--rotate-mb", "x"]).unwrap_err();
        assert_eq!(e.setting, "--rotate-mb");
        assert_eq!(e.value.as_deref(), Some("x"));
        let e = run(&[("VSENSOR_HMAC_KEY", "k")], &["--bogus"]).unwrap_err();
        assert_eq!(e.setting, "--bogus");
        let e = run(&[("VSENSOR_HMAC_KEY", "k")], &["--listen"]).unwrap_err();
        assert_eq!(e.setting, "--listen");
    }

    #[test]
    fn operator_listener() {
        let c = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_OPERATOR_LISTEN", "127.0.0.1:8444")], &[]).unwrap();
        assert_eq!(c.operator_listen, Some("127.0.0.1:8444".parse().unwrap()));
        let c = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_OPERATOR_LISTEN", "")], &[]).unwrap();
        assert_eq!(c.operator_listen, None, "empty is unset");
        let c = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_LISTEN", "127.0.0.1:0")], &["--operator-listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(c.operator_listen, Some("127.0.0.1:0".parse().unwrap()), "two kernel-chosen ports differ");
        let e = run(&[("VSENSOR_HMAC_KEY", "k")], &["--operator-listen=nowhere"]).unwrap_err();
        assert_eq!((e.setting.as_str(), e.value.as_deref()), ("--operator-listen", Some("nowhere")));
    }

    #[test]
    fn tls_files_need_each_other() {
        let e = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_TLS_CERT", "/c.pem")], &[]).unwrap_err();
        assert_eq!(e.setting, "VSENSOR_TLS_KEY");
        let e = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_TLS_KEY", "/k.pem")], &[]).unwrap_err();
        assert_eq!(e.setting, "VSENSOR_TLS_CERT");
        let c = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_TLS_KEY", "/k.pem"), ("VSENSOR_TLS_CERT", "/c.pem")], &[]).unwrap();
        assert_eq!(c.tls, TlsSource::Files { cert: "/c.pem".into(), key: "/k.pem".into() });
    }

    #[test]
    fn sans_are_added_and_deduplicated() {
        let c = run(&[("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_TLS_SAN", "collector.example, 198.18.0.1,localhost")], &[]).unwrap();
        let TlsSource::SelfSigned { sans } = c.tls else { panic!() };
        assert!(sans.contains(&"collector.example".into()) && sans.contains(&"198.18.0.1".into()));
        assert_eq!(sans.iter().filter(|s| *s == "localhost").count(), 1);
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(RawConfig::gather(|_| None, &["--help".into()]), Ok(Invocation::Help)));
        assert!(matches!(RawConfig::gather(|_| None, &["-V".into()]), Ok(Invocation::Version)));
        for (var, _) in SETTINGS {
            assert!(HELP.contains(var), "--help lacks {var}");
        }
    }
}
