//! The collector's module graph is one way: every `crate::` path in a
//! module names a module of a lower layer, as the table in `src/lib.rs`
//! gives them. Read from the sources, so a new import that climbs (or a
//! new module missing from the table) fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module → layer, from the rows `//! | N | [`a`], [`b`] | … |` of lib.rs.
fn layers() -> BTreeMap<String, u32> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else { continue };
        let mut cells = row.split(" | ");
        let Some(Ok(layer)) = cells.next().map(str::parse::<u32>) else { continue };
        for module in cells.next().unwrap().split(", ") {
            let name = module.trim().trim_start_matches("[`").trim_end_matches("`]");
            assert!(layers.insert(name.to_string(), layer).is_none(), "{name} is in two rows");
        }
    }
    assert!(layers.len() > 10, "the table in lib.rs was not found: {layers:?}");
    layers
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules a file names through `crate::`.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        // Not a longer name ending in "crate", nor a macro's `$crate`.
        if text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[i + "crate::".len()..];
        assert!(!rest.starts_with('{'), "write `crate::a::…` paths one by one, not `crate::{{…}}`: {}", &rest[..rest.len().min(60)]);
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        out.push(name);
    }
    out
}

#[test]
fn no_module_uses_one_of_its_own_layer_or_above() {
    let layers = layers();
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut climbs = Vec::new();
    for path in all {
        let rel = path.strip_prefix(src()).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue; // Collector and the binary stand on top of everything.
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("super::super::"), "{}: name a module as crate::…", rel.display());
        let own = *layers.get(&top).unwrap_or_else(|| panic!("{}: module {top} is not in lib.rs's table", rel.display()));
        for used in uses(&text) {
            if used == top {
                continue;
            }
            let theirs = *layers.get(&used).unwrap_or_else(|| panic!("{}: crate::{used} is not in lib.rs's table", rel.display()));
            if theirs >= own {
                climbs.push(format!("{} (layer {own}) uses crate::{used} (layer {theirs})", rel.display()));
            }
        }
    }
    assert!(climbs.is_empty(), "imports against the graph:\n{}", climbs.join("\n"));
}

#[test]
fn the_check_sees_what_it_checks() {
    assert_eq!(uses("use crate::http::Request;\n/// [`crate::state`]\nuse other_crate::x; $crate::y"), ["http", "state"]);
    let layers = layers();
    assert!(layers["router"] > layers["ingest"] && layers["ingest"] == layers["operator"] && layers["http"] > layers["state"]);
}
