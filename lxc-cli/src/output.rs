//! Rendering for the terminal: LXD's tables (tablewriter's ASCII look, reproduced byte for byte),
//! `--format csv|json|yaml|compact`, byte sizes and times printed as LXD prints them.
//! Pure functions returning strings; printing is the caller's business.

use serde::Serialize;
use std::cmp::Ordering;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Invalid format {0:?}")]
    InvalidFormat(String),
    #[error("Failed to encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Failed to encode YAML: {0}")]
    Yaml(#[from] yaml_serde::Error),
}

/// The `--format` of list commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Compact,
    Csv,
    Json,
    Yaml,
}

impl std::str::FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "table" => Format::Table,
            "compact" => Format::Compact,
            "csv" => Format::Csv,
            "json" => Format::Json,
            "yaml" => Format::Yaml,
            other => return Err(Error::InvalidFormat(other.to_string())),
        })
    }
}

/// Render rows as LXD's `RenderTable` does; `raw` is what json/yaml print.
pub fn render<T: Serialize + ?Sized>(
    format: Format,
    header: &[&str],
    rows: &[Vec<String>],
    raw: &T,
) -> Result<String, Error> {
    Ok(match format {
        Format::Table => table(header, rows),
        Format::Compact => compact(header, rows),
        Format::Csv => csv(rows),
        Format::Json => {
            let mut s = serde_json::to_string(raw)?;
            s.push('\n');
            s
        }
        Format::Yaml => yaml(raw)?,
    })
}

/// YAML as `lxc` prints objects (Go yaml.v2's style, see [`crate::yaml`]).
pub fn yaml<T: Serialize + ?Sized>(v: &T) -> Result<String, Error> {
    Ok(crate::yaml::emit(&yaml_serde::to_value(v)?, true))
}

/// YAML of a value whose timestamps are plain strings in Go too (quoted, as yaml.v2 quotes them).
pub fn yaml_strings<T: Serialize + ?Sized>(v: &T) -> Result<String, Error> {
    Ok(crate::yaml::emit(&yaml_serde::to_value(v)?, false))
}

/// Serialize `v` with its top-level keys in `order` (LXD's Go struct order); keys not listed
/// follow in their natural order. Our shared API types do not always declare fields in Go's order.
pub fn yaml_ordered<T: Serialize + ?Sized>(v: &T, order: &[&str]) -> Result<String, Error> {
    let value = serde_json::to_value(v)?;
    let serde_json::Value::Object(map) = value else {
        return yaml(&value);
    };
    // serde_json sorts keys; rebuild the mapping in the requested order.
    let mut out = yaml_serde::Mapping::new();
    for key in order {
        if let Some(v) = map.get(*key) {
            out.insert(yaml_serde::Value::from(*key), yaml_serde::to_value(v)?);
        }
    }
    for (k, v) in &map {
        if !order.contains(&k.as_str()) {
            out.insert(
                yaml_serde::Value::from(k.as_str()),
                yaml_serde::to_value(v)?,
            );
        }
    }
    yaml(&out)
}

/// tablewriter's header "title": `_` becomes a space, so does a `.` not inside a number; upper case.
pub fn title(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let is_num_or_space = |c: char| c.is_ascii_digit() || c == ' ';
    let mut out = String::with_capacity(name.len());
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '_' => out.push(' '),
            '.' => {
                let prev_non_num = i != 0 && !is_num_or_space(chars[i - 1]);
                let next_non_num = i != chars.len() - 1 && !is_num_or_space(chars[i + 1]);
                out.push(if prev_non_num || next_non_num {
                    ' '
                } else {
                    '.'
                });
            }
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    if trimmed.is_empty() && !name.is_empty() {
        return " ".to_string();
    }
    trimmed.to_uppercase()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

struct Layout {
    headers: Vec<Vec<String>>,
    rows: Vec<Vec<Vec<String>>>,
    widths: Vec<usize>,
}

fn layout(header: &[&str], rows: &[Vec<String>]) -> Layout {
    let headers: Vec<Vec<String>> = header
        .iter()
        .map(|h| title(h).split('\n').map(str::to_string).collect())
        .collect();
    let ncols = header
        .len()
        .max(rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut widths = vec![0usize; ncols];
    for (i, h) in headers.iter().enumerate() {
        for line in h {
            widths[i] = widths[i].max(width(line));
        }
    }
    let rows: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|r| {
            (0..ncols)
                .map(|i| {
                    r.get(i)
                        .map(|c| c.split('\n').map(str::to_string).collect())
                        .unwrap_or_else(|| vec![String::new()])
                })
                .collect()
        })
        .collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            for line in cell {
                widths[i] = widths[i].max(width(line));
            }
        }
    }
    Layout {
        headers,
        rows,
        widths,
    }
}

