//! `vsensor action ...`: the operators' command line for response actions.
//! It calls the running collector's API, reading what it needs from the
//! collector's own environment: `VSENSOR_DATA_DIR` (or `--data-dir`) holds
//! `operator.json` (the local URL and the action token, sent as Bearer) and
//! the certificate to trust (`tls/cert.pem`, or `VSENSOR_TLS_CERT`).

use crate::operator_file::OPERATOR_FILE;
use ossensor_shared::actions::{Endpoint, Target};
use ossensor_shared::control::{ActionView, NewAction, PATH_OPERATOR_ACTIONS};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub const USAGE: &str = "\
usage: vsensor action block --src IP [--sport PORT] --dst IP [--dport PORT] [--proto tcp] --for SECONDS
       vsensor action quarantine --host IP --for SECONDS
       vsensor action cancel ID
       vsensor action list [--json]
       vsensor action key             the public action key sensors pin (OSSENSOR_ACTION_KEY)
options: --data-dir DIR   the collector's data folder (default: VSENSOR_DATA_DIR, else /var/lib/vsensor)
Run on the collector's host, as a user who can read DATA_DIR/operator.json.
";

/// A usage error (exit 2) or a failure (exit 1), with its message.
#[derive(Debug, PartialEq, Eq)]
pub enum CliError {
    Usage(String),
    Failed(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Create(NewAction),
    Cancel(u64),
    List { json: bool },
}

/// A call of the collector's API, or a question this host answers alone.
#[derive(Debug, PartialEq, Eq)]
enum Invocation {
    Api(Command),
    /// Print the public action key.
    Key,
}

/// Runs `vsensor action ARGS...`; returns what to print on stdout.
pub fn run(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<String, CliError> {
    let (invocation, data_dir) = parse(args)?;
    let data_dir =
        data_dir.or_else(|| env("VSENSOR_DATA_DIR").filter(|s| !s.is_empty()).map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("/var/lib/vsensor"));
    let command = match invocation {
        Invocation::Key => return crate::action_key::read_public(&data_dir).map(|k| format!("{k}\n")).map_err(CliError::Failed),
        Invocation::Api(c) => c,
    };
    let op_path = data_dir.join(OPERATOR_FILE);
    /// What this command needs of operator.json.
    #[derive(serde::Deserialize)]
    struct Needed {
        url: String,
        action_token: Option<String>,
    }
    let op: Needed = serde_json::from_slice(
        &std::fs::read(&op_path)
            .map_err(|e| CliError::Failed(format!("cannot read {} (is the collector running with this data folder?): {e}", op_path.display())))?,
    )
    .map_err(|e| CliError::Failed(format!("{}: {e}", op_path.display())))?;
    let action_token = op.action_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        CliError::Failed(format!(
            "{} has no action_token (written by an earlier version): restart the collector, or run `vsensor operator rotate-tokens --action`",
            op_path.display()
        ))
    })?;
    let cert_path = env("VSENSOR_TLS_CERT").filter(|s| !s.is_empty()).map(PathBuf::from).unwrap_or_else(|| data_dir.join("tls/cert.pem"));
    let agent = agent(&cert_path)?;
    let url = format!("{}{PATH_OPERATOR_ACTIONS}", op.url);
    let bearer = format!("Bearer {action_token}");
    let answer = match &command {
        Command::Create(new) => agent
            .post(&url)
            .set("authorization", &bearer)
            .set("content-type", "application/json")
            .send_string(&serde_json::to_string(new).expect("serialisable")),
        Command::Cancel(id) => agent.delete(&format!("{url}/{id}")).set("authorization", &bearer).call(),
        Command::List { .. } => agent.get(&url).set("authorization", &bearer).call(),
    };
    let body = match answer {
        Ok(r) => r.into_string().map_err(|e| CliError::Failed(format!("reading the answer: {e}")))?,
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let reason = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or(text);
            return Err(CliError::Failed(format!("the collector refused: {code} {reason}")));
        }
        Err(e) => return Err(CliError::Failed(format!("cannot reach the collector at {}: {e}", op.url))),
    };
    let bad = |e: serde_json::Error| CliError::Failed(format!("unreadable answer from the collector: {e}"));
    Ok(match command {
        Command::Create(_) => {
            let v: ActionView = serde_json::from_str(&body).map_err(bad)?;
            format!("{}\n", v.id)
        }
        Command::Cancel(id) => {
            let v: serde_json::Value = serde_json::from_str(&body).map_err(bad)?;
            if v["cancelled"].as_bool() == Some(true) {
                format!("action {id} cancelled\n")
            } else {
                format!("action {id} was already over\n")
            }
        }
        Command::List { json: true } => format!("{body}\n"),
        Command::List { json: false } => {
            #[derive(serde::Deserialize)]
            struct List {
                actions: Vec<ActionView>,
            }
            let l: List = serde_json::from_str(&body).map_err(bad)?;
            table(&l.actions)
        }
    })
}

