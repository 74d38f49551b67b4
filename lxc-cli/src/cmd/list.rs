//! `list`: `GET /1.0/instances?recursion=2`, LXD's column letters and `key:name:width` columns,
//! its filters (name prefix, regex, `key=value` on expanded config, shorthands) and formats.

use anyhow::bail;
use clap::Args;
use lxd_api::{InstanceFull, InstanceState, StatusCode};

use super::print_out;
use crate::Ctx;
use crate::output::{self, Format};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// `[<remote>:] [<filter>...]`
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Columns
    #[arg(short, long, default_value = DEFAULT_COLUMNS)]
    pub columns: String,
    /// Format (csv|json|table|yaml|compact)
    #[arg(short, long, default_value = "table")]
    pub format: String,
    /// Fast mode (same as --columns=nsacPt)
    #[arg(long)]
    pub fast: bool,
    /// Display instances from all projects
    #[arg(long)]
    pub all_projects: bool,
}

pub const DEFAULT_COLUMNS: &str = "ns46tSL";
const DEFAULT_COLUMNS_ALL_PROJECTS: &str = "ens46tSL";

/// What a column shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Ipv4,
    Ipv6,
    Architecture,
    StoragePool,
    Created,
    Description,
    DiskUsage,
    Project,
    BaseImage,
    BaseImageFull,
    LastUsed,
    Memory,
    MemoryPercent,
    Name,
    Processes,
    Pid,
    Profiles,
    Snapshots,
    State,
    Type,
    Cpu,
    Location,
    Config { key: String, max_width: i64 },
    Device { key: String, max_width: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data: Data,
    pub needs_state: bool,
    pub needs_snapshots: bool,
}

fn shorthand(c: char, clustered: bool) -> Option<Column> {
    let (name, data, st, sn) = match c {
        '4' => ("IPV4", Data::Ipv4, true, false),
        '6' => ("IPV6", Data::Ipv6, true, false),
        'a' => ("ARCHITECTURE", Data::Architecture, false, false),
        'b' => ("STORAGE POOL", Data::StoragePool, false, false),
        'c' => ("CREATED AT", Data::Created, false, false),
        'd' => ("DESCRIPTION", Data::Description, false, false),
        'D' => ("DISK USAGE", Data::DiskUsage, true, false),
        'e' => ("PROJECT", Data::Project, false, false),
        'f' => ("BASE IMAGE", Data::BaseImage, false, false),
        'F' => ("BASE IMAGE", Data::BaseImageFull, false, false),
        'l' => ("LAST USED AT", Data::LastUsed, false, false),
        'm' => ("MEMORY USAGE", Data::Memory, true, false),
        'M' => ("MEMORY USAGE%", Data::MemoryPercent, true, false),
        'n' => ("NAME", Data::Name, false, false),
        'N' => ("PROCESSES", Data::Processes, true, false),
        'p' => ("PID", Data::Pid, true, false),
        'P' => ("PROFILES", Data::Profiles, false, false),
        'S' => ("SNAPSHOTS", Data::Snapshots, false, true),
        's' => ("STATE", Data::State, false, false),
        't' => ("TYPE", Data::Type, false, false),
        'u' => ("CPU USAGE", Data::Cpu, true, false),
        'L' if clustered => ("LOCATION", Data::Location, false, false),
        _ => return None,
    };
    Some(Column {
        name: name.to_string(),
        data,
        needs_state: st,
        needs_snapshots: sn,
    })
}

