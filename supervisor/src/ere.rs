//! The interface-name patterns: POSIX ERE as `grep -E` reads it, translated
//! to the `regex` crate's syntax. Where the two disagree we translate when
//! the meaning is certain and refuse with a message otherwise — a pattern
//! never silently means something else.
//!
//! Accepted: literals, `.`, anchors `^` `$`, `|`, groups `( )`, `*` `+` `?`,
//! intervals `{n}` `{n,}` `{n,m}` and `{,m}` (= `{0,m}`), bracket
//! expressions with ranges and `[:class:]` (backslash inside brackets is a
//! literal backslash, as in POSIX), escapes of special characters (`\.`,
//! `\*`, ...), and GNU's `\b \B \w \W \s \S \< \>`.
//!
//! Refused: back-references `\1`..`\9`; other backslash escapes such as
//! `\d` (grep reads it as `d`); `(?...)` flags; `*`, `+`, `?` or an
//! interval with nothing before it (undefined in POSIX: GNU grep -E drops
//! the operator with a warning, so `*eth` means `eth` there, and glibc's
//! regcomp, as in `sed -E`, refuses it); a `{` that does not open a valid
//! interval (grep takes it literally; write `\{`); `[. .]` and `[= =]`; unknown classes; reversed
//! ranges; unmatched `[`; a trailing backslash; anything else the regex
//! engine rejects (unbalanced parentheses, too large a repetition).

const CLASSES: &[&str] = &["alpha", "digit", "alnum", "upper", "lower", "space", "blank", "punct", "print", "graph", "cntrl", "xdigit"];

/// Translates and compiles.
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    let translated = translate(pattern)?;
    regex::RegexBuilder::new(&translated).size_limit(1 << 20).build().map_err(|e| format!("not accepted by the regex engine: {}", first_line(&e.to_string())))
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line with a caret diagram; keep the gist.
    s.lines().filter(|l| l.starts_with("error:")).map(|l| l.trim_start_matches("error: ")).next().unwrap_or(s).to_string()
}

enum Item {
    Char(char),
    Class(String),
}

/// Parses a bracket expression whose `[` is at `chars[start]`; returns
/// (negated, items, index after the closing `]`).
fn bracket(chars: &[char], start: usize) -> Result<(bool, Vec<Item>, usize), String> {
    let mut j = start + 1;
    let negated = chars.get(j) == Some(&'^');
    if negated {
        j += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(j) else {
            return Err("unmatched '['".into());
        };
        if c == ']' && !first {
            return Ok((negated, items, j + 1));
        }
        first = false;
        if c == '[' && matches!(chars.get(j + 1), Some(':' | '.' | '=')) {
            let kind = chars[j + 1];
            if kind != ':' {
                return Err(format!("collating elements [{kind} {kind}] and equivalence classes are not supported"));
            }
            let rest: String = chars[j + 2..].iter().collect();
            let Some(end) = rest.find(":]") else {
                return Err("unterminated [: :] class".into());
            };
            let name = &rest[..end];
            if !CLASSES.contains(&name) {
                return Err(format!("unknown character class [:{name}:]"));
            }
            items.push(Item::Class(name.to_string()));
            j += 2 + name.chars().count() + 2;
            continue;
        }
        items.push(Item::Char(c));
        j += 1;
    }
}

