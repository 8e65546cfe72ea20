//! `ossensor`: reads and validates the configuration, writes the generated
//! config file, picks the interfaces, then runs the privilege-separated
//! children (one capture-worker per interface, one uplink), restarts any that
//! dies, follows interfaces as they come and go, and stops everything in
//! order on SIGTERM.

use ossensor_host::log;
use ossensor_host::log::{self as slog, audit, AuditSeverity, BASIC};
use ossensor_supervisor::config::{self, Config, ConfigError, RawConfig, Source};
use ossensor_supervisor::privileges::{self, Identity, Role};
use ossensor_supervisor::supervise::Supervisor;
use ossensor_supervisor::{cfgfile, interfaces};
use std::process::ExitCode;

const USAGE: &str = "\
usage: ossensor [--env-file FILE]... | [-c FILE]
Runs the host sensor: one privileged capture-worker per interface and an
unprivileged uplink that forwards the packets to the vSensor collector.
Configuration comes from the environment (see docs/configuration.md);
--env-file reads KEY=VALUE files with Docker's rules (the environment wins);
-c FILE runs from a generated config file (OSSENSOR_CONFIG_PATH's format).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = match config::process_environment() {
        Ok(e) => e,
        Err(e) => return fail(&e.to_string()),
    };
    let raw = match config::gather(&args, &env) {
        Ok(Source::Run(raw)) => raw,
        Ok(Source::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Source::Version) => {
            println!("ossensor {}", ossensor_shared::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e.to_string()),
    };
    let cfg = match config::validate(&raw) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    let log_path = cfg.logfile.as_ref().map(|p| p.display().to_string());
    if let Err(e) = slog::init("supervisor", cfg.debug, log_path.as_deref(), ossensor_host::child::audit_target(&cfg.log())) {
        return fail(&format!("OSSENSOR_LOGFILE_PATH={:?}: {e}", log_path.unwrap_or_default()));
    }
    for w in &raw.warnings {
        log!(BASIC, "warning: {w}");
    }
    match start(&raw, cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!(BASIC, "error: {e}");
            eprintln!("ossensor: {e}");
            ExitCode::from(e.status())
        }
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("ossensor: {msg}");
    ExitCode::from(2)
}

/// Why the sensor stopped: the configuration (exit status 2, nothing was
/// started: the interfaces or the user it names do not work out on this
/// host) or anything else (1).
enum StartError {
    Config(ConfigError),
    Runtime(String),
}

impl StartError {
    fn status(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            StartError::Runtime(_) => 1,
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Runtime(e) => f.write_str(e),
        }
    }
}

impl From<String> for StartError {
    fn from(e: String) -> Self {
        StartError::Runtime(e)
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// Everything that can still refuse the configuration happens here, before
/// any child starts.
fn start(raw: &RawConfig, cfg: Config) -> Result<(), StartError> {
    let from_file = matches!(raw.origin, config::Origin::ConfigFile(_));
    let present = interfaces::list_system().map_err(|e| format!("cannot list network interfaces: {e}"))?;
    let default_if = interfaces::read_default_route_interface();
    let selection = interfaces::select(&cfg.devices, &present, default_if.as_deref()).map_err(|e| e.to_config_error(raw))?;
    let who: Identity = privileges::resolve(cfg.user.as_deref()).map_err(|why| raw.refuse("OSSENSOR_USER", why))?;
    privileges::check_own_capabilities()?;
    // With `-c FILE` the file is the configuration: leave it as it is.
    if !from_file {
        let at_start = cfgfile::AtStart { selected: &selection.chosen, excluded: &selection.exclude_matches };
        cfgfile::write(&cfg.config_path, &cfgfile::render(&cfg, &at_start)).map_err(|e| e.to_string())?;
    }

    log!(BASIC, "ossensor {} starting", ossensor_shared::VERSION);
    log!(BASIC, "configuration: {}", cfg.redacted_summary());
    if from_file {
        log!(BASIC, "running from config file {}", cfg.config_path.display());
    } else {
        log!(BASIC, "generated config file written to {} (mode 0600)", cfg.config_path.display());
    }
    if selection.chosen.is_empty() {
        log!(BASIC, "no interface to capture yet ({}): waiting for one that matches (NETWORK_DEVICE_ANY=1)", selection.explanation.explain(raw));
    } else {
        log!(BASIC, "interfaces: {}", selection.chosen.join(", "));
    }
    log!(BASIC, "BPF: {:?} (the collector adds its own part at registration)", cfg.bpf);
    log!(
        BASIC,
        "children run as uid {} gid {}: capture-workers keep {}, the uplink keeps {}",
        who.uid,
        who.gid,
        Role::CaptureWorker.describe(),
        Role::Uplink.describe()
    );
    audit(
        AuditSeverity::Notice,
        "start",
        &[("version", ossensor_shared::VERSION), ("config", &cfg.redacted_summary()), ("interfaces", &selection.chosen.join(","))],
    );
    ossensor_host::privileges::audit_current();
    let mut sup = Supervisor::new(cfg, who, selection.chosen)?;
    Ok(sup.run()?)
}
