//! The nftables ruleset of our managed bridges, rendered as text and applied atomically with
//! `nft -f -` (LXD/Incus `drivers_nftables.go` pattern). Everything lives in one table of our
//! own, `inet lxdrs`; LXD's `inet lxd` is never named here.
//!
//! Several of our daemons may share a host (tests do), so a daemon never deletes the whole table:
//! every chain is named after its bridge (`pstrt.BR`, `fwd.BR`, ...), bridge names are unique on
//! the host, and one transaction first deletes every chain of each bridge it renders (an
//! `add chain` before each `delete chain` makes the delete safe when the chain is missing; nft
//! 1.0.6 has no `destroy`), then recreates the chains the bridge still needs.

use ipnet::{Ipv4Net, Ipv6Net};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Our table (family inet). Never LXD's `lxd`.
pub const TABLE: &str = "lxdrs";

/// Every chain kind a bridge may own; all are deleted before a bridge's chains are rebuilt.
pub const CHAIN_KINDS: &[&str] = &["pstrt", "fwd", "in", "out", "prert", "dnatout"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
    #[error("bridge name \"{0}\" cannot be used in an nftables chain name")]
    BadName(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One destination NAT: a proxy device in `nat=true` mode or a network forward port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnat {
    pub protocol: Protocol,
    /// The address traffic arrives for; None = any local address of the host (LXD's wildcard
    /// listen, `fib daddr type local`).
    pub listen: Option<Ipv4Addr>,
    pub listen_port: u16,
    pub target: Ipv4Addr,
    pub target_port: u16,
    /// What made the rule (`proxy C01/web`, `forward 192.0.2.10`), kept as an nft comment.
    pub comment: String,
}

/// Everything one bridge needs from the firewall. `active: false` renders only the deletion of
/// the bridge's chains (the bridge is gone or stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub active: bool,
    /// The bridge's IPv4 subnet (for masquerade); None when it has no IPv4 address.
    pub subnet: Option<Ipv4Net>,
    /// `ipv4.nat`: masquerade (or SNAT to `nat_address`) traffic leaving the subnet.
    pub nat: bool,
    pub nat_address: Option<Ipv4Addr>,
    /// `ipv4.firewall`: accept DNS, DHCP and ICMP errors from the bridge to the host.
    pub firewall: bool,
    /// `ipv4.routing`: accept forwarding to and from the bridge.
    pub routing: bool,
    pub dnats: Vec<Dnat>,
    /// The bridge's IPv6 subnet; None when it has no IPv6 address (then the `ipv6.*` flags
    /// below are ignored).
    pub subnet6: Option<Ipv6Net>,
    /// `ipv6.nat`: masquerade traffic leaving the IPv6 subnet.
    pub nat6: bool,
    /// `ipv6.firewall`: accept DNS, DHCPv6 and neighbour discovery from the bridge.
    pub firewall6: bool,
    /// `ipv6.routing`: accept IPv6 forwarding to and from the bridge.
    pub routing6: bool,
}

impl BridgeRules {
    /// The rules of a bridge that is gone: its chains are deleted, nothing is added.
    pub fn removed(bridge: &str) -> BridgeRules {
        BridgeRules {
            bridge: bridge.into(),
            active: false,
            subnet: None,
            nat: false,
            nat_address: None,
            firewall: false,
            routing: false,
            dnats: vec![],
            subnet6: None,
            nat6: false,
            firewall6: false,
            routing6: false,
        }
    }
}

/// Chain names are unquoted words in nft 1.0.6 (a quoted chain name is a syntax error), so the
/// bridge name must be plain.
fn check_name(name: &str) -> Result<(), Error> {
    if crate::valid_ifname(name)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(())
    } else {
        Err(Error::BadName(name.into()))
    }
}

fn comment(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\n' | '\r'))
        .take(120)
        .collect();
    format!("comment \"{clean}\"")
}

fn dnat_rule(d: &Dnat) -> String {
    let dst = match d.listen {
        Some(a) => format!("ip daddr {a}"),
        None => "fib daddr type local".to_string(),
    };
    format!(
        "{dst} {p} dport {lp} dnat ip to {t}:{tp} {c}",
        p = d.protocol.as_str(),
        lp = d.listen_port,
        t = d.target,
        tp = d.target_port,
        c = comment(&d.comment)
    )
}