fn table(actions: &[ActionView]) -> String {
    let mut out = format!("{:>5}  {:<9}  {:<24}  {:<44}  {}\n", "ID", "STATE", "UNTIL", "TARGET", "REPORTS (sensor: reset/refused/resets sent/probes)");
    for a in actions {
        let target = match a.target {
            Target::Block { a, b } => format!("block {} <-> {}", endpoint(&a), endpoint(&b)),
            Target::Quarantine { host } => format!("quarantine {host}"),
        };
        let reports = a
            .reports
            .iter()
            .map(|(s, r)| format!("{s}: {}/{}/{}/{}", r.stats.connections_reset, r.stats.connections_refused, r.stats.resets_sent, r.stats.probes_sent))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!("{:>5}  {:<9}  {:<24}  {:<44}  {}\n", a.id, a.state, a.until, target, if reports.is_empty() { "-" } else { &reports }));
    }
    out
}

fn endpoint(e: &Endpoint) -> String {
    match (e.ip, e.port) {
        (IpAddr::V6(ip), Some(p)) => format!("[{ip}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

fn parse(args: &[String]) -> Result<(Invocation, Option<PathBuf>), CliError> {
    let usage = |m: String| CliError::Usage(format!("{m}\n{USAGE}"));
    let mut rest: Vec<&str> = Vec::new();
    let mut opts: Vec<(&str, &str)> = Vec::new();
    let mut json = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--json" {
            json = true;
        } else if let Some(flag) = a.strip_prefix("--") {
            let value = args.get(i + 1).ok_or_else(|| usage(format!("--{flag} needs a value")))?;
            opts.push((a, value.as_str()));
            i += 1;
        } else {
            rest.push(a);
        }
        i += 1;
    }
    let take = |name: &str| opts.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let ip = |name: &str| -> Result<IpAddr, CliError> {
        let v = take(name).ok_or_else(|| usage(format!("{name} is required")))?;
        v.parse().map_err(|_| usage(format!("{name} {v:?} is not an IP address")))
    };
    let port = |name: &str| -> Result<Option<u16>, CliError> {
        match take(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => Err(usage(format!("{name} {v:?} is not a port (1-65535)"))),
            },
        }
    };
    let seconds = || -> Result<u64, CliError> {
        let v = take("--for").ok_or_else(|| usage("--for SECONDS is required".into()))?;
        match v.parse::<u64>() {
            Ok(s) if s > 0 && s <= crate::actions::MAX_SECONDS => Ok(s),
            _ => Err(usage(format!("--for {v:?} must be a number of seconds from 1 to {}", crate::actions::MAX_SECONDS))),
        }
    };
    let allowed: &[&str] = match rest.first().copied() {
        Some("block") => &["--src", "--sport", "--dst", "--dport", "--proto", "--for", "--data-dir"],
        Some("quarantine") => &["--host", "--for", "--data-dir"],
        Some("cancel" | "list" | "key") => &["--data-dir"],
        Some(other) => return Err(usage(format!("unknown action command {other:?}"))),
        None => return Err(usage("an action command is required".into())),
    };
    if let Some((k, _)) = opts.iter().find(|(k, _)| !allowed.contains(k)) {
        return Err(usage(format!("{k} is not an option of `vsensor action {}`", rest[0])));
    }
    let extra = |n: usize| if rest.len() > n { Err(usage(format!("unexpected argument {:?}", rest[n]))) } else { Ok(()) };
    let cmd = match rest[0] {
        "block" => {
            extra(1)?;
            let a = Endpoint { ip: ip("--src")?, port: port("--sport")? };
            let b = Endpoint { ip: ip("--dst")?, port: port("--dport")? };
            let protocol = match take("--proto") {
                None => None,
                Some(p) if p.eq_ignore_ascii_case("tcp") => Some("tcp".to_string()),
                Some(p) => return Err(usage(format!("--proto {p:?}: only tcp connections can be reset"))),
            };
            Command::Create(NewAction { target: Target::Block { a, b }, for_seconds: seconds()?, protocol })
        }
        "quarantine" => {
            extra(1)?;
            Command::Create(NewAction { target: Target::Quarantine { host: ip("--host")? }, for_seconds: seconds()?, protocol: None })
        }
        "cancel" => {
            extra(2)?;
            let id = rest.get(1).ok_or_else(|| usage("cancel needs an action id".into()))?;
            Command::Cancel(id.parse().map_err(|_| usage(format!("action id {id:?} is not a number")))?)
        }
        "key" => {
            extra(1)?;
            return Ok((Invocation::Key, take("--data-dir").map(PathBuf::from)));
        }
        _ => {
            extra(1)?;
            Command::List { json }
        }
    };
    Ok((Invocation::Api(cmd), take("--data-dir").map(PathBuf::from)))
}

