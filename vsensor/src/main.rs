//! `vsensor`: read the configuration, start logging, bind, serve until
//! SIGTERM/SIGINT. Exit 2 on bad configuration, 1 on a runtime error.

use ossensor_host::log;
use ossensor_host::log::AuditSeverity;
use ossensor_shared::VERSION;
use std::process::ExitCode;
use vsensor::action_cli::CliError;
use vsensor::config::{Invocation, RawConfig, TlsSource, HELP};
use vsensor::{tls, Collector};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = |k: &str| std::env::var(k).ok();
    match args.first().map(String::as_str) {
        Some("action") => return command("vsensor action", vsensor::action_cli::run(&args[1..], env)),
        Some("operator") => return command("vsensor operator", vsensor::operator_cli::run(&args[1..], env)),
        _ => {}
    }
    let raw = match RawConfig::from_process() {
        Ok(Invocation::Run(raw)) => raw,
        Ok(Invocation::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("vsensor {VERSION}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vsensor: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match raw.validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vsensor: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = log::init("vsensor", config.debug, config.logfile.as_deref(), log::Audit::Syslog) {
        eprintln!("vsensor: VSENSOR_LOGFILE_PATH: cannot open {:?}: {e}", config.logfile.as_deref().unwrap_or(""));
        return ExitCode::from(2);
    }
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            log!(log::BASIC, "error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!(log::BASIC, "error: {e}");
            eprintln!("vsensor: {e}");
            ExitCode::from(1)
        }
    }
}

/// A subcommand's outcome: 0 done, 1 failed, 2 usage error.
fn command(name: &str, outcome: Result<String, CliError>) -> ExitCode {
    match outcome {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(m)) => {
            eprint!("{name}: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(m)) => {
            eprintln!("{name}: {m}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: vsensor::config::Config) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    log!(
        log::BASIC,
        "vsensor {VERSION} starting: listen {}, data dir {}, rotate at {} MiB or {} s, retention {} MiB, debug level {}",
        config.listen,
        config.data_dir.display(),
        config.rotate_bytes >> 20,
        config.rotate_seconds,
        config.retention_bytes >> 20,
        config.debug
    );
    // Handlers first, so a signal right after the ready line is not lost.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;

    let cfg = config.clone();
    let collector = tokio::task::spawn_blocking(move || Collector::open(&cfg)).await.map_err(|e| e.to_string())??;
    let id = collector.tls_identity();
    let fp = tls::fingerprint(&id.cert_sha256);
    match &config.tls {
        TlsSource::SelfSigned { sans } => log!(
            log::BASIC,
            "certificate {} ({}self-signed, names {}), SHA-256 fingerprint {fp}",
            id.cert_path.display(),
            if id.generated { "new, " } else { "" },
            sans.join(",")
        ),
        TlsSource::Files { .. } => log!(log::BASIC, "certificate {}, SHA-256 fingerprint {fp}", id.cert_path.display()),
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {} (VSENSOR_LISTEN): {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let operators = match config.operator_listen {
        None => None,
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| format!("cannot listen on {a} (VSENSOR_OPERATOR_LISTEN): {e}"))?),
    };
    let operator_addr = match &operators {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    collector.write_operator_file(operator_addr.unwrap_or(addr))?;
    let listen = addr.to_string();
    let operator_listen = operator_addr.map(|a| a.to_string());
    let mut fields = vec![("version", VERSION), ("listen", &listen)];
    if let Some(o) = &operator_listen {
        fields.push(("operator_listen", o));
    }
    let data_dir = config.data_dir.display().to_string();
    fields.extend([("data_dir", data_dir.as_str()), ("cert_sha256", fp.as_str())]);
    log::audit(AuditSeverity::Notice, "start", &fields);
    if let Some(o) = operator_addr {
        log!(log::BASIC, "vsensor: operators' API (/status, /metrics, /v1/operator/*) on {o} only");
    }
    log!(log::BASIC, "vsensor: listening on {addr}");

    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log!(log::BASIC, "{name}: stopping; finishing requests in flight");
    };
    collector.run_listeners(listener, operators, shutdown).await.map_err(|e| format!("while closing files: {e}"))?;
    log!(log::BASIC, "stopped; every file closed and synced");
    Ok(())
}

/// Every connection is a file descriptor: allow as many as the hard limit
/// does (often 1024 soft against 500k hard), so thousands of idle or slow
/// clients cannot starve the sensors' connections.
fn raise_open_files_limit() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
