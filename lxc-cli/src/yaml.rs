//! A YAML emitter that writes what Go's yaml.v2 (LXD's `yaml.Marshal`) writes, so that `show`
//! and `--format yaml` output matches LXD byte for byte: block style, sequences under a key
//! not indented, strings that would read back as another type in double quotes, strings that
//! are not valid plain scalars in single quotes, multi-line strings as literal blocks.

use yaml_serde::Value;

/// Emit `v` as a YAML document. `time_plain` prints RFC 3339 timestamps unquoted, as yaml.v2
/// does for Go `time.Time` fields (our API types carry them as strings).
pub fn emit(v: &Value, time_plain: bool) -> String {
    let mut out = String::new();
    let e = Emitter { time_plain };
    match v {
        Value::Mapping(m) if !m.is_empty() => e.mapping(&mut out, m, 0),
        Value::Sequence(s) if !s.is_empty() => e.sequence(&mut out, s, 0),
        other => {
            out.push_str(&e.inline(other, 0));
            out.push('\n');
        }
    }
    out
}

struct Emitter {
    time_plain: bool,
}

impl Emitter {
    fn is_block(v: &Value) -> bool {
        match v {
            Value::Mapping(m) => !m.is_empty(),
            Value::Sequence(s) => !s.is_empty(),
            Value::Tagged(t) => Self::is_block(&t.value),
            _ => false,
        }
    }

    fn mapping(&self, out: &mut String, m: &yaml_serde::Mapping, indent: usize) {
        let pad = " ".repeat(indent);
        for (k, v) in m {
            let key = self.inline(k, indent);
            out.push_str(&pad);
            out.push_str(&key);
            out.push(':');
            match v {
                Value::Null => {
                    // yaml.v2 writes a nil map as {} and a nil slice as []; JSON only says null.
                    out.push(' ');
                    out.push_str(null_for(k.as_str().unwrap_or_default()));
                    out.push('\n');
                }
                Value::Mapping(sub) if !sub.is_empty() => {
                    out.push('\n');
                    self.mapping(out, sub, indent + 2);
                }
                Value::Sequence(seq) if !seq.is_empty() => {
                    out.push('\n');
                    self.sequence(out, seq, indent);
                }
                other => {
                    out.push(' ');
                    out.push_str(&self.inline(other, indent + 2));
                    out.push('\n');
                }
            }
        }
    }

    fn sequence(&self, out: &mut String, s: &[Value], indent: usize) {
        let pad = " ".repeat(indent);
        for item in s {
            out.push_str(&pad);
            out.push_str("- ");
            match item {
                Value::Mapping(m) if !m.is_empty() => {
                    // The first key shares the dash's line; the rest align under it.
                    let mut sub = String::new();
                    self.mapping(&mut sub, m, indent + 2);
                    out.push_str(&sub[indent + 2..]);
                }
                Value::Sequence(inner) if !inner.is_empty() => {
                    let mut sub = String::new();
                    self.sequence(&mut sub, inner, indent + 2);
                    out.push_str(&sub[indent + 2..]);
                }
                other => {
                    out.push_str(&self.inline(other, indent + 2));
                    out.push('\n');
                }
            }
        }
    }

    /// A scalar, or an empty collection, on the current line.
    fn inline(&self, v: &Value, indent: usize) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => self.string(s, indent),
            Value::Mapping(_) => "{}".into(),
            Value::Sequence(_) => "[]".into(),
            Value::Tagged(t) => {
                if Self::is_block(&t.value) {
                    "{}".into()
                } else {
                    self.inline(&t.value, indent)
                }
            }
        }
    }

    fn string(&self, s: &str, indent: usize) -> String {
        if s.contains('\n') && !has_special(s) {
            return literal(s, indent);
        }
        if resolves_to_non_string(s) && !(self.time_plain && is_timestamp(s)) {
            return double_quoted(s);
        }
        match plain_allowed(s) {
            Plain::Yes => s.to_string(),
            Plain::SingleQuoted => format!("'{}'", s.replace('\'', "''")),
            Plain::DoubleQuoted => double_quoted(s),
        }
    }
}

