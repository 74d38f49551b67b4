//! Scheduled snapshots and their expiry, as LXD runs them: `snapshots.schedule` (cron, aliases,
//! `@startup`), `snapshots.schedule.stopped`, `snapshots.pattern` and `snapshots.expiry` on
//! instances and custom volumes. A daemon task wakes at the start of every minute, takes the
//! snapshots due and deletes the expired ones. The parsers here are pure and unit-tested.

use jiff::civil::DateTime;
use jiff::{Span, Timestamp, tz::TimeZone};
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::error::{ApiError, Result};

/// One cron field as the set of values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    allowed: Vec<bool>,
    /// `*` (or `*/n`): unrestricted, which matters for the day-of-month/day-of-week rule.
    star: bool,
}

impl Field {
    fn matches(&self, v: i64) -> bool {
        usize::try_from(v)
            .ok()
            .and_then(|i| self.allowed.get(i))
            .copied()
            .unwrap_or(false)
    }
}

/// A five-field cron expression (minute hour day-of-month month day-of-week).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn parse_value(s: &str, names: &[&str], offset: i64) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let l = s.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == l)
        .map(|i| i as i64 + offset)
}

fn parse_field(text: &str, min: i64, max: i64, names: &[&str], offset: i64) -> Option<Field> {
    let mut allowed = vec![false; (max + 1) as usize];
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<i64>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            star = star || step == 1;
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                parse_value(a, names, offset)?,
                parse_value(b, names, offset)?,
            )
        } else {
            let v = parse_value(range, names, offset)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        let mut v = lo;
        while v <= hi {
            allowed[v as usize] = true;
            v += step;
        }
    }
    Some(Field { allowed, star })
}

impl Cron {
    /// Parse a cron expression or one of the aliases LXD accepts.
    pub fn parse(expr: &str) -> Option<Cron> {
        let expr = match expr.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let f: Vec<&str> = expr.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        let mut dow = parse_field(f[4], 0, 7, &DAYS, 0)?;
        // 7 is Sunday too.
        if dow.allowed[7] {
            dow.allowed[0] = true;
        }
        Some(Cron {
            minute: parse_field(f[0], 0, 59, &[], 0)?,
            hour: parse_field(f[1], 0, 23, &[], 0)?,
            dom: parse_field(f[2], 1, 31, &[], 0)?,
            month: parse_field(f[3], 1, 12, &MONTHS, 1)?,
            dow,
        })
    }

    /// Whether the schedule fires in the minute of `t`. Day of month and day of week follow
    /// cron: when both are restricted, either may match.
    pub fn matches(&self, t: DateTime) -> bool {
        let dow = t.weekday().to_sunday_zero_offset() as i64;
        let day = match (self.dom.star, self.dow.star) {
            (true, true) => true,
            (true, false) => self.dow.matches(dow),
            (false, true) => self.dom.matches(t.day() as i64),
            (false, false) => self.dom.matches(t.day() as i64) || self.dow.matches(dow),
        };
        day && self.minute.matches(t.minute() as i64)
            && self.hour.matches(t.hour() as i64)
            && self.month.matches(t.month() as i64)
    }
}

/// The entries of a `snapshots.schedule` value: LXD separates several with ", ".
fn schedule_entries(v: &str) -> impl Iterator<Item = &str> {
    v.split(", ").map(str::trim).filter(|e| !e.is_empty())
}

/// Check a `snapshots.schedule` value.
pub fn validate_schedule(v: &str) -> Result<()> {
    for e in schedule_entries(v) {
        if e != "@startup" && e != "@never" && Cron::parse(e).is_none() {
            return Err(ApiError::bad_request(format!(
                "Invalid value for snapshots.schedule: \"{e}\" is not a cron expression or schedule alias"
            )));
        }
    }
    Ok(())
}

/// Whether a schedule value fires in the minute of `t`.
pub fn schedule_due(v: &str, t: DateTime) -> bool {
    schedule_entries(v).any(|e| Cron::parse(e).is_some_and(|c| c.matches(t)))
}

