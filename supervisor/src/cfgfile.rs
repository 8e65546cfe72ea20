//! The generated config file: the resolved configuration in the reference
//! sensor's INI shape, written to OSSENSOR_CONFIG_PATH at start (mode 0600:
//! it holds the key), and read back by `ossensor -c FILE`.
//!
//! Shape: one `[osSensor]` section of `key=value` lines. Reading: a UTF-8
//! BOM and CRLF line ends are accepted; blank lines and lines starting with
//! `#` or `;` are comments; the key is trimmed, the value after the first
//! `=` is kept verbatim (so a key with trailing spaces survives the round
//! trip); unknown keys, repeated keys, other sections and keys outside the
//! section are errors. A key that is absent means the variable is unset (its
//! default applies).
//!
//! [`render`] then [`parse`] then [`crate::config::validate`] gives back the
//! same [`Config`] (with `config_path` = the file read).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::{compression_name, parse_bool, Config, Pattern, MIB};
use crate::ere;

/// The section every key lives in.
pub const SECTION: &str = "osSensor";

/// INI key → the variable it sets. `vSensor` (host:port), `device` (list
/// plus `any`) and `useWebsocket` (must equal `useAntigena`) are handled
/// apart.
const SIMPLE_KEYS: &[(&str, &str)] = &[
    ("Debug", "OSSENSOR_DEBUG"),
    ("key", "VSENSOR_HMAC_KEY"),
    ("logfile", "OSSENSOR_LOGFILE_PATH"),
    ("useAntigena", "ANTIGENA_ENABLED"),
    ("sendAntigenaActionDelta", "ANTIGENA_TIME_PERIOD"),
    ("bpf", "BPF"),
    ("sensorId", "OSSENSOR_SENSOR_ID"),
    ("spoolMB", "OSSENSOR_SPOOL_MB"),
    ("compression", "OSSENSOR_COMPRESSION"),
    ("captureBufferMB", "OSSENSOR_CAPTURE_BUFFER_MB"),
    ("user", "OSSENSOR_USER"),
    ("runtimeDir", "OSSENSOR_RUNTIME_DIR"),
    ("caFile", "VSENSOR_CA_FILE"),
    ("syslogSocket", "OSSENSOR_SYSLOG_SOCKET"),
    ("metricsAddress", "OSSENSOR_METRICS_ADDR"),
    ("deduplicate", "OSSENSOR_DEDUPLICATE"),
    ("captureBudgetMB", "OSSENSOR_CAPTURE_BUDGET_MB"),
    ("stateDir", "OSSENSOR_STATE_DIR"),
    ("actionKey", "OSSENSOR_ACTION_KEY"),
];

/// The INI key a variable is read from, for error messages under `-c`.
pub fn key_for(variable: &str) -> Option<&'static str> {
    match variable {
        "VSENSOR_HOSTNAME" | "VSENSOR_PORT" => Some("vSensor"),
        "OSSENSOR_NETWORK_DEVICE" | "NETWORK_DEVICE_ANY" => Some("device"),
        "NETWORK_DEVICE_EXCLUDELIST" => Some("blacklist_device"),
        "NETWORK_DEVICE_INCLUDELIST" => Some("whitelist_device"),
        v => SIMPLE_KEYS
            .iter()
            .find(|(_, var)| *var == v)
            .map(|(k, _)| *k),
    }
}

