//! The generated INI config file (`ossensor -c FILE`) from arbitrary text:
//! parsing never panics, and whatever parses also validates or is refused
//! with an error (never a panic).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_supervisor::{cfgfile, config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = cfgfile::parse(text) {
        let raw = config::RawConfig::from_vars(parsed.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let _ = config::validate(&raw);
    }
});