/// Render one atomic nft script for these bridges. Bridges not listed are left alone.
pub fn render_ruleset(bridges: &[BridgeRules]) -> Result<String, Error> {
    let mut s = String::new();
    let t = TABLE;
    let _ = writeln!(s, "add table inet {t}");
    for b in bridges {
        check_name(&b.bridge)?;
        for kind in CHAIN_KINDS {
            let _ = writeln!(s, "add chain inet {t} {kind}.{}", b.bridge);
            let _ = writeln!(s, "delete chain inet {t} {kind}.{}", b.bridge);
        }
    }
    let active: Vec<&BridgeRules> = bridges.iter().filter(|b| b.active).collect();
    if active.is_empty() {
        return Ok(s);
    }
    let _ = writeln!(s, "table inet {t} {{");
    for b in active {
        let br = &b.bridge;
        let mut chain = |kind: &str, hook: &str, rules: &[String]| {
            if rules.is_empty() {
                return;
            }
            let _ = writeln!(s, "  chain {kind}.{br} {{");
            let _ = writeln!(s, "    {hook}");
            for r in rules {
                let _ = writeln!(s, "    {r}");
            }
            let _ = writeln!(s, "  }}");
        };

        let mut pstrt = Vec::new();
        if b.nat
            && let Some(net) = b.subnet
        {
            let net = net.trunc();
            let action = match b.nat_address {
                Some(a) => format!("snat ip to {a}"),
                None => "masquerade".into(),
            };
            pstrt.push(format!(
                "ip saddr {net} ip daddr != {net} {action} {}",
                comment(&format!("nat {br}"))
            ));
        }
        if b.nat6
            && let Some(net) = b.subnet6
        {
            let net = net.trunc();
            pstrt.push(format!(
                "ip6 saddr {net} ip6 daddr != {net} masquerade {}",
                comment(&format!("nat6 {br}"))
            ));
        }
        // Hairpin: a client on the bridge reaching a forwarded port of a neighbour must see the
        // reply come back through the host.
        for d in &b.dnats {
            pstrt.push(format!(
                "ip saddr {t} ip daddr {t} {p} dport {tp} masquerade {c}",
                t = d.target,
                p = d.protocol.as_str(),
                tp = d.target_port,
                c = comment(&d.comment)
            ));
        }
        chain(
            "pstrt",
            "type nat hook postrouting priority srcnat; policy accept;",
            &pstrt,
        );

        let v6 = b.subnet6.is_some();
        let fwd: Vec<String> = if b.routing && (!v6 || b.routing6) {
            vec![
                format!("iifname \"{br}\" accept"),
                format!("oifname \"{br}\" accept"),
            ]
        } else {
            let mut r = if b.routing {
                vec![
                    format!("meta nfproto ipv4 iifname \"{br}\" accept"),
                    format!("meta nfproto ipv4 oifname \"{br}\" accept"),
                ]
            } else {
                vec![
                    format!("ip version 4 oifname \"{br}\" reject with icmp port-unreachable"),
                    format!("ip version 4 iifname \"{br}\" reject with icmp port-unreachable"),
                ]
            };
            if v6 {
                if b.routing6 {
                    r.push(format!("meta nfproto ipv6 iifname \"{br}\" accept"));
                    r.push(format!("meta nfproto ipv6 oifname \"{br}\" accept"));
                } else {
                    for dir in ["oifname", "iifname"] {
                        r.push(format!(
                            "meta nfproto ipv6 {dir} \"{br}\" reject with icmpv6 port-unreachable"
                        ));
                    }
                }
            }
            r
        };
        chain(
            "fwd",
            "type filter hook forward priority filter; policy accept;",
            &fwd,
        );

        let (mut inp, mut out) = (Vec::new(), Vec::new());
        if b.firewall || (v6 && b.firewall6) {
            // DNS is the same service for both families.
            for (v, d) in [(&mut inp, "dport"), (&mut out, "sport")] {
                let dir = if d == "dport" { "iifname" } else { "oifname" };
                v.push(format!("{dir} \"{br}\" tcp {d} 53 accept"));
                v.push(format!("{dir} \"{br}\" udp {d} 53 accept"));
            }
        }
        if b.firewall {
            let icmp = "icmp type { destination-unreachable, time-exceeded, parameter-problem }";
            inp.push(format!("iifname \"{br}\" {icmp} accept"));
            inp.push(format!("iifname \"{br}\" udp dport 67 accept"));
            out.push(format!("oifname \"{br}\" {icmp} accept"));
            out.push(format!("oifname \"{br}\" udp sport 67 accept"));
        }
        if v6 && b.firewall6 {
            // Neighbour discovery, router solicitations/advertisements and DHCPv6 (LXD's
            // ICMPDHCPDNSAccess for IPv6).
            let icmp6 = "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, \
                         parameter-problem, nd-router-solicit, nd-router-advert, \
                         nd-neighbor-solicit, nd-neighbor-advert, mld2-listener-report }";
            inp.push(format!("iifname \"{br}\" {icmp6} accept"));
            inp.push(format!("iifname \"{br}\" udp dport 547 accept"));
            out.push(format!("oifname \"{br}\" {icmp6} accept"));
            out.push(format!("oifname \"{br}\" udp sport 547 accept"));
        }
        chain(
            "in",
            "type filter hook input priority filter; policy accept;",
            &inp,
        );
        chain(
            "out",
            "type filter hook output priority filter; policy accept;",
            &out,
        );

        let dnat: Vec<String> = b.dnats.iter().map(dnat_rule).collect();
        chain(
            "prert",
            "type nat hook prerouting priority dstnat; policy accept;",
            &dnat,
        );
        // Connections the host itself opens to a forwarded address (nft 1.0.6 refuses the
        // `dstnat` keyword on the output hook; -100 is its value).
        chain(
            "dnatout",
            "type nat hook output priority -100; policy accept;",
            &dnat,
        );
    }
    let _ = writeln!(s, "}}");
    Ok(s)
}