/// The file's text. Values are one line each: validation refuses line
/// breaks in the key and paths, and turns them into spaces in BPF.
pub fn render(cfg: &Config) -> String {
    let join = |v: &[Pattern]| v.iter().map(Pattern::as_str).collect::<Vec<_>>().join(",");
    let mut device = cfg.devices.explicit.join(",");
    if cfg.devices.any {
        device = if device.is_empty() {
            "any".into()
        } else {
            format!("{device},any")
        };
    }
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let mut s = String::new();
    let mut kv = |k: &str, v: &str| {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('\n');
    };
    kv("[osSensor]\nDebug", &cfg.debug.to_string());
    kv(
        "vSensor",
        &format!("{}:{}", cfg.collector_host, cfg.collector_port),
    );
    kv("key", cfg.hmac_key.expose());
    kv("device", &device);
    kv(
        "logfile",
        &cfg.logfile
            .as_ref()
            .map_or("/dev/stdout".to_string(), |p| p.display().to_string()),
    );
    kv("useAntigena", &cfg.antigena_enabled.to_string());
    kv("useWebsocket", &cfg.antigena_enabled.to_string());
    kv(
        "sendAntigenaActionDelta",
        &cfg.antigena_period_secs.to_string(),
    );
    kv("blacklist_device", &join(&cfg.devices.exclude));
    kv("bpf", &cfg.bpf);
    // The extensions in the order the level-0 summary lists them.
    kv("# ossensor extensions\nsensorId", &cfg.sensor_id);
    kv("whitelist_device", &join(&cfg.devices.include));
    kv("spoolMB", &(cfg.spool_bytes / MIB).to_string());
    kv("compression", &compression_name(cfg.compression));
    kv("captureBufferMB", &(cfg.ring_bytes / MIB).to_string());
    kv("captureBudgetMB", &(cfg.ring_budget_bytes / MIB).to_string());
    kv("user", cfg.user.as_deref().unwrap_or(""));
    kv("runtimeDir", &cfg.runtime_dir.display().to_string());
    kv("stateDir", &cfg.state_dir.display().to_string());
    kv("actionKey", &cfg.action_key.map(|k| k.to_string()).unwrap_or_default());
    kv("caFile", &path(&cfg.ca_file));
    kv("syslogSocket", &path(&cfg.syslog_socket));
    kv("metricsAddress", &cfg.metrics_addr.map(|a| a.to_string()).unwrap_or_default());
    kv("deduplicate", &cfg.deduplicate.to_string());
    s
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
            Some(k) => write!(
                f,
                "line {}: {}: {}",
                self.line,
                k.escape_debug(),
                self.message
            ),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for CfgError {}

/// The inverse of [`render`]: the file's keys as the variables they stand
/// for, values as written (validation interprets them).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, CfgError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut in_section = false;
    let mut websocket: Option<(usize, String)> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |key: Option<&str>, message: String| CfgError {
            line: line_no,
            key: key.map(str::to_string),
            message,
        };
        if line.starts_with('[') {
            if line.trim_end() != format!("[{SECTION}]") {
                return Err(err(
                    None,
                    format!(
                        "unknown section {:?}: only [{SECTION}] is read",
                        line.trim_end()
                    ),
                ));
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
        if let Some(first) = seen.insert(key.to_string(), line_no) {
            return Err(err(Some(key), format!("already set on line {first}")));
        }
        let mut set = |var: &str, v: String| {
            vars.insert(var.to_string(), v);
        };
        match key {
            "vSensor" => match value.rsplit_once(':') {
                Some((host, port)) => {
                    set("VSENSOR_HOSTNAME", host.to_string());
                    set("VSENSOR_PORT", port.to_string());
                }
                None => set("VSENSOR_HOSTNAME", value.to_string()),
            },
            "device" => {
                let mut any = false;
                let mut devs = Vec::new();
                for d in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                    if d == "any" {
                        any = true;
                    } else {
                        devs.push(d);
                    }
                }
                set("OSSENSOR_NETWORK_DEVICE", devs.join(","));
                set(
                    "NETWORK_DEVICE_ANY",
                    if any { "1" } else { "0" }.to_string(),
                );
            }
            "blacklist_device" => set(
                "NETWORK_DEVICE_EXCLUDELIST",
                ere::split_list(value).join(" "),
            ),
            "whitelist_device" => set(
                "NETWORK_DEVICE_INCLUDELIST",
                ere::split_list(value).join(" "),
            ),
            "useWebsocket" => websocket = Some((line_no, value.to_string())),
            k => match SIMPLE_KEYS.iter().find(|(name, _)| *name == k) {
                Some((_, var)) => set(var, value.to_string()),
                None => return Err(err(Some(key), "unknown key".to_string())),
            },
        }
    }
    if let Some((line, ws)) = websocket {
        // The reference writes useWebsocket = useAntigena; this sensor keeps
        // the WebSocket exactly when response actions are on.
        let antigena = vars
            .get("ANTIGENA_ENABLED")
            .map(String::as_str)
            .filter(|v| !v.is_empty());
        let want = antigena.map_or(Some(true), parse_bool);
        let got = if ws.is_empty() { want } else { parse_bool(&ws) };
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
    Ok(vars)
}

/// Writing the file failed; names OSSENSOR_CONFIG_PATH and the path.
#[derive(Debug)]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OSSENSOR_CONFIG_PATH=\"{}\": cannot write the generated config file: {}",
            self.path.display().to_string().escape_debug(),
            self.source
        )
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
    let fail = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "does not name a file",
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(fail)?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
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
    use crate::config::{validate, Origin, RawConfig};
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    fn raw(vars: &[(&str, &str)]) -> RawConfig {
        RawConfig::from_vars(vars.iter().copied())
    }

    fn from_file(text: &str, path: &Path) -> Result<Config, String> {
        let vars = parse(text).map_err(|e| e.to_string())?;
        let raw = RawConfig {
            origin: Origin::ConfigFile(path.to_path_buf()),
            vars,
            warnings: vec![],
        };
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
        let text = render(&cfg);
        let want_start = "[osSensor]\nDebug=1\nvSensor=collector.example:443\nkey=s3cret\ndevice=eth0,eth1,any\n\
                          logfile=/dev/stdout\nuseAntigena=true\nuseWebsocket=true\nsendAntigenaActionDelta=5\n\
                          blacklist_device=veth1234,veth5678\nbpf=not port 80\n# ossensor extensions\n";
        assert!(text.starts_with(want_start), "{text}");
        assert!(text.contains("\nsensorId=node1\nwhitelist_device=\nspoolMB=64\ncompression=zstd:-3\ncaptureBufferMB=64\n"), "{text}");
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
            "[osSensor]\nDebug=3\nvSensor=collector.example:8443\nkey= s3cret key \ndevice=eth0,eth1,any\nlogfile=/var/log/o.log\n\
             useAntigena=false\nuseWebsocket=false\nsendAntigenaActionDelta=30\nblacklist_device=veth1234,[,]x\nbpf=not port 80\n\
             # ossensor extensions\nsensorId=node1\nwhitelist_device=^eth,^veth[0-9]{{1,3}}$\nspoolMB=32\ncompression=zstd:5\n\
             captureBufferMB=16\ncaptureBudgetMB=100\nuser=nobody\nruntimeDir=/tmp/run\nstateDir=/tmp/state\nactionKey={key}\n\
             caFile=\nsyslogSocket=/run/systemd/journal/dev-log\nmetricsAddress=[::1]:9273\ndeduplicate=false\n"
        );
        assert_eq!(render(&cfg), want);
        let defaults = validate(&raw(&[("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("OSSENSOR_SENSOR_ID", "s")])).unwrap();
        assert_eq!(
            render(&defaults),
            "[osSensor]\nDebug=1\nvSensor=c:443\nkey=k\ndevice=\nlogfile=/dev/stdout\nuseAntigena=true\nuseWebsocket=true\n\
             sendAntigenaActionDelta=5\nblacklist_device=\nbpf=\n# ossensor extensions\nsensorId=s\nwhitelist_device=\nspoolMB=64\n\
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
    fn parse_errors_name_line_and_key() {
        let e = parse("[osSensor]\nDebug=1\nfoo=bar\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (3, Some("foo")));
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("foo"),
            "{e}"
        );
        let e = parse("Debug=1\n[osSensor]\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (1, Some("Debug")));
        let e = parse("[other]\n").unwrap_err();
        assert!(e.to_string().contains("other"), "{e}");
        let e = parse("[osSensor]\nDebug=1\nDebug=2\n").unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("line 2"),
            "{e}"
        );
        let e = parse("[osSensor]\njust text\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("[osSensor]\nuseAntigena=false\nuseWebsocket=true\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("useWebsocket"));
        assert!(parse("[osSensor]\nuseAntigena=FALSE\nuseWebsocket=0\n").is_ok());
    }

    #[test]
    fn comments_crlf_bom_and_spacing() {
        let vars =
            parse("\u{feff}; c\r\n# c\r\n[osSensor]\r\n  Debug = 3\r\nkey= spaced \r\n").unwrap();
        assert_eq!(vars["OSSENSOR_DEBUG"], " 3");
        assert_eq!(vars["VSENSOR_HMAC_KEY"], " spaced ");
    }

    #[test]
    fn value_errors_under_c_name_the_file_key() {
        let path = Path::new("/etc/x.cfg");
        let e = from_file("[osSensor]\nvSensor=c:99999\nkey=k\nDebug=9\n", path).unwrap_err();
        assert!(
            e.contains("/etc/x.cfg: vSensor=\"99999\" (VSENSOR_PORT)"),
            "{e}"
        );
        assert!(e.contains("Debug=\"9\" (OSSENSOR_DEBUG)"), "{e}");
        let e = from_file("[osSensor]\nvSensor=c\n", path).unwrap_err();
        assert!(e.contains("key (VSENSOR_HMAC_KEY): is required"), "{e}");
    }

    #[test]
    fn patterns_with_commas_survive_the_list() {
        let cfg = validate(&raw(&[
            ("VSENSOR_HOSTNAME", "c"),
            ("VSENSOR_HMAC_KEY", "k"),
            ("NETWORK_DEVICE_EXCLUDELIST", "^veth[0-9]{1,3}$ [,x]y"),
        ]))
        .unwrap();
        let text = render(&cfg);
        assert!(
            text.contains("blacklist_device=^veth[0-9]{1,3}$,[,x]y\n"),
            "{text}"
        );
        assert_eq!(from_file(&text, &cfg.config_path).unwrap(), cfg);
    }

    #[test]
    fn write_is_0600_atomic_and_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/ossensor.cfg");
        write(&path, "one").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path().join("a/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        // Replacing a world-readable file leaves a 0600 one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("a/b")).unwrap().count(),
            1
        );
    }

    #[test]
    fn write_error_names_the_variable_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("ossensor.cfg"); // parent is a regular file
        let e = write(&path, "x").unwrap_err().to_string();
        assert!(
            e.starts_with("OSSENSOR_CONFIG_PATH=") && e.contains(&path.display().to_string()),
            "{e}"
        );
        let e = write(dir.path(), "x").unwrap_err().to_string(); // a directory
        assert!(e.contains("OSSENSOR_CONFIG_PATH"), "{e}");
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
            opt("OSSENSOR_ACTION_KEY", action_key.map(|k| ossensor_shared::signed_actions::PublicKey(k).to_string()));
            v
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn render_parse_validate_round_trip(v in vars()) {
            let raw = RawConfig::from_vars(v.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let cfg = validate(&raw).unwrap();
            let text = render(&cfg);
            let back = from_file(&text, &cfg.config_path).unwrap();
            prop_assert_eq!(back, cfg);
        }

        #[test]
        fn parse_never_panics(text in "(\\PC|\n|\r|=|\\[|\\]|,){0,200}") {
            if let Ok(vars) = parse(&text) {
                let raw = RawConfig { origin: Origin::ConfigFile("/x.cfg".into()), vars, warnings: vec![] };
                let _ = validate(&raw);
            }
        }

        #[test]
        fn parse_never_panics_on_section_lines(lines in proptest::collection::vec("[A-Za-z_]{1,20}=[^\n]{0,30}", 0..10)) {
            let text = format!("[osSensor]\n{}", lines.join("\n"));
            let _ = parse(&text);
        }
    }

    #[test]
    fn ca_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let cfg = validate(&raw(&[
            ("VSENSOR_HOSTNAME", "c"),
            ("VSENSOR_HMAC_KEY", "k"),
            ("VSENSOR_CA_FILE", ca.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(from_file(&render(&cfg), &cfg.config_path).unwrap(), cfg);
    }
}
