//! lxd-network: what a managed bridge is made of on the host. Bridges, veth pairs and macvlans via
//! rtnetlink (`link`), the nftables ruleset rendered as text and swapped atomically (`firewall`),
//! one supervised dnsmasq per bridge (`dnsmasq`), subnet choice (`addr`), bridge config
//! validation (`config`), reading a container's interfaces from inside its network namespace
//! (`netns`) and the userspace proxy relay (`proxy`).
//!
//! This crate never touches the database and knows nothing about instances; the daemon decides
//! what should exist and calls in. It never enters a mount namespace: network namespaces are
//! entered only on threads it spawns for that purpose and that exit afterwards.

pub mod addr;
pub mod config;
pub mod dnsmasq;
pub mod firewall;
pub mod link;
pub mod netns;
pub mod proxy;
pub mod sysctl;

/// Every error of this crate, one variant per module, so callers can match on the module that
/// failed and map it to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Addr(#[from] addr::Error),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Dnsmasq(#[from] dnsmasq::Error),
    #[error(transparent)]
    Firewall(#[from] firewall::Error),
    #[error(transparent)]
    Link(#[from] link::Error),
    #[error(transparent)]
    Netns(#[from] netns::Error),
    #[error(transparent)]
    Proxy(#[from] proxy::Error),
    #[error(transparent)]
    Sysctl(#[from] sysctl::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Format a MAC address as LXD prints it (`00:16:3e:aa:bb:cc`).
pub fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`; None when it is not six hex pairs.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Linux interface name rules (IFNAMSIZ - 1 = 15 bytes, no '/', ':' or whitespace).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '%' || c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let m = parse_mac("00:16:3e:0a:FF:01").unwrap();
        assert_eq!(format_mac(&m), "00:16:3e:0a:ff:01");
        assert!(parse_mac("00:16:3e:0a:ff").is_none());
        assert!(parse_mac("00:16:3e:0a:ff:01:02").is_none());
        assert!(parse_mac("00:16:3e:0a:fg:01").is_none());
    }

    #[test]
    fn interface_names() {
        assert!(valid_ifname("lxdbr0"));
        assert!(valid_ifname("a234567890abcde"));
        assert!(!valid_ifname("a234567890abcdef"));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(""));
    }
}
