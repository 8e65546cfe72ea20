//! The sensor's configuration, read in two stages (as ripgrep does):
//!
//! 1. [`gather`] collects exactly what the user gave — the command line, the
//!    `--env-file` files and the process environment, or a config file given
//!    with `-c` — into a [`RawConfig`] of variable name → text. Nothing is
//!    interpreted yet, except that the files must be readable and well formed.
//! 2. [`validate`] turns that into a [`Config`], checking every variable and
//!    collecting *every* problem, so a user fixes a broken environment in one
//!    round. Each problem names the variable and its value (never the HMAC
//!    key's value). Nothing is captured or sent on a half-valid configuration.
//!
//! The contract is `shared/spec/sensor-interface.md`; every variable is
//! declared once, in [`crate::variables`], which both stages read;
//! `docs/configuration.md` is the user-facing description (its tables are
//! generated from the declarations).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use ossensor_shared::actions::signed::PublicKey;
use ossensor_shared::children::{ActionsConfig, LogConfig, UplinkConfig, WorkerConfig};

use crate::variables::{self, Unset, Variable, VARIABLES};
use crate::{cfgfile, envfile};

pub use crate::variables::{
    valid_ifname, Config, DeviceRules, Pattern, Secret, DEFAULT_CONFIG_PATH, DEFAULT_RUNTIME_DIR, DEFAULT_STATE_DIR, DEFAULT_ZSTD_LEVEL, MIB,
};

/// Prefixes of variables that look like ours: an unknown one in an env file
/// is probably a typo, so [`gather`] warns about it.
const OUR_PREFIXES: &[&str] = &["VSENSOR_", "OSSENSOR_", "ANTIGENA_", "NETWORK_DEVICE_"];

/// Chunks the uplink builds: closed at 1 MiB of raw packets or 200 ms after
/// their first packet, whichever comes first.
pub const CHUNK_BYTES: usize = 1 << 20;
pub const CHUNK_MAX_AGE_MS: u64 = 200;

pub const USAGE: &str = "\
usage: ossensor [--env-file FILE]... 
       ossensor -c FILE
       ossensor --help | --version

Configuration comes from the environment (see docs/configuration.md).
  --env-file FILE  read variables from FILE (Docker --env-file rules); may
                   repeat, later files win; the process environment wins
                   over every file
  -c FILE          run from a generated config file; the environment's
                   sensor variables are then ignored
  -h, --help       print this help
  -V, --version    print the version
";

// ---------------------------------------------------------------------------
// Errors

/// One bad input: the variable (or command-line option), its value when it
/// may be shown, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment variable (or `--env-file` / `-c` for the command line).
    pub variable: String,
    /// The offending text; None when it is missing or secret.
    pub value: Option<String>,
    pub message: String,
    /// Where it came from when running from a config file: (file, key).
    pub file_key: Option<(PathBuf, String)>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file_key, &self.value) {
            (Some((file, key)), Some(v)) => write!(f, "{}: {key}=\"{}\" ({}): {}", file.display(), v.escape_debug(), self.variable, self.message),
            (Some((file, key)), None) => write!(f, "{}: {key} ({}): {}", file.display(), self.variable, self.message),
            (None, Some(v)) => write!(f, "{}=\"{}\": {}", self.variable, v.escape_debug(), self.message),
            (None, None) => write!(f, "{}: {}", self.variable, self.message),
        }
    }
}

/// Every problem found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn one(variable: &str, value: Option<&str>, message: impl Into<String>) -> Self {
        ConfigError { problems: vec![Problem { variable: variable.to_string(), value: value.map(str::to_string), message: message.into(), file_key: None }] }
    }

    /// True if some problem concerns `variable`.
    pub fn mentions(&self, variable: &str) -> bool {
        self.problems.iter().any(|p| p.variable == variable)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} configuration problems:", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------
// Stage 1: what the user gave

/// Where the raw variables came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The process environment over the `--env-file` files (in order given).
    Environment { env_files: Vec<PathBuf> },
    /// `-c FILE`: the file is the whole configuration.
    ConfigFile(PathBuf),
}

/// Stage 1 result: variable name → text exactly as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawConfig {
    pub origin: Origin,
    pub vars: BTreeMap<String, String>,
    /// Under `-c FILE`: variable → the file's key it was read from (errors
    /// name it; an older file keeps some variables under other keys).
    pub file_keys: BTreeMap<String, String>,
    /// Things worth a log line that do not stop start-up (a likely typo in a
    /// variable name, sensor variables ignored because of `-c`).
    pub warnings: Vec<String>,
}

impl RawConfig {
    /// A raw configuration from the environment alone (tests, embedding).
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        RawConfig {
            origin: Origin::Environment { env_files: Vec::new() },
            vars: vars.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            file_keys: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Run(RawConfig),
    Help,
    Version,
}

/// Stage 1. `args` are the command-line arguments *without* the program
/// name (`std::env::args().skip(1)`); `process_env` is the process
/// environment (see [`process_environment`]).
pub fn gather(args: &[String], process_env: &BTreeMap<String, String>) -> Result<Source, ConfigError> {
    let mut env_files: Vec<PathBuf> = Vec::new();
    let mut config_file: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Source::Help),
            "-V" | "--version" => return Ok(Source::Version),
            "--env-file" => match it.next() {
                Some(f) if !f.is_empty() => env_files.push(PathBuf::from(f)),
                _ => return Err(ConfigError::one("--env-file", None, "needs a file name")),
            },
            "-c" | "--config" => match it.next() {
                Some(f) if !f.is_empty() => {
                    if config_file.is_some() {
                        return Err(ConfigError::one("-c", Some(f), "given more than once"));
                    }
                    config_file = Some(PathBuf::from(f))
                }
                _ => return Err(ConfigError::one("-c", None, "needs a file name")),
            },
            a if a.starts_with("--env-file=") && a.len() > "--env-file=".len() => env_files.push(PathBuf::from(&a["--env-file=".len()..])),
            a => {
                return Err(ConfigError::one("command line", Some(a), "unknown argument (usage: ossensor [--env-file FILE]... | -c FILE | --help | --version)"))
            }
        }
    }
    if let Some(file) = config_file {
        if !env_files.is_empty() {
            return Err(ConfigError::one(
                "-c",
                Some(&file.display().to_string()),
                "cannot be combined with --env-file: a config file is the whole configuration",
            ));
        }
        return gather_config_file(file, process_env).map(Source::Run);
    }
    let mut vars = BTreeMap::new();
    let mut warnings = Vec::new();
    let lookup = |k: &str| process_env.get(k).cloned();
    let mut problems = Vec::new();
    for file in &env_files {
        match envfile::read(file, lookup) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    if !is_ours(&k) && OUR_PREFIXES.iter().any(|p| k.starts_with(p)) {
                        warnings.push(format!("--env-file {}: {k} is not a variable this sensor reads (a typo?); ignored", file.display()));
                    }
                    vars.insert(k, v);
                }
            }
            Err(e) => problems.push(Problem { variable: "--env-file".into(), value: None, message: e.to_string(), file_key: None }),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    // The process environment wins over every file (Docker's -e over --env-file).
    for name in variables::names() {
        if let Some(v) = process_env.get(name) {
            vars.insert(name.to_string(), v.clone());
        }
    }
    Ok(Source::Run(RawConfig { origin: Origin::Environment { env_files }, vars, file_keys: BTreeMap::new(), warnings }))
}