pub fn has_startup(v: &str) -> bool {
    schedule_entries(v).any(|e| e.eq_ignore_ascii_case("@startup"))
}

/// Parse LXD's expiry (`shared.GetExpiry`): space-separated parts like `1M` (minutes), `2H`,
/// `3d`, `4w`, `5m` (months), `6y`. Empty means no expiry.
pub fn parse_expiry(v: &str) -> Result<Option<Span>> {
    let bad = || ApiError::bad_request(format!("Invalid expiry \"{v}\""));
    // minutes, hours, days, weeks, months, years
    let mut units = [0i64; 6];
    let mut any = false;
    for part in v.split_whitespace() {
        let unit = part.chars().last().ok_or_else(bad)?;
        let n: i64 = part[..part.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| bad())?;
        if n < 0 {
            return Err(bad());
        }
        let i = match unit {
            'M' => 0,
            'H' => 1,
            'd' => 2,
            'w' => 3,
            'm' => 4,
            'y' => 5,
            _ => return Err(bad()),
        };
        units[i] = units[i].checked_add(n).ok_or_else(bad)?;
        any = true;
    }
    if !any {
        return Ok(None);
    }
    let span = Span::new()
        .try_minutes(units[0])
        .and_then(|s| s.try_hours(units[1]))
        .and_then(|s| s.try_days(units[2]))
        .and_then(|s| s.try_weeks(units[3]))
        .and_then(|s| s.try_months(units[4]))
        .and_then(|s| s.try_years(units[5]))
        .map_err(|_| bad())?;
    Ok(Some(span))
}

pub fn validate_expiry(v: &str) -> Result<()> {
    parse_expiry(v).map(|_| ())
}

/// `expires_at` for a snapshot taken at `now` under `snapshots.expiry` (LXD's zero time if none).
pub fn expires_at(now: Timestamp, expiry: &str) -> Result<String> {
    match parse_expiry(expiry)? {
        None => Ok(lxd_api::ZERO_TIME.into()),
        Some(span) => {
            let zdt = now.to_zoned_datetime(TimeZone::UTC);
            let t = zdt
                .checked_add(span)
                .map_err(|_| ApiError::bad_request(format!("Invalid expiry \"{expiry}\"")))?;
            Ok(t.timestamp().to_string())
        }
    }
}

/// Whether an `expires_at` value lies in the past.
pub fn expired(expires_at: &str, now: Timestamp) -> bool {
    match expires_at.parse::<Timestamp>() {
        Ok(t) => t.as_second() > 0 && t <= now,
        Err(_) => false,
    }
}