/// How Go prints a null field: the keys below are maps or slices in LXD's structs.
fn null_for(key: &str) -> &'static str {
    const MAPS: &[&str] = &[
        "config",
        "devices",
        "expanded_config",
        "expanded_devices",
        "network",
        "disk",
        "properties",
        "resources",
        "kernel_features",
        "lxc_features",
        "context",
    ];
    const SLICES: &[&str] = &[
        "backups",
        "snapshots",
        "aliases",
        "profiles",
        "used_by",
        "addresses",
        "locations",
        "api_extensions",
        "auth_methods",
        "architectures",
        "storage_supported_drivers",
    ];
    if MAPS.contains(&key) {
        "{}"
    } else if SLICES.contains(&key) {
        "[]"
    } else {
        "null"
    }
}

/// A block literal (`|`, `|-` or `|+`) with content indented under its key.
fn literal(s: &str, indent: usize) -> String {
    let chomp = if !s.ends_with('\n') {
        "-"
    } else if s.ends_with("\n\n") {
        "+"
    } else {
        ""
    };
    let lead = if s.starts_with(' ') { "2" } else { "" };
    let pad = " ".repeat(indent);
    let body = s.strip_suffix('\n').unwrap_or(s);
    let mut out = format!("|{lead}{chomp}");
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    out
}

fn has_special(s: &str) -> bool {
    s.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{feff}')
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What yaml.v2's resolver would read a plain scalar as something other than a string.
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    is_number(s) || is_timestamp(s)
}

fn is_number(s: &str) -> bool {
    let t = s.replace('_', "");
    let t = t.strip_prefix(['+', '-']).unwrap_or(&t);
    if t.is_empty() {
        return false;
    }
    if let Some(h) = t.strip_prefix("0x") {
        return !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(b) = t.strip_prefix("0b") {
        return !b.is_empty() && b.chars().all(|c| c == '0' || c == '1');
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return true;
    }
    // Floats: digits with one dot and/or an exponent.
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mant_ok = {
        let parts: Vec<&str> = mant.split('.').collect();
        match parts.as_slice() {
            [a] => !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()),
            [a, b] => {
                (!a.is_empty() || !b.is_empty())
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit())
            }
            _ => false,
        }
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
        }
    };
    mant_ok && exp_ok && (mant.contains('.') || exp.is_some())
}

/// The timestamp forms yaml.v2 resolves (`2006-1-2T15:4:5.999999999Z07:00`, `2006-1-2`, ...).
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    // Must start with YYYY-M-D.
    let mut i = 0;
    let digits = |i: &mut usize, min: usize, max: usize| -> bool {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < max {
            *i += 1;
        }
        *i - start >= min
    };
    if !digits(&mut i, 4, 4) || i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    if !digits(&mut i, 1, 2) || i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    if !digits(&mut i, 1, 2) {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if !matches!(b[i], b'T' | b't' | b' ') {
        return false;
    }
    s[i + 1..].parse::<jiff::Timestamp>().is_ok()
        || s.parse::<jiff::Timestamp>().is_ok()
        || s[i + 1..]
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ':' | '.' | '+' | '-' | 'Z' | 'z' | ' '))
}

enum Plain {
    Yes,
    SingleQuoted,
    DoubleQuoted,
}