fn pad_left(s: &str, w: usize) -> String {
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

fn pad_center(s: &str, w: usize) -> String {
    let gap = w.saturating_sub(width(s));
    let left = gap / 2;
    let right = gap - left;
    format!("{}{}{}", " ".repeat(left), s, " ".repeat(right))
}

/// Lines of one logical row; cells with fewer lines are padded with blanks.
fn row_lines(
    cells: &[Vec<String>],
    widths: &[usize],
    center: bool,
    sep: &str,
    left: &str,
    right: &str,
) -> String {
    let height = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut out = String::new();
    for line in 0..height {
        out.push_str(left);
        for (i, w) in widths.iter().enumerate() {
            let text = cells
                .get(i)
                .and_then(|c| c.get(line))
                .map(String::as_str)
                .unwrap_or("");
            let padded = if center {
                pad_center(text, *w)
            } else {
                pad_left(text, *w)
            };
            out.push(' ');
            out.push_str(&padded);
            out.push(' ');
            if i + 1 < widths.len() {
                out.push_str(sep);
            }
        }
        out.push_str(right);
        out.push('\n');
    }
    out
}

fn border(widths: &[usize]) -> String {
    let mut s = String::from("+");
    for w in widths {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
    }
    s.push('\n');
    s
}

/// LXD's default table: centered upper-case headers, left-aligned cells, a line between rows.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let l = layout(header, rows);
    let line = border(&l.widths);
    let mut out = line.clone();
    out.push_str(&row_lines(&l.headers, &l.widths, true, "|", "|", "|"));
    out.push_str(&line);
    for r in &l.rows {
        out.push_str(&row_lines(r, &l.widths, false, "|", "|", "|"));
        out.push_str(&line);
    }
    out
}

/// `--format compact`: the table without borders or lines.
pub fn compact(header: &[&str], rows: &[Vec<String>]) -> String {
    let l = layout(header, rows);
    let mut out = row_lines(&l.headers, &l.widths, true, "", " ", " ");
    for r in &l.rows {
        out.push_str(&row_lines(r, &l.widths, false, "", " ", " "));
    }
    out
}