fn gather_config_file(file: PathBuf, process_env: &BTreeMap<String, String>) -> Result<RawConfig, ConfigError> {
    let shown = file.display().to_string();
    let bytes = std::fs::read(&file).map_err(|e| ConfigError::one("-c", Some(&shown), format!("cannot read: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::one("-c", Some(&shown), "not valid UTF-8"))?;
    let parsed = cfgfile::parse(&text).map_err(|e| ConfigError::one("-c", Some(&shown), e.to_string()))?;
    let ignored: Vec<&str> = variables::names().filter(|n| process_env.contains_key(*n)).collect();
    let mut warnings = Vec::new();
    if !ignored.is_empty() {
        warnings.push(format!(
            "running from -c {shown}: the environment's {} ignored (the file is the configuration)",
            if ignored.len() == 1 { format!("{} is", ignored[0]) } else { format!("{} are", ignored.join(", ")) }
        ));
    }
    Ok(RawConfig { origin: Origin::ConfigFile(file), vars: parsed.vars, file_keys: parsed.keys, warnings })
}

/// The process environment as a map. A sensor variable whose value is not
/// UTF-8 is an error naming it; other non-UTF-8 variables are skipped.
pub fn process_environment() -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        match v.into_string() {
            Ok(v) => {
                out.insert(k.to_string(), v);
            }
            Err(_) if is_ours(k) => problems.push(Problem { variable: k.to_string(), value: None, message: "value is not valid UTF-8".into(), file_key: None }),
            Err(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError { problems })
    }
}

/// True if the sensor reads `name` (old names included).
fn is_ours(name: &str) -> bool {
    variables::names().any(|n| n == name)
}

// ---------------------------------------------------------------------------
// Stage 2: the validated configuration

impl RawConfig {
    /// The variable's value and the name it was given under: the current
    /// name, else the old one; an empty value counts as unset.
    pub fn given(&self, var: &Variable) -> Option<(&'static str, &str)> {
        std::iter::once(var.name).chain(var.old_name).find_map(|name| self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty()).map(|v| (name, v)))
    }

    /// A problem with `name` (a variable, under the name it was given),
    /// labelled with the config file's key when running from `-c FILE`.
    pub fn problem(&self, name: &str, value: Option<&str>, message: impl Into<String>) -> Problem {
        let file_key = match &self.origin {
            Origin::ConfigFile(f) => self
                .file_keys
                .get(name)
                .map(String::as_str)
                .or_else(|| variables::variable(name).and_then(|v| v.key.name()))
                .map(|k| (f.clone(), k.to_string())),
            Origin::Environment { .. } => None,
        };
        Problem { variable: name.to_string(), value: value.map(str::to_string), message: message.into(), file_key }
    }

    /// A configuration error about the variable `name` found after
    /// validation (when the interfaces or the user are looked up): it names
    /// the variable as the user gave it (the old name too) and its value.
    pub fn refuse(&self, name: &str, message: impl Into<String>) -> ConfigError {
        let var = variables::variable(name).unwrap_or_else(|| panic!("{name} is not declared"));
        let (name, value) = self.given(var).map_or((var.name, None), |(n, v)| (n, Some(v)));
        ConfigError { problems: vec![self.problem(name, value.filter(|_| !var.secret), message)] }
    }
}

/// Stage 2: checks every variable, returns the configuration or every
/// problem found.
pub fn validate(raw: &RawConfig) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
    let mut problems = Vec::new();
    for var in VARIABLES {
        let derived;
        let (name, value) = match (raw.given(var), &var.unset) {
            (Some(given), _) => given,
            (None, Unset::Required(why)) => {
                problems.push(raw.problem(var.name, None, format!("is required: {why}")));
                continue;
            }
            (None, Unset::Value(text)) => (var.name, *text),
            (None, Unset::Derived(_, compute)) => {
                derived = compute();
                (var.name, derived.as_str())
            }
            (None, Unset::Nothing(_)) => continue,
        };
        if let Err(refused) = (var.set)(value, &mut cfg) {
            let shown = (!var.secret).then_some(value);
            problems.extend(refused.0.into_iter().map(|m| raw.problem(name, shown, m)));
        }
    }
    if let Origin::ConfigFile(f) = &raw.origin {
        cfg.config_path = f.clone();
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError { problems })
    }
}

impl Config {
    /// How every process logs: level, destination, syslog socket.
    pub fn log(&self) -> LogConfig {
        LogConfig {
            level: self.debug,
            path: self.logfile.as_ref().map(|p| p.display().to_string()),
            syslog_socket: self.syslog_socket.as_ref().map(|p| p.display().to_string()),
        }
    }

    /// The configuration one capture-worker reads from its stdin. Each of
    /// the interface's two handles (one per direction) gets half the ring.
    /// The kernel ring memory of a new interface's worker, when `in_use`
    /// bytes of the budget are held by running workers and `starting`
    /// workers start now: OSSENSOR_CAPTURE_BUFFER_MB, or an equal share of
    /// what is left of OSSENSOR_CAPTURE_BUDGET_MB if that is smaller, but
    /// at least 2 MiB (a host with hundreds of veths must not pin
    /// gigabytes of rings; beyond budget / 2 MiB interfaces the floor wins).
    pub fn ring_share(&self, in_use: u64, starting: usize) -> u64 {
        let share = self.ring_budget_bytes.saturating_sub(in_use) / starting.max(1) as u64;
        self.ring_bytes.min(share).max(2 * MIB) / MIB * MIB
    }

    /// The configuration of `interface`'s worker, with `ring` bytes of
    /// kernel ring (see [`Config::ring_share`]).
    /// `control_fd`: where it finds its control channel; `action_key`: the
    /// key pinned now, if any.
    pub fn worker_config(&self, interface: &str, control_fd: i32, ring: u64, action_key: Option<PublicKey>) -> WorkerConfig {
        WorkerConfig {
            interface: interface.to_string(),
            control_fd,
            ring_bytes: ring / 2,
            enforce_actions: self.antigena_enabled,
            destroy_fd: None,
            action_key: action_key.map(|k| k.to_string()),
            log: self.log(),
        }
    }