/// libyaml's `yaml_emitter_analyze_scalar`, reduced to the block context.
fn plain_allowed(s: &str) -> Plain {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return Plain::DoubleQuoted;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return Plain::SingleQuoted;
    }
    let mut block_indicators = false;
    let mut special = false;
    let mut leading_space = false;
    let mut trailing_space = false;
    let is_blank = |c: Option<&char>| matches!(c, None | Some(' ') | Some('\t') | Some('\n'));
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1);
        let followed_by_ws = is_blank(next);
        let preceded_by_ws = i == 0 || matches!(chars[i - 1], ' ' | '\t' | '\n');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_ws => block_indicators = true,
                '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if (c.is_control() && c != '\t' && c != '\n') || c == '\u{feff}' {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i == chars.len() - 1 {
                trailing_space = true;
            }
        }
    }
    if special {
        return Plain::DoubleQuoted;
    }
    if leading_space || trailing_space || block_indicators || s.contains('\t') {
        return Plain::SingleQuoted;
    }
    Plain::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(json: serde_json::Value, time_plain: bool) -> String {
        emit(&yaml_serde::to_value(&json).unwrap(), time_plain)
    }

    #[test]
    fn quoting_like_yaml_v2() {
        let v = serde_json::json!({
            "a": "0", "b": "", "c": "[{\"Isuid\":true}]", "d": "BusyBox 1.35.0 static (from the host's busybox-static)",
            "e": "true", "f": "unix://", "g": "/1.0/instances/c1", "h": "tcp:0.0.0.0:8080",
            "i": "- x", "j": "x: y", "k": "1.5", "l": "10.0.0.1/24", "m": "a #b", "nn": " lead",
            "o": "1GB", "p": "2026-11-27T23:20:02.14137336Z", "q": "RUNNING", "r": "*", "s": "yes"
        });
        assert_eq!(
            y(v, false),
            "a: \"0\"\nb: \"\"\nc: '[{\"Isuid\":true}]'\nd: BusyBox 1.35.0 static (from the host's busybox-static)\ne: \"true\"\nf: unix://\ng: /1.0/instances/c1\nh: tcp:0.0.0.0:8080\ni: '- x'\nj: 'x: y'\nk: \"1.5\"\nl: 10.0.0.1/24\nm: 'a #b'\nnn: ' lead'\no: 1GB\np: \"2026-11-27T23:20:02.14137336Z\"\nq: RUNNING\nr: '*'\ns: \"yes\"\n"
        );
    }

    #[test]
    fn timestamps_plain_for_time_fields() {
        let v = serde_json::json!({"created_at": "2026-11-27T23:03:19.327493843Z", "last_used_at": "0001-01-01T00:00:00Z"});
        assert_eq!(
            y(v, true),
            "created_at: 2026-11-27T23:03:19.327493843Z\nlast_used_at: 0001-01-01T00:00:00Z\n"
        );
    }

    #[test]
    fn structure_like_yaml_v2() {
        let v = serde_json::json!({
            "config": {}, "devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
            "profiles": ["default"], "used_by": [], "aliases": [{"description": "", "name": "busybox"}],
            "nested": [["a", "b"], []], "nul": null, "t": true, "num": 42
        });
        assert_eq!(
            y(v, true),
            "aliases:\n- description: \"\"\n  name: busybox\nconfig: {}\ndevices:\n  root:\n    path: /\n    pool: default\n    type: disk\nnested:\n- - a\n  - b\n- []\nnul: null\nnum: 42\nprofiles:\n- default\nt: true\nused_by: []\n"
        );
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let v = serde_json::json!({"raw.lxc": "lxc.a = 1\nlxc.b = 2\n", "x": {"why": "one\ntwo"}});
        assert_eq!(
            y(v, true),
            "raw.lxc: |\n  lxc.a = 1\n  lxc.b = 2\nx:\n  why: |-\n    one\n    two\n"
        );
    }

    #[test]
    fn yaml_v2_booleans_are_quoted() {
        let v = serde_json::json!({"y": "n"});
        assert_eq!(y(v, true), "\"y\": \"n\"\n");
    }

    #[test]
    fn top_level_sequences() {
        let v = serde_json::json!([{"name": "c1", "profiles": ["default"]}]);
        assert_eq!(y(v, true), "- name: c1\n  profiles:\n  - default\n");
    }
}
