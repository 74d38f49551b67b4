//! Managed bridge configuration: which keys exist (LXD's `network-bridge` group, the subset we
//! implement), what their values may be, the defaults filled in at creation, and the typed view
//! the rest of the crate works from. Pure: the host-dependent checks (routes in use, existing
//! interfaces) are the daemon's, with `addr`.

use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

pub type ConfigMap = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown network option \"{0}\"")]
    UnknownKey(String),
    #[error("invalid value \"{value}\" for {key}: {why}")]
    Invalid {
        key: String,
        value: String,
        why: String,
    },
    #[error("{0}")]
    Unsupported(String),
}

fn invalid(key: &str, value: &str, why: impl Into<String>) -> Error {
    Error::Invalid {
        key: key.into(),
        value: value.into(),
        why: why.into(),
    }
}

/// LXD's boolean spellings.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

const BOOL_KEYS: &[&str] = &[
    "ipv4.nat",
    "ipv4.dhcp",
    "ipv4.routing",
    "ipv4.firewall",
    "ipv6.nat",
    "ipv6.dhcp",
    "ipv6.dhcp.stateful",
    "ipv6.routing",
    "ipv6.firewall",
];

const OTHER_KEYS: &[&str] = &[
    "bridge.driver",
    "bridge.mode",
    "bridge.mtu",
    "bridge.hwaddr",
    "dns.domain",
    "dns.mode",
    "dns.search",
    "ipv4.address",
    "ipv4.nat.address",
    "ipv4.nat.order",
    "ipv4.dhcp.gateway",
    "ipv4.dhcp.expiry",
    "ipv4.dhcp.ranges",
    "ipv6.address",
    "ipv6.dhcp.expiry",
    "ipv6.dhcp.ranges",
    "ipv6.nat.order",
    "raw.dnsmasq",
];

/// How DNS names are registered (`dns.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    Managed,
    Dynamic,
    None,
}

/// The typed view of a bridge's config, after defaults and `auto` have been resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Gateway address and prefix (`ipv4.address`); None for `none`.
    pub ipv4: Option<Ipv4Net>,
    pub nat: bool,
    pub nat_address: Option<Ipv4Addr>,
    pub dhcp: bool,
    pub dhcp_ranges: Option<String>,
    pub dhcp_expiry: String,
    pub dhcp_gateway: Option<Ipv4Addr>,
    pub routing: bool,
    pub firewall: bool,
    pub dns_domain: String,
    pub dns_mode: DnsMode,
    pub dns_search: Option<String>,
    pub mtu: Option<u32>,
    pub hwaddr: Option<[u8; 6]>,
    pub raw_dnsmasq: Option<String>,
    /// Gateway address and prefix (`ipv6.address`); None for `none`.
    pub ipv6: Option<Ipv6Net>,
    pub nat6: bool,
    pub dhcp6: bool,
    pub dhcp6_stateful: bool,
    pub dhcp6_ranges: Option<String>,
    pub dhcp6_expiry: String,
    pub routing6: bool,
    pub firewall6: bool,
}

/// Parse a bridge CIDR: a host address with its prefix, not the network or broadcast address.
pub fn parse_ipv4_cidr(key: &str, v: &str) -> Result<Ipv4Net, Error> {
    let net: Ipv4Net = v.parse().map_err(|_| {
        invalid(
            key,
            v,
            "expected auto, none or an address in CIDR form like 10.0.0.1/24",
        )
    })?;
    if net.prefix_len() == 0 || net.prefix_len() > 30 {
        return Err(invalid(key, v, "the prefix must be between /1 and /30"));
    }
    if net.addr() == net.network() || net.addr() == net.broadcast() {
        return Err(invalid(
            key,
            v,
            "use a host address of the subnet, not its network or broadcast address",
        ));
    }
    Ok(net)
}

