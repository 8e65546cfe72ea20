//! Docker `--env-file` parsing of arbitrary bytes: never panics; every
//! accepted key is non-empty and free of spaces and tabs (the only
//! whitespace Docker checks for; a form feed in a name is accepted there too).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_supervisor::envfile;

fuzz_target!(|data: &[u8]| {
    if let Ok(vars) = envfile::parse_bytes(data, |k| (k == "FROM_ENV").then(|| "x".to_string())) {
        for (k, _) in &vars {
            assert!(!k.is_empty() && !k.contains([' ', '\t']), "bad key {k:?}");
        }
    }
});
