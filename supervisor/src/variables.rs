//! Every variable the sensor reads, declared once.
//!
//! [`VARIABLES`] is the contract of `shared/spec/sensor-interface.md`, and
//! this sensor's extensions, as one table. Each [`Variable`] says: its name
//! and old name, its key in the generated config file, what an unset value
//! means, how a value is checked and stored into the [`Config`], whether it
//! is secret, how the level-0 summary shows it, and its lines in
//! docs/configuration.md. Everything that handles variables reads the table:
//!
//! - gathering ([`crate::config::gather`]): which names are ours (a likely
//!   typo of one is warned about);
//! - validation ([`crate::config::validate`]): the checks, the defaults, the
//!   old names, the secret values never shown;
//! - the generated config file ([`crate::cfgfile`]): each key's value, and
//!   back to variables under `-c`;
//! - the summary ([`Config::redacted_summary`]);
//! - the tables of docs/configuration.md ([`doc_table`]; a test fails when
//!   the file differs).
//!
//! Adding a variable is a field in [`Config`] and an entry here (and, if a
//! child needs it, its field in `ossensor_shared::children`).
//!
//! The order of the table is the order of the summary, of the docs' tables
//! (the reference sensor's variables first, then the extensions) and of the
//! extension keys in the generated file.

use std::fmt;
use std::path::{Path, PathBuf};

use ossensor_shared::actions::signed::PublicKey;

use crate::ere;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/darktrace/ossensor.cfg";
pub const DEFAULT_RUNTIME_DIR: &str = "/run/ossensor";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ossensor";
pub const MIB: u64 = 1024 * 1024;

/// The zstd level `OSSENSOR_COMPRESSION=zstd` means. Chosen by measurement
/// (docs/benchmarks.md): on the reference traffic level -3 compresses 1 MiB
/// chunks at about 2.2 GB/s to a ratio of 0.388, level 1 at 1.2 GB/s to 0.378.
pub const DEFAULT_ZSTD_LEVEL: i32 = -3;

// ---------------------------------------------------------------------------
// The declarations

/// One variable of the sensor.
pub struct Variable {
    pub name: &'static str,
    /// The reference sensor's older name, read when `name` is unset (or
    /// empty); errors then name it.
    pub old_name: Option<&'static str>,
    /// The reference sensor's (true) or one of this sensor's extensions.
    pub reference: bool,
    /// Where it goes in the generated config file.
    pub key: Key,
    /// Where files written by earlier versions kept it: read from a file
    /// that has none of the keys that replaced old ones (see
    /// [`crate::cfgfile::parse`]).
    pub old_key: Option<Key>,
    /// What an unset (or empty) variable means.
    pub unset: Unset,
    /// Its value is never shown: not in errors, logs or the summary.
    pub secret: bool,
    /// Checks a non-empty value and stores it into the configuration; or
    /// why it is refused (one line per problem: a list refuses each bad
    /// item). The message names neither the variable nor the value: the
    /// caller adds both (the value only if it is not secret).
    pub set: fn(&str, &mut Config) -> Result<(), Refused>,
    /// The value that gives back the same configuration (the generated file
    /// writes it; `set` reads it back).
    pub text: fn(&Config) -> String,
    /// How the level-0 summary shows it.
    pub summary: Summary,
    /// docs/configuration.md: what is accepted, and what is refused and how.
    pub accepted: &'static str,
    pub refused: &'static str,
}

