//! The real programs under test: the collector (`vsensor`) and the sensor
//! (`ossensor` with its children), each started inside a namespace with a
//! log file, plus readers for what the collector stored.

use crate::capture::{parse_pcapng, Frame};
use crate::netns::Netns;
use crate::process::{spawn_logged, ProcessGuard};
use crate::{bin, Error, Result};
use ossensor_shared::telemetry::{self, UplinkSnapshot, WorkerSnapshot};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const KEY: &str = "integration-test-key-0123456789";

/// A running collector listening on the namespace's loopback.
pub struct Collector {
    pub guard: ProcessGuard,
    pub port: u16,
    pub data_dir: PathBuf,
    ns_name: String,
    log: PathBuf,
    restarts: u32,
}

fn collector_command(ns: &Netns, data_dir: &Path, listen: &str) -> Command {
    let mut cmd = ns.exec(bin("vsensor").to_str().expect("utf-8 path"));
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("VSENSOR_HMAC_KEY", KEY)
        .env("VSENSOR_LISTEN", listen)
        .env("VSENSOR_DATA_DIR", data_dir)
        .env("VSENSOR_DEBUG", "2");
    cmd
}

impl Collector {
    /// Starts `vsensor` on 127.0.0.1 (a port the kernel picks) in `ns`.
    pub fn start(ns: &Netns, dir: &Path) -> Result<Collector> {
        Collector::start_on(ns, dir, "127.0.0.1")
    }

    /// Starts `vsensor` on `ip` (a port the kernel picks) in `ns`.
    pub fn start_on(ns: &Netns, dir: &Path, ip: &str) -> Result<Collector> {
        let data_dir = dir.join("collector-data");
        let log = dir.join("vsensor.log");
        let mut guard = spawn_logged(&mut collector_command(ns, &data_dir, &format!("{ip}:0")), &log)?;
        let line = guard.wait_for_line("vsensor: listening on ", Duration::from_secs(20))?;
        let port = line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).ok_or_else(|| Error::new(format!("no port in {line:?}")))?;
        Ok(Collector { guard, port, data_dir, ns_name: ns.name().to_string(), log, restarts: 0 })
    }

    /// Stops with SIGTERM (must exit 0) and starts again on the same port
    /// and data directory.
    pub fn restart(&mut self, ns: &Netns, down_for: Duration) -> Result<()> {
        self.restart_with(ns, down_for, |_| Ok(()))
    }

    /// As [`Collector::restart`], with a new self-signed certificate (the
    /// old one deleted while the collector is down).
    pub fn restart_with_new_certificate(&mut self, ns: &Netns, down_for: Duration) -> Result<()> {
        self.restart_with(ns, down_for, |data| {
            for f in ["tls/cert.pem", "tls/key.pem"] {
                std::fs::remove_file(data.join(f)).map_err(|e| Error::new(format!("{f}: {e}")))?;
            }
            Ok(())
        })
    }

    fn restart_with(&mut self, ns: &Netns, down_for: Duration, while_down: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        assert_eq!(ns.name(), self.ns_name);
        let st = self.guard.stop(libc::SIGTERM)?;
        if !st.success() {
            return Err(Error::new(format!("collector exited with {st} on SIGTERM:\n{}", self.guard.log())));
        }
        while_down(&self.data_dir)?;
        std::thread::sleep(down_for);
        self.restarts += 1;
        let log = self.log.with_extension(format!("{}.log", self.restarts));
        let mut guard = spawn_logged(&mut collector_command(ns, &self.data_dir, &format!("127.0.0.1:{}", self.port)), &log)?;
        guard.wait_for_line("vsensor: listening on ", Duration::from_secs(20))?;
        self.guard = guard;
        Ok(())
    }

    /// Every pcapng file the collector wrote, sorted by name.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let sensors = self.data_dir.join("sensors");
        for sensor in std::fs::read_dir(&sensors).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(sensor.path()).into_iter().flatten().flatten() {
                if f.path().extension().is_some_and(|e| e == "pcapng") {
                    files.push(f.path());
                }
            }
        }
        files.sort();
        files
    }

    /// Every frame the collector stored, read with the harness's own reader.
    pub fn frames(&self) -> Result<Vec<Frame>> {
        self.frames_of(None)
    }

    /// The frames stored from one sensor (`Some(id)`) or from all.
    pub fn frames_of(&self, sensor: Option<&str>) -> Result<Vec<Frame>> {
        let mut all = Vec::new();
        for f in self.files().into_iter().filter(|f| sensor.is_none_or(|s| f.parent().and_then(|p| p.file_name()).is_some_and(|n| n == s))) {
            let bytes = std::fs::read(&f).map_err(|e| Error::new(format!("{}: {e}", f.display())))?;
            all.extend(parse_pcapng(&bytes).map_err(|e| Error::new(format!("{}: {e}", f.display())))?);
        }
        Ok(all)
    }
}