/// Parse an IPv6 bridge CIDR: a host address with its prefix (LXD's `IsNetworkAddressCIDRV6`),
/// not the subnet-router anycast address (all host bits zero).
pub fn parse_ipv6_cidr(key: &str, v: &str) -> Result<Ipv6Net, Error> {
    let net: Ipv6Net = v.parse().map_err(|_| {
        invalid(
            key,
            v,
            "expected auto, none or an address in CIDR form like fd42:1:2:3::1/64",
        )
    })?;
    if net.prefix_len() == 0 || net.prefix_len() > 126 {
        return Err(invalid(key, v, "the prefix must be between /1 and /126"));
    }
    if net.addr() == net.network() {
        return Err(invalid(
            key,
            v,
            "use a host address of the subnet, not its network address",
        ));
    }
    if net.addr().is_multicast() || net.addr().is_loopback() {
        return Err(invalid(key, v, "not a unicast address"));
    }
    Ok(net)
}

/// `START-END[,START-END...]` of one address family.
fn valid_ranges<A: std::str::FromStr>(v: &str) -> bool {
    v.split(',').all(|part| {
        part.split_once('-')
            .is_some_and(|(a, b)| a.trim().parse::<A>().is_ok() && b.trim().parse::<A>().is_ok())
    })
}

fn valid_duration(v: &str) -> bool {
    if v == "infinite" {
        return true;
    }
    let digits = v.trim_end_matches(['s', 'm', 'h', 'd', 'w']);
    !digits.is_empty() && v.len() - digits.len() <= 1 && digits.chars().all(|c| c.is_ascii_digit())
}

/// Check every key and value. `ipv4.address=auto` passes (the daemon resolves it).
pub fn validate(config: &ConfigMap) -> Result<(), Error> {
    for (k, v) in config {
        if k.starts_with("user.") {
            continue;
        }
        if BOOL_KEYS.contains(&k.as_str()) {
            if parse_bool(v).is_none() {
                return Err(invalid(k, v, "expected true or false"));
            }
            continue;
        }
        if !OTHER_KEYS.contains(&k.as_str()) {
            return Err(Error::UnknownKey(k.clone()));
        }
        match k.as_str() {
            "bridge.driver" if !v.is_empty() && v != "native" => {
                return Err(Error::Unsupported(format!(
                    "bridge.driver \"{v}\" is not supported (only native)"
                )));
            }
            "bridge.mode" if !v.is_empty() && v != "standard" => {
                return Err(invalid(k, v, "only standard is supported"));
            }
            "bridge.mtu" if !v.is_empty() => match v.parse::<u32>() {
                Ok(m) if (68..=65535).contains(&m) => {}
                _ => return Err(invalid(k, v, "expected an MTU between 68 and 65535")),
            },
            "bridge.hwaddr" if !v.is_empty() && crate::parse_mac(v).is_none() => {
                return Err(invalid(k, v, "expected a MAC address"));
            }
            "dns.mode" if !matches!(v.as_str(), "" | "managed" | "dynamic" | "none") => {
                return Err(invalid(k, v, "expected managed, dynamic or none"));
            }
            "dns.domain"
                if !v.is_empty()
                    && !v
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') =>
            {
                return Err(invalid(k, v, "expected a DNS domain"));
            }
            "ipv4.address" => match v.as_str() {
                "" | "auto" | "none" => {}
                _ => {
                    parse_ipv4_cidr(k, v)?;
                }
            },
            "ipv4.nat.address" | "ipv4.dhcp.gateway" if !v.is_empty() => {
                v.parse::<Ipv4Addr>()
                    .map_err(|_| invalid(k, v, "expected an IPv4 address"))?;
            }
            "ipv4.nat.order" | "ipv6.nat.order"
                if !matches!(v.as_str(), "" | "before" | "after") =>
            {
                return Err(invalid(k, v, "expected before or after"));
            }
            "ipv4.dhcp.expiry" | "ipv6.dhcp.expiry" if !v.is_empty() && !valid_duration(v) => {
                return Err(invalid(
                    k,
                    v,
                    "expected a duration like 1h, 30m or infinite",
                ));
            }
            "ipv4.dhcp.ranges" if !v.is_empty() && !valid_ranges::<Ipv4Addr>(v) => {
                return Err(invalid(k, v, "expected START-END[,START-END...]"));
            }
            "ipv6.dhcp.ranges" if !v.is_empty() && !valid_ranges::<Ipv6Addr>(v) => {
                return Err(invalid(k, v, "expected START-END[,START-END...]"));
            }
            "ipv6.address" => match v.as_str() {
                "" | "auto" | "none" => {}
                _ => {
                    parse_ipv6_cidr(k, v)?;
                }
            },
            _ => {}
        }
    }
    Ok(())
}