    /// The configuration the uplink reads from its stdin (it carries the key).
    pub fn uplink_config(&self, control_fd: i32) -> UplinkConfig {
        UplinkConfig {
            control_fd,
            collector_host: self.collector_host.clone(),
            collector_port: self.collector_port,
            hmac_key: self.hmac_key.expose().to_string(),
            sensor_id: self.sensor_id.clone(),
            bpf: self.bpf.clone(),
            spool_bytes: self.spool_bytes,
            compression_level: self.compression,
            chunk_bytes: CHUNK_BYTES,
            chunk_max_age_ms: CHUNK_MAX_AGE_MS,
            ca_file: self.ca_file.as_ref().map(|p| p.display().to_string()),
            metrics_addr: self.metrics_addr.map(|a| a.to_string()),
            deduplicate: self.deduplicate,
            actions: self.antigena_enabled.then_some(ActionsConfig { report_every_secs: self.antigena_period_secs }),
            log: self.log(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const KEY: &str = "TopSecretKey!";

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("VSENSOR_HOSTNAME", "collector.example"), ("VSENSOR_HMAC_KEY", KEY), ("OSSENSOR_SENSOR_ID", "node1")]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut v = base();
        v.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        v.extend_from_slice(extra);
        validate(&RawConfig::from_vars(v))
    }

    /// The variable's value is refused with a message naming both.
    #[track_caller]
    fn refused(var: &'static str, value: &'static str) -> String {
        let e = with(&[(var, value)]).expect_err(&format!("{var}={value:?} should be refused"));
        let msg = e.to_string();
        assert!(msg.contains(&format!("{var}=\"{}\"", value.escape_debug())), "{msg}");
        assert!(!msg.contains(KEY), "{msg}");
        msg
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.collector_host, "collector.example");
        assert_eq!(c.collector_port, 443);
        assert_eq!(c.hmac_key.expose(), KEY);
        assert_eq!(c.devices, DeviceRules::default());
        assert_eq!(c.config_path, Path::new("/etc/darktrace/ossensor.cfg"));
        assert_eq!((c.debug, c.logfile.clone()), (1, None));
        assert_eq!((c.antigena_enabled, c.antigena_period_secs), (true, 5));
        assert_eq!(c.bpf, "");
        assert_eq!(c.spool_bytes, 64 * MIB);
        assert_eq!(c.compression, Some(DEFAULT_ZSTD_LEVEL));
        assert_eq!(c.ring_bytes, 64 * MIB);
        assert_eq!(c.user, None);
        assert_eq!(c.runtime_dir, Path::new("/run/ossensor"));
        assert_eq!(c.ca_file, None);
        assert_eq!((c.state_dir.as_path(), c.action_key), (Path::new("/var/lib/ossensor"), None));
    }

    #[test]
    fn sensor_id_defaults_to_the_host_name() {
        let c = validate(&RawConfig::from_vars([("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k")])).unwrap();
        let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
        assert_eq!(c.sensor_id, ossensor_shared::control::sensor_id_from_hostname(&host));
    }

    #[test]
    fn good_values() {
        let c = with(&[
            ("VSENSOR_PORT", "8443"),
            ("OSSENSOR_DEBUG", " 5 "),
            ("OSSENSOR_LOGFILE_PATH", "/var/log/ossensor.log"),
            ("ANTIGENA_ENABLED", "FALSE"),
            ("ANTIGENA_TIME_PERIOD", "30"),
            ("NETWORK_DEVICE_ANY", "true"),
            ("BPF", "tcp\nport 80"),
            ("OSSENSOR_SPOOL_MB", "1"),
            ("OSSENSOR_COMPRESSION", "ZSTD:19"),
            ("OSSENSOR_CAPTURE_BUFFER_MB", "2048"),
            ("OSSENSOR_USER", "nobody"),
            ("OSSENSOR_RUNTIME_DIR", "/tmp/oss"),
            ("OSSENSOR_CONFIG_PATH", "rel/ossensor.cfg"),
        ])
        .unwrap();
        assert_eq!((c.collector_port, c.debug), (8443, 5));
        assert_eq!(c.logfile.as_deref(), Some(Path::new("/var/log/ossensor.log")));
        assert_eq!((c.antigena_enabled, c.antigena_period_secs, c.devices.any), (false, 30, true));
        assert_eq!(c.bpf, "tcp port 80");
        assert_eq!((c.spool_bytes, c.compression, c.ring_bytes), (MIB, Some(19), 2048 * MIB));
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!(with(&[("OSSENSOR_USER", "1000")]).unwrap().user.as_deref(), Some("1000"));
        assert_eq!(with(&[("OSSENSOR_COMPRESSION", "none")]).unwrap().compression, None);
        assert!(!with(&[("ANTIGENA_ENABLED", "0")]).unwrap().antigena_enabled);
        assert!(with(&[("ANTIGENA_ENABLED", "True")]).unwrap().antigena_enabled);
        assert_eq!(with(&[("OSSENSOR_LOGFILE_PATH", "/dev/stdout")]).unwrap().logfile, None);
    }

    #[test]
    fn empty_optional_values_mean_unset() {
        let c = with(&[
            ("VSENSOR_PORT", ""),
            ("OSSENSOR_DEBUG", ""),
            ("ANTIGENA_ENABLED", ""),
            ("BPF", ""),
            ("OSSENSOR_NETWORK_DEVICE", ""),
            ("OSSENSOR_CONFIG_PATH", ""),
            ("OSSENSOR_LOGFILE_PATH", ""),
            ("VSENSOR_CA_FILE", ""),
            ("OSSENSOR_USER", ""),
        ])
        .unwrap();
        assert_eq!(c, with(&[]).unwrap());
    }

    #[test]
    fn required_variables() {
        for var in ["VSENSOR_HOSTNAME", "VSENSOR_HMAC_KEY"] {
            let v: Vec<_> = base().into_iter().filter(|(k, _)| *k != var).collect();
            let e = validate(&RawConfig::from_vars(v)).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{var}: is required")), "{e}");
            // Empty counts as missing.
            let e = with(&[(var, "")]).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{var}: is required")), "{e}");
        }
    }

    #[test]
    fn hostname_with_port_points_to_vsensor_port() {
        let msg = refused("VSENSOR_HOSTNAME", "collector:443");
        assert_eq!(msg, "VSENSOR_HOSTNAME=\"collector:443\": must not contain ':'; put the port in VSENSOR_PORT");
        refused("VSENSOR_HOSTNAME", "fd00::1");
        refused("VSENSOR_HOSTNAME", "https://collector");
        refused("VSENSOR_HOSTNAME", "coll ector");
        refused("VSENSOR_HOSTNAME", "-x");
    }

    #[test]
    fn hmac_key_is_never_echoed() {
        let e = with(&[("VSENSOR_HMAC_KEY", "line1\nline2")]).unwrap_err().to_string();
        assert!(e.starts_with("VSENSOR_HMAC_KEY:") && !e.contains("line1"), "{e}");
        let c = with(&[]).unwrap();
        assert!(!format!("{c:?}").contains(KEY));
        assert!(!c.redacted_summary().contains(KEY));
        assert!(c.redacted_summary().contains("key=<redacted>"));
        assert_eq!(format!("{} {:?}", c.hmac_key, c.hmac_key), "<redacted> <redacted>");
    }

