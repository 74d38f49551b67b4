//! Config keys as LXD spells them, with their validation: server keys (`PUT /1.0`) and instance
//! keys (`lxc config set C01 ...`). Unknown or malformed keys are rejected with a 400 and nothing is
//! changed. Conversions (sizes, booleans) live here too so the rest of the daemon sees clean values.

use lxd_api::ConfigMap;

use crate::error::{ApiError, Result};

/// LXD's boolean spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

pub fn is_true(config: &ConfigMap, key: &str) -> bool {
    config.get(key).and_then(|v| parse_bool(v)).unwrap_or(false)
}

/// Parse a size as LXD does: "512MiB", "2GB", "1024" (bytes), "10%"-style is not accepted here.
pub fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        "EB" => 1e18,
        "KiB" | "k" | "K" => 1024.0,
        "MiB" | "m" | "M" => 1024.0 * 1024.0,
        "GiB" | "g" | "G" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "t" | "T" => 1024f64.powi(4),
        "PiB" | "p" | "P" => 1024f64.powi(5),
        "EiB" | "e" | "E" => 1024f64.powi(6),
        _ => return None,
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return None;
    }
    Some(bytes as u64)
}

fn check_int(key: &str, v: &str, min: i64) -> Result<()> {
    match v.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "Invalid value for {key}: \"{v}\" is not an integer of at least {min}"
        ))),
    }
}

fn check_bool(key: &str, v: &str) -> Result<()> {
    parse_bool(v).map(|_| ()).ok_or_else(|| {
        ApiError::bad_request(format!("Invalid value for {key}: \"{v}\" is not a boolean"))
    })
}

fn check_listen_address(key: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        return Ok(());
    }
    let ok = v.parse::<std::net::SocketAddr>().is_ok()
        || v.parse::<std::net::IpAddr>().is_ok()
        || v.strip_prefix(':')
            .is_some_and(|p| p.parse::<u16>().is_ok())
        || v.rsplit_once(':').is_some_and(|(h, p)| {
            p.parse::<u16>().is_ok() && !h.is_empty() && !h.contains(char::is_whitespace)
        })
        || v.strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid value for {key}: \"{v}\" is not a listen address"
        )))
    }
}

/// Validate one server config key and value (`lxc config set KEY VALUE`).
pub fn validate_server_key(key: &str, v: &str) -> Result<()> {
    match key {
        "core.https_address"
        | "core.debug_address"
        | "core.metrics_address"
        | "cluster.https_address" => check_listen_address(key, v),
        "core.trust_password"
        | "core.proxy_http"
        | "core.proxy_https"
        | "core.proxy_ignore_hosts"
        | "core.https_allowed_headers"
        | "core.https_allowed_methods"
        | "core.https_allowed_origin"
        | "core.bgp_address"
        | "core.dns_address"
        | "storage.images_volume"
        | "storage.backups_volume"
        | "maas.api.url"
        | "maas.api.key"
        | "maas.machine"
        | "images.default_architecture" => Ok(()),
        "core.https_allowed_credentials"
        | "core.trust_ca_certificates"
        | "images.auto_update_cached"
        | "core.syslog_socket" => check_bool(key, v),
        "core.shutdown_timeout" | "core.remote_token_expiry_seconds" => check_int(key, v, 0),
        "images.auto_update_interval" | "images.remote_cache_expiry" => check_int(key, v, 0),
        "images.compression_algorithm" | "backups.compression_algorithm" => {
            match v.split_whitespace().next().unwrap_or("") {
                "none" | "gzip" | "bzip2" | "lzma" | "xz" | "zstd" | "squashfs" => Ok(()),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid value for {key}: unsupported compression algorithm \"{v}\""
                ))),
            }
        }
        _ => Err(ApiError::bad_request(format!(
            "Invalid config key \"{key}\""
        ))),
    }
}