/// Parse `-c` as LXD does: entries split on `,`; an entry without `.` is a run of shorthand
/// letters, otherwise `[config:|devices:]key[:name[:maxWidth]]`.
pub fn parse_columns(
    flag: &str,
    fast: bool,
    all_projects: bool,
    clustered: bool,
) -> anyhow::Result<Vec<Column>> {
    let mut flag = flag.to_string();
    if all_projects && flag == DEFAULT_COLUMNS {
        flag = DEFAULT_COLUMNS_ALL_PROJECTS.to_string();
    }
    if fast {
        if flag != DEFAULT_COLUMNS && flag != DEFAULT_COLUMNS_ALL_PROJECTS {
            bail!("Can't specify --fast with --columns");
        }
        flag = if flag == DEFAULT_COLUMNS_ALL_PROJECTS {
            "ensacPt".into()
        } else {
            "nsacPt".into()
        };
    }
    if !clustered {
        // LXD checks and strips 'L' over the whole flag, custom column names included; we
        // only look at shorthand entries so that a header like "ROLE" survives.
        let user_given = flag != DEFAULT_COLUMNS && flag != DEFAULT_COLUMNS_ALL_PROJECTS;
        let entries: Vec<String> = flag
            .split(',')
            .map(|e| {
                if e.contains('.') {
                    Ok(e.to_string())
                } else if user_given && e.contains('L') {
                    Err(anyhow::anyhow!("Can't specify column L when not clustered"))
                } else {
                    Ok(e.replace('L', ""))
                }
            })
            .collect::<anyhow::Result<_>>()?;
        flag = entries.join(",");
    }
    let mut columns = Vec::new();
    for entry in flag.split(',') {
        if entry.is_empty() {
            bail!("Empty column entry (redundant, leading or trailing command) in '{flag}'");
        }
        if !entry.contains('.') {
            for c in entry.chars() {
                match shorthand(c, clustered) {
                    Some(col) => columns.push(col),
                    None => bail!("Unknown column shorthand char '{c}' in '{entry}'"),
                }
            }
            continue;
        }
        let mut cc: Vec<&str> = entry.split(':').collect();
        let mut devices = false;
        if cc.len() > 1 && (cc[0] == "config" || cc[0] == "devices") {
            devices = cc[0] == "devices";
            cc.remove(0);
        }
        if cc.len() > 3 {
            bail!("Invalid config key column format (too many fields): '{entry}'");
        }
        let key = cc[0].to_string();
        let mut name = key.clone();
        if cc.len() > 1 {
            if cc[1].is_empty() && cc.len() != 3 {
                bail!(
                    "Invalid name in '{entry}', empty string is only allowed when defining maxWidth"
                );
            }
            name = cc[1].to_string();
        }
        let mut max_width = -1;
        if cc.len() > 2 {
            let w: i64 = cc[2].parse().map_err(|_| {
                anyhow::anyhow!(
                    "Invalid max width (must be an integer) '{}' in '{entry}'",
                    cc[2]
                )
            })?;
            if w < -1 {
                bail!(
                    "Invalid max width (must -1, 0 or a positive integer) '{}' in '{entry}'",
                    cc[2]
                );
            }
            max_width = if w == 0 { name.len() as i64 } else { w };
        }
        let data = if devices {
            Data::Device { key, max_width }
        } else {
            Data::Config { key, max_width }
        };
        columns.push(Column {
            name,
            data,
            needs_state: false,
            needs_snapshots: false,
        });
    }
    Ok(columns)
}

fn is_active(i: &InstanceFull) -> bool {
    !matches!(
        StatusCode::from(i.instance.status_code),
        StatusCode::Stopped | StatusCode::Error
    )
}

fn truncate(v: &str, max: i64) -> String {
    if max > 0 && v.len() as i64 > max {
        v.chars().take(max as usize).collect()
    } else {
        v.to_string()
    }
}