    /// The level-0 line, every variable at its default and then set:
    /// what a refactor of the summary must keep byte for byte.
    #[test]
    fn the_summary_line() {
        assert_eq!(
            with(&[]).unwrap().redacted_summary(),
            "collector=collector.example:443 key=<redacted> sensor_id=node1 devices=(all) include=\"\" exclude=\"\" any=0 bpf=\"\" \
             debug=1 logfile=stdout antigena=true antigena_period=5s spool=64MiB compression=zstd:-3 capture_buffer=64MiB \
             capture_budget=512MiB user=(default) runtime_dir=/run/ossensor state_dir=/var/lib/ossensor action_key=(first registration) \
             ca_file=(none) syslog=/dev/log metrics=off deduplicate=true config_path=/etc/darktrace/ossensor.cfg"
        );
        let key = format!("ed25519:{}", "ab".repeat(32));
        let c = with(&[
            ("VSENSOR_PORT", "8443"),
            ("OSSENSOR_NETWORK_DEVICE", "eth0 default"),
            ("NETWORK_DEVICE_WHITELIST", "^eth ^veth"),
            ("NETWORK_DEVICE_EXCLUDELIST", "eth7"),
            ("NETWORK_DEVICE_ANY", "1"),
            ("BPF", "tcp port 80"),
            ("OSSENSOR_DEBUG", "4"),
            ("OSSENSOR_LOGFILE_PATH", "/var/log/o.log"),
            ("ANTIGENA_ENABLED", "false"),
            ("ANTIGENA_TIME_PERIOD", "9"),
            ("OSSENSOR_SPOOL_MB", "8"),
            ("OSSENSOR_COMPRESSION", "none"),
            ("OSSENSOR_CAPTURE_BUFFER_MB", "4"),
            ("OSSENSOR_CAPTURE_BUDGET_MB", "40"),
            ("OSSENSOR_USER", "1000"),
            ("OSSENSOR_RUNTIME_DIR", "/tmp/r"),
            ("OSSENSOR_STATE_DIR", "/tmp/s"),
            ("OSSENSOR_ACTION_KEY", key.clone().leak()),
            ("VSENSOR_CA_FILE", "/etc/hostname"),
            ("OSSENSOR_SYSLOG_SOCKET", "/tmp/log"),
            ("OSSENSOR_METRICS_ADDR", "127.0.0.1:9273"),
            ("OSSENSOR_DEDUPLICATE", "false"),
            ("OSSENSOR_CONFIG_PATH", "/tmp/o.cfg"),
        ])
        .unwrap();
        assert_eq!(
            c.redacted_summary(),
            format!(
                "collector=collector.example:8443 key=<redacted> sensor_id=node1 devices=eth0,default include=\"^eth ^veth\" exclude=\"eth7\" \
                 any=1 bpf=\"tcp port 80\" debug=4 logfile=/var/log/o.log antigena=false antigena_period=9s spool=8MiB compression=none \
                 capture_buffer=4MiB capture_budget=40MiB user=1000 runtime_dir=/tmp/r state_dir=/tmp/s action_key={key} ca_file=/etc/hostname \
                 syslog=/tmp/log metrics=127.0.0.1:9273 deduplicate=false config_path=/tmp/o.cfg"
            )
        );
    }

    #[test]
    fn bad_numbers() {
        for v in ["0", "65536", "http", "-1", "+443", "4 43"] {
            let m = refused("VSENSOR_PORT", v);
            assert!(m.ends_with("must be a port number from 1 to 65535"), "{m}");
        }
        let m = refused("OSSENSOR_DEBUG", "7");
        assert_eq!(m, "OSSENSOR_DEBUG=\"7\": must be a log level from 0 to 5");
        refused("OSSENSOR_DEBUG", "debug");
        refused("OSSENSOR_DEBUG", "-1");
        for v in ["0", "five", "1.5", "-5", "4294967296"] {
            refused("ANTIGENA_TIME_PERIOD", v);
        }
        for v in ["0", "65537", "1G"] {
            refused("OSSENSOR_SPOOL_MB", v);
        }
        for v in ["1", "2049", "32M"] {
            refused("OSSENSOR_CAPTURE_BUFFER_MB", v);
        }
    }

    #[test]
    fn bad_booleans() {
        for v in ["yes", "on", "2", "enabled"] {
            let m = refused("ANTIGENA_ENABLED", v);
            assert!(m.contains("true or false"), "{m}");
            refused("NETWORK_DEVICE_ANY", v);
        }
    }

    #[test]
    fn bad_devices() {
        let m = refused("OSSENSOR_NETWORK_DEVICE", "eth0,any");
        assert!(m.contains("NETWORK_DEVICE_ANY=1"), "{m}");
        refused("OSSENSOR_NETWORK_DEVICE", "averyveryverylongname");
        refused("OSSENSOR_NETWORK_DEVICE", "eth0:1");
        refused("OSSENSOR_NETWORK_DEVICE", "a/b");
        refused("OSSENSOR_NETWORK_DEVICE", "..");
        let c = with(&[("OSSENSOR_NETWORK_DEVICE", " eth0,eth1  default ,,eth0")]).unwrap();
        assert_eq!(c.devices.explicit, ["eth0", "eth1", "default"]);
    }

    #[test]
    fn bad_patterns_name_the_list_and_pattern() {
        for var in ["NETWORK_DEVICE_INCLUDELIST", "NETWORK_DEVICE_EXCLUDELIST", "NETWORK_DEVICE_WHITELIST", "NETWORK_DEVICE_BLACKLIST"] {
            let m = refused(var, "^eth (a)\\1");
            assert!(m.contains("pattern \"(a)\\\\1\": back-reference"), "{m}");
        }
        for (p, why) in [
            ("(?i)eth", "not POSIX ERE"),
            ("\\d", "not POSIX ERE"),
            ("*eth", "nothing to repeat"),
            ("eth|+x", "nothing to repeat"),
            ("a{", "write \\{"),
            ("a{2,1}", "invalid interval"),
            ("[z-a]", "invalid range"),
            ("[eth", "unmatched '['"),
            ("[[.-.]]", "collating"),
            ("[[:alfa:]]", "unknown character class"),
            ("eth\\", "ends with a backslash"),
            ("(eth", "regex engine"),
            ("a,b", "write [,]"),
        ] {
            let e = with(&[("NETWORK_DEVICE_EXCLUDELIST", p)]).unwrap_err().to_string();
            assert!(e.contains("NETWORK_DEVICE_EXCLUDELIST=") && e.contains(why), "{p}: {e}");
        }
        // The old name's error names the old name.
        let e = with(&[("NETWORK_DEVICE_WHITELIST", "*")]).unwrap_err();
        assert!(e.mentions("NETWORK_DEVICE_WHITELIST"));
    }

    #[test]
    fn ere_dialect() {
        let m = |p: &str, s: &str| Pattern::new(p).unwrap().is_match(s);
        // Backslash inside brackets is literal (POSIX), not an escape.
        assert!(m("[\\d]", "\\") && m("[\\d]", "d") && !m("[\\d]", "5"));
        assert!(m("^[a\\]x", "\\x") && !m("^[a\\]x$", "]"));
        // ']' first in brackets is literal; '-' first/last is literal.
        assert!(m("[]a]", "]") && m("[-a]", "-") && m("[a-]", "-") && !m("^[a-]$", "b"));
        assert!(m("[^]a]", "b") && !m("^[^]a]$", "]"));
        // Classes, anchors, alternation, intervals incl. {,m}.
        assert!(m("^[[:alpha:]]+[[:digit:]]$", "eth0") && !m("^[[:alpha:]]+$", "eth0"));
        assert!(m("^(cali|veth)", "veth9") && !m("^(cali|veth)", "eth0"));
        assert!(m("^a{,2}$", "") && m("^a{,2}$", "aa") && !m("^a{,2}$", "aaa"));
        assert!(m("^a{2,}$", "aaaa") && m("^a{2}$", "aa"));
        // Escaped specials and a lone '}' are literals.
        assert!(m("^a\\.b$", "a.b") && !m("^a\\.b$", "axb") && m("a}", "a}") && m("\\{x\\}", "{x}"));
        // Rust class syntax means nothing special inside POSIX brackets.
        assert!(m("^[a&&b]$", "&") && m("^[[]$", "[") && m("^[a~~b]$", "~"));
        // GNU word escapes.
        assert!(m("\\<eth", "eth0") && m("\\bveth\\b", "veth") && m("^\\w+$", "eth_0"));
        // Unanchored like grep: a pattern matches anywhere in the name.
        assert!(m("eth", "veth0"));
    }