/// Convert Go's reference-time layout (`2006-01-02_15-04-05`) to strftime.
fn go_layout_to_strftime(layout: &str) -> String {
    const TOKENS: [(&str, &str); 14] = [
        ("2006", "%Y"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        ("_2", "%e"),
        ("1", "%-m"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, f) in TOKENS {
            if let Some(r) = rest.strip_prefix(go) {
                out.push_str(f);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Render the pongo2 template part of `snapshots.pattern` LXD supports in practice:
/// `{{ creation_date|date:"LAYOUT" }}` (Go layout). Other text is kept.
pub fn render_pattern(pattern: &str, now: Timestamp) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = rest[start + 2..start + end].trim();
        let rendered = expr
            .strip_prefix("creation_date")
            .map(str::trim)
            .map(|f| {
                let zdt = now.to_zoned_datetime(TimeZone::UTC);
                match f
                    .strip_prefix("|date:")
                    .map(|l| l.trim().trim_matches(['"', '\'']))
                {
                    Some(layout) => zdt.strftime(&go_layout_to_strftime(layout)).to_string(),
                    None => zdt.timestamp().to_string(),
                }
            })
            .unwrap_or_default();
        out.push_str(&rendered);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The next snapshot name from a pattern (LXD `NextSnapshotName`): render the template, replace
/// `%d` with the first free index; a fixed name that exists gets `-%d` appended.
pub fn next_snapshot_name(pattern: &str, existing: &[String], now: Timestamp) -> Result<String> {
    let pattern = if pattern.is_empty() {
        "snap%d"
    } else {
        pattern
    };
    let mut p = render_pattern(pattern, now);
    match p.matches("%d").count() {
        0 if !existing.contains(&p) => return Ok(p),
        0 => p.push_str("-%d"),
        1 => {}
        _ => {
            return Err(ApiError::bad_request(
                "Snapshot pattern may contain '%d' only once",
            ));
        }
    }
    for i in 0.. {
        let n = p.replacen("%d", &i.to_string(), 1);
        if !existing.contains(&n) {
            return Ok(n);
        }
    }
    unreachable!("an unbounded range always yields a free name")
}

/// The current minute in UTC, as the schedule sees it.
fn now_minute() -> DateTime {
    Timestamp::now().to_zoned_datetime(TimeZone::UTC).datetime()
}

/// Take the snapshots due at `t` and delete the expired ones, for instances and custom volumes.
pub async fn run_once(d: &Arc<Daemon>, t: DateTime) {
    let now = Timestamp::now();
    for row in d.db.instances().unwrap_or_default() {
        let Ok(ex) = crate::instance::expand_row(d, &row) else {
            continue;
        };
        let sched = ex
            .config
            .get("snapshots.schedule")
            .cloned()
            .unwrap_or_default();
        if schedule_due(&sched, t) {
            let running = crate::instance::runtime::probe(d, &row.name).is_active();
            let stopped_too = crate::config::is_true(&ex.config, "snapshots.schedule.stopped");
            if running || stopped_too {
                match crate::instance::snapshots::next_name(d, &row.name) {
                    Ok(name) => {
                        if let Err(e) =
                            crate::instance::snapshots::create(d, &row.name, &name, None).await
                        {
                            tracing::error!(instance = %row.name, "scheduled snapshot failed: {e}");
                        }
                    }
                    Err(e) => tracing::error!(instance = %row.name, "scheduled snapshot: {e}"),
                }
            }
        }
        for s in d.db.snapshots(&row.name).unwrap_or_default() {
            if expired(&s.expires_at, now) {
                tracing::info!(instance = %row.name, snapshot = %s.name, "deleting expired snapshot");
                if let Err(e) = crate::instance::snapshots::delete(d, &row.name, &s.name).await {
                    tracing::error!(instance = %row.name, "deleting expired snapshot {}: {e}", s.name);
                }
            }
        }
    }
    for v in d.db.volumes(None).unwrap_or_default() {
        let sched = v
            .config
            .get("snapshots.schedule")
            .cloned()
            .unwrap_or_default();
        if schedule_due(&sched, t)
            && let Err(e) = super::volumes::create_snapshot(d, &v.pool, &v.name, "", None).await
        {
            tracing::error!(volume = %v.name, "scheduled volume snapshot failed: {e}");
        }
        for s in d.db.volume_snapshots(v.id).unwrap_or_default() {
            if expired(&s.expires_at, now)
                && let Err(e) = super::volumes::delete_snapshot(d, &v.pool, &v.name, &s.name).await
            {
                tracing::error!(volume = %v.name, "deleting expired snapshot {}: {e}", s.name);
            }
        }
    }
}

/// The daemon task: at the start of every minute, `run_once`.
pub fn spawn(d: Arc<Daemon>) {
    tokio::spawn(async move {
        loop {
            let secs = Timestamp::now().as_second().rem_euclid(60) as u64;
            let wait = Duration::from_secs(60 - secs);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = d.stop.cancelled() => return,
            }
            run_once(&d, now_minute()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(s: &str) -> DateTime {
        s.parse().unwrap()
    }

    #[test]
    fn cron_expressions_and_aliases() {
        let c = Cron::parse("*/15 2-4 * * *").unwrap();
        assert!(c.matches(dt("2026-03-04T02:30")));
        assert!(!c.matches(dt("2026-03-04T02:31")));
        assert!(!c.matches(dt("2026-03-04T05:00")));
        let daily = Cron::parse("@daily").unwrap();
        assert!(daily.matches(dt("2026-03-04T00:00")));
        assert!(!daily.matches(dt("2026-03-04T00:01")));
        // 2026-03-01 is a Sunday.
        let weekly = Cron::parse("@weekly").unwrap();
        assert!(weekly.matches(dt("2026-03-01T00:00")));
        assert!(!weekly.matches(dt("2026-03-02T00:00")));
        assert!(
            Cron::parse("0 0 * * 7")
                .unwrap()
                .matches(dt("2026-03-01T00:00"))
        );
        assert!(
            Cron::parse("0 0 * * sun")
                .unwrap()
                .matches(dt("2026-03-01T00:00"))
        );
        assert!(
            Cron::parse("@monthly")
                .unwrap()
                .matches(dt("2026-04-01T00:00"))
        );
        assert!(
            Cron::parse("@hourly")
                .unwrap()
                .matches(dt("2026-04-01T13:00"))
        );
        assert!(
            Cron::parse("* * * jan *")
                .unwrap()
                .matches(dt("2026-01-09T13:07"))
        );
        // Both day fields restricted: either matches (the 13th, or any Friday).
        let c = Cron::parse("0 0 13 * 5").unwrap();
        assert!(c.matches(dt("2026-03-13T00:00")));
        assert!(c.matches(dt("2026-03-06T00:00")));
        assert!(!c.matches(dt("2026-03-07T00:00")));
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "x * * * *",
            "5-1 * * * *",
        ] {
            assert!(Cron::parse(bad).is_none(), "{bad}");
        }
        assert!(schedule_due(
            "@startup, */5 * * * *",
            dt("2026-01-01T10:05")
        ));
        assert!(!schedule_due("@startup", dt("2026-01-01T10:05")));
        assert!(has_startup("@daily, @startup"));
        assert!(validate_schedule("@hourly, @startup").is_ok());
        assert!(validate_schedule("every day").is_err());
    }

    #[test]
    fn expiry_like_lxd() {
        let now: Timestamp = "2026-01-31T10:00:00Z".parse().unwrap();
        assert_eq!(expires_at(now, "").unwrap(), lxd_api::ZERO_TIME);
        assert_eq!(expires_at(now, "1d").unwrap(), "2026-02-01T10:00:00Z");
        assert_eq!(expires_at(now, "2w").unwrap(), "2026-02-14T10:00:00Z");
        assert_eq!(expires_at(now, "3H").unwrap(), "2026-01-31T13:00:00Z");
        assert_eq!(expires_at(now, "1H 30M").unwrap(), "2026-01-31T11:30:00Z");
        assert_eq!(expires_at(now, "1m").unwrap(), "2026-02-28T10:00:00Z");
        assert_eq!(expires_at(now, "1y").unwrap(), "2027-01-31T10:00:00Z");
        for bad in ["1", "d", "1x", "-1d", "1.5d"] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
        assert!(expired("2026-01-31T09:59:00Z", now));
        assert!(!expired("2026-01-31T10:01:00Z", now));
        assert!(!expired(lxd_api::ZERO_TIME, now));
    }

    #[test]
    fn snapshot_names_like_lxd() {
        let now: Timestamp = "2026-01-31T10:04:05Z".parse().unwrap();
        let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(next_snapshot_name("", &e(&[]), now).unwrap(), "snap0");
        assert_eq!(
            next_snapshot_name("snap%d", &e(&["snap0", "snap1"]), now).unwrap(),
            "snap2"
        );
        assert_eq!(
            next_snapshot_name(
                "{{ creation_date|date:'2006-01-02_15-04-05' }}",
                &e(&[]),
                now
            )
            .unwrap(),
            "2026-01-31_10-04-05"
        );
        assert_eq!(
            next_snapshot_name("daily", &e(&["daily"]), now).unwrap(),
            "daily-0"
        );
        assert_eq!(
            next_snapshot_name(
                "auto-{{ creation_date|date:\"20060102\" }}-%d",
                &e(&[]),
                now
            )
            .unwrap(),
            "auto-20260131-0"
        );
        assert!(next_snapshot_name("%d-%d", &e(&[]), now).is_err());
    }
}