/// Validate a server config change; an empty value means "unset" and is always accepted for a
/// known key.
pub fn validate_server_config(config: &ConfigMap) -> Result<()> {
    for (k, v) in config {
        if v.is_empty() {
            validate_server_key(k, server_default(k)).or_else(|_| validate_server_key(k, ""))?;
            continue;
        }
        validate_server_key(k, v)?;
    }
    Ok(())
}

/// Default values LXD reports for server keys that are unset (used by the daemon's logic, not shown).
pub fn server_default(key: &str) -> &'static str {
    match key {
        "images.auto_update_interval" => "6",
        "images.remote_cache_expiry" => "10",
        "images.auto_update_cached" => "true",
        "images.compression_algorithm" => "gzip",
        "core.shutdown_timeout" => "5",
        _ => "",
    }
}

fn check_cpu_limit(key: &str, v: &str) -> Result<()> {
    // A count ("2") or a cpuset ("0-1,3").
    // A plain number is a count (pin to CPU 0 with "0-0", as LXD).
    if let Ok(n) = v.parse::<u32>() {
        if n > 0 {
            return Ok(());
        }
    } else if parse_cpuset(v).is_some() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "Invalid value for {key}: \"{v}\" is neither a CPU count nor a CPU set"
    )))
}

/// Parse "0-2,5" into a sorted list of CPU ids.
pub fn parse_cpuset(v: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in v.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
            if a > b || b - a > 4096 {
                return None;
            }
            cpus.extend(a..=b);
        } else {
            cpus.push(part.parse().ok()?);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

fn check_allowance(key: &str, v: &str) -> Result<()> {
    // "50%" or "25ms/100ms".
    let ok = if let Some(p) = v.strip_suffix('%') {
        p.parse::<u32>().is_ok_and(|n| n > 0 && n <= 100)
    } else if let Some((a, b)) = v.split_once('/') {
        let ms = |s: &str| s.strip_suffix("ms").and_then(|n| n.parse::<u64>().ok());
        matches!((ms(a), ms(b)), (Some(x), Some(y)) if x > 0 && y > 0)
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid value for {key}: \"{v}\" (expected a percentage like 50% or a quota like 25ms/100ms)"
        )))
    }
}

fn check_memory(key: &str, v: &str) -> Result<()> {
    if let Some(p) = v.strip_suffix('%') {
        if p.parse::<u32>().is_ok_and(|n| n > 0 && n <= 100) {
            return Ok(());
        }
    } else if parse_size(v).is_some_and(|n| n > 0) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "Invalid value for {key}: \"{v}\" is not a size (e.g. 512MiB) or a percentage"
    )))
}

