//! Device validation and expansion (`devices:` of instances and profiles). Known types: `disk`,
//! `nic`, `proxy`, `unix-char`, `unix-block`, `none`. A device with unknown keys or missing required
//! keys is a 400, and nothing is stored.

use lxd_api::{ConfigMap, DevicesMap};

use crate::error::{ApiError, Result};

fn bad(dev: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid device \"{dev}\": {msg}"))
}

fn allowed_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "disk" => &[
            "path",
            "source",
            "pool",
            "readonly",
            "size",
            "size.state",
            "required",
            "optional",
            "shift",
            "propagation",
            "recursive",
            "limits.read",
            "limits.write",
            "limits.max",
            "boot.priority",
            "raw.mount.options",
            "ceph.cluster_name",
            "ceph.user_name",
        ],
        "nic" => &[
            "nictype",
            "network",
            "parent",
            "name",
            "hwaddr",
            "host_name",
            "mtu",
            "ipv4.address",
            "ipv6.address",
            "ipv4.routes",
            "ipv6.routes",
            "security.mac_filtering",
            "security.ipv4_filtering",
            "security.ipv6_filtering",
            "limits.ingress",
            "limits.egress",
            "limits.max",
            "vlan",
            "mode",
            "boot.priority",
            "queue.tx.length",
        ],
        "proxy" => &[
            "listen",
            "connect",
            "bind",
            "nat",
            "proxy_protocol",
            "security.uid",
            "security.gid",
            "uid",
            "gid",
            "mode",
        ],
        "unix-char" | "unix-block" => &[
            "source", "path", "major", "minor", "uid", "gid", "mode", "required",
        ],
        "none" => &[],
        _ => return None,
    })
}

fn is_bool(v: &str) -> bool {
    crate::config::parse_bool(v).is_some()
}

fn validate_one(name: &str, dev: &ConfigMap) -> Result<()> {
    let kind = dev
        .get("type")
        .map(String::as_str)
        .ok_or_else(|| bad(name, "missing device type"))?;
    let allowed =
        allowed_keys(kind).ok_or_else(|| bad(name, format!("unknown type \"{kind}\"")))?;
    for k in dev.keys() {
        if k == "type" || k.starts_with("user.") {
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return Err(bad(name, format!("unknown key \"{k}\" for type {kind}")));
        }
    }
    match kind {
        "disk" => {
            let path = dev.get("path").map(String::as_str).unwrap_or("");
            if path.is_empty() {
                return Err(bad(name, "disk devices need a path"));
            }
            if !path.starts_with('/') {
                return Err(bad(name, format!("path \"{path}\" must be absolute")));
            }
            if path == "/" {
                if dev.get("pool").is_none_or(String::is_empty) {
                    return Err(bad(name, "the root disk device needs a pool"));
                }
                if dev.contains_key("source") {
                    return Err(bad(name, "the root disk device cannot have a source"));
                }
            } else if dev.get("source").is_none_or(String::is_empty) {
                return Err(bad(name, "disk devices other than the root need a source"));
            }
            for k in ["readonly", "required", "optional", "shift", "recursive"] {
                if let Some(v) = dev.get(k)
                    && !is_bool(v)
                {
                    return Err(bad(name, format!("\"{k}\" must be a boolean, not \"{v}\"")));
                }
            }
            if let Some(s) = dev.get("size")
                && crate::config::parse_size(s).is_none()
            {
                return Err(bad(name, format!("invalid size \"{s}\"")));
            }
        }
        "nic" => {
            let nictype = dev.get("nictype").map(String::as_str).unwrap_or("");
            let network = dev.get("network").map(String::as_str).unwrap_or("");
            if nictype.is_empty() && network.is_empty() {
                return Err(bad(name, "nic devices need a nictype or a network"));
            }
            if !nictype.is_empty() && !network.is_empty() {
                return Err(bad(name, "nictype and network cannot both be set"));
            }
            if !nictype.is_empty()
                && !matches!(
                    nictype,
                    "bridged" | "macvlan" | "p2p" | "physical" | "routed" | "ipvlan" | "sriov"
                )
            {
                return Err(bad(name, format!("unknown nictype \"{nictype}\"")));
            }
            if matches!(nictype, "bridged" | "macvlan" | "physical")
                && dev.get("parent").is_none_or(String::is_empty)
            {
                return Err(bad(name, format!("nictype {nictype} needs a parent")));
            }
            if let Some(a) = dev.get("ipv4.address")
                && !a.is_empty()
                && a.parse::<std::net::Ipv4Addr>().is_err()
            {
                return Err(bad(name, format!("invalid IPv4 address \"{a}\"")));
            }
            if let Some(h) = dev.get("hwaddr")
                && !h.is_empty()
                && !valid_mac(h)
            {
                return Err(bad(name, format!("invalid MAC address \"{h}\"")));
            }
            if let Some(m) = dev.get("mtu")
                && !m.is_empty()
                && m.parse::<u32>()
                    .map(|m| !(68..=65535).contains(&m))
                    .unwrap_or(true)
            {
                return Err(bad(name, format!("invalid MTU \"{m}\"")));
            }
        }
        "proxy" => {
            for k in ["listen", "connect"] {
                let v = dev.get(k).map(String::as_str).unwrap_or("");
                if v.is_empty() {
                    return Err(bad(name, format!("proxy devices need \"{k}\"")));
                }
                if !(v.starts_with("tcp:") || v.starts_with("udp:") || v.starts_with("unix:")) {
                    return Err(bad(
                        name,
                        format!("\"{k}\" must start with tcp:, udp: or unix:, not \"{v}\""),
                    ));
                }
            }
            if let Some(v) = dev.get("nat")
                && !is_bool(v)
            {
                return Err(bad(name, format!("\"nat\" must be a boolean, not \"{v}\"")));
            }
        }
        "unix-char" | "unix-block"
            if dev.get("source").is_none_or(String::is_empty)
                && dev.get("path").is_none_or(String::is_empty) =>
        {
            return Err(bad(name, "unix devices need a source or a path"));
        }
        _ => {}
    }
    Ok(())
}

pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Validate every device; device names follow LXD's rules (no `/`, not empty).
pub fn validate_devices(devices: &DevicesMap) -> Result<()> {
    let mut root_count = 0;
    for (name, dev) in devices {
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            return Err(ApiError::bad_request(format!(
                "Invalid device name \"{name}\""
            )));
        }
        validate_one(name, dev)?;
        if dev.get("type").map(String::as_str) == Some("disk")
            && dev.get("path").map(String::as_str) == Some("/")
        {
            root_count += 1;
        }
    }
    if root_count > 1 {
        return Err(ApiError::bad_request("More than one root disk device"));
    }
    Ok(())
}

/// The root disk device of an expanded device set: (device name, pool).
pub fn root_disk(devices: &DevicesMap) -> Option<(String, String)> {
    devices.iter().find_map(|(name, d)| {
        (d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/"))
        .then(|| (name.clone(), d.get("pool").cloned().unwrap_or_default()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validates_common_devices() {
        let mut d = DevicesMap::new();
        d.insert(
            "root".into(),
            dev(&[("type", "disk"), ("path", "/"), ("pool", "default")]),
        );
        d.insert(
            "data".into(),
            dev(&[
                ("type", "disk"),
                ("path", "/mnt"),
                ("source", "/srv"),
                ("readonly", "true"),
            ]),
        );
        d.insert(
            "eth0".into(),
            dev(&[("type", "nic"), ("nictype", "bridged"), ("parent", "br0")]),
        );
        assert!(validate_devices(&d).is_ok());
        assert_eq!(
            root_disk(&d),
            Some(("root".to_string(), "default".to_string()))
        );
    }

    #[test]
    fn rejects_bad_devices() {
        let one = |pairs: &[(&str, &str)]| {
            let mut d = DevicesMap::new();
            d.insert("x".into(), dev(pairs));
            validate_devices(&d)
        };
        assert!(one(&[("path", "/mnt")]).is_err());
        assert!(one(&[("type", "floppy")]).is_err());
        assert!(one(&[("type", "disk"), ("path", "/mnt")]).is_err());
        assert!(
            one(&[
                ("type", "disk"),
                ("path", "/"),
                ("pool", "p"),
                ("bogus", "1")
            ])
            .is_err()
        );
        assert!(one(&[("type", "disk"), ("path", "mnt"), ("source", "/x")]).is_err());
        assert!(one(&[("type", "nic"), ("nictype", "bridged")]).is_err());
        assert!(one(&[("type", "nic"), ("network", "n"), ("hwaddr", "zz")]).is_err());
        assert!(one(&[("type", "proxy"), ("listen", "tcp:1"), ("connect", "x")]).is_err());
    }
}