/// RFC 4180 CSV as Go's encoding/csv writes it.
pub fn csv(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for r in rows {
        let fields: Vec<String> = r
            .iter()
            .map(|f| {
                let needs_quotes = f == "\\."
                    || f.contains([',', '"', '\n', '\r'])
                    || f.starts_with(char::is_whitespace);
                if needs_quotes {
                    format!("\"{}\"", f.replace('"', "\"\""))
                } else {
                    f.clone()
                }
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Natural ordering of strings, digits compared as numbers (fvbommel/sortorder `NaturalLess`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ca, cb) = (a[i], b[j]);
        if ca.is_ascii_digit() && cb.is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i] == b'0' {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j] == b'0' {
                j += 1;
            }
            let ni = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let nj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let (da, db) = (&a[ni..i], &b[nj..j]);
            let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if ord != Ordering::Equal {
                return ord;
            }
            // Equal values: fewer leading zeros first.
            let ord = (ni - si).cmp(&(nj - sj));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if ca != cb {
                return ca.cmp(&cb);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// Sort table rows as LXD's `SortColumnsNaturally`: by the first differing column, empty last.
pub fn sort_rows(rows: &mut [Vec<String>]) {
    rows.sort_by(|a, b| {
        for (x, y) in a.iter().zip(b.iter()) {
            if x == y {
                continue;
            }
            if x.is_empty() {
                return Ordering::Greater;
            }
            if y.is_empty() {
                return Ordering::Less;
            }
            return natural_cmp(x, y);
        }
        Ordering::Equal
    });
}

/// LXD's `GetByteSizeString`: 1024-based with decimal-looking suffixes (kB, MB, ...).
pub fn byte_size(n: i64, precision: usize) -> String {
    size_with(n, precision, &["kB", "MB", "GB", "TB", "PB", "EB"])
}

/// LXD's `GetByteSizeStringIEC`: KiB, MiB, ...
pub fn byte_size_iec(n: i64, precision: usize) -> String {
    size_with(n, precision, &["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"])
}

fn size_with(n: i64, precision: usize, units: &[&str]) -> String {
    if n < 1024 {
        return format!("{n}B");
    }
    let mut value = n as f64;
    for unit in units {
        value /= 1024.0;
        if value < 1024.0 {
            return format!("{value:.precision$}{unit}");
        }
    }
    format!("{value:.precision$}EB")
}

/// Parse a size as LXD's `ParseByteSizeString` ("512MB", "1GiB", "100").
pub fn parse_byte_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        "EB" => 1e18,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "PiB" => 1024f64.powi(5),
        "EiB" => 1024f64.powi(6),
        _ => return None,
    };
    Some((value * mult) as i64)
}

/// A timestamp from the API, or None for the zero time / the epoch (LXD's `TimeIsSet`).
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    let t: jiff::Timestamp = s.parse().ok()?;
    if t.as_second() <= 0 || t < "0002-01-01T00:00:00Z".parse().ok()? {
        return None;
    }
    Some(t)
}

fn local(t: jiff::Timestamp) -> jiff::ZonedDateTime {
    t.to_zoned_datetime(jiff::tz::TimeZone::system())
}

/// `2006/01/02 15:04 MST` in local time (`lxc info`).
pub fn time_short(s: &str) -> Option<String> {
    parse_time(s).map(|t| local(t).strftime("%Y/%m/%d %H:%M %Z").to_string())
}

/// `2006/01/02 15:04 UTC` in UTC (`lxc list` date columns).
pub fn time_short_utc(s: &str) -> Option<String> {
    parse_time(s).map(|t| {
        t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%Y/%m/%d %H:%M UTC")
            .to_string()
    })
}

/// `Jan 2, 2006 at 3:04pm (MST)` in local time (`lxc image list`, `operation list`).
pub fn time_long(s: &str) -> Option<String> {
    parse_time(s).map(|t| local(t).strftime("%b %-d, %Y at %-I:%M%P (%Z)").to_string())
}

/// YES / NO as LXD's tables print booleans.
pub fn yes_no(b: bool) -> String {
    if b { "YES" } else { "NO" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn table_matches_lxd_list() {
        // Real `lxc list` output from LXD 5.0.2.
        let out = table(
            &["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"],
            &rows(&[&["c1", "RUNNING", "", "", "CONTAINER", "0"]]),
        );
        assert_eq!(
            out,
            "+------+---------+------+------+-----------+-----------+\n\
             | NAME |  STATE  | IPV4 | IPV6 |   TYPE    | SNAPSHOTS |\n\
             +------+---------+------+------+-----------+-----------+\n\
             | c1   | RUNNING |      |      | CONTAINER | 0         |\n\
             +------+---------+------+------+-----------+-----------+\n"
        );
    }

    #[test]
    fn compact_matches_lxd() {
        let out = compact(
            &["NAME", "STATE", "PROCESSES"],
            &rows(&[&["c1", "RUNNING", "2"]]),
        );
        assert_eq!(
            out,
            "  NAME   STATE   PROCESSES  \n  c1    RUNNING  2          \n"
        );
        let out = compact(
            &["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"],
            &rows(&[
                &["c1", "RUNNING", "", "", "CONTAINER", "2"],
                &["c2", "STOPPED", "", "", "CONTAINER", "0"],
            ]),
        );
        assert_eq!(
            out,
            "  NAME   STATE   IPV4  IPV6    TYPE     SNAPSHOTS  \n  c1    RUNNING              CONTAINER  2          \n  c2    STOPPED              CONTAINER  0          \n"
        );
    }

    #[test]
    fn multi_line_cells() {
        let out = table(
            &["NAME", "IPV4"],
            &rows(&[&["c1", "10.0.0.2 (eth0)\n10.0.0.1 (eth1)"]]),
        );
        assert_eq!(
            out,
            "+------+-----------------+\n\
             | NAME |      IPV4       |\n\
             +------+-----------------+\n\
             | c1   | 10.0.0.2 (eth0) |\n\
             |      | 10.0.0.1 (eth1) |\n\
             +------+-----------------+\n"
        );
    }

    #[test]
    fn empty_table_has_only_the_header() {
        assert_eq!(
            table(&["ID", "TYPE"], &[]),
            "+----+------+\n| ID | TYPE |\n+----+------+\n"
        );
    }

    #[test]
    fn titles() {
        assert_eq!(title("Taken at"), "TAKEN AT");
        assert_eq!(title("user.comment"), "USER COMMENT");
        assert_eq!(title("MEMORY USAGE%"), "MEMORY USAGE%");
        assert_eq!(title("v1.5"), "V1.5");
    }

    #[test]
    fn csv_quotes_like_go() {
        assert_eq!(
            csv(&rows(&[&[
                "c1",
                "RUNNING",
                "",
                "a,b",
                "x\ny",
                "say \"hi\""
            ]])),
            "c1,RUNNING,,\"a,b\",\"x\ny\",\"say \"\"hi\"\"\"\n"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!("csv".parse::<Format>().unwrap(), Format::Csv);
        assert_eq!(
            "xx".parse::<Format>().unwrap_err().to_string(),
            "Invalid format \"xx\""
        );
    }

    #[test]
    fn render_json_and_yaml() {
        let raw = serde_json::json!([{"name": "c1"}]);
        assert_eq!(
            render(Format::Json, &["NAME"], &[], &raw).unwrap(),
            "[{\"name\":\"c1\"}]\n"
        );
        assert_eq!(
            render(Format::Yaml, &["NAME"], &[], &raw).unwrap(),
            "- name: c1\n"
        );
    }

    #[test]
    fn yaml_key_order() {
        let v = serde_json::json!({"name": "default", "config": {}, "description": "d", "used_by": ["/1.0/instances/c1"], "devices": {}});
        assert_eq!(
            yaml_ordered(&v, &["config", "description", "devices", "name", "used_by"]).unwrap(),
            "config: {}\ndescription: d\ndevices: {}\nname: default\nused_by:\n- /1.0/instances/c1\n"
        );
    }

    #[test]
    fn natural_sorting() {
        let mut v = vec!["c10", "c2", "c1", "a", "snap0", "s2"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a", "c1", "c2", "c10", "s2", "snap0"]);
        let mut r = rows(&[&["b", "1"], &["", "2"], &["a", "3"]]);
        sort_rows(&mut r);
        assert_eq!(r[0][0], "a");
        assert_eq!(r[2][0], "");
    }

    #[test]
    fn sizes_like_lxd() {
        assert_eq!(byte_size(881192, 2), "860.54kB");
        assert_eq!(byte_size(0, 2), "0B");
        assert_eq!(byte_size(2048, 2), "2.00kB");
        assert_eq!(byte_size_iec(880640, 2), "860.00KiB");
        assert_eq!(byte_size_iec(1667072, 2), "1.59MiB");
        assert_eq!(parse_byte_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_byte_size("512MB"), Some(512_000_000));
        assert_eq!(parse_byte_size("x"), None);
    }

    #[test]
    fn times_like_lxd() {
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), None);
        assert_eq!(parse_time(""), None);
        assert_eq!(
            time_short_utc("2026-11-27T23:01:44.814058671Z").unwrap(),
            "2026/11/27 23:01 UTC"
        );
        let long = parse_time("2026-11-27T23:01:44Z")
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%b %-d, %Y at %-I:%M%P (%Z)")
            .to_string();
        assert_eq!(long, "Nov 27, 2026 at 11:01pm (UTC)");
    }
}
