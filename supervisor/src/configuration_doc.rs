//! docs/configuration.md shows what the code renders: the variables tables
//! ([`crate::variables::doc_table`]) and the example of the generated file
//! ([`crate::cfgfile::render`]) between `generated` markers. The test fails
//! with a diff when the file differs; `UPDATE_CONFIG_DOC=1` rewrites it.

use crate::cfgfile::{self, AtStart};
use crate::config::{validate, RawConfig};
use crate::variables::doc_table;

/// The generated parts, by marker name.
fn generated() -> Vec<(&'static str, String)> {
    let cfg = validate(&RawConfig::from_vars([
        ("VSENSOR_HOSTNAME", "collector.example"),
        ("VSENSOR_HMAC_KEY", "…"),
        ("NETWORK_DEVICE_INCLUDELIST", "^eth"),
        ("NETWORK_DEVICE_EXCLUDELIST", "^veth"),
        ("NETWORK_DEVICE_ANY", "1"),
        ("BPF", "not port 80"),
        ("OSSENSOR_SENSOR_ID", "node1"),
    ]))
    .unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (selected, excluded) = (names(&["eth0", "eth1"]), names(&["veth1234", "veth5678"]));
    let example = format!("```\n{}```\n", cfgfile::render(&cfg, &AtStart { selected: &selected, excluded: &excluded }));
    vec![("reference", doc_table(true)), ("extensions", doc_table(false)), ("example", example)]
}

/// `text` with every generated part as the code renders it now.
fn as_rendered(text: &str) -> String {
    let mut text = text.to_string();
    for (which, part) in generated() {
        let (begin, end) = (format!("<!-- generated: {which} (supervisor/src) -->\n"), format!("<!-- end of generated: {which} -->\n"));
        let from = text.find(&begin).unwrap_or_else(|| panic!("docs/configuration.md has no line {begin:?}")) + begin.len();
        let to = from + text[from..].find(&end).unwrap_or_else(|| panic!("docs/configuration.md has no line {end:?}"));
        text.replace_range(from..to, &part);
    }
    text
}

/// A line diff (longest common subsequence) of two short texts.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        }
    }
    out
}

#[test]
fn docs_configuration_md_shows_what_the_code_renders() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let want = as_rendered(&text);
    if text == want {
        return;
    }
    if std::env::var_os("UPDATE_CONFIG_DOC").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    panic!(
        "docs/configuration.md differs from what supervisor/src renders (- the file, + the code):\n{}\n\
         Regenerate its generated parts with:\n    UPDATE_CONFIG_DOC=1 cargo test -p ossensor-supervisor configuration_doc\n",
        diff(&text, &want)
    );
}

#[test]
fn the_diff_shows_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\nd\n"), "-b\n+x\n+d\n");
    assert_eq!(diff("same\n", "same\n"), "");
}