    #[test]
    fn bad_bpf_names_bpf_value_and_libpcap_message() {
        let m = refused("BPF", "tcp port eighty");
        assert!(m.starts_with("BPF=\"tcp port eighty\": is not a valid capture filter: "), "{m}");
        assert!(m.len() > "BPF=\"tcp port eighty\": is not a valid capture filter: ".len() + 3, "{m}");
        refused("BPF", "not");
    }

    #[test]
    fn bad_extensions() {
        refused("OSSENSOR_SENSOR_ID", ".hidden");
        refused("OSSENSOR_SENSOR_ID", "a/b");
        for v in ["gzip", "zstd:0", "zstd:20", "zstd:", "zstd:x", "zstd:-8", "zstd:-", "zstd:+1", "zstd:--1"] {
            let m = refused("OSSENSOR_COMPRESSION", v);
            assert!(m.contains("zstd:LEVEL"), "{m}");
        }
        for v in ["Root", "1abc", "a b", "4294967295", "99999999999", "-x"] {
            refused("OSSENSOR_USER", v);
        }
        refused("OSSENSOR_RUNTIME_DIR", "run/ossensor");
        refused("OSSENSOR_RUNTIME_DIR", "/run/ossensor ");
        refused("OSSENSOR_STATE_DIR", "var/lib/ossensor");
        for v in ["ed25519:1234", "ed25519:", "zz"] {
            let m = refused("OSSENSOR_ACTION_KEY", v);
            assert!(m.contains("vsensor action key"), "{m}");
        }
        let key = format!("ed25519:{}", "ab".repeat(32));
        assert_eq!(with(&[("OSSENSOR_ACTION_KEY", key.clone().leak())]).unwrap().action_key, Some(PublicKey([0xab; 32])));
        let m = refused("VSENSOR_CA_FILE", "/nonexistent/ca.pem");
        assert!(m.contains("cannot read the CA file"), "{m}");
        refused("VSENSOR_CA_FILE", "/");
    }

    #[test]
    fn the_ring_budget_is_shared_by_the_interfaces() {
        let c = with(&[]).unwrap();
        assert_eq!(c.ring_share(0, 1), 64 * MIB, "one interface: the per-interface size");
        assert_eq!(c.ring_share(0, 8), 64 * MIB);
        assert_eq!(c.ring_share(0, 16), 32 * MIB, "512 MiB shared by 16");
        assert_eq!(c.ring_share(448 * MIB, 4), 16 * MIB, "what running workers hold is not shared again");
        assert_eq!(c.ring_share(0, 200), 2 * MIB, "never below 2 MiB");
        assert_eq!(c.ring_share(600 * MIB, 1), 2 * MIB, "over budget: the floor");
        let c = with(&[("OSSENSOR_CAPTURE_BUDGET_MB", "100")]).unwrap();
        assert_eq!(c.ring_share(0, 3), 33 * MIB, "whole MiB");
        refused("OSSENSOR_CAPTURE_BUDGET_MB", "1");
    }

    #[test]
    fn bad_metrics_address() {
        for v in ["9273", "localhost:9273", "127.0.0.1", "127.0.0.1:0", "[::1]", " 127.0.0.1:9273"] {
            let m = refused("OSSENSOR_METRICS_ADDR", v);
            assert!(m.contains("must be an address and a port"), "{m}");
        }
        assert_eq!(with(&[("OSSENSOR_METRICS_ADDR", "[::1]:9273")]).unwrap().metrics_addr, Some("[::1]:9273".parse().unwrap()));
        assert_eq!(with(&[]).unwrap().metrics_addr, None);
    }

    #[test]
    fn bad_paths() {
        refused("OSSENSOR_LOGFILE_PATH", "/var/log/x.log ");
        refused("OSSENSOR_LOGFILE_PATH", " /var/log/x.log");
        refused("OSSENSOR_CONFIG_PATH", "/etc/darktrace/");
        refused("OSSENSOR_CONFIG_PATH", "/etc/x.cfg\t");
    }

    #[test]
    fn all_problems_are_reported_together() {
        let e = validate(&RawConfig::from_vars([
            ("VSENSOR_HOSTNAME", "c:1"),
            ("VSENSOR_PORT", "x"),
            ("OSSENSOR_DEBUG", "9"),
            ("BPF", "bogus bogus"),
            ("NETWORK_DEVICE_EXCLUDELIST", "\\1"),
        ]))
        .unwrap_err();
        assert_eq!(e.problems.len(), 6, "{e}");
        for v in ["VSENSOR_HOSTNAME", "VSENSOR_HMAC_KEY", "VSENSOR_PORT", "OSSENSOR_DEBUG", "BPF", "NETWORK_DEVICE_EXCLUDELIST"] {
            assert!(e.mentions(v), "{v}: {e}");
        }
        assert!(e.to_string().starts_with("6 configuration problems:\n  "), "{e}");
    }