/// An HTTPS client that trusts exactly the certificate in `cert_path`.
fn agent(cert_path: &std::path::Path) -> Result<ureq::Agent, CliError> {
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_file(cert_path)
        .map_err(|e| CliError::Failed(format!("cannot read the collector's certificate {}: {e}", cert_path.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(ExactCert { cert: cert.as_ref().to_vec(), provider: provider.clone() });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(ureq::AgentBuilder::new().tls_config(Arc::new(tls)).timeout(Duration::from_secs(15)).build())
}

/// Accepts only one certificate, byte for byte (still checking the
/// handshake signature against it).
#[derive(Debug)]
struct ExactCert {
    cert: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ExactCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the collector's certificate is not the one in its data folder".into()))
        }
    }

    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_parse() {
        let (c, d) = parse(&args("block --src 198.18.0.1 --dst 198.18.0.2 --dport 7000 --for 60 --data-dir /x")).unwrap();
        assert_eq!(d, Some(PathBuf::from("/x")));
        let Invocation::Api(Command::Create(n)) = c else { panic!() };
        assert_eq!(n.for_seconds, 60);
        assert_eq!(
            n.target,
            Target::Block {
                a: Endpoint { ip: "198.18.0.1".parse().unwrap(), port: None },
                b: Endpoint { ip: "198.18.0.2".parse().unwrap(), port: Some(7000) }
            }
        );
        assert_eq!(parse(&args("cancel 12")).unwrap().0, Invocation::Api(Command::Cancel(12)));
        assert_eq!(parse(&args("list --json")).unwrap().0, Invocation::Api(Command::List { json: true }));
        assert!(matches!(parse(&args("quarantine --host 2001:db8::1 --for 5")).unwrap().0, Invocation::Api(Command::Create(_))));
        assert_eq!(parse(&args("key --data-dir /d")).unwrap(), (Invocation::Key, Some(PathBuf::from("/d"))));
    }

    #[test]
    fn bad_commands_name_the_problem() {
        let msg = |s: &str| match parse(&args(s)) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert!(msg("block --src 198.18.0.1 --dst nope --for 5").starts_with("--dst \"nope\" is not an IP address"));
        assert!(msg("block --src 198.18.0.1 --dst 198.18.0.2 --for 0").starts_with("--for \"0\" must be"));
        assert!(msg("block --src 198.18.0.1 --dst 198.18.0.2 --dport 70000 --for 5").starts_with("--dport \"70000\" is not a port"));
        assert!(msg("quarantine --host 198.18.0.1").starts_with("--for SECONDS is required"));
        assert!(msg("quarantine --host 198.18.0.1 --for 5 --sport 3").starts_with("--sport is not an option"));
        assert!(msg("cancel x").starts_with("action id \"x\" is not a number"));
        assert!(msg("block --src 198.18.0.1 --dst 198.18.0.2 --proto udp --for 5").starts_with("--proto \"udp\": only tcp"));
        assert!(msg("explode").starts_with("unknown action command"));
        assert!(msg("").starts_with("an action command is required"));
    }

    #[test]
    fn an_operator_file_without_an_action_token_is_a_clear_failure() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OPERATOR_FILE), r#"{"url":"https://127.0.0.1:1","token":"0123456789abcdef0123456789abcdef"}"#).unwrap();
        let d = dir.path().display().to_string();
        let e = run(&args(&format!("list --data-dir {d}")), |_| None).unwrap_err();
        assert!(matches!(&e, CliError::Failed(m) if m.contains("operator.json") && m.contains("action_token")), "{e:?}");
    }

    #[test]
    fn a_missing_operator_file_is_a_clear_failure() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let e = run(&args(&format!("list --data-dir {d}")), |_| None).unwrap_err();
        assert!(matches!(&e, CliError::Failed(m) if m.contains("operator.json")), "{e:?}");
    }
}
