//! Parsing of the positional arguments users type: `[remote:]name`, `name/snapshot`,
//! `instance/path/in/instance`, `key=value` and user aliases from config.yml.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("Bad key=value pair: {0}")]
    BadKeyValue(String),
    #[error("Invalid path {0}")]
    InvalidPath(String),
    #[error("Invalid source {0}")]
    InvalidSource(String),
    #[error("Invalid target {0}")]
    InvalidTarget(String),
}

/// `c1/snap0` -> (`c1`, Some(`snap0`)); `c1` -> (`c1`, None).
pub fn split_snapshot(name: &str) -> (&str, Option<&str>) {
    match name.split_once('/') {
        Some((inst, snap)) => (inst, Some(snap)),
        None => (name, None),
    }
}

/// `c1/etc/hosts` -> (`c1`, `/etc/hosts`), the path made absolute and cleaned.
pub fn split_instance_path(spec: &str) -> Option<(&str, String)> {
    let (inst, path) = spec.split_once('/')?;
    if inst.is_empty() {
        return None;
    }
    Some((inst, clean_path(&format!("/{path}"))))
}

/// Go's `path.Clean` for absolute slash-separated paths.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The last element of a slash path ("/" for the root).
pub fn base_name(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/";
    }
    t.rsplit('/').next().unwrap_or(t)
}

/// `key=value` (the value may itself contain `=`).
pub fn key_value(entry: &str) -> Result<(String, String), Error> {
    entry
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Error::BadKeyValue(entry.to_string()))
}

/// Several `key=value` entries into a map.
pub fn key_values(entries: &[String]) -> Result<BTreeMap<String, String>, Error> {
    entries.iter().map(|e| key_value(e)).collect()
}

/// Expand a user alias (config.yml `aliases:`) at the start of the command words, as LXD does:
/// the longest alias whose words prefix the arguments wins; `@ARGS@` takes the remaining
/// arguments, `@ARG1@`.. single ones, else the remaining arguments are appended.
pub fn expand_alias(aliases: &BTreeMap<String, String>, args: &[String]) -> Option<Vec<String>> {
    let first_cmd = args.iter().position(|a| !a.starts_with('-'))?;
    let (flags, words) = args.split_at(first_cmd);
    let mut best: Option<(usize, &String)> = None;
    for (key, target) in aliases {
        let kw: Vec<&str> = key.split_whitespace().collect();
        if kw.is_empty() || kw.len() > words.len() {
            continue;
        }
        if kw.iter().zip(words).all(|(a, b)| *a == b) && best.is_none_or(|(n, _)| kw.len() > n) {
            best = Some((kw.len(), target));
        }
    }
    let (n, target) = best?;
    let rest = &words[n..];
    let mut out: Vec<String> = flags.to_vec();
    let mut used_all = false;
    let mut used = vec![false; rest.len()];
    for tok in target.split_whitespace() {
        if tok == "@ARGS@" {
            out.extend(rest.iter().cloned());
            used_all = true;
        } else if let Some(num) = tok
            .strip_prefix("@ARG")
            .and_then(|t| t.strip_suffix('@'))
            .and_then(|t| t.parse::<usize>().ok())
        {
            if let Some(v) = rest.get(num.wrapping_sub(1)) {
                out.push(v.clone());
                used[num - 1] = true;
            }
        } else {
            out.push(tok.to_string());
        }
    }
    if !used_all {
        out.extend(
            rest.iter()
                .zip(&used)
                .filter(|(_, u)| !**u)
                .map(|(a, _)| a.clone()),
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots() {
        assert_eq!(split_snapshot("c1/snap0"), ("c1", Some("snap0")));
        assert_eq!(split_snapshot("c1"), ("c1", None));
    }

    #[test]
    fn instance_paths() {
        assert_eq!(
            split_instance_path("C01/path/file"),
            Some(("C01", "/path/file".to_string()))
        );
        assert_eq!(
            split_instance_path("C01/tmp/"),
            Some(("C01", "/tmp".to_string()))
        );
        assert_eq!(
            split_instance_path("c1/root/../etc//hosts"),
            Some(("c1", "/etc/hosts".to_string()))
        );
        assert_eq!(split_instance_path("C01"), None);
        assert_eq!(split_instance_path("/etc/hosts"), None);
        assert_eq!(base_name("/etc/hosts"), "hosts");
        assert_eq!(base_name("/tmp/"), "tmp");
        assert_eq!(base_name("/"), "/");
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(
            key_value("limits.cpu=2").unwrap(),
            ("limits.cpu".into(), "2".into())
        );
        assert_eq!(
            key_value("raw.lxc=a=b").unwrap(),
            ("raw.lxc".into(), "a=b".into())
        );
        assert_eq!(
            key_value("nope").unwrap_err().to_string(),
            "Bad key=value pair: nope"
        );
    }

    #[test]
    fn aliases() {
        let mut a = BTreeMap::new();
        a.insert("ls".to_string(), "list -c ns".to_string());
        a.insert("sh".to_string(), "exec @ARGS@ -- sh".to_string());
        let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            expand_alias(&a, &v("--quiet ls c1")).unwrap(),
            v("--quiet list -c ns c1")
        );
        assert_eq!(expand_alias(&a, &v("sh c1")).unwrap(), v("exec c1 -- sh"));
        assert_eq!(expand_alias(&a, &v("list")), None);
    }
}
