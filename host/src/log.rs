//! The log every process of the sensor writes, with the spec's levels 0..5,
//! to standard output or to OSSENSOR_LOGFILE_PATH, plus the syslog audit
//! trail for hardened hosts.
//!
//! Each line is written with one `write(2)` on a file opened with O_APPEND, so
//! the lines of the supervisor, the workers and the uplink interleave whole.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, OnceLock};

/// Level 0: version, resolved configuration, interfaces, filter, errors.
pub const BASIC: u8 = 0;
/// Level 1: periodic capture and response-action statistics.
pub const STATS: u8 = 1;
/// Level 2: each send and the collector's answer.
pub const SENDS: u8 = 2;
/// Level 3: response-action details.
pub const ACTIONS: u8 = 3;
/// Level 4: a summary of each chunk.
pub const CHUNKS: u8 = 4;
/// Level 5: every packet as hex.
pub const PACKETS: u8 = 5;

struct Logger {
    level: u8,
    process: String,
    sink: Mutex<Sink>,
    audit: Mutex<Option<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>>,
}

enum Sink {
    Stdout,
    File(File),
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Where audit events go besides the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit<'a> {
    Off,
    /// The system's syslog socket (/dev/log).
    Syslog,
    /// A syslog socket at this path (OSSENSOR_SYSLOG_SOCKET).
    SyslogAt(&'a str),
}

/// Sets up this process's log. `path` of None, "", "-" or "/dev/stdout"
/// means standard output. Call once, early; later calls are ignored. An
/// unreachable syslog socket is not an error: audit lines still reach the log.
pub fn init(process: &str, level: u8, path: Option<&str>, audit: Audit<'_>) -> std::io::Result<()> {
    let sink = match path {
        None | Some("") | Some("-") | Some("/dev/stdout") => Sink::Stdout,
        Some(p) => Sink::File(OpenOptions::new().create(true).append(true).mode(0o640).open(p)?),
    };
    let formatter = syslog::Formatter3164 { facility: syslog::Facility::LOG_AUTHPRIV, hostname: None, process: "ossensor".into(), pid: std::process::id() };
    let audit = match audit {
        Audit::Off => None,
        Audit::Syslog => syslog::unix(formatter).ok(),
        Audit::SyslogAt(p) => syslog::unix_custom(formatter, p).ok(),
    };
    let _ = LOGGER.set(Logger { level, process: process.to_string(), sink: Mutex::new(sink), audit: Mutex::new(audit) });
    Ok(())
}

/// The configured level (1, the spec's default, before `init`).
pub fn level() -> u8 {
    LOGGER.get().map_or(1, |l| l.level)
}

pub fn enabled(level: u8) -> bool {
    level <= self::level()
}

/// Writes one line if `level` is enabled. Use the [`crate::log!`] macro.
pub fn write_line(level: u8, msg: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let process = LOGGER.get().map_or("ossensor", |l| l.process.as_str());
    let line = format!("{} {}[{}] L{}: {}\n", ossensor_shared::timefmt::rfc3339_millis(crate::clock::now_ns()), process, std::process::id(), level, msg);
    match LOGGER.get() {
        Some(l) => {
            let mut sink = l.sink.lock().unwrap_or_else(|e| e.into_inner());
            let _ = match &mut *sink {
                Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
                Sink::File(f) => f.write_all(line.as_bytes()),
            };
        }
        None => {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    }
}

/// `log!(level, "format", args…)`
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write_line($level, format_args!($($arg)*));
        }
    };
}

/// Severity of an audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditSeverity {
    Notice,
    Warning,
}

/// Records a security-relevant event in syslog (facility authpriv) and in
/// the log at level 0. The message format is stable and documented in
/// docs/operations.md: `ossensor-audit event=NAME key=value ...`, values with
/// spaces quoted. Never pass the key.
pub fn audit(severity: AuditSeverity, event: &str, fields: &[(&str, &str)]) {
    let mut msg = format!("ossensor-audit event={event} process={}", LOGGER.get().map_or("ossensor", |l| l.process.as_str()));
    for (k, v) in fields {
        if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=') {
            msg.push_str(&format!(" {k}={v:?}"));
        } else {
            msg.push_str(&format!(" {k}={v}"));
        }
    }
    write_line(BASIC, format_args!("{msg}"));
    if let Some(l) = LOGGER.get() {
        let mut audit = l.audit.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = audit.as_mut() {
            let _ = match severity {
                AuditSeverity::Notice => s.notice(&msg),
                AuditSeverity::Warning => s.warning(&msg),
            };
        }
    }
}

/// Hex dump for level 5, 32 bytes a line.
pub fn hex_lines(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 3);
    for (i, chunk) in data.chunks(32).enumerate() {
        s.push_str(&format!("\n  {:04x}: {}", i * 32, hex_encode_spaced(chunk)));
    }
    s
}

fn hex_encode_spaced(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
}