fn addresses(i: &InstanceFull, family: &str) -> String {
    if !is_active(i) {
        return String::new();
    }
    let Some(net) = i.state.as_ref().and_then(|s| s.network.as_ref()) else {
        return String::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (ifname, n) in net {
        if n.kind == "loopback" {
            continue;
        }
        for a in &n.addresses {
            if a.scope == "link" || a.scope == "local" {
                continue;
            }
            if a.family == family {
                out.push(format!("{} ({ifname})", a.address));
            }
        }
    }
    out.sort();
    out.reverse();
    out.join("\n")
}

/// One cell.
pub fn cell(col: &Column, i: &InstanceFull) -> String {
    let inst = &i.instance;
    let state = i.state.as_ref().filter(|_| is_active(i));
    match &col.data {
        Data::Ipv4 => addresses(i, "inet"),
        Data::Ipv6 => addresses(i, "inet6"),
        Data::Architecture => inst.architecture.clone(),
        Data::StoragePool => inst
            .expanded_devices
            .values()
            .find(|d| {
                d.get("type").map(String::as_str) == Some("disk")
                    && d.get("path").map(String::as_str) == Some("/")
            })
            .and_then(|d| d.get("pool").cloned())
            .unwrap_or_default(),
        Data::Created => output::time_short_utc(&inst.created_at).unwrap_or_default(),
        Data::Description => inst.description.clone(),
        Data::DiskUsage => {
            let root = inst
                .expanded_devices
                .iter()
                .find(|(_, d)| {
                    d.get("type").map(String::as_str) == Some("disk")
                        && d.get("path").map(String::as_str) == Some("/")
                })
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            i.state
                .as_ref()
                .and_then(|s| s.disk.get(&root))
                .filter(|d| d.usage > 0)
                .map(|d| output::byte_size_iec(d.usage, 2))
                .unwrap_or_default()
        }
        Data::Project => inst.project.clone(),
        Data::BaseImage | Data::BaseImageFull => {
            let v = inst
                .config
                .get("volatile.base_image")
                .cloned()
                .unwrap_or_default();
            if col.data == Data::BaseImage {
                v.chars().take(12).collect()
            } else {
                v
            }
        }
        Data::LastUsed => output::time_short_utc(&inst.last_used_at).unwrap_or_default(),
        Data::Memory => state
            .filter(|s| s.memory.usage > 0)
            .map(|s| output::byte_size_iec(s.memory.usage, 2))
            .unwrap_or_default(),
        Data::MemoryPercent => memory_percent(inst, state),
        Data::Name => inst.name.clone(),
        Data::Processes => state.map(|s| s.processes.to_string()).unwrap_or_default(),
        Data::Pid => state.map(|s| s.pid.to_string()).unwrap_or_default(),
        Data::Profiles => inst.profiles.join("\n"),
        Data::Snapshots => i
            .snapshots
            .as_ref()
            .map(|s| s.len())
            .unwrap_or(0)
            .to_string(),
        Data::State => inst.status.to_uppercase(),
        Data::Type => {
            let t = if inst.kind.is_empty() {
                "container"
            } else {
                &inst.kind
            };
            if inst.ephemeral {
                format!("{} (EPHEMERAL)", t.to_uppercase())
            } else {
                t.to_uppercase()
            }
        }
        Data::Cpu => state
            .filter(|s| s.cpu.usage > 0)
            .map(|s| format!("{}s", s.cpu.usage / 1_000_000_000))
            .unwrap_or_default(),
        Data::Location => inst.location.clone(),
        Data::Config { key, max_width } => {
            let v = inst
                .config
                .get(key)
                .or_else(|| inst.expanded_config.get(key))
                .cloned()
                .unwrap_or_default();
            truncate(&v, *max_width)
        }
        Data::Device { key, max_width } => {
            let Some((dev, k)) = key.split_once('.') else {
                return String::new();
            };
            let v = inst
                .devices
                .get(dev)
                .and_then(|d| d.get(k))
                .or_else(|| inst.expanded_devices.get(dev).and_then(|d| d.get(k)))
                .cloned()
                .unwrap_or_default();
            truncate(&v, *max_width)
        }
    }
}

fn memory_percent(inst: &lxd_api::Instance, state: Option<&InstanceState>) -> String {
    let Some(s) = state.filter(|s| s.memory.usage > 0) else {
        return String::new();
    };
    let Some(limit) = inst.expanded_config.get("limits.memory") else {
        return String::new();
    };
    if limit.contains('%') {
        return String::new();
    }
    match output::parse_byte_size(limit) {
        Some(v) if v > 0 => format!("{:.1}%", s.memory.usage as f64 / v as f64 * 100.0),
        _ => String::new(),
    }
}

fn regex_match(pattern: &str, hay: &str) -> Option<bool> {
    let p = if pattern.contains('^') || pattern.contains('$') {
        pattern.to_string()
    } else {
        format!("^{pattern}$")
    };
    let re = regex_automata::meta::Regex::new(&p).ok()?;
    Some(re.is_match(hay))
}

fn dot_prefix_match(short: &str, full: &str) -> bool {
    let f: Vec<&str> = full.split('.').collect();
    let s: Vec<&str> = short.split('.').collect();
    f.len() == s.len() && f.iter().zip(&s).all(|(a, b)| a.starts_with(b))
}

fn shorthand_filter(key: &str, value: &str, i: &InstanceFull) -> Option<bool> {
    let inst = &i.instance;
    let one = |v: &str| -> bool {
        match key.to_lowercase().as_str() {
            "type" => inst.kind.eq_ignore_ascii_case(v),
            "status" => inst.status.eq_ignore_ascii_case(v),
            "architecture" => inst.architecture.eq_ignore_ascii_case(v),
            "location" => inst.location.eq_ignore_ascii_case(v),
            "ipv4" => net_match(i, v, "inet"),
            "ipv6" => net_match(i, v, "inet6"),
            _ => false,
        }
    };
    if !matches!(
        key.to_lowercase().as_str(),
        "type" | "status" | "architecture" | "location" | "ipv4" | "ipv6"
    ) {
        return None;
    }
    Some(value.split(',').any(one))
}

fn net_match(i: &InstanceFull, query: &str, family: &str) -> bool {
    let Some(net) = i.state.as_ref().and_then(|s| s.network.as_ref()) else {
        return false;
    };
    let subnet = parse_cidr(query);
    net.values().flat_map(|n| &n.addresses).any(|a| {
        a.family == family
            && (a.address == query
                || subnet.is_some_and(|(net, len)| {
                    a.address
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| in_subnet(ip, net, len))
                }))
    })
}

fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    Some((ip.parse().ok()?, len.parse().ok()?))
}

fn in_subnet(ip: std::net::IpAddr, net: std::net::IpAddr, len: u8) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) if len <= 32 => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// LXD's `shouldShow`: every filter must match.
pub fn should_show(filters: &[String], i: &InstanceFull) -> bool {
    let inst = &i.instance;
    for filter in filters {
        if let Some((key, value)) = filter.split_once('=') {
            if shorthand_filter(key, value, i) == Some(true) {
                continue;
            }
            let mut found = false;
            for (ck, cv) in &inst.expanded_config {
                if dot_prefix_match(key, ck) {
                    match regex_match(value, cv) {
                        Some(true) => {
                            found = true;
                            break;
                        }
                        Some(false) => {}
                        None => {
                            if value == cv {
                                found = true;
                                break;
                            }
                            return false;
                        }
                    }
                }
            }
            if inst.expanded_config.get(key).map(String::as_str) == Some(value) {
                continue;
            }
            if !found {
                return false;
            }
        } else {
            if regex_match(filter, &inst.name) == Some(true) {
                continue;
            }
            if !inst.name.starts_with(filter.as_str()) {
                return false;
            }
        }
    }
    true
}

/// Rows, naturally sorted, and the filtered instances (for json/yaml).
pub fn rows(
    instances: Vec<InstanceFull>,
    filters: &[String],
    columns: &[Column],
) -> (Vec<Vec<String>>, Vec<InstanceFull>) {
    let kept: Vec<InstanceFull> = instances
        .into_iter()
        .filter(|i| should_show(filters, i))
        .collect();
    let mut rows: Vec<Vec<String>> = kept
        .iter()
        .map(|i| columns.iter().map(|c| cell(c, i)).collect())
        .collect();
    output::sort_rows(&mut rows);
    (rows, kept)
}