fn class_char(c: char) -> String {
    if c.is_ascii_punctuation() && c != '<' && c != '>' {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// POSIX ERE → `regex` syntax, or why the pattern is refused.
pub fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    // True where a repetition operator would have nothing to repeat.
    let mut at_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    return Err("ends with a backslash".into());
                };
                match n {
                    '1'..='9' => return Err(format!("back-reference \\{n} is not supported (the regex engine has none)")),
                    'b' | 'B' | 'w' | 'W' | 's' | 'S' | '<' | '>' => {
                        out.push('\\');
                        out.push(n)
                    }
                    '.' | '[' | ']' | '(' | ')' | '*' | '+' | '?' | '{' | '}' | '|' | '^' | '$' | '\\' => {
                        out.push('\\');
                        out.push(n)
                    }
                    _ => {
                        return Err(format!(
                            "\\{n} is not POSIX ERE (grep -E reads it as a plain '{n}', other engines differently); \
                             write the character alone or use a bracket expression such as [0-9]"
                        ))
                    }
                }
                at_start = false;
                i += 2;
            }
            '[' => {
                let (negated, items, end) = bracket(&chars, i)?;
                out.push('[');
                if negated {
                    out.push('^');
                }
                let mut k = 0;
                while k < items.len() {
                    let is_range = matches!(items.get(k + 1), Some(Item::Char('-'))) && k + 2 < items.len();
                    match (&items[k], is_range) {
                        (Item::Char(a), true) => {
                            let Item::Char(b) = &items[k + 2] else {
                                return Err("a range cannot end with a [: :] class".into());
                            };
                            if a > b {
                                return Err(format!("invalid range {a}-{b} (its end comes before its start)"));
                            }
                            out.push_str(&class_char(*a));
                            out.push('-');
                            out.push_str(&class_char(*b));
                            k += 3;
                        }
                        (Item::Class(_), true) => return Err("a range cannot start with a [: :] class".into()),
                        (Item::Char(a), false) => {
                            out.push_str(&class_char(*a));
                            k += 1;
                        }
                        (Item::Class(name), false) => {
                            out.push_str(&format!("[:{name}:]"));
                            k += 1;
                        }
                    }
                }
                out.push(']');
                at_start = false;
                i = end;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    return Err("(?...) groups and flags such as (?i) are not POSIX ERE".into());
                }
                out.push('(');
                at_start = true;
                i += 1;
            }
            '|' | '^' => {
                out.push(c);
                at_start = true;
                i += 1;
            }
            '*' | '+' | '?' => {
                if at_start {
                    return Err(format!(
                        "'{c}' has nothing to repeat here (POSIX leaves it undefined: GNU grep -E drops it, other tools refuse it); \
                             write \\{c} for a literal '{c}', or leave it out"
                    ));
                }
                out.push(c);
                i += 1;
            }
            '{' => {
                let rest: String = chars[i + 1..].iter().collect();
                let interval = rest.find('}').map(|e| &rest[..e]).filter(|body| {
                    let (a, b) = body.split_once(',').unwrap_or((body, "x"));
                    let digits = |s: &str| !s.is_empty() && s.bytes().all(|d| d.is_ascii_digit());
                    (digits(a) && (b == "x" || b.is_empty() || digits(b))) || (a.is_empty() && digits(b))
                });
                let Some(body) = interval else {
                    return Err("'{' does not open an interval {n}, {n,}, {n,m} or {,m}; write \\{ for a literal brace".into());
                };
                if at_start {
                    return Err("an interval {...} has nothing to repeat here (POSIX leaves it undefined: GNU grep -E drops it, other tools \
                                refuse it); write \\{ for a literal brace, or leave it out"
                        .into());
                }
                if let Some((a, b)) = body.split_once(',') {
                    if let (Ok(x), Ok(y)) = (a.parse::<u32>(), b.parse::<u32>()) {
                        if x > y {
                            return Err(format!("invalid interval {{{body}}}: {x} is more than {y}"));
                        }
                    }
                }
                out.push('{');
                if body.starts_with(',') {
                    out.push('0');
                }
                out.push_str(body);
                out.push('}');
                i += 1 + body.chars().count() + 1;
            }
            '}' => {
                out.push_str("\\}");
                at_start = false;
                i += 1;
            }
            _ => {
                out.push(c);
                at_start = false;
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Byte offsets of the commas that separate patterns in a
/// comma-separated list: those outside `[...]`, `{...}` and escapes.
fn separators(s: &str) -> Vec<usize> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let plain: Vec<char> = chars.iter().map(|&(_, c)| c).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < plain.len() {
        match plain[i] {
            '\\' => i += 2,
            '[' => i = bracket(&plain, i).map(|(_, _, end)| end).unwrap_or(plain.len()),
            '{' => i = plain[i..].iter().position(|&c| c == '}').map_or(plain.len(), |e| i + e + 1),
            ',' => {
                out.push(chars[i].0);
                i += 1
            }
            _ => i += 1,
        }
    }
    out
}

/// True if a single pattern has a comma that would split it in a
/// comma-separated list.
pub fn has_top_level_comma(pattern: &str) -> bool {
    !separators(pattern).is_empty()
}

/// Splits a comma-separated pattern list (the config file's form);
/// empty pieces are dropped.
pub fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    for at in separators(s).into_iter().chain(std::iter::once(s.len())) {
        if at > from {
            out.push(s[from..at].to_string());
        }
        from = at + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What GNU grep 3.8 -E does with an operator that has nothing to
    /// repeat (`printf 'eth\n' | grep -E '*eth'` prints `eth` and warns
    /// "* at start of expression"): it drops it; glibc's regcomp (sed -E)
    /// refuses it. The message says so, and how to write either meaning.
    #[test]
    fn nothing_to_repeat_says_what_grep_does() {
        for (p, op) in [("*eth", '*'), ("a|+b", '+'), ("(+x)", '+'), ("^*x", '*'), ("?x", '?')] {
            let e = translate(p).unwrap_err();
            assert!(e.contains(&format!("'{op}' has nothing to repeat")), "{p}: {e}");
            assert!(e.contains("GNU grep -E drops it") && e.contains(&format!("write \\{op} for a literal '{op}'")), "{p}: {e}");
            assert!(!e.contains("literally"), "{p}: {e}");
        }
    }

    #[test]
    fn split_list_respects_brackets_and_intervals() {
        assert_eq!(split_list("a,b{1,2},[,],\\,x"), ["a", "b{1,2}", "[,]", "\\,x"]);
        assert_eq!(split_list(",,a,"), ["a"]);
        assert!(split_list("").is_empty());
        assert!(has_top_level_comma("a,b") && !has_top_level_comma("[,]{1,2}"));
    }
}