/// A running `ossensor` supervisor.
pub struct Sensor {
    pub guard: ProcessGuard,
    pub config_path: PathBuf,
    pub runtime_dir: PathBuf,
}

/// The environment a test sensor needs besides what the test sets.
pub fn base_env(collector: &Collector, dir: &Path) -> Vec<(String, String)> {
    [
        ("VSENSOR_HOSTNAME", "127.0.0.1".to_string()),
        ("VSENSOR_PORT", collector.port.to_string()),
        ("VSENSOR_HMAC_KEY", KEY.to_string()),
        ("OSSENSOR_CONFIG_PATH", dir.join("ossensor.cfg").display().to_string()),
        ("OSSENSOR_RUNTIME_DIR", dir.join("run").display().to_string()),
        // Each test's own pinned action key (its own collector's).
        ("OSSENSOR_STATE_DIR", dir.join("state").display().to_string()),
        ("OSSENSOR_DEBUG", "2".to_string()),
        ("OSSENSOR_SENSOR_ID", "test-sensor".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The supervisor command inside `ns` with exactly `env` (nothing inherited).
pub fn sensor_command(ns: &Netns, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = ns.exec(bin("ossensor").to_str().expect("utf-8 path"));
    cmd.args(args).env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Sensor {
    /// Starts `ossensor` and waits until every interface in `interfaces`
    /// has its filter attached and the uplink registered.
    pub fn start(ns: &Netns, dir: &Path, env: &[(String, String)], interfaces: &[&str]) -> Result<Sensor> {
        // The children run as an unprivileged uid: it must reach the runtime
        // directory under the test's private temporary directory.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| Error::new(e.to_string()))?;
        let log = dir.join("ossensor.log");
        let mut guard = spawn_logged(&mut sensor_command(ns, env, &[]), &log)?;
        guard.wait_for_line("registered with the collector", Duration::from_secs(30))?;
        for i in interfaces {
            wait_for_worker_ready(&mut guard, i)?;
        }
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| PathBuf::from(v)).unwrap_or_default();
        Ok(Sensor { guard, config_path: get("OSSENSOR_CONFIG_PATH"), runtime_dir: get("OSSENSOR_RUNTIME_DIR") })
    }

    /// Stops with SIGTERM; the supervisor must exit 0.
    pub fn stop(&mut self) -> Result<()> {
        let st = self.guard.stop_timeout(libc::SIGTERM, Duration::from_secs(20))?;
        if !st.success() {
            return Err(Error::new(format!("ossensor exited with {st} on SIGTERM:\n{}", self.guard.log())));
        }
        Ok(())
    }

    /// The filter the sensor ended up with, as the uplink logs it at
    /// registration (a quoted string).
    pub fn effective_filter(&self) -> String {
        const MARK: &str = "effective filter: ";
        let log = self.guard.log();
        let line = log.lines().find(|l| l.contains(MARK)).expect("a registration line in the sensor's log");
        let quoted = &line[line.find(MARK).expect("marker") + MARK.len()..];
        serde_json::from_str(quoted.trim()).expect("the filter is logged as a quoted string")
    }

    /// The pid of the live child whose start line matches `what`
    /// ("uplink" or "capture-worker for IF"): the last one started.
    pub fn child_pid(&self, what: &str) -> Option<i32> {
        let needle = format!("started {what} (pid ");
        self.guard.log().lines().rev().find_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            rest.split(')').next()?.parse().ok()
        })
    }
}

/// Waits until the worker of `interface` logs that its filter is attached.
pub fn wait_for_worker_ready(guard: &mut ProcessGuard, interface: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = guard.log();
        if log.lines().any(|l| l.contains(&format!("capture-worker[{interface}]")) && l.contains("filter attached")) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::new(format!("capture-worker for {interface} never attached its filter:\n{log}")));
        }
        if let Some(st) = guard.try_wait() {
            return Err(Error::new(format!("ossensor exited with {st} while starting:\n{log}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A capture-worker's last statistics, from the JSON snapshot it logs as
/// it stops (`telemetry::WorkerSnapshot`): the packets its rings got from
/// the kernel, those the kernel dropped (a ring full), and those it
/// forwarded to the uplink.
pub fn worker_final_stats(log: &str, interface: &str) -> Option<(u64, u64, u64)> {
    let s: WorkerSnapshot = telemetry::last_json(log, |w: &WorkerSnapshot| w.process == "capture-worker" && w.interface == interface && w.stopping)?;
    Some((s.capture.received, s.capture.dropped_kernel, s.capture.forwarded))
}

/// The uplink's packet accounting, as its JSON snapshots say
/// (`telemetry::UplinkSnapshot`, level 1 every 10 s and once at exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkAccounting {
    pub captured: u64,
    pub delivered: u64,
    pub spool_full: u64,
    pub refused: u64,
    pub at_exit: u64,
    pub held: u64,
    pub held_chunks: u64,
    pub held_kib: u64,
}

/// Every uplink snapshot in a sensor's log, oldest first.
pub fn uplink_snapshots(log: &str) -> Vec<UplinkSnapshot> {
    log.lines()
        .filter_map(|l| l.find(telemetry::JSON_MARK).map(|i| &l[i + telemetry::JSON_MARK.len()..]))
        .filter_map(|j| serde_json::from_str::<UplinkSnapshot>(j).ok())
        .filter(|s| s.process == "uplink")
        .collect()
}

/// Every accounting the uplink logged, oldest first.
pub fn uplink_accounting(log: &str) -> Vec<UplinkAccounting> {
    uplink_snapshots(log)
        .iter()
        .map(|s| {
            let a = s.accounting;
            UplinkAccounting {
                captured: a.captured,
                delivered: a.delivered,
                spool_full: a.dropped_spool_full,
                refused: a.dropped_refused,
                at_exit: a.dropped_at_exit,
                held: s.held,
                held_chunks: s.spool_chunks,
                held_kib: s.spool_bytes / 1024,
            }
        })
        .collect()
}

/// The uplink's last accounting (at exit, once the sensor stopped).
pub fn last_uplink_accounting(log: &str) -> UplinkAccounting {
    *uplink_accounting(log).last().unwrap_or_else(|| panic!("no accounting in the sensor's log:\n{log}"))
}

/// The audit events in a log or a syslog stream, each as its fields
/// (`event`, `process`, and the event's own; docs/operations.md).
pub fn audit_events(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    text.lines().filter_map(|l| l.split_once("ossensor-audit ").map(|(_, rest)| audit_fields(rest))).collect()
}

/// `key=value key="quoted value" …`; quoted values as Rust's `{:?}` writes them.
fn audit_fields(mut rest: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    while let Some((key, after)) = rest.trim_start().split_once('=') {
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut end = 0;
            let mut escaped = false;
            for (i, c) in q.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let quoted = &after[..end + 2];
            (serde_json::from_str::<String>(quoted).unwrap_or_else(|_| quoted.to_string()), &after[end + 2..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.insert(key.trim().to_string(), value);
        rest = next;
    }
    out
}

/// Parses a sensor's Prometheus text strictly: every line a comment (`# HELP`/`# TYPE`)
/// or `name{labels} value`; every sample's family declared with a TYPE.
/// Returns "name{labels}" → value.
pub fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut typed = std::collections::BTreeSet::new();
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let (name, kind) = (p.next().unwrap(), p.next().unwrap());
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            assert!(kind != "counter" || name.ends_with("_total"), "counters end in _total: {line}");
            assert!(typed.insert(name.to_string()), "family declared twice: {name}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && name.starts_with("ossensor_"), "{line}");
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        }
        out.insert(series.to_string(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}")));
    }
    out
}

/// Scrapes `url` with curl inside `ns` and parses it strictly
/// ([`parse_metrics`]).
pub fn scrape_metrics(ns: &Netns, url: &str) -> std::collections::BTreeMap<String, f64> {
    let body = crate::curl_http(ns, url).unwrap_or_else(|e| panic!("scraping {url}: {e}"));
    parse_metrics(&String::from_utf8(body).expect("metrics are UTF-8"))
}