/// Plain instances as LXD prints them from its `InstanceFull` struct: with null
/// `backups`, `state` and `snapshots` after the instance's own fields.
fn with_full_keys(raw: yaml_serde::Value) -> yaml_serde::Value {
    let yaml_serde::Value::Sequence(items) = raw else {
        return raw;
    };
    yaml_serde::Value::Sequence(
        items
            .into_iter()
            .map(|mut i| {
                if let yaml_serde::Value::Mapping(m) = &mut i {
                    for k in ["backups", "state", "snapshots"] {
                        if !m.contains_key(k) {
                            m.insert(k.into(), yaml_serde::Value::Null);
                        }
                    }
                }
                i
            })
            .collect(),
    )
}

pub async fn run(ctx: &Ctx, a: ListArgs) -> anyhow::Result<()> {
    let format: Format = super::format(&a.format)?;
    if !ctx.global.project.is_empty() && a.all_projects {
        bail!("Can't specify --project with --all-projects");
    }
    let mut remote = ctx.conf.default_remote.clone();
    let mut filters = a.filters.clone();
    if let Some(first) = a.filters.first()
        && first.contains(':')
        && !first.contains('=')
    {
        let (r, name) = ctx.parse_remote(first)?;
        remote = r;
        filters.remove(0);
        if !name.is_empty() {
            filters.push(name);
        }
    }
    let client = ctx.client(&remote)?;
    let server = client.server().await?;
    let clustered = server.environment.server_clustered;
    let full = server.api_extensions.iter().any(|e| e == "container_full");
    let columns = parse_columns(&a.columns, a.fast, a.all_projects, clustered)?;
    let needs_data = columns.iter().any(|c| c.needs_state || c.needs_snapshots);
    let all = if a.all_projects {
        "&all-projects=true"
    } else {
        ""
    };

    let (instances, raw): (Vec<InstanceFull>, yaml_serde::Value) = if needs_data && full {
        client
            .get_both(&format!("/1.0/instances?recursion=2{all}"))
            .await?
    } else {
        let (list, raw): (Vec<lxd_api::Instance>, _) = client
            .get_both(&format!("/1.0/instances?recursion=1{all}"))
            .await?;
        let mut out = Vec::new();
        for inst in list {
            let mut f = InstanceFull {
                instance: inst,
                ..Default::default()
            };
            if needs_data && should_show(&filters, &f) {
                let path = super::instance_path(&f.instance.name);
                if columns.iter().any(|c| c.needs_state) && is_active(&f) {
                    f.state = client.get(&format!("{path}/state")).await.ok();
                }
                if columns.iter().any(|c| c.needs_snapshots) {
                    f.snapshots = client
                        .get(&format!("{path}/snapshots?recursion=1"))
                        .await
                        .ok();
                }
            }
            out.push(f);
        }
        // Without full data LXD prints its assembled InstanceFull objects.
        let raw = if needs_data {
            yaml_serde::to_value(&out)?
        } else {
            with_full_keys(raw)
        };
        (out, raw)
    };

    let (rows, kept) = rows(instances, &filters, &columns);
    let names: Vec<&str> = kept.iter().map(|i| i.instance.name.as_str()).collect();
    let raw = super::filter_raw(&raw, "name", &names);
    let header: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    print_out(&output::render(format, &header, &rows, &raw)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(v: serde_json::Value) -> InstanceFull {
        serde_json::from_value(v).unwrap()
    }

    fn sample() -> Vec<InstanceFull> {
        vec![
            inst(serde_json::json!({
                "name": "web01", "status": "Running", "status_code": 103, "type": "container",
                "expanded_config": {"user.role": "web", "security.privileged": "true"},
                "profiles": ["default"],
                "config": {"volatile.base_image": "950bb2aa5f07fa55c307085169139de0450103962c6df7217116e9180d6855f6"},
                "state": {"pid": 4242, "processes": 3, "network": {
                    "lo": {"type": "loopback", "addresses": [{"family": "inet", "address": "127.0.0.1", "scope": "local"}]},
                    "eth0": {"type": "broadcast", "addresses": [
                        {"family": "inet", "address": "10.0.0.5", "scope": "global"},
                        {"family": "inet6", "address": "fd42::5", "scope": "global"},
                        {"family": "inet6", "address": "fe80::1", "scope": "link"}]}}},
                "snapshots": [{"name": "snap0"}, {"name": "snap1"}]
            })),
            inst(serde_json::json!({
                "name": "db01", "status": "Stopped", "status_code": 102, "type": "container",
                "ephemeral": true, "expanded_config": {"user.role": "db"},
                "snapshots": null
            })),
        ]
    }

    #[test]
    fn default_columns_render_like_lxd() {
        let cols = parse_columns(DEFAULT_COLUMNS, false, false, false).unwrap();
        let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]
        );
        let (rows, _) = rows(sample(), &[], &cols);
        assert_eq!(
            rows,
            vec![
                vec!["db01", "STOPPED", "", "", "CONTAINER (EPHEMERAL)", "0"],
                vec![
                    "web01",
                    "RUNNING",
                    "10.0.0.5 (eth0)",
                    "fd42::5 (eth0)",
                    "CONTAINER",
                    "2"
                ],
            ]
        );
    }

    #[test]
    fn column_parsing() {
        let c = parse_columns(
            "ns,user.role:ROLE,devices:eth0.parent:ETHP:2",
            false,
            false,
            false,
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[2].name, "ROLE");
        assert_eq!(
            c[3].data,
            Data::Device {
                key: "eth0.parent".into(),
                max_width: 2
            }
        );
        assert_eq!(
            parse_columns("Z", false, false, false)
                .unwrap_err()
                .to_string(),
            "Unknown column shorthand char 'Z' in 'Z'"
        );
        assert_eq!(
            parse_columns("nL", false, false, false)
                .unwrap_err()
                .to_string(),
            "Can't specify column L when not clustered"
        );
        assert_eq!(
            parse_columns("n,", false, false, false)
                .unwrap_err()
                .to_string(),
            "Empty column entry (redundant, leading or trailing command) in 'n,'"
        );
        let fast = parse_columns(DEFAULT_COLUMNS, true, false, false).unwrap();
        assert_eq!(fast.len(), 6);
        assert_eq!(fast[2].name, "ARCHITECTURE");
        let short = parse_columns("nfpNP", false, false, false).unwrap();
        let (rows, _) = rows(sample(), &["web".into()], &short);
        assert_eq!(
            rows,
            vec![vec!["web01", "950bb2aa5f07", "4242", "3", "default"]]
        );
    }

    #[test]
    fn filters() {
        let s = sample();
        let show = |f: &[&str], i: usize| {
            should_show(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &s[i])
        };
        assert!(show(&["web"], 0));
        assert!(!show(&["web"], 1));
        assert!(show(&[".*01"], 1));
        assert!(show(&["user.role=web"], 0));
        assert!(show(&["u.role=web"], 0));
        assert!(!show(&["user.role=web"], 1));
        assert!(show(&["status=running"], 0));
        assert!(show(&["status=stopped,frozen"], 1));
        assert!(show(&["type=container", "status=running"], 0));
        assert!(show(&["ipv4=10.0.0.0/24"], 0));
        assert!(!show(&["ipv4=10.1.0.0/24"], 0));
        assert!(show(&["s.privileged=true"], 0));
    }

    #[test]
    fn csv_output() {
        let cols = parse_columns(DEFAULT_COLUMNS, false, false, false).unwrap();
        let (rows, _) = rows(sample(), &[], &cols);
        assert_eq!(
            output::csv(&rows),
            "db01,STOPPED,,,CONTAINER (EPHEMERAL),0\nweb01,RUNNING,10.0.0.5 (eth0),fd42::5 (eth0),CONTAINER,2\n"
        );
    }
}