/// Validate one instance config key and value. `volatile.*` keys are accepted only from the daemon
/// itself (callers strip or refuse them from users as LXD does).
pub fn validate_instance_key(key: &str, v: &str) -> Result<()> {
    if key.starts_with("user.")
        || key.starts_with("environment.")
        || key.starts_with("image.")
        || key.starts_with("volatile.")
    {
        return Ok(());
    }
    if let Some(sysctl) = key.strip_prefix("linux.sysctl.") {
        if sysctl.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Invalid config key \"{key}\""
            )));
        }
        return Ok(());
    }
    if let Some(rest) = key.strip_prefix("limits.kernel.") {
        if rest.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Invalid config key \"{key}\""
            )));
        }
        return Ok(());
    }
    match key {
        "boot.autostart"
        | "security.privileged"
        | "security.nesting"
        | "security.protection.delete"
        | "security.protection.shift"
        | "security.idmap.isolated"
        | "security.syscalls.intercept.mknod"
        | "security.syscalls.intercept.setxattr"
        | "security.syscalls.intercept.mount"
        | "limits.memory.swap"
        | "security.devlxd"
        | "migration.stateful"
        | "security.syscalls.deny_default"
        | "security.syscalls.deny_compat"
        | "snapshots.expiry.manual"
        | "limits.memory.hugepages" => check_bool(key, v),
        "boot.autostart.priority" | "boot.stop.priority" => check_int(key, v, i64::MIN),
        "boot.autostart.delay" | "boot.host_shutdown_timeout" => check_int(key, v, 0),
        "limits.cpu" => check_cpu_limit(key, v),
        "limits.cpu.allowance" => check_allowance(key, v),
        "limits.cpu.priority" | "limits.disk.priority" | "limits.network.priority" => {
            match v.parse::<i64>() {
                Ok(n) if (0..=10).contains(&n) => Ok(()),
                _ => Err(ApiError::bad_request(format!(
                    "Invalid value for {key}: \"{v}\" is not an integer between 0 and 10"
                ))),
            }
        }
        "limits.memory" => check_memory(key, v),
        "limits.memory.enforce" => match v {
            "hard" | "soft" => Ok(()),
            _ => Err(ApiError::bad_request(format!(
                "Invalid value for {key}: \"{v}\" (expected hard or soft)"
            ))),
        },
        "limits.processes" => check_int(key, v, 1),
        "security.idmap.base" | "security.idmap.size" => check_int(key, v, 0),
        "raw.idmap" => crate::instance::idmap::parse_raw_idmap(v).map(|_| ()),
        "raw.lxc"
        | "raw.seccomp"
        | "raw.apparmor"
        | "linux.kernel_modules"
        | "description"
        | "snapshots.pattern"
        | "security.syscalls.allow"
        | "security.syscalls.deny"
        | "cloud-init.user-data"
        | "cloud-init.vendor-data"
        | "cloud-init.network-config"
        | "user-data" => Ok(()),
        "snapshots.schedule.stopped" => check_bool(key, v),
        "snapshots.schedule" => crate::storage::schedule::validate_schedule(v),
        "snapshots.expiry" => crate::storage::schedule::validate_expiry(v),
        _ => Err(ApiError::bad_request(format!(
            "Invalid config key \"{key}\""
        ))),
    }
}

pub fn validate_instance_config(config: &ConfigMap) -> Result<()> {
    for (k, v) in config {
        validate_instance_key(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_lxd() {
        assert_eq!(parse_size("512MiB"), Some(512 * 1024 * 1024));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1.5GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("10XB"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn server_keys() {
        assert!(validate_server_key("images.auto_update_interval", "24").is_ok());
        assert!(validate_server_key("images.auto_update_interval", "-1").is_err());
        assert!(validate_server_key("images.auto_update_interval", "x").is_err());
        assert!(validate_server_key("core.https_address", "127.0.0.1:8443").is_ok());
        assert!(validate_server_key("core.https_address", ":8443").is_ok());
        assert!(validate_server_key("core.https_address", "[::]:8443").is_ok());
        let e = validate_server_key("no.such.key", "1").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }

    #[test]
    fn instance_keys() {
        assert!(validate_instance_key("boot.autostart", "1").is_ok());
        assert!(validate_instance_key("boot.autostart", "maybe").is_err());
        assert!(validate_instance_key("limits.memory", "512MiB").is_ok());
        assert!(validate_instance_key("limits.memory", "50%").is_ok());
        assert!(validate_instance_key("limits.memory", "lots").is_err());
        assert!(validate_instance_key("limits.cpu", "2").is_ok());
        assert!(validate_instance_key("limits.cpu", "0-1,3").is_ok());
        assert!(validate_instance_key("limits.cpu", "0").is_err());
        assert!(validate_instance_key("limits.cpu.allowance", "50%").is_ok());
        assert!(validate_instance_key("limits.cpu.allowance", "25ms/100ms").is_ok());
        assert!(validate_instance_key("limits.cpu.allowance", "fast").is_err());
        assert!(validate_instance_key("user.anything", "x").is_ok());
        assert!(validate_instance_key("environment.FOO", "bar").is_ok());
        assert!(validate_instance_key("bogus.key", "1").is_err());
        assert_eq!(parse_cpuset("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpuset("2-1"), None);
    }
}
