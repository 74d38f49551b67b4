//! Server-side filtering of collections (`?filter=`, extension `api_filtering`): clauses of the
//! form `field eq value` / `field ne value`, joined by `and` / `or` (left to right, `not` prefix),
//! evaluated against the JSON of each object as LXD does. Config keys contain dots, so
//! `config.image.os` looks up the key `image.os` inside `config`.

use serde_json::Value;

use crate::error::{ApiError, Result};

#[derive(Debug, Clone, PartialEq)]
struct Clause {
    not: bool,
    field: String,
    eq: bool,
    value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Clauses with the operator joining each to the previous one (`true` = and).
    clauses: Vec<(bool, Clause)>,
}

fn tokens(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(ApiError::bad_request("Invalid filter: unbalanced quotes"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

impl Filter {
    pub fn parse(s: &str) -> Result<Option<Filter>> {
        let t = tokens(s)?;
        if t.is_empty() {
            return Ok(None);
        }
        let bad = || ApiError::bad_request(format!("Invalid filter \"{s}\""));
        let mut clauses = Vec::new();
        let mut i = 0;
        let mut join_and = true;
        while i < t.len() {
            let mut not = false;
            if t[i].eq_ignore_ascii_case("not") {
                not = true;
                i += 1;
            }
            if i + 3 > t.len() {
                return Err(bad());
            }
            let field = t[i].clone();
            let eq = match t[i + 1].to_ascii_lowercase().as_str() {
                "eq" => true,
                "ne" => false,
                _ => return Err(bad()),
            };
            let value = t[i + 2].clone();
            clauses.push((
                join_and,
                Clause {
                    not,
                    field,
                    eq,
                    value,
                },
            ));
            i += 3;
            if i < t.len() {
                join_and = match t[i].to_ascii_lowercase().as_str() {
                    "and" => true,
                    "or" => false,
                    _ => return Err(bad()),
                };
                i += 1;
                if i >= t.len() {
                    return Err(bad());
                }
            }
        }
        Ok(Some(Filter { clauses }))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let mut result = true;
        for (i, (and, c)) in self.clauses.iter().enumerate() {
            let v = lookup(obj, &c.field).map(value_str);
            let hit = match v {
                Some(v) => (v.eq_ignore_ascii_case(&c.value)) == c.eq,
                None => !c.eq,
            } != c.not;
            result = if i == 0 {
                hit
            } else if *and {
                result && hit
            } else {
                result || hit
            };
        }
        result
    }
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(obj);
    }
    let map = obj.as_object()?;
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    // Keys match case-insensitively, as Go's JSON field matching does.
    if let Some((_, v)) = map.iter().find(|(k, _)| k.eq_ignore_ascii_case(path)) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    let next = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(head))
        .map(|(_, v)| v)?;
    lookup(next, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_like_lxd() {
        let obj = json!({"name": "c1", "status": "Running", "config": {"image.os": "busybox"}});
        let f = |s: &str| Filter::parse(s).unwrap().unwrap();
        assert!(f("name eq c1").matches(&obj));
        assert!(!f("name eq c2").matches(&obj));
        assert!(f("name ne c2").matches(&obj));
        assert!(f("status eq running").matches(&obj));
        assert!(f("config.image.os eq busybox and name eq c1").matches(&obj));
        assert!(f("name eq x or name eq c1").matches(&obj));
        assert!(f("not name eq x").matches(&obj));
        assert!(f("name eq 'c1'").matches(&obj));
        assert!(Filter::parse("").unwrap().is_none());
        assert!(Filter::parse("name eq").is_err());
        assert!(Filter::parse("name like c1").is_err());
        assert!(Filter::parse("name eq c1 and").is_err());
    }
}
