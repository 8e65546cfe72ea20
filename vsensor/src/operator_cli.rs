//! `vsensor operator rotate-tokens`: replaces the operators' tokens in
//! `DATA_DIR/operator.json`. A running collector refuses the old ones
//! within about a second ([`crate::operator_file::LiveTokens`]); no restart.
//! The new values are not printed: they are in the file, readable by the
//! same users as before (`jq -r .read_token DATA_DIR/operator.json`).

use crate::action_cli::CliError;
use crate::operator_file::{self, Origin, Rotate, OPERATOR_FILE};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: vsensor operator rotate-tokens [--read] [--action] [--data-dir DIR]
  --read           replace the read-only token (status page, metrics, listing actions)
  --action         replace the action token (ordering and cancelling actions; vsensor action)
                   neither: both
  --data-dir DIR   the collector's data folder (default: VSENSOR_DATA_DIR, else /var/lib/vsensor)
Run on the collector's host as root or the collector's user. A running collector uses the
new tokens within about a second. The values are not printed: read them from DATA_DIR/operator.json.
";

/// Runs `vsensor operator ARGS...`; returns what to print on stdout.
pub fn run(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<String, CliError> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        return Ok(USAGE.to_string());
    }
    let (which, data_dir) = parse(args)?;
    let data_dir = data_dir
        .or_else(|| env("VSENSOR_DATA_DIR").filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR));
    let done = operator_file::rotate(&data_dir, which).map_err(CliError::Failed)?;
    let say = |name: &str, o: Origin| match o {
        Origin::Made => Some(format!("new {name} token")),
        Origin::Migrated | Origin::Kept => None,
    };
    let changed: Vec<String> = [say("read", done.read), say("action", done.action)].into_iter().flatten().collect();
    Ok(format!(
        "{}: {}; a running collector refuses the old {} within about a second\n",
        data_dir.join(OPERATOR_FILE).display(),
        changed.join(", "),
        if changed.len() == 1 { "one" } else { "ones" }
    ))
}

fn parse(args: &[String]) -> Result<(Rotate, Option<PathBuf>), CliError> {
    let usage = |m: String| CliError::Usage(format!("{m}\n{USAGE}"));
    let mut command = None;
    let (mut read, mut action, mut data_dir) = (false, false, None);
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--read" {
            read = true;
        } else if a == "--action" {
            action = true;
        } else if a == "--data-dir" {
            i += 1;
            data_dir = Some(args.get(i).ok_or_else(|| usage("--data-dir needs a value".into()))?.clone());
        } else if let Some(v) = a.strip_prefix("--data-dir=") {
            data_dir = Some(v.to_string());
        } else if a.starts_with('-') {
            return Err(usage(format!("unknown option {a:?}")));
        } else if command.is_none() {
            command = Some(a);
        } else {
            return Err(usage(format!("unexpected argument {a:?}")));
        }
        i += 1;
    }
    match command {
        Some("rotate-tokens") => {}
        Some(other) => return Err(usage(format!("unknown operator command {other:?}"))),
        None => return Err(usage("an operator command is required".into())),
    }
    let data_dir = match data_dir {
        Some(d) if d.is_empty() || d.contains('\0') => return Err(usage(format!("--data-dir {d:?} is not a folder name"))),
        d => d.map(PathBuf::from),
    };
    // No flag: both.
    let which = if read || action { Rotate { read, action } } else { Rotate { read: true, action: true } };
    Ok((which, data_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(parse(&args("rotate-tokens")).unwrap(), (Rotate { read: true, action: true }, None));
        assert_eq!(parse(&args("rotate-tokens --read")).unwrap().0, Rotate { read: true, action: false });
        assert_eq!(parse(&args("--action rotate-tokens")).unwrap().0, Rotate { read: false, action: true });
        assert_eq!(parse(&args("rotate-tokens --read --action --data-dir /x")).unwrap(), (Rotate { read: true, action: true }, Some("/x".into())));
        assert_eq!(parse(&args("rotate-tokens --data-dir=/y")).unwrap().1, Some("/y".into()));
    }

    #[test]
    fn usage_errors_name_the_option_and_value() {
        let msg = |s: &str| match parse(&args(s)) {
            Err(CliError::Usage(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert!(msg("rotate-tokens --all").starts_with("unknown option \"--all\""));
        assert!(msg("rotate-tokens --data-dir").starts_with("--data-dir needs a value"));
        assert!(msg("rotate-tokens --data-dir=").starts_with("--data-dir \"\" is not"));
        assert!(msg("rotate-keys").starts_with("unknown operator command \"rotate-keys\""));
        assert!(msg("rotate-tokens now").starts_with("unexpected argument \"now\""));
        assert!(msg("").starts_with("an operator command is required"));
    }

    #[test]
    fn failures_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        match run(&args(&format!("rotate-tokens --data-dir {d}")), |_| None) {
            Err(CliError::Failed(m)) => assert!(m.contains(&format!("{d}/operator.json")), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rotates_in_the_data_dir_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let before = operator_file::open(dir.path(), "https://127.0.0.1:1").unwrap().current();
        let d = dir.path().display().to_string();
        let out = run(&args("rotate-tokens --action"), |k| (k == "VSENSOR_DATA_DIR").then(|| d.clone())).unwrap();
        assert!(!out.contains(&before.read) && !out.contains(&before.action));
        let f: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join(OPERATOR_FILE)).unwrap()).unwrap();
        assert_eq!(f["read_token"], before.read.as_str());
        assert_ne!(f["action_token"], before.action.as_str());
        assert!(!out.contains(f["action_token"].as_str().unwrap()), "the new value is not printed");
    }
}