    #[test]
    fn children_configs() {
        let c = with(&[
            ("OSSENSOR_DEBUG", "3"),
            ("OSSENSOR_LOGFILE_PATH", "/var/log/o.log"),
            ("OSSENSOR_CAPTURE_BUFFER_MB", "64"),
            ("OSSENSOR_COMPRESSION", "none"),
            ("BPF", "tcp"),
        ])
        .unwrap();
        let key = PublicKey([7; 32]);
        let w = c.worker_config("eth0", 4, c.ring_share(0, 1), Some(key));
        assert_eq!(w.interface, "eth0");
        assert_eq!((w.control_fd, w.action_key.as_deref()), (4, Some(key.to_string().as_str())));
        assert_eq!(w.ring_bytes, 32 * MIB);
        assert_eq!(w.log, LogConfig { level: 3, path: Some("/var/log/o.log".into()), syslog_socket: None });
        let u = c.uplink_config(3);
        assert_eq!((u.collector_host.as_str(), u.collector_port, u.hmac_key.as_str()), ("collector.example", 443, KEY));
        assert_eq!((u.sensor_id.as_str(), u.bpf.as_str(), u.spool_bytes), ("node1", "tcp", 64 * MIB));
        assert_eq!((u.compression_level, u.chunk_bytes, u.chunk_max_age_ms), (None, 1 << 20, 200));
        assert_eq!((u.ca_file, u.log.level), (None, 3));
        assert_eq!(with(&[]).unwrap().uplink_config(3).compression_level, Some(-3));
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str], e: &[(&str, &str)]) -> RawConfig {
        match gather(&args(a), &env(e)).unwrap() {
            Source::Run(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_line() {
        assert_eq!(gather(&args(&["--help"]), &env(&[])).unwrap(), Source::Help);
        assert_eq!(gather(&args(&["-V"]), &env(&[])).unwrap(), Source::Version);
        let e = gather(&args(&["--bogus"]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("--bogus"), "{e}");
        let e = gather(&args(&["--env-file"]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("--env-file"), "{e}");
        let e = gather(&args(&["-c"]), &env(&[])).unwrap_err().to_string();
        assert!(e.starts_with("-c"), "{e}");
        let e = gather(&args(&["--env-file", "a", "-c", "b"]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("--env-file") && e.contains("-c"), "{e}");
        let e = gather(&args(&["-c", "a", "-c", "b"]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("more than once"), "{e}");
        let r = run(&[], &[("VSENSOR_HOSTNAME", "h"), ("PATH", "/bin")]);
        assert_eq!(r.vars, env(&[("VSENSOR_HOSTNAME", "h")]));
    }

    #[test]
    fn env_files_in_order_then_the_process_environment() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.env");
        let b = dir.path().join("b.env");
        std::fs::write(&a, "VSENSOR_HOSTNAME=from-a\nVSENSOR_PORT=1\nOSSENSOR_DEBUG=2\nOSSENSOR_DEBGU=3\nVSENSOR_HMAC_KEY\n").unwrap();
        std::fs::write(&b, "# b\nVSENSOR_PORT=\"2\"\nBPF=tcp \n").unwrap();
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        let r = run(&["--env-file", a, &format!("--env-file={b}")], &[("OSSENSOR_DEBUG", "4"), ("VSENSOR_HMAC_KEY", "k")]);
        assert_eq!(r.vars["VSENSOR_HOSTNAME"], "from-a");
        assert_eq!(r.vars["VSENSOR_PORT"], "\"2\""); // later file wins, verbatim
        assert_eq!(r.vars["OSSENSOR_DEBUG"], "4"); // process environment wins
        assert_eq!(r.vars["VSENSOR_HMAC_KEY"], "k"); // bare KEY from the process
        assert_eq!(r.vars["BPF"], "tcp ");
        assert!(r.warnings.iter().any(|w| w.contains("OSSENSOR_DEBGU")), "{:?}", r.warnings);
        // The quoted port is refused, naming the value as written.
        let e = validate(&r).unwrap_err().to_string();
        assert!(e.contains("VSENSOR_PORT=\"\\\"2\\\"\""), "{e}");
        // An empty process variable still overrides the file (Docker's -e).
        let r = run(&["--env-file", a], &[("VSENSOR_HOSTNAME", "")]);
        assert_eq!(r.vars["VSENSOR_HOSTNAME"], "");
        // File errors name the file and line.
        std::fs::write(dir.path().join("bad.env"), "OK=1\nBAD KEY=1\n").unwrap();
        let bad = dir.path().join("bad.env");
        let e = gather(&args(&["--env-file", bad.to_str().unwrap()]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("bad.env line 2") && e.contains("BAD KEY"), "{e}");
        let e = gather(&args(&["--env-file", "/nonexistent.env"]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("/nonexistent.env"), "{e}");
    }

    #[test]
    fn config_file_mode_ignores_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = with(&[("OSSENSOR_DEBUG", "4"), ("NETWORK_DEVICE_EXCLUDELIST", "^veth")]).unwrap();
        let path = dir.path().join("o.cfg");
        cfgfile::write(&path, &cfgfile::render(&cfg, &cfgfile::AtStart::default())).unwrap();
        let r = run(&["-c", path.to_str().unwrap()], &[("OSSENSOR_DEBUG", "0"), ("VSENSOR_HOSTNAME", "other")]);
        assert_eq!(r.origin, Origin::ConfigFile(path.clone()));
        assert!(r.warnings[0].contains("VSENSOR_HOSTNAME, OSSENSOR_DEBUG are ignored"), "{:?}", r.warnings);
        let back = validate(&r).unwrap();
        assert_eq!(back, Config { config_path: path.clone(), ..cfg });
        // Errors in the file name the file, the line and the key.
        std::fs::write(&path, "[osSensor]\nDebug=1\nbogus=2\n").unwrap();
        let e = gather(&args(&["-c", path.to_str().unwrap()]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("o.cfg") && e.contains("line 3") && e.contains("bogus"), "{e}");
        let e = gather(&args(&["-c", "/nonexistent.cfg"]), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("/nonexistent.cfg"), "{e}");
    }
}

/// The generated config file as a whole: rendered from a validated
/// configuration, parsed back and validated again (`ossensor -c`).
#[cfg(test)]
mod generated_file {
    use super::*;
    use crate::cfgfile::{parse, AtStart};
    use proptest::prelude::*;
    use std::path::Path;

    fn raw(vars: &[(&str, &str)]) -> RawConfig {
        RawConfig::from_vars(vars.iter().copied())
    }

    /// The file for `cfg`, with no interfaces recorded.
    fn render(cfg: &Config) -> String {
        crate::cfgfile::render(cfg, &AtStart::default())
    }

    fn from_file(text: &str, path: &Path) -> Result<Config, String> {
        let vars = parse(text).map_err(|e| e.to_string())?;
        let raw = RawConfig { origin: Origin::ConfigFile(path.to_path_buf()), vars: vars.vars, file_keys: vars.keys, warnings: vec![] };
        validate(&raw).map_err(|e| e.to_string())
    }

    #[test]
    fn renders_the_reference_shape() {
        let cfg = validate(&raw(&[
            ("VSENSOR_HOSTNAME", "collector.example"),
            ("VSENSOR_HMAC_KEY", "s3cret"),
            ("OSSENSOR_NETWORK_DEVICE", "eth0 eth1"),
            ("NETWORK_DEVICE_ANY", "1"),
            ("NETWORK_DEVICE_EXCLUDELIST", "veth1234 veth5678"),
            ("BPF", "not port 80"),
            ("OSSENSOR_SENSOR_ID", "node1"),
        ]))
        .unwrap();
        // The interfaces as selected at start: device= and blacklist_device=
        // record them, sorted, as the reference's entrypoint writes them.
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (selected, excluded) = (names(&["eth1", "eth0"]), names(&["veth5678", "veth1234"]));
        let text = crate::cfgfile::render(&cfg, &AtStart { selected: &selected, excluded: &excluded });
        let want_start = "[osSensor]\nDebug=1\nvSensor=collector.example:443\nkey=s3cret\ndevice=eth0,eth1,any\n\
                          logfile=/dev/stdout\nuseAntigena=true\nuseWebsocket=true\nsendAntigenaActionDelta=5\n\
                          blacklist_device=veth1234,veth5678\nbpf=not port 80\n# ossensor extensions\n";
        assert!(text.starts_with(want_start), "{text}");
        assert!(
            text.contains(
                "\nsensorId=node1\nnetworkDevice=eth0,eth1\nwhitelist_device=\nblacklist_pattern=veth1234,veth5678\nspoolMB=64\n\
                 compression=zstd:-3\ncaptureBufferMB=64\n"
            ),
            "{text}"
        );
        assert_eq!(from_file(&text, &cfg.config_path).unwrap(), cfg);
    }

    /// What device= and blacklist_device= record is not read back as
    /// rules: the extensions hold them, and -c applies them again.
    #[test]
    fn the_interfaces_recorded_are_not_rules() {
        let cfg = validate(&raw(&[
            ("VSENSOR_HOSTNAME", "c"),
            ("VSENSOR_HMAC_KEY", "k"),
            ("NETWORK_DEVICE_INCLUDELIST", "^pod"),
            ("NETWORK_DEVICE_EXCLUDELIST", "2$"),
            ("NETWORK_DEVICE_ANY", "1"),
        ]))
        .unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (selected, excluded) = (names(&["pod7", "pod1", "pod1"]), names(&["pod2", "lo2"]));
        let text = crate::cfgfile::render(&cfg, &AtStart { selected: &selected, excluded: &excluded });
        for line in ["device=pod1,pod7,any", "blacklist_device=lo2,pod2", "networkDevice=", "whitelist_device=^pod", "blacklist_pattern=2$"] {
            assert!(text.lines().any(|l| l == line), "{line}: {text}");
        }
        let back = from_file(&text, &cfg.config_path).unwrap();
        assert_eq!(back, cfg);
        assert!(back.devices.explicit.is_empty(), "every interface is a candidate, not the ones recorded");
        // Without NETWORK_DEVICE_ANY and with nothing selected yet.
        let cfg = validate(&raw(&[("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k")])).unwrap();
        let text = crate::cfgfile::render(&cfg, &AtStart { selected: &names(&["eth0"]), excluded: &[] });
        assert!(text.contains("\ndevice=eth0\n") && text.contains("\nblacklist_device=\n"), "{text}");
    }

    /// A file without networkDevice and blacklist_pattern (written by an
    /// earlier version, or in the reference's shape by hand) means what it
    /// always did: device= is the OSSENSOR_NETWORK_DEVICE list, and
    /// blacklist_device= the exclude patterns; errors name those keys.
    #[test]
    fn older_files_keep_their_meaning() {
        let path = Path::new("/etc/old.cfg");
        let old = "[osSensor]\nDebug=1\nvSensor=c:443\nkey=k\ndevice=eth0,eth1,any\nlogfile=/dev/stdout\nuseAntigena=true\n\
                   useWebsocket=true\nsendAntigenaActionDelta=5\nblacklist_device=^veth,[,]x\nbpf=\n# ossensor extensions\n\
                   whitelist_device=^eth\nsensorId=s\n";
        let c = from_file(old, path).unwrap();
        assert_eq!(c.devices.explicit, ["eth0", "eth1"]);
        assert!(c.devices.any);
        assert_eq!(c.devices.exclude, [Pattern::new("^veth").unwrap(), Pattern::new("[,]x").unwrap()]);
        assert_eq!(c.devices.include, [Pattern::new("^eth").unwrap()]);
        let e = from_file("[osSensor]\nvSensor=c\nkey=k\ndevice=eth0:1,any\nblacklist_device=\\1\n", path).unwrap_err();
        assert!(e.contains("/etc/old.cfg: device=\"eth0:1\" (OSSENSOR_NETWORK_DEVICE)"), "{e}");
        assert!(e.contains("/etc/old.cfg: blacklist_device=\"\\\\1\" (NETWORK_DEVICE_EXCLUDELIST)"), "{e}");
        // A file of this version: the rules' own keys; device= only says any.
        let e = from_file("[osSensor]\nvSensor=c\nkey=k\ndevice=eth0\nnetworkDevice=eth0:1\nblacklist_pattern=\\1\n", path).unwrap_err();
        assert!(e.contains("/etc/old.cfg: networkDevice=\"eth0:1\" (OSSENSOR_NETWORK_DEVICE)"), "{e}");
        assert!(e.contains("/etc/old.cfg: blacklist_pattern=\"\\\\1\" (NETWORK_DEVICE_EXCLUDELIST)"), "{e}");
        let c = from_file("[osSensor]\nvSensor=c\nkey=k\ndevice=eth0,any\nblacklist_device=veth1\nnetworkDevice=\nblacklist_pattern=\n", path).unwrap();
        assert_eq!(c.devices, DeviceRules { any: true, ..Default::default() });
        // One of the rules' keys is enough: the recorded names are never
        // read as rules in a file of this version.
        let c = from_file("[osSensor]\nvSensor=c\nkey=k\ndevice=eth0,any\nblacklist_device=veth1\nblacklist_pattern=^x\n", path).unwrap();
        assert_eq!(c.devices, DeviceRules { any: true, exclude: vec![Pattern::new("^x").unwrap()], ..Default::default() });
        let c = from_file("[osSensor]\nvSensor=c\nkey=k\ndevice=eth0\nblacklist_device=veth1\nnetworkDevice=eth1\n", path).unwrap();
        assert_eq!(c.devices, DeviceRules { explicit: vec!["eth1".into()], ..Default::default() });
    }

    /// The whole file, every key set to something other than its default:
    /// what a refactor of the rendering must keep byte for byte.
    #[test]
    fn the_whole_file() {
        let key = format!("ed25519:{}", "ab".repeat(32));
        let cfg = validate(&raw(&[
            ("VSENSOR_HOSTNAME", "collector.example"),
            ("VSENSOR_PORT", "8443"),
            ("VSENSOR_HMAC_KEY", " s3cret key "),
            ("OSSENSOR_NETWORK_DEVICE", "eth0 eth1"),
            ("NETWORK_DEVICE_ANY", "1"),
            ("NETWORK_DEVICE_INCLUDELIST", "^eth ^veth[0-9]{1,3}$"),
            ("NETWORK_DEVICE_BLACKLIST", "veth1234 [,]x"),
            ("BPF", "not\nport 80"),
            ("OSSENSOR_DEBUG", "3"),
            ("OSSENSOR_LOGFILE_PATH", "/var/log/o.log"),
            ("ANTIGENA_ENABLED", "FALSE"),
            ("ANTIGENA_TIME_PERIOD", "30"),
            ("OSSENSOR_SENSOR_ID", "node1"),
            ("OSSENSOR_SPOOL_MB", "32"),
            ("OSSENSOR_COMPRESSION", "zstd:5"),
            ("OSSENSOR_CAPTURE_BUFFER_MB", "16"),
            ("OSSENSOR_CAPTURE_BUDGET_MB", "100"),
            ("OSSENSOR_USER", "nobody"),
            ("OSSENSOR_RUNTIME_DIR", "/tmp/run"),
            ("OSSENSOR_STATE_DIR", "/tmp/state"),
            ("OSSENSOR_ACTION_KEY", &key),
            ("OSSENSOR_SYSLOG_SOCKET", "/run/systemd/journal/dev-log"),
            ("OSSENSOR_METRICS_ADDR", "[::1]:9273"),
            ("OSSENSOR_DEDUPLICATE", "0"),
        ]))
        .unwrap();
        let want = format!(
            "[osSensor]\nDebug=3\nvSensor=collector.example:8443\nkey= s3cret key \ndevice=any\nlogfile=/var/log/o.log\n\
             useAntigena=false\nuseWebsocket=false\nsendAntigenaActionDelta=30\nblacklist_device=\nbpf=not port 80\n\
             # ossensor extensions\nsensorId=node1\nnetworkDevice=eth0,eth1\nwhitelist_device=^eth,^veth[0-9]{{1,3}}$\n\
             blacklist_pattern=veth1234,[,]x\nspoolMB=32\ncompression=zstd:5\n\
             captureBufferMB=16\ncaptureBudgetMB=100\nuser=nobody\nruntimeDir=/tmp/run\nstateDir=/tmp/state\nactionKey={key}\n\
             caFile=\nsyslogSocket=/run/systemd/journal/dev-log\nmetricsAddress=[::1]:9273\ndeduplicate=false\n"
        );
        assert_eq!(render(&cfg), want);
        let defaults = validate(&raw(&[("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("OSSENSOR_SENSOR_ID", "s")])).unwrap();
        assert_eq!(
            render(&defaults),
            "[osSensor]\nDebug=1\nvSensor=c:443\nkey=k\ndevice=\nlogfile=/dev/stdout\nuseAntigena=true\nuseWebsocket=true\n\
             sendAntigenaActionDelta=5\nblacklist_device=\nbpf=\n# ossensor extensions\nsensorId=s\nnetworkDevice=\nwhitelist_device=\n\
             blacklist_pattern=\nspoolMB=64\n\
             compression=zstd:-3\ncaptureBufferMB=64\ncaptureBudgetMB=512\nuser=\nruntimeDir=/run/ossensor\nstateDir=/var/lib/ossensor\n\
             actionKey=\ncaFile=\nsyslogSocket=\nmetricsAddress=\ndeduplicate=true\n"
        );
    }

    #[test]
    fn device_any_alone_and_no_device() {
        let base = [("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k")];
        let mut v = base.to_vec();
        v.push(("NETWORK_DEVICE_ANY", "1"));
        assert!(render(&validate(&raw(&v)).unwrap()).contains("\ndevice=any\n"));
        assert!(render(&validate(&raw(&base)).unwrap()).contains("\ndevice=\n"));
    }

    #[test]
    fn value_errors_under_c_name_the_file_key() {
        let path = Path::new("/etc/x.cfg");
        let e = from_file("[osSensor]\nvSensor=c:99999\nkey=k\nDebug=9\n", path).unwrap_err();
        assert!(e.contains("/etc/x.cfg: vSensor=\"99999\" (VSENSOR_PORT)"), "{e}");
        assert!(e.contains("Debug=\"9\" (OSSENSOR_DEBUG)"), "{e}");
        let e = from_file("[osSensor]\nvSensor=c\n", path).unwrap_err();
        assert!(e.contains("key (VSENSOR_HMAC_KEY): is required"), "{e}");
    }

    #[test]
    fn patterns_with_commas_survive_the_list() {
        let cfg = validate(&raw(&[("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("NETWORK_DEVICE_EXCLUDELIST", "^veth[0-9]{1,3}$ [,x]y")])).unwrap();
        let text = render(&cfg);
        assert!(text.contains("blacklist_pattern=^veth[0-9]{1,3}$,[,x]y\n"), "{text}");
        assert_eq!(from_file(&text, &cfg.config_path).unwrap(), cfg);
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("^eth".to_string()),
            Just("veth[0-9a-f]{2,8}$".to_string()),
            Just("[,;]x".to_string()),
            Just("^(cali|flannel)".to_string()),
            Just("a{,3}b".to_string()),
            Just("[[:digit:]]+".to_string()),
            "[a-z]{1,6}",
        ]
    }

    prop_compose! {
        fn vars()(
            host in "[a-z][a-z0-9.-]{0,20}",
            port in proptest::option::of(1u16..),
            key in "[^\n\r\0]{1,40}",
            devices in proptest::collection::vec(prop_oneof![Just("default".to_string()), "[a-z][a-z0-9]{0,14}".prop_filter("any is refused", |d| d != "any")], 0..4),
            sep in prop_oneof![Just(","), Just(" "), Just(", ")],
            any in proptest::option::of(proptest::bool::ANY),
            include in proptest::collection::vec(pattern(), 0..3),
            exclude in proptest::collection::vec(pattern(), 0..3),
            debug in proptest::option::of(0u8..=5),
            logfile in proptest::option::of(prop_oneof![Just("/dev/stdout".to_string()), "/var/log/[a-z]{1,8}"]),
            antigena in proptest::option::of(prop_oneof![Just("TRUE"), Just("false"), Just("1"), Just("0")]),
            period in proptest::option::of(1u32..),
            bpf in proptest::option::of(prop_oneof![Just("tcp port 80"), Just("not\nport 443"), Just("udp or icmp")]),
            sensor_id in proptest::option::of("[a-z0-9_-][a-z0-9._-]{0,20}"),
            spool in proptest::option::of(1u64..=65536),
            compression in proptest::option::of(prop_oneof![Just("zstd".to_string()), Just("none".to_string()), (1..=19i32).prop_map(|l| format!("zstd:{l}"))]),
            ring in proptest::option::of(2u64..=2048),
            user in proptest::option::of(prop_oneof!["[a-z_][a-z0-9_-]{0,10}", (0u32..100000).prop_map(|u| u.to_string())]),
            runtime in proptest::option::of("/run/[a-z]{1,8}"),
            state in proptest::option::of("/var/lib/[a-z]{1,8}"),
            action_key in proptest::option::of(proptest::array::uniform32(any::<u8>())),
        ) -> Vec<(String, String)> {
            let mut v = vec![
                ("VSENSOR_HOSTNAME".to_string(), host),
                ("VSENSOR_HMAC_KEY".to_string(), key),
            ];
            let mut opt = |k: &str, val: Option<String>| if let Some(val) = val { v.push((k.to_string(), val)) };
            opt("VSENSOR_PORT", port.map(|p| p.to_string()));
            opt("OSSENSOR_NETWORK_DEVICE", (!devices.is_empty()).then(|| devices.join(sep)));
            opt("NETWORK_DEVICE_ANY", any.map(|a| (a as u8).to_string()));
            opt("NETWORK_DEVICE_INCLUDELIST", (!include.is_empty()).then(|| include.join(" ")));
            opt("NETWORK_DEVICE_EXCLUDELIST", (!exclude.is_empty()).then(|| exclude.join("  ")));
            opt("OSSENSOR_DEBUG", debug.map(|d| d.to_string()));
            opt("OSSENSOR_LOGFILE_PATH", logfile);
            opt("ANTIGENA_ENABLED", antigena.map(str::to_string));
            opt("ANTIGENA_TIME_PERIOD", period.map(|p| p.to_string()));
            opt("BPF", bpf.map(str::to_string));
            opt("OSSENSOR_SENSOR_ID", sensor_id);
            opt("OSSENSOR_SPOOL_MB", spool.map(|s| s.to_string()));
            opt("OSSENSOR_COMPRESSION", compression);
            opt("OSSENSOR_CAPTURE_BUFFER_MB", ring.map(|s| s.to_string()));
            opt("OSSENSOR_USER", user);
            opt("OSSENSOR_RUNTIME_DIR", runtime);
            opt("OSSENSOR_STATE_DIR", state);
            opt("OSSENSOR_ACTION_KEY", action_key.map(|k| ossensor_shared::actions::signed::PublicKey(k).to_string()));
            v
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn render_parse_validate_round_trip(
            v in vars(),
            selected in proptest::collection::vec("[a-z][a-z0-9]{0,14}", 0..4),
            excluded in proptest::collection::vec("[a-z][a-z0-9]{0,14}", 0..4),
        ) {
            let raw = RawConfig::from_vars(v.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let cfg = validate(&raw).unwrap();
            // Whatever interfaces were recorded at start.
            let text = crate::cfgfile::render(&cfg, &AtStart { selected: &selected, excluded: &excluded });
            let back = from_file(&text, &cfg.config_path).unwrap();
            prop_assert_eq!(back, cfg);
        }

        #[test]
        fn parse_never_panics(text in "(\\PC|\n|\r|=|\\[|\\]|,){0,200}") {
            if let Ok(vars) = parse(&text) {
                let raw = RawConfig { origin: Origin::ConfigFile("/x.cfg".into()), vars: vars.vars, file_keys: vars.keys, warnings: vec![] };
                let _ = validate(&raw);
            }
        }
    }

    #[test]
    fn ca_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let cfg = validate(&raw(&[("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("VSENSOR_CA_FILE", ca.to_str().unwrap())])).unwrap();
        assert_eq!(from_file(&render(&cfg), &cfg.config_path).unwrap(), cfg);
    }
}