/// What an unset or empty variable means.
pub enum Unset {
    /// Start-up stops: `NAME: is required: <this>`.
    Required(&'static str),
    /// The same as this value.
    Value(&'static str),
    /// A value computed at start (documented by the text), then checked as
    /// if the user had given it.
    Derived(&'static str, fn() -> String),
    /// The configuration's blank state (`Config::default()`), which means
    /// what the text says.
    Nothing(&'static str),
}

/// Where a variable goes in the generated config file. Several variables
/// may share a key (`vSensor=HOST:PORT`, `device=…,any`): the key's value is
/// their parts in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Not in the file: OSSENSOR_CONFIG_PATH (the file is where it is).
    None,
    /// `key=TEXT`.
    Plain(&'static str),
    /// A whitespace-separated pattern list, comma-separated in the file
    /// (commas inside `[]` and `{}` do not separate; see [`ere::split_list`]).
    Patterns(&'static str),
    /// The host of `key=HOST:PORT`.
    Host(&'static str),
    /// The port of `key=HOST:PORT`; a value without `:` leaves it unset.
    Port(&'static str),
    /// An interface list, comma-separated, without the word `any`.
    Devices(&'static str),
    /// `any` in the key's comma-separated list: `1`, else `0`.
    Any(&'static str),
}

impl Key {
    /// The key's name in the file.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Key::None => None,
            Key::Plain(k) | Key::Patterns(k) | Key::Host(k) | Key::Port(k) | Key::Devices(k) | Key::Any(k) => Some(k),
        }
    }

    /// Appends this variable's part of the key's value, from its text.
    pub fn write(self, text: &str, out: &mut String) {
        match self {
            Key::None => {}
            Key::Plain(_) | Key::Host(_) | Key::Devices(_) => out.push_str(text),
            Key::Patterns(_) => out.push_str(&text.split_whitespace().collect::<Vec<_>>().join(",")),
            Key::Port(_) => {
                out.push(':');
                out.push_str(text)
            }
            Key::Any(_) if text == "1" => out.push_str(if out.is_empty() { "any" } else { ",any" }),
            Key::Any(_) => {}
        }
    }

    /// This variable's text from the key's value; None: the value leaves it
    /// unset.
    pub fn read(self, value: &str) -> Option<String> {
        let items = || value.split(',').map(str::trim).filter(|d| !d.is_empty());
        match self {
            Key::None => None,
            Key::Plain(_) => Some(value.to_string()),
            Key::Patterns(_) => Some(ere::split_list(value).join(" ")),
            Key::Host(_) => Some(value.rsplit_once(':').map_or(value, |(host, _)| host).to_string()),
            Key::Port(_) => value.rsplit_once(':').map(|(_, port)| port.to_string()),
            Key::Devices(_) => Some(items().filter(|d| *d != "any").collect::<Vec<_>>().join(",")),
            Key::Any(_) => Some(if items().any(|d| d == "any") { "1" } else { "0" }.to_string()),
        }
    }
}

/// How the level-0 summary shows a variable: `label=…`.
pub enum Summary {
    /// Not on its own (another variable's label shows it).
    Hidden,
    /// The text.
    Text(&'static str),
    /// The text quoted and escaped (`{:?}`).
    Quoted(&'static str),
    /// The text and a unit (`64MiB`, `5s`).
    Unit(&'static str, &'static str),
    /// The text, or this when the text is empty (unset).
    Or(&'static str, &'static str),
    /// Computed.
    With(&'static str, fn(&Config) -> String),
}

/// Why a value is refused, one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub Vec<String>);

impl From<String> for Refused {
    fn from(m: String) -> Self {
        Refused(vec![m])
    }
}

impl From<&str> for Refused {
    fn from(m: &str) -> Self {
        Refused(vec![m.to_string()])
    }
}

/// The variables, in the order of the level-0 summary.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "VSENSOR_HOSTNAME",
        old_name: None,
        reference: true,
        key: Key::Host("vSensor"),
        old_key: None,
        unset: Unset::Required("the collector's host name or IP address"),
        secret: false,
        set: |v, c| {
            let t = v.trim();
            c.collector_host = t.to_string();
            if t.contains(':') {
                Err("must not contain ':'; put the port in VSENSOR_PORT".into())
            } else if !valid_host(t) {
                Err("must be a host name or IPv4 address (letters, digits, '.', '-', '_'; at most 253 characters)".into())
            } else {
                Ok(())
            }
        },
        text: |c| c.collector_host.clone(),
        summary: Summary::With("collector", |c| format!("{}:{}", c.collector_host, c.collector_port)),
        accepted: "host name or IPv4 address: 1–253 of letters, digits, `.`, `-`, `_`, not starting with `-` or `.`",
        refused: "missing: `VSENSOR_HOSTNAME: is required: …`; containing `:`: `must not contain ':'; put the port in VSENSOR_PORT` (so IPv6 \
                  literals must go through a DNS name); other characters (`/`, spaces, `https://…`): `must be a host name or IPv4 address …`",
    },
    Variable {
        name: "VSENSOR_PORT",
        old_name: None,
        reference: true,
        key: Key::Port("vSensor"),
        old_key: None,
        unset: Unset::Value("443"),
        secret: false,
        set: |v, c| {
            c.collector_port = number(v, 1, 65535, "a port number")? as u16;
            Ok(())
        },
        text: |c| c.collector_port.to_string(),
        summary: Summary::Hidden,
        accepted: "decimal 1–65535",
        refused: "`must be a port number from 1 to 65535` (also for `+443`, `\"443\"`)",
    },
    Variable {
        name: "VSENSOR_HMAC_KEY",
        old_name: None,
        reference: true,
        key: Key::Plain("key"),
        old_key: None,
        unset: Unset::Required("the secret shared with the collector"),
        secret: true,
        set: |v, c| {
            c.hmac_key = Secret::new(v);
            if v.chars().any(|ch| ch == '\n' || ch == '\r' || ch == '\0') {
                return Err("must not contain line breaks or NUL (value not shown: it is secret)".into());
            }
            Ok(())
        },
        text: |c| c.hmac_key.expose().to_string(),
        summary: Summary::Text("key"),
        accepted: "any non-empty text on one line, used verbatim",
        refused: "missing: `VSENSOR_HMAC_KEY: is required: …`; containing a line break or NUL (possible from the process environment): an \
                  error that does not show the value",
    },
    Variable {
        name: "OSSENSOR_SENSOR_ID",
        old_name: None,
        reference: false,
        key: Key::Plain("sensorId"),
        old_key: None,
        unset: Unset::Derived(
            "derived from the host name (characters other than letters, digits, `.`, `_`, `-` become `_`; at most 64; a leading `.` \
             becomes `_`; empty → `sensor`)",
            || {
                let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
                ossensor_shared::control::sensor_id_from_hostname(&host)
            },
        ),
        secret: false,
        set: |v, c| {
            c.sensor_id = v.trim().to_string();
            if !ossensor_shared::control::valid_sensor_id(v.trim()) {
                return Err("must be 1 to 64 of letters, digits, '.', '_', '-', not starting with '.'".into());
            }
            Ok(())
        },
        text: |c| c.sensor_id.clone(),
        summary: Summary::Text("sensor_id"),
        accepted: "1–64 of letters, digits, `.`, `_`, `-`, not starting with `.` (it names a folder on the collector)",
        refused: "`must be 1 to 64 of letters, digits, …`",
    },
    Variable {
        name: "OSSENSOR_NETWORK_DEVICE",
        old_name: None,
        reference: true,
        key: Key::Plain("networkDevice"),
        old_key: Some(Key::Devices("device")),
        unset: Unset::Nothing("unset: every interface"),
        secret: false,
        set: |v, c| {
            let mut bad = Vec::new();
            let explicit = &mut c.devices.explicit;
            for dev in v.split(|ch: char| ch == ',' || ch.is_whitespace()).filter(|d| !d.is_empty()) {
                if dev == "any" {
                    bad.push(
                        "\"any\" is not an interface: leave OSSENSOR_NETWORK_DEVICE unset to capture every interface, and set \
                         NETWORK_DEVICE_ANY=1 to also capture interfaces that appear later"
                            .to_string(),
                    );
                } else if dev != "default" && !valid_ifname(dev) {
                    bad.push(format!("\"{}\" is not a valid interface name (1 to 15 bytes, no '/' or ':')", dev.escape_debug()));
                } else if !explicit.iter().any(|d| d == dev) {
                    explicit.push(dev.to_string());
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(Refused(bad))
            }
        },
        text: |c| c.devices.explicit.join(","),
        summary: Summary::Or("devices", "(all)"),
        accepted: "interface names separated by commas and/or whitespace; `default` = the default route's interface; duplicates ignored",
        refused: "a name that Linux could not have (empty, over 15 bytes, `.`, `..`, containing `/` or `:`); `any` (use \
                  `NETWORK_DEVICE_ANY=1` instead). A listed interface that does not exist at start stops start-up naming it (see \
                  \"Interfaces\")",
    },
    Variable {
        name: "NETWORK_DEVICE_INCLUDELIST",
        old_name: Some("NETWORK_DEVICE_WHITELIST"),
        reference: true,
        key: Key::Patterns("whitelist_device"),
        old_key: None,
        unset: Unset::Nothing("empty"),
        secret: false,
        set: |v, c| {
            c.devices.include = patterns(v)?;
            Ok(())
        },
        text: |c| pattern_list(&c.devices.include),
        summary: Summary::Quoted("include"),
        accepted: "whitespace-separated patterns (dialect below)",
        refused: "a pattern outside the dialect; the message names the pattern and why",
    },
    Variable {
        name: "NETWORK_DEVICE_EXCLUDELIST",
        old_name: Some("NETWORK_DEVICE_BLACKLIST"),
        reference: true,
        key: Key::Patterns("blacklist_pattern"),
        old_key: Some(Key::Patterns("blacklist_device")),
        unset: Unset::Nothing("empty"),
        secret: false,
        set: |v, c| {
            c.devices.exclude = patterns(v)?;
            Ok(())
        },
        text: |c| pattern_list(&c.devices.exclude),
        summary: Summary::Quoted("exclude"),
        accepted: "whitespace-separated patterns (dialect below)",
        refused: "a pattern outside the dialect; the message names the pattern and why",
    },
    Variable {
        name: "NETWORK_DEVICE_ANY",
        old_name: None,
        reference: true,
        key: Key::Any("device"),
        old_key: None,
        unset: Unset::Value("0"),
        secret: false,
        set: |v, c| {
            c.devices.any = boolean(v, "1 or 0 (true or false also accepted)")?;
            Ok(())
        },
        text: |c| (c.devices.any as u8).to_string(),
        summary: Summary::Text("any"),
        accepted: "`1`, `0`, `true`, `false` (any case)",
        refused: "anything else",
    },
    Variable {
        name: "BPF",
        old_name: None,
        reference: true,
        key: Key::Plain("bpf"),
        old_key: None,
        unset: Unset::Nothing("empty (everything)"),
        secret: false,
        set: |v, c| {
            // One line: line breaks and tabs become spaces.
            let expr: String = v.chars().map(|ch| if ch == '\n' || ch == '\r' || ch == '\t' { ' ' } else { ch }).collect();
            c.bpf = expr.trim().to_string();
            match ossensor_libpcap::compile(&c.bpf, 1) {
                Ok(_) => Ok(()),
                Err(e) => Err(format!("is not a valid capture filter: {e}").into()),
            }
        },
        text: |c| c.bpf.clone(),
        summary: Summary::Quoted("bpf"),
        accepted: "a tcpdump-syntax filter that libpcap compiles for Ethernet",
        refused: "`BPF=\"…\": is not a valid capture filter: <libpcap's message>`",
    },
    Variable {
        name: "OSSENSOR_DEBUG",
        old_name: None,
        reference: true,
        key: Key::Plain("Debug"),
        old_key: None,
        unset: Unset::Value("1"),
        secret: false,
        set: |v, c| {
            c.debug = number(v, 0, 5, "a log level")? as u8;
            Ok(())
        },
        text: |c| c.debug.to_string(),
        summary: Summary::Text("debug"),
        accepted: "0–5 (levels below)",
        refused: "`must be a log level from 0 to 5`",
    },
    Variable {
        name: "OSSENSOR_LOGFILE_PATH",
        old_name: None,
        reference: true,
        key: Key::Plain("logfile"),
        old_key: None,
        unset: Unset::Nothing("standard output"),
        secret: false,
        set: |v, c| {
            c.logfile = Some(path(v, false)?).filter(|p| p != Path::new("/dev/stdout"));
            Ok(())
        },
        text: |c| c.logfile.as_ref().map_or("/dev/stdout".to_string(), |p| p.display().to_string()),
        summary: Summary::With("logfile", |c| c.logfile.as_ref().map_or("stdout".to_string(), |p| p.display().to_string())),
        accepted: "a file path; `/dev/stdout` means standard output",
        refused: "surrounding whitespace, control characters",
    },
    Variable {
        name: "ANTIGENA_ENABLED",
        old_name: None,
        reference: true,
        key: Key::Plain("useAntigena"),
        old_key: None,
        unset: Unset::Value("true"),
        secret: false,
        set: |v, c| {
            c.antigena_enabled = boolean(v, "true or false (any case), or 1 or 0")?;
            Ok(())
        },
        text: |c| c.antigena_enabled.to_string(),
        summary: Summary::Text("antigena"),
        accepted: "`true`, `false` (any case), `1`, `0`",
        refused: "anything else (`yes`, `on`, `2`): `must be true or false (any case), or 1 or 0`",
    },
    Variable {
        name: "ANTIGENA_TIME_PERIOD",
        old_name: None,
        reference: true,
        key: Key::Plain("sendAntigenaActionDelta"),
        old_key: None,
        unset: Unset::Value("5"),
        secret: false,
        set: |v, c| {
            c.antigena_period_secs = number(v, 1, u32::MAX as u64, "a whole number of seconds")? as u32;
            Ok(())
        },
        text: |c| c.antigena_period_secs.to_string(),
        summary: Summary::Unit("antigena_period", "s"),
        accepted: "whole seconds, 1–4294967295",
        refused: "`0`, negative, fractions, words: `must be a whole number of seconds …`",
    },
    Variable {
        name: "OSSENSOR_SPOOL_MB",
        old_name: None,
        reference: false,
        key: Key::Plain("spoolMB"),
        old_key: None,
        unset: Unset::Value("64"),
        secret: false,
        set: |v, c| {
            c.spool_bytes = number(v, 1, 65536, "a size in MiB")? * MIB;
            Ok(())
        },
        text: |c| (c.spool_bytes / MIB).to_string(),
        summary: Summary::Unit("spool", "MiB"),
        accepted: "1–65536 (MiB): chunks kept while the collector is unreachable",
        refused: "`must be a size in MiB from 1 to 65536`",
    },
    Variable {
        name: "OSSENSOR_COMPRESSION",
        old_name: None,
        reference: false,
        key: Key::Plain("compression"),
        old_key: None,
        unset: Unset::Value("zstd"),
        secret: false,
        set: |v, c| match parse_compression(v) {
            Some(level) => {
                c.compression = level;
                Ok(())
            }
            None => Err("must be zstd, zstd:LEVEL with LEVEL from -7 to -1 or 1 to 19, or none".into()),
        },
        text: |c| compression_name(c.compression),
        summary: Summary::Text("compression"),
        accepted: "`zstd` (level -3, chosen by measurement: see docs/benchmarks.md), `zstd:N` with N from -7 to -1 (fast levels) or 1 to 19, \
                   `none` (any case; costs more CPU than zstd: twice the bytes to hash, encrypt and send)",
        refused: "`must be zstd, zstd:LEVEL with LEVEL from -7 to -1 or 1 to 19, or none`",
    },
    Variable {
        name: "OSSENSOR_CAPTURE_BUFFER_MB",
        old_name: None,
        reference: false,
        key: Key::Plain("captureBufferMB"),
        old_key: None,
        unset: Unset::Value("64"),
        secret: false,
        set: |v, c| {
            c.ring_bytes = number(v, 2, 2048, "a size in MiB")? * MIB;
            Ok(())
        },
        text: |c| (c.ring_bytes / MIB).to_string(),
        summary: Summary::Unit("capture_buffer", "MiB"),
        accepted: "2–2048 (MiB) of kernel ring per interface; the interface's two capture handles (received, sent) get half each (the \
                   default is what tcpdump -B 65536 uses, and holds a burst of GSO frames at 7 Gbit/s without loss)",
        refused: "`must be a size in MiB from 2 to 2048`",
    },
    Variable {
        name: "OSSENSOR_CAPTURE_BUDGET_MB",
        old_name: None,
        reference: false,
        key: Key::Plain("captureBudgetMB"),
        old_key: None,
        unset: Unset::Value("512"),
        secret: false,
        set: |v, c| {
            c.ring_budget_bytes = number(v, 2, 1 << 20, "a size in MiB")? * MIB;
            Ok(())
        },
        text: |c| (c.ring_budget_bytes / MIB).to_string(),
        summary: Summary::Unit("capture_budget", "MiB"),
        accepted: "2–1048576 (MiB): kernel ring memory for all interfaces together. A new interface's worker gets \
                   `OSSENSOR_CAPTURE_BUFFER_MB`, or an equal share of what running workers leave of the budget if that is smaller, but at \
                   least 2 MiB: at most the budget plus 2 MiB per interface in all (a node with hundreds of veths)",
        refused: "`must be a size in MiB from 2 to 1048576`",
    },
    Variable {
        name: "OSSENSOR_USER",
        old_name: None,
        reference: false,
        key: Key::Plain("user"),
        old_key: None,
        unset: Unset::Nothing("the `ossensor` system user if it exists (the packages create it), else uid and gid 65534 (nobody)"),
        secret: false,
        set: |v, c| {
            let t = v.trim();
            c.user = Some(t.to_string());
            if !valid_user(t) {
                return Err("must be a user name ([a-z_][a-z0-9_-]*, at most 32 characters) or a numeric uid".into());
            }
            Ok(())
        },
        text: |c| c.user.clone().unwrap_or_default(),
        summary: Summary::Or("user", "(default)"),
        accepted: "user name matching `[a-z_][a-z0-9_-]*` (at most 32) or a numeric uid (not 4294967295): the user the children run as",
        refused: "anything else (`Root`, `1abc`, `a b`); at start (exit status 2), a user that does not exist or is root: `OSSENSOR_USER=\"…\": \
                  no such user` / `the children must not run as root`",
    },
    Variable {
        name: "OSSENSOR_RUNTIME_DIR",
        old_name: None,
        reference: false,
        key: Key::Plain("runtimeDir"),
        old_key: None,
        unset: Unset::Value(DEFAULT_RUNTIME_DIR),
        secret: false,
        set: |v, c| {
            c.runtime_dir = path(v, true)?;
            Ok(())
        },
        text: |c| c.runtime_dir.display().to_string(),
        summary: Summary::Text("runtime_dir"),
        accepted: "an absolute path (made 0700 and given to the children's user; nothing is kept there now that the workers and the \
                   uplink are connected by socket pairs)",
        refused: "a relative path, surrounding whitespace",
    },
    Variable {
        name: "OSSENSOR_STATE_DIR",
        old_name: None,
        reference: false,
        key: Key::Plain("stateDir"),
        old_key: None,
        unset: Unset::Value(DEFAULT_STATE_DIR),
        secret: false,
        set: |v, c| {
            c.state_dir = path(v, true)?;
            Ok(())
        },
        text: |c| c.state_dir.display().to_string(),
        summary: Summary::Text("state_dir"),
        accepted: "an absolute path: what the sensor keeps across restarts, the collector's action key pinned at the first registration \
                   (`action-key`, 0600). Not writable (a read-only container): the key is pinned until the sensor stops, and that is \
                   logged",
        refused: "a relative path, surrounding whitespace; a damaged `action-key` file stops the start (exit 1) naming the file",
    },
    Variable {
        name: "OSSENSOR_ACTION_KEY",
        old_name: None,
        reference: false,
        key: Key::Plain("actionKey"),
        old_key: None,
        unset: Unset::Nothing("unset: the key the first registration names is pinned"),
        secret: false,
        set: |v, c| match PublicKey::parse(v) {
            Ok(k) => {
                c.action_key = Some(k);
                Ok(())
            }
            Err(e) => Err(format!("{e}; the collector prints its key at start (vsensor action key)").into()),
        },
        text: |c| c.action_key.map(|k| k.to_string()).unwrap_or_default(),
        summary: Summary::Or("action_key", "(first registration)"),
        accepted: "`ed25519:` and 64 hex digits (or the digits alone): the collector's action key (`vsensor action key` prints it), \
                   pinned from the first start; response actions signed with any other key are refused",
        refused: "anything else: `is not an Ed25519 public key …` or `is N bytes long …`",
    },
    Variable {
        name: "VSENSOR_CA_FILE",
        old_name: None,
        reference: false,
        key: Key::Plain("caFile"),
        old_key: None,
        unset: Unset::Nothing("unset: the collector is trusted once it proves the key (see docs/protocol.md)"),
        secret: false,
        set: |v, c| {
            let p = path(v, false)?;
            let check =
                std::fs::metadata(&p).and_then(|m| if m.is_dir() { Err(std::io::Error::other("is a directory")) } else { std::fs::File::open(&p).map(drop) });
            c.ca_file = Some(p);
            check.map_err(|e| format!("cannot read the CA file: {e}").into())
        },
        text: |c| c.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        summary: Summary::Or("ca_file", "(none)"),
        accepted: "a readable PEM file: pins the collector's CA",
        refused: "`cannot read the CA file: <reason>` (missing, unreadable, a directory)",
    },
    Variable {
        name: "OSSENSOR_SYSLOG_SOCKET",
        old_name: None,
        reference: false,
        key: Key::Plain("syslogSocket"),
        old_key: None,
        unset: Unset::Nothing("`/dev/log`"),
        secret: false,
        set: |v, c| {
            c.syslog_socket = Some(path(v, true)?);
            Ok(())
        },
        text: |c| c.syslog_socket.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        summary: Summary::Or("syslog", "/dev/log"),
        accepted: "an absolute path to a syslog datagram socket (for example journald's `/run/systemd/journal/dev-log`): where every \
                   process sends its audit events (`operations.md`)",
        refused: "a relative path, control characters, surrounding whitespace; a socket that cannot be reached is not an error (the audit \
                  lines still reach the log)",
    },
    Variable {
        name: "OSSENSOR_METRICS_ADDR",
        old_name: None,
        reference: false,
        key: Key::Plain("metricsAddress"),
        old_key: None,
        unset: Unset::Nothing("unset: off"),
        secret: false,
        set: |v, c| match v.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() != 0 => {
                c.metrics_addr = Some(a);
                Ok(())
            }
            _ => Err("must be an address and a port, like 127.0.0.1:9273 or [::1]:9273".into()),
        },
        text: |c| c.metrics_addr.map(|a| a.to_string()).unwrap_or_default(),
        summary: Summary::Or("metrics", "off"),
        accepted: "`ADDRESS:PORT` (IPv6 in brackets, `[::1]:9273`): where the uplink serves Prometheus metrics on plain HTTP \
                   (`operations.md`)",
        refused: "a host name, a missing port, port 0, surrounding whitespace",
    },
    Variable {
        name: "OSSENSOR_DEDUPLICATE",
        old_name: None,
        reference: false,
        key: Key::Plain("deduplicate"),
        old_key: None,
        unset: Unset::Value("true"),
        secret: false,
        set: |v, c| {
            c.deduplicate = boolean(v, "true or false (any case), or 1 or 0")?;
            Ok(())
        },
        text: |c| c.deduplicate.to_string(),
        summary: Summary::Text("deduplicate"),
        accepted: "`true`, `false` (any case), `1`, `0`",
        refused: "anything else. While more than one interface is captured, a frame seen on several of them (a pod's veth, a bridge, the \
                  uplink after NAT) is delivered once; `false` delivers every copy (`operations.md`, \"Duplicates\")",
    },
    Variable {
        name: "OSSENSOR_CONFIG_PATH",
        old_name: None,
        reference: true,
        key: Key::None,
        old_key: None,
        unset: Unset::Value(DEFAULT_CONFIG_PATH),
        secret: false,
        set: |v, c| {
            c.config_path = path(v, false)?;
            if v.ends_with('/') {
                return Err("must name a file, not a directory".into());
            }
            Ok(())
        },
        text: |c| c.config_path.display().to_string(),
        summary: Summary::Text("config_path"),
        accepted: "a file path (relative paths are relative to the working directory)",
        refused: "ending in `/`, surrounding whitespace, control characters; failure to write it stops start-up: \
                  `OSSENSOR_CONFIG_PATH=\"…\": cannot write the generated config file: …`",
    },
];

/// The declaration of `name` (a current name, not an old one).
pub fn variable(name: &str) -> Option<&'static Variable> {
    VARIABLES.iter().find(|v| v.name == name)
}

/// Every name the sensor reads, old names included.
pub fn names() -> impl Iterator<Item = &'static str> {
    VARIABLES.iter().flat_map(|v| std::iter::once(v.name).chain(v.old_name))
}

// ---------------------------------------------------------------------------
// docs/configuration.md

/// The markdown table of the reference sensor's variables (`reference`) or
/// of this sensor's extensions, as docs/configuration.md shows it between
/// its `generated` markers.
pub fn doc_table(reference: bool) -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| variable | default | accepted | refused with | config file key |\n|---|---|---|---|---|\n");
    for var in VARIABLES.iter().filter(|v| v.reference == reference) {
        let mut name = format!("`{}`", var.name);
        if let Some(old) = var.old_name {
            name.push_str(&format!(" (old name `{old}`: read only when `{}` is unset or empty; its errors then name `{old}`)", var.name));
        }
        let default = match var.unset {
            Unset::Required(_) => "**required**".to_string(),
            Unset::Value(v) => format!("`{v}`"),
            Unset::Derived(doc, _) | Unset::Nothing(doc) => doc.to_string(),
        };
        let mut accepted = var.accepted.to_string();
        if var.secret {
            accepted.push_str("; secret: never shown in errors or logs (`<redacted>` in the summary)");
        }
        let describe = |key: Key| match key {
            Key::None => "none (with `-c FILE`, FILE)".to_string(),
            Key::Plain(k) | Key::Devices(k) => format!("`{k}`"),
            Key::Patterns(k) => format!("`{k}` (comma-separated)"),
            Key::Host(k) => format!("`{k}` (`HOST:PORT`)"),
            Key::Port(k) => format!("`{k}` (`HOST:PORT`)"),
            Key::Any(k) => format!("`{k}` (`,any`)"),
        };
        let mut key = describe(var.key);
        if let Some(old) = var.old_key {
            key.push_str(&format!("; in older files, {}", describe(old)));
        }
        out.push_str(&format!("| {} | {} | {} | {} | {} |\n", cell(&name), cell(&default), cell(&accepted), cell(var.refused), cell(&key)));
    }
    out
}

// ---------------------------------------------------------------------------
// The validated configuration

/// The HMAC key. Debug and Display print `<redacted>`; use [`Secret::expose`]
/// where the key is really needed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One interface-name pattern: the user's POSIX ERE text and the compiled
/// regex it was translated to (see [`ere`]). Equal when the text is.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Self, String> {
        Ok(Pattern { source: source.to_string(), regex: ere::compile(source)? })
    }
    /// The text as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }
    /// Like `grep -E`: true if the pattern matches anywhere in the name.
    pub fn is_match(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

/// Which interfaces to capture (applied by [`crate::interfaces::select`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceRules {
    /// OSSENSOR_NETWORK_DEVICE in order, without duplicates; may contain
    /// `default` (the default route's interface). Empty: every interface.
    pub explicit: Vec<String>,
    /// NETWORK_DEVICE_INCLUDELIST (or _WHITELIST): if non-empty, only names
    /// matching one of these are captured.
    pub include: Vec<Pattern>,
    /// NETWORK_DEVICE_EXCLUDELIST (or _BLACKLIST): names matching any of
    /// these are never captured; wins over everything else.
    pub exclude: Vec<Pattern>,
    /// NETWORK_DEVICE_ANY=1: also capture interfaces that appear later.
    pub any: bool,
}

/// The validated configuration (stage 2). Field docs name the variable;
/// [`VARIABLES`] says how each is read. `Default` is the blank state
/// validation starts from, not a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    /// VSENSOR_HOSTNAME.
    pub collector_host: String,
    /// VSENSOR_PORT, default 443.
    pub collector_port: u16,
    /// VSENSOR_HMAC_KEY.
    pub hmac_key: Secret,
    /// OSSENSOR_NETWORK_DEVICE, the include/exclude lists, NETWORK_DEVICE_ANY.
    pub devices: DeviceRules,
    /// OSSENSOR_CONFIG_PATH (with `-c FILE`: FILE).
    pub config_path: PathBuf,
    /// OSSENSOR_DEBUG, 0..=5, default 1.
    pub debug: u8,
    /// OSSENSOR_LOGFILE_PATH; None = standard output.
    pub logfile: Option<PathBuf>,
    /// ANTIGENA_ENABLED, default true.
    pub antigena_enabled: bool,
    /// ANTIGENA_TIME_PERIOD, default 5.
    pub antigena_period_secs: u32,
    /// BPF (may be empty), line breaks and tabs turned into spaces.
    pub bpf: String,
    /// OSSENSOR_SENSOR_ID, default derived from the host name.
    pub sensor_id: String,
    /// OSSENSOR_SPOOL_MB in bytes.
    pub spool_bytes: u64,
    /// OSSENSOR_COMPRESSION: zstd level, None = uncompressed.
    pub compression: Option<i32>,
    /// OSSENSOR_CAPTURE_BUDGET_MB in bytes: kernel ring memory for all
    /// interfaces together.
    pub ring_budget_bytes: u64,
    /// OSSENSOR_CAPTURE_BUFFER_MB in bytes, per interface.
    pub ring_bytes: u64,
    /// OSSENSOR_USER: name or numeric uid the children run as.
    pub user: Option<String>,
    /// OSSENSOR_RUNTIME_DIR, default /run/ossensor.
    pub runtime_dir: PathBuf,
    /// VSENSOR_CA_FILE.
    pub ca_file: Option<PathBuf>,
    /// OSSENSOR_SYSLOG_SOCKET: where audit events go; None = /dev/log.
    pub syslog_socket: Option<PathBuf>,
    /// OSSENSOR_DEDUPLICATE: keep one copy of a frame seen on several
    /// interfaces.
    pub deduplicate: bool,
    /// OSSENSOR_METRICS_ADDR: where the uplink serves Prometheus metrics;
    /// None = no metrics endpoint.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// OSSENSOR_STATE_DIR, default /var/lib/ossensor: what the sensor keeps
    /// across restarts (the pinned action key).
    pub state_dir: PathBuf,
    /// OSSENSOR_ACTION_KEY: the collector's action key, pinned from the
    /// first start; None = pinned at the first registration.
    pub action_key: Option<PublicKey>,
}

impl Config {
    /// The resolved configuration on one line for the level-0 log, the key
    /// shown as `<redacted>`.
    pub fn redacted_summary(&self) -> String {
        let mut parts = Vec::new();
        for var in VARIABLES {
            let text = || if var.secret { "<redacted>".to_string() } else { (var.text)(self) };
            parts.push(match var.summary {
                Summary::Hidden => continue,
                Summary::Text(label) => format!("{label}={}", text()),
                Summary::Quoted(label) => format!("{label}={:?}", text()),
                Summary::Unit(label, unit) => format!("{label}={}{unit}", text()),
                Summary::Or(label, unset) => format!("{label}={}", Some(text()).filter(|t| !t.is_empty()).as_deref().unwrap_or(unset)),
                Summary::With(label, show) => format!("{label}={}", show(self)),
            });
        }
        parts.join(" ")
    }
}

// ---------------------------------------------------------------------------
// The checks the declarations use

/// An unsigned integer in `lo..=hi` (surrounding whitespace ignored).
fn number(v: &str, lo: u64, hi: u64, what: &str) -> Result<u64, String> {
    let t = v.trim();
    match t.parse::<u64>() {
        Ok(n) if t.bytes().all(|b| b.is_ascii_digit()) && (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("must be {what} from {lo} to {hi}")),
    }
}

/// true/false (any case) or 1/0; else `must be {also}`.
fn boolean(v: &str, also: &str) -> Result<bool, String> {
    parse_bool(v).ok_or_else(|| format!("must be {also}"))
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// A path: no surrounding whitespace (env files keep it verbatim, and a
/// trailing space would silently name another file).
fn path(v: &str, must_be_absolute: bool) -> Result<PathBuf, String> {
    if v.trim() != v {
        return Err("must not begin or end with whitespace (env files keep values verbatim)".into());
    }
    if v.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if must_be_absolute && !v.starts_with('/') {
        return Err("must be an absolute path".into());
    }
    Ok(PathBuf::from(v))
}

/// A whitespace-separated pattern list; each bad pattern is one problem.
fn patterns(v: &str) -> Result<Vec<Pattern>, Refused> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for p in v.split_whitespace() {
        match Pattern::new(p) {
            Ok(_) if ere::has_top_level_comma(p) => bad.push(format!(
                "pattern \"{}\": a ',' outside [] or {{}} cannot be written to the config file's comma-separated list; write [,] instead",
                p.escape_debug()
            )),
            Ok(pat) => out.push(pat),
            Err(e) => bad.push(format!("pattern \"{}\": {e}", p.escape_debug())),
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(Refused(bad))
    }
}

/// The patterns as the variable's text: whitespace-separated.
fn pattern_list(v: &[Pattern]) -> String {
    v.iter().map(Pattern::as_str).collect::<Vec<_>>().join(" ")
}

/// `zstd` → Some(Some(DEFAULT_ZSTD_LEVEL)), `zstd:N` → Some(Some(N)) for
/// the fast levels -7..=-1 and the regular 1..=19, `none` → Some(None).
pub(crate) fn parse_compression(v: &str) -> Option<Option<i32>> {
    let t = v.trim().to_ascii_lowercase();
    if t == "none" {
        return Some(None);
    }
    if t == "zstd" {
        return Some(Some(DEFAULT_ZSTD_LEVEL));
    }
    let n = t.strip_prefix("zstd:")?;
    let digits = n.strip_prefix('-').unwrap_or(n);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match n.parse::<i32>() {
        Ok(l) if (-7..=-1).contains(&l) || (1..=19).contains(&l) => Some(Some(l)),
        _ => None,
    }
}

pub(crate) fn compression_name(c: Option<i32>) -> String {
    match c {
        None => "none".into(),
        Some(l) => format!("zstd:{l}"),
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty() && h.len() <= 253 && !h.starts_with(['-', '.']) && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// Linux's `dev_valid_name`: 1..=15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace.
pub fn valid_ifname(n: &str) -> bool {
    !n.is_empty() && n.len() < 16 && n != "." && n != ".." && !n.chars().any(|ch| ch == '/' || ch == ':' || ch.is_whitespace() || ch == '\0')
}

fn valid_user(u: &str) -> bool {
    if !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()) {
        // (uid_t)-1 means "no change" to setuid; refuse it.
        return matches!(u.parse::<u32>(), Ok(n) if n != u32::MAX);
    }
    let mut b = u.bytes();
    matches!(b.next(), Some(b'a'..=b'z' | b'_')) && u.len() <= 32 && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ours() {
        let all: Vec<&str> = names().collect();
        for (i, n) in all.iter().enumerate() {
            assert!(!all[..i].contains(n), "{n} is declared twice");
            assert!(["VSENSOR_", "OSSENSOR_", "ANTIGENA_", "NETWORK_DEVICE_", "BPF"].iter().any(|p| n.starts_with(p)), "{n}");
        }
    }

    /// A default given as a value passes its own check: what the docs say
    /// the default is, is what an unset variable means.
    #[test]
    fn every_default_passes_its_check() {
        for var in VARIABLES {
            let text = match var.unset {
                Unset::Value(t) => t.to_string(),
                Unset::Derived(_, f) => f(),
                Unset::Required(_) | Unset::Nothing(_) => continue,
            };
            assert_eq!((var.set)(&text, &mut Config::default()), Ok(()), "{}={text:?}", var.name);
        }
    }

    /// The text of a value reads back to the same value.
    #[test]
    fn text_reads_back() {
        for var in VARIABLES {
            let mut c = Config::default();
            let text = match var.unset {
                Unset::Value(t) => t.to_string(),
                Unset::Derived(_, f) => f(),
                _ => continue,
            };
            (var.set)(&text, &mut c).unwrap();
            let mut again = Config::default();
            (var.set)(&(var.text)(&c), &mut again).unwrap();
            assert_eq!(again, c, "{}", var.name);
        }
    }

    #[test]
    fn keys_write_and_read_their_part() {
        let mut out = String::new();
        Key::Host("vSensor").write("c.example", &mut out);
        Key::Port("vSensor").write("443", &mut out);
        assert_eq!(out, "c.example:443");
        assert_eq!(Key::Host("vSensor").read("c.example:443").as_deref(), Some("c.example"));
        assert_eq!(Key::Port("vSensor").read("c.example:443").as_deref(), Some("443"));
        assert_eq!(Key::Port("vSensor").read("c.example"), None);
        let mut out = String::new();
        Key::Any("device").write("1", &mut out);
        assert_eq!(out, "any");
        let mut out = "eth0".to_string();
        Key::Any("device").write("1", &mut out);
        assert_eq!(out, "eth0,any");
        assert_eq!(Key::Devices("device").read(" eth0, any,eth1").as_deref(), Some("eth0,eth1"));
        assert_eq!(Key::Any("device").read(" eth0, any,eth1").as_deref(), Some("1"));
        assert_eq!(Key::Any("device").read("eth0").as_deref(), Some("0"));
        let mut out = String::new();
        Key::Patterns("p").write("^a  [,]b", &mut out);
        assert_eq!(out, "^a,[,]b");
        assert_eq!(Key::Patterns("p").read("^a,[,]b").as_deref(), Some("^a [,]b"));
    }
}