/// What LXD fills in when a bridge is created: `ipv4.address=auto` (and then `ipv4.nat=true`)
/// unless given, and `ipv6.nat=true` with `ipv6.address=auto`. Unlike LXD, an absent
/// `ipv6.address` stays `none`: IPv6 routing turns on host-wide IPv6 forwarding, which we only do
/// when asked.
pub fn fill_defaults(config: &mut ConfigMap) {
    if !config.contains_key("ipv4.address") {
        config.insert("ipv4.address".into(), "auto".into());
    }
    if !config.contains_key("ipv6.address") {
        config.insert("ipv6.address".into(), "none".into());
    }
    if config.get("ipv4.address").map(String::as_str) == Some("auto")
        && !config.contains_key("ipv4.nat")
    {
        config.insert("ipv4.nat".into(), "true".into());
    }
    if config.get("ipv6.address").map(String::as_str) == Some("auto")
        && !config.contains_key("ipv6.nat")
    {
        config.insert("ipv6.nat".into(), "true".into());
    }
}

fn flag(config: &ConfigMap, key: &str, default: bool) -> bool {
    config
        .get(key)
        .filter(|v| !v.is_empty())
        .and_then(|v| parse_bool(v))
        .unwrap_or(default)
}

/// The typed config. Call after `validate` and after `auto` was replaced by a real subnet.
pub fn parse(config: &ConfigMap) -> Result<BridgeConfig, Error> {
    validate(config)?;
    let ipv4 = match config.get("ipv4.address").map(String::as_str) {
        None | Some("") | Some("none") => None,
        Some("auto") => {
            return Err(invalid(
                "ipv4.address",
                "auto",
                "auto must be resolved to a subnet first",
            ));
        }
        Some(v) => Some(parse_ipv4_cidr("ipv4.address", v)?),
    };
    let ipv6 = match config.get("ipv6.address").map(String::as_str) {
        None | Some("") | Some("none") => None,
        Some("auto") => {
            return Err(invalid(
                "ipv6.address",
                "auto",
                "auto must be resolved to a subnet first",
            ));
        }
        Some(v) => Some(parse_ipv6_cidr("ipv6.address", v)?),
    };
    let get = |k: &str| config.get(k).filter(|v| !v.is_empty()).cloned();
    Ok(BridgeConfig {
        ipv6,
        nat6: flag(config, "ipv6.nat", false),
        dhcp6: flag(config, "ipv6.dhcp", true),
        dhcp6_stateful: flag(config, "ipv6.dhcp.stateful", false),
        dhcp6_ranges: get("ipv6.dhcp.ranges"),
        dhcp6_expiry: get("ipv6.dhcp.expiry").unwrap_or_else(|| "1h".into()),
        routing6: flag(config, "ipv6.routing", true),
        firewall6: flag(config, "ipv6.firewall", true),
        ipv4,
        nat: flag(config, "ipv4.nat", false),
        nat_address: get("ipv4.nat.address").and_then(|v| v.parse().ok()),
        dhcp: flag(config, "ipv4.dhcp", true),
        dhcp_ranges: get("ipv4.dhcp.ranges"),
        dhcp_expiry: get("ipv4.dhcp.expiry").unwrap_or_else(|| "1h".into()),
        dhcp_gateway: get("ipv4.dhcp.gateway").and_then(|v| v.parse().ok()),
        routing: flag(config, "ipv4.routing", true),
        firewall: flag(config, "ipv4.firewall", true),
        dns_domain: get("dns.domain").unwrap_or_else(|| "lxd".into()),
        dns_mode: match get("dns.mode").as_deref() {
            Some("none") => DnsMode::None,
            Some("dynamic") => DnsMode::Dynamic,
            _ => DnsMode::Managed,
        },
        dns_search: get("dns.search"),
        mtu: get("bridge.mtu").and_then(|v| v.parse().ok()),
        hwaddr: get("bridge.hwaddr").and_then(|v| crate::parse_mac(&v)),
        raw_dnsmasq: get("raw.dnsmasq"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_like_lxd() {
        let mut c = ConfigMap::new();
        fill_defaults(&mut c);
        assert_eq!(c["ipv4.address"], "auto");
        assert_eq!(c["ipv4.nat"], "true");
        assert_eq!(c["ipv6.address"], "none");
        let mut c = cfg(&[("ipv4.address", "10.9.9.1/24")]);
        fill_defaults(&mut c);
        assert!(!c.contains_key("ipv4.nat"));
        let mut c = cfg(&[("ipv4.nat", "false")]);
        fill_defaults(&mut c);
        assert_eq!(c["ipv4.nat"], "false");
    }

    #[test]
    fn parses_a_full_config() {
        let c = cfg(&[
            ("ipv4.address", "10.9.9.1/24"),
            ("ipv4.nat", "true"),
            ("ipv4.dhcp.ranges", "10.9.9.10-10.9.9.20"),
            ("dns.domain", "example"),
            ("bridge.mtu", "1400"),
            ("user.note", "anything"),
        ]);
        let b = parse(&c).unwrap();
        assert_eq!(b.ipv4.unwrap().to_string(), "10.9.9.1/24");
        assert!(b.nat && b.dhcp && b.routing && b.firewall);
        assert_eq!(b.dns_domain, "example");
        assert_eq!(b.mtu, Some(1400));
        assert_eq!(b.dhcp_expiry, "1h");
        let b = parse(&cfg(&[("ipv4.address", "none")])).unwrap();
        assert!(b.ipv4.is_none());
        assert_eq!(b.dns_domain, "lxd");
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v) in [
            ("ipv4.address", "10.9.9.0/24"),
            ("ipv4.address", "10.9.9.255/24"),
            ("ipv4.address", "10.9.9.1"),
            ("ipv4.address", "banana"),
            ("ipv4.address", "10.9.9.1/31"),
            ("ipv4.nat", "maybe"),
            ("bridge.mtu", "10"),
            ("bridge.hwaddr", "zz"),
            ("dns.mode", "loud"),
            ("ipv4.dhcp.ranges", "10.0.0.1"),
            ("ipv4.dhcp.expiry", "soon"),
            ("ipv6.address", "fd42::/64"),
            ("ipv6.address", "fd42::1"),
            ("ipv6.address", "fd42::1/128"),
            ("ipv6.address", "10.0.0.1/24"),
            ("ipv6.address", "fd42:zz::1/64"),
            ("ipv6.dhcp.ranges", "fd42::10"),
            ("ipv6.dhcp.ranges", "10.0.0.1-10.0.0.9"),
            ("ipv6.dhcp.stateful", "maybe"),
            ("bridge.driver", "openvswitch"),
            ("tunnel.x.protocol", "vxlan"),
        ] {
            assert!(validate(&cfg(&[(k, v)])).is_err(), "{k}={v} accepted");
        }
        assert!(matches!(
            validate(&cfg(&[("bogus", "1")])),
            Err(Error::UnknownKey(_))
        ));
        assert!(parse(&cfg(&[("ipv4.address", "auto")])).is_err());
        assert!(validate(&cfg(&[("ipv4.dhcp.expiry", "infinite")])).is_ok());
        assert!(validate(&cfg(&[("ipv4.dhcp.expiry", "90m")])).is_ok());
        assert!(parse(&cfg(&[("ipv6.address", "auto")])).is_err());
    }

    #[test]
    fn ipv6_like_lxd() {
        let mut c = cfg(&[("ipv6.address", "auto")]);
        fill_defaults(&mut c);
        assert_eq!(c["ipv6.nat"], "true");
        let mut c = cfg(&[("ipv6.address", "fd42:1:2:3::1/64")]);
        fill_defaults(&mut c);
        assert!(!c.contains_key("ipv6.nat"));
        let b = parse(&cfg(&[
            ("ipv6.address", "fd42:1:2:3::1/64"),
            ("ipv6.dhcp.stateful", "true"),
            ("ipv6.dhcp.ranges", "fd42:1:2:3::10-fd42:1:2:3::20"),
        ]))
        .unwrap();
        assert_eq!(b.ipv6.unwrap().to_string(), "fd42:1:2:3::1/64");
        assert!(b.dhcp6 && b.dhcp6_stateful && b.routing6 && b.firewall6 && !b.nat6);
        assert_eq!(b.dhcp6_expiry, "1h");
        assert!(
            parse(&cfg(&[("ipv6.address", "none")]))
                .unwrap()
                .ipv6
                .is_none()
        );
    }
}