/// Run `nft -f -` with `script` on stdin: the whole script is one kernel transaction.
pub fn apply(script: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(Error::Spawn)?;
    }
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| l.starts_with("Error"))
            .or_else(|| err.lines().next())
            .unwrap_or("unknown error")
            .trim()
            .to_string();
        return Err(Error::Rejected(first));
    }
    Ok(())
}

/// Names of the chains in our table that belong to `bridge` (for tests and diagnostics).
pub fn chains_of(bridge: &str) -> Vec<String> {
    CHAIN_KINDS
        .iter()
        .map(|k| format!("{k}.{bridge}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> BridgeRules {
        BridgeRules {
            bridge: "lxt1".into(),
            active: true,
            subnet: Some("10.7.8.1/24".parse().unwrap()),
            nat: true,
            nat_address: None,
            firewall: true,
            routing: true,
            dnats: vec![],
            subnet6: None,
            nat6: false,
            firewall6: false,
            routing6: false,
        }
    }

    #[test]
    fn renders_ipv6_masquerade_and_filters() {
        let mut b = bridge();
        b.subnet6 = Some("fd42:1:2:3::1/64".parse().unwrap());
        b.nat6 = true;
        b.firewall6 = true;
        b.routing6 = true;
        let s = render_ruleset(&[b.clone()]).unwrap();
        assert!(s.contains(
            "ip6 saddr fd42:1:2:3::/64 ip6 daddr != fd42:1:2:3::/64 masquerade comment \"nat6 lxt1\""
        ));
        assert!(s.contains("ip saddr 10.7.8.0/24 ip daddr != 10.7.8.0/24 masquerade"));
        assert!(s.contains("iifname \"lxt1\" udp dport 547 accept"));
        assert!(s.contains("nd-router-advert"));
        assert!(s.contains("iifname \"lxt1\" accept"));
        b.routing6 = false;
        b.nat6 = false;
        let s = render_ruleset(&[b]).unwrap();
        assert!(!s.contains("ip6 saddr"));
        assert!(s.contains("meta nfproto ipv4 iifname \"lxt1\" accept"));
        assert!(
            s.contains("meta nfproto ipv6 oifname \"lxt1\" reject with icmpv6 port-unreachable")
        );
    }

    #[test]
    fn renders_nat_and_filter_chains() {
        let s = render_ruleset(&[bridge()]).unwrap();
        assert!(s.starts_with("add table inet lxdrs\n"));
        for k in CHAIN_KINDS {
            assert!(s.contains(&format!("add chain inet lxdrs {k}.lxt1\n")));
            assert!(s.contains(&format!("delete chain inet lxdrs {k}.lxt1\n")));
        }
        assert!(s.contains(
            "ip saddr 10.7.8.0/24 ip daddr != 10.7.8.0/24 masquerade comment \"nat lxt1\""
        ));
        assert!(s.contains("chain fwd.lxt1 {\n    type filter hook forward priority filter;"));
        assert!(s.contains("iifname \"lxt1\" accept"));
        assert!(s.contains("iifname \"lxt1\" udp dport 67 accept"));
        assert!(s.contains("oifname \"lxt1\" udp sport 53 accept"));
        // No DNAT chains without forwards.
        assert!(!s.contains("chain prert.lxt1"));
        assert!(!s.contains("chain dnatout.lxt1"));
        // Never LXD's table.
        assert!(!s.contains("inet lxd "));
        assert!(!s.contains("inet lxd\n"));
    }

    #[test]
    fn renders_snat_no_routing_and_no_firewall() {
        let mut b = bridge();
        b.nat_address = Some("192.0.2.7".parse().unwrap());
        b.routing = false;
        b.firewall = false;
        let s = render_ruleset(&[b]).unwrap();
        assert!(s.contains("ip daddr != 10.7.8.0/24 snat ip to 192.0.2.7"));
        assert!(s.contains("oifname \"lxt1\" reject with icmp port-unreachable"));
        assert!(!s.contains("chain in.lxt1"));
        let mut b = bridge();
        b.nat = false;
        let s = render_ruleset(&[b]).unwrap();
        assert!(!s.contains("chain pstrt.lxt1"));
    }

    #[test]
    fn renders_dnat_for_forwards_and_proxies() {
        let mut b = bridge();
        b.dnats = vec![
            Dnat {
                protocol: Protocol::Tcp,
                listen: Some("192.0.2.10".parse().unwrap()),
                listen_port: 8080,
                target: "10.7.8.5".parse().unwrap(),
                target_port: 80,
                comment: "forward 192.0.2.10".into(),
            },
            Dnat {
                protocol: Protocol::Udp,
                listen: None,
                listen_port: 5353,
                target: "10.7.8.6".parse().unwrap(),
                target_port: 53,
                comment: "proxy \"c1\"/dns".into(),
            },
        ];
        let s = render_ruleset(&[b]).unwrap();
        let tcp = "ip daddr 192.0.2.10 tcp dport 8080 dnat ip to 10.7.8.5:80 comment \"forward 192.0.2.10\"";
        assert_eq!(s.matches(tcp).count(), 2, "prerouting and output: {s}");
        assert!(s.contains(
            "fib daddr type local udp dport 5353 dnat ip to 10.7.8.6:53 comment \"proxy c1/dns\""
        ));
        assert!(s.contains("ip saddr 10.7.8.5 ip daddr 10.7.8.5 tcp dport 80 masquerade"));
        assert!(s.contains("type nat hook output priority -100;"));
    }

    #[test]
    fn removal_only_deletes_chains() {
        let s = render_ruleset(&[BridgeRules::removed("lxt2"), bridge()]).unwrap();
        assert!(s.contains("delete chain inet lxdrs pstrt.lxt2\n"));
        assert!(!s.contains("chain pstrt.lxt2 {"));
        assert!(s.contains("chain pstrt.lxt1 {"));
        let s = render_ruleset(&[BridgeRules::removed("lxt2")]).unwrap();
        assert!(!s.contains("table inet lxdrs {"));
    }

    #[test]
    fn rejects_names_nft_cannot_parse() {
        let mut b = bridge();
        b.bridge = "br\"0".into();
        assert!(matches!(render_ruleset(&[b]), Err(Error::BadName(_))));
        let mut b = bridge();
        b.bridge = "br;0".into();
        assert!(render_ruleset(&[b]).is_err());
    }
}
