//! Address plans for managed bridges: which subnets the host already routes (parsed from
//! `/proc/net/route` and `/proc/net/ipv6_route`), choosing a free `10.x.y.1/24` for
//! `ipv4.address=auto` and a random ULA `fdXX:XXXX:XXXX:XXXX::1/64` for `ipv6.address=auto` as
//! LXD's `randomSubnetV4`/`randomSubnetV6` do, and the DHCP ranges handed to dnsmasq. Pure
//! functions, no I/O except `host_routes` and `host_routes_v6`.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("no free 10.x.y.0/24 subnet found after {0} tries")]
    NoFreeSubnet(usize),
    #[error("invalid DHCP range \"{0}\" (expected START-END)")]
    BadRange(String),
    #[error("DHCP range \"{0}\" is outside the bridge subnet {1}")]
    RangeOutside(String, String),
    #[error("no free IPv6 /64 found after {0} tries")]
    NoFreeSubnetV6(usize),
}

/// One IPv6 route of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteV6 {
    pub iface: String,
    pub dest: Ipv6Net,
}

/// Parse `/proc/net/ipv6_route`: `DEST DESTLEN SRC SRCLEN NEXTHOP METRIC REF USE FLAGS IFACE`,
/// addresses as 32 hex digits in network order.
pub fn parse_proc_ipv6_route(text: &str) -> Vec<RouteV6> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[0].len() != 32 {
            continue;
        }
        let (Ok(dest), Ok(len)) = (u128::from_str_radix(f[0], 16), u8::from_str_radix(f[1], 16))
        else {
            continue;
        };
        if let Ok(net) = Ipv6Net::new(Ipv6Addr::from(dest), len) {
            out.push(RouteV6 {
                iface: f[9].to_string(),
                dest: net.trunc(),
            });
        }
    }
    out
}

/// The host's IPv6 routes that matter for subnet choice: not the default route, not
/// link-local, multicast or host (/128) routes, and not those of the loopback device.
pub fn host_routes_v6() -> Result<Vec<RouteV6>, Error> {
    let path = "/proc/net/ipv6_route";
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        // No IPv6 in this kernel: nothing is routed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(Error::Read {
                path: path.into(),
                source,
            });
        }
    };
    Ok(parse_proc_ipv6_route(&text)
        .into_iter()
        .filter(|r| {
            let a = r.dest.network();
            r.dest.prefix_len() > 0
                && r.dest.prefix_len() < 128
                && r.iface != "lo"
                && !a.is_multicast()
                && (a.segments()[0] & 0xffc0) != 0xfe80
        })
        .collect())
}

pub fn overlaps_v6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Pick a random ULA `fdXX:XXXX:XXXX:XXXX::1/64` overlapping none of `used`. 100 tries, as LXD.
pub fn pick_free_subnet_v6(used: &[Ipv6Net], seed: u64) -> Result<Ipv6Net, Error> {
    const TRIES: usize = 100;
    let mut state = seed | 1;
    for _ in 0..TRIES {
        // fd + 56 random bits (RFC 4193 global ID and subnet ID).
        let r = next(&mut state) & 0x00ff_ffff_ffff_ffff;
        let prefix = (0xfdu64 << 56) | r;
        let net = Ipv6Net::new(Ipv6Addr::from(u128::from(prefix) << 64), 64).expect("valid");
        if used.iter().any(|u| overlaps_v6(u, &net)) {
            continue;
        }
        return Ok(
            Ipv6Net::new(Ipv6Addr::from((u128::from(prefix) << 64) | 1), 64).expect("valid"),
        );
    }
    Err(Error::NoFreeSubnetV6(TRIES))
}

/// The stateful DHCPv6 ranges: `ipv6.dhcp.ranges` if set, else from the second address of the
/// subnet to its last (LXD's `GetIP(subnet, 2)`..`GetIP(subnet, -1)`).
pub fn dhcp_ranges_v6(
    net: &Ipv6Net,
    ranges: Option<&str>,
) -> Result<Vec<(Ipv6Addr, Ipv6Addr)>, Error> {
    match ranges.map(str::trim).filter(|r| !r.is_empty()) {
        Some(spec) => spec
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (a, b) = part
                    .split_once('-')
                    .ok_or_else(|| Error::BadRange(part.into()))?;
                let a: Ipv6Addr = a.trim().parse().map_err(|_| Error::BadRange(part.into()))?;
                let b: Ipv6Addr = b.trim().parse().map_err(|_| Error::BadRange(part.into()))?;
                if u128::from(a) > u128::from(b) {
                    return Err(Error::BadRange(part.into()));
                }
                if !net.contains(&a) || !net.contains(&b) {
                    return Err(Error::RangeOutside(part.into(), net.trunc().to_string()));
                }
                Ok((a, b))
            })
            .collect(),
        None => {
            let first = u128::from(net.network()) + 2;
            let last = u128::from(net.broadcast());
            Ok(vec![(Ipv6Addr::from(first), Ipv6Addr::from(last))])
        }
    }
}

/// One IPv4 route of the host: the interface and the destination network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub dest: Ipv4Net,
}

/// Parse `/proc/net/route` (addresses are little-endian hex, as the kernel prints them).
pub fn parse_proc_route(text: &str) -> Vec<Route> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(f[1], 16), u32::from_str_radix(f[7], 16))
        else {
            continue;
        };
        // The kernel prints the network-order word as a native (little-endian) integer.
        let dest = Ipv4Addr::from(dest.to_le_bytes());
        let mask = Ipv4Addr::from(mask.to_le_bytes());
        let prefix = u32::from(mask).leading_ones() as u8;
        if let Ok(net) = Ipv4Net::new(dest, prefix) {
            out.push(Route {
                iface: f[0].to_string(),
                dest: net.trunc(),
            });
        }
    }
    out
}

/// The host's IPv4 routes (main table, as `/proc/net/route` shows them).
pub fn host_routes() -> Result<Vec<Route>, Error> {
    let path = "/proc/net/route";
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })?;
    Ok(parse_proc_route(&text))
}

pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first route (other than a default route) that overlaps `net`, ignoring routes through
/// `except_iface` (the bridge itself when it already exists).
pub fn conflicting_route<'a>(
    routes: &'a [Route],
    net: &Ipv4Net,
    except_iface: Option<&str>,
) -> Option<&'a Route> {
    routes.iter().find(|r| {
        r.dest.prefix_len() > 0 && Some(r.iface.as_str()) != except_iface && overlaps(&r.dest, net)
    })
}

/// A small deterministic generator (xorshift) so that subnet choice is testable with a seed.
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Pick a random `10.x.y.1/24` whose /24 overlaps none of `used` (host routes plus the subnets
/// of other managed networks). 100 tries, as LXD.
pub fn pick_free_subnet(used: &[Ipv4Net], seed: u64) -> Result<Ipv4Net, Error> {
    const TRIES: usize = 100;
    let mut state = seed | 1;
    for _ in 0..TRIES {
        let r = next(&mut state);
        let (x, y) = ((r >> 8) as u8, (r >> 16) as u8);
        let net = Ipv4Net::new(Ipv4Addr::new(10, x, y, 0), 24).expect("valid prefix");
        if used.iter().any(|u| overlaps(u, &net)) {
            continue;
        }
        return Ok(Ipv4Net::new(Ipv4Addr::new(10, x, y, 1), 24).expect("valid prefix"));
    }
    Err(Error::NoFreeSubnet(TRIES))
}

/// A seed from the kernel's random pool (falls back to the clock).
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
}

/// The DHCP ranges dnsmasq serves: `ipv4.dhcp.ranges` if set (`A-B,C-D`), else everything from
/// the second address to the one before broadcast (LXD's default), always skipping nothing else.
pub fn dhcp_ranges(
    net: &Ipv4Net,
    ranges: Option<&str>,
) -> Result<Vec<(Ipv4Addr, Ipv4Addr)>, Error> {
    match ranges.map(str::trim).filter(|r| !r.is_empty()) {
        Some(spec) => spec
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (a, b) = part
                    .split_once('-')
                    .ok_or_else(|| Error::BadRange(part.into()))?;
                let a: Ipv4Addr = a.trim().parse().map_err(|_| Error::BadRange(part.into()))?;
                let b: Ipv4Addr = b.trim().parse().map_err(|_| Error::BadRange(part.into()))?;
                if u32::from(a) > u32::from(b) {
                    return Err(Error::BadRange(part.into()));
                }
                if !net.contains(&a) || !net.contains(&b) {
                    return Err(Error::RangeOutside(part.into(), net.trunc().to_string()));
                }
                Ok((a, b))
            })
            .collect(),
        None => {
            let first = u32::from(net.network()) + 2;
            let last = u32::from(net.broadcast()) - 1;
            Ok(vec![(Ipv4Addr::from(first), Ipv4Addr::from(last))])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
lxdbr0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
br9\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";

    #[test]
    fn parses_proc_net_route() {
        let r = parse_proc_route(ROUTE);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].dest, "0.0.0.0/0".parse::<Ipv4Net>().unwrap());
        assert_eq!(r[1].iface, "eth0");
        assert_eq!(r[1].dest, "192.0.2.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(r[2].dest, "192.168.1.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(r[3].dest, "10.0.0.0/8".parse::<Ipv4Net>().unwrap());
    }

    #[test]
    fn finds_conflicts_but_not_the_default_route_or_self() {
        let r = parse_proc_route(ROUTE);
        let n: Ipv4Net = "192.0.2.1/24".parse().unwrap();
        assert_eq!(conflicting_route(&r, &n, None).unwrap().iface, "eth0");
        assert!(conflicting_route(&r, &n, Some("eth0")).is_none());
        let n: Ipv4Net = "10.5.6.1/24".parse().unwrap();
        assert_eq!(conflicting_route(&r, &n, None).unwrap().iface, "br9");
        let n: Ipv4Net = "172.30.0.1/24".parse().unwrap();
        assert!(conflicting_route(&r, &n, None).is_none());
    }

    #[test]
    fn picks_free_subnets_deterministically() {
        let a = pick_free_subnet(&[], 42).unwrap();
        assert_eq!(a, pick_free_subnet(&[], 42).unwrap());
        assert_eq!(a.prefix_len(), 24);
        assert_eq!(a.addr().octets()[0], 10);
        assert_eq!(a.addr().octets()[3], 1);
        // Exclude the first pick: the next one differs and does not overlap it.
        let b = pick_free_subnet(&[a.trunc()], 42).unwrap();
        assert_ne!(a.trunc(), b.trunc());
        // Everything in 10/8 is taken: no subnet.
        let all: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        assert!(matches!(
            pick_free_subnet(&[all], 7),
            Err(Error::NoFreeSubnet(100))
        ));
    }

    const ROUTE6: &str = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000001 00000000 00000003     eth0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001   lxdbr0
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001     eth0
";

    #[test]
    fn parses_proc_net_ipv6_route() {
        let r = parse_proc_ipv6_route(ROUTE6);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].dest, "::/0".parse::<Ipv6Net>().unwrap());
        assert_eq!(r[1].dest, "fd00::/64".parse::<Ipv6Net>().unwrap());
        assert_eq!(r[1].iface, "eth0");
        assert_eq!(r[2].iface, "lxdbr0");
        assert_eq!(r[3].dest.prefix_len(), 128);
    }

    #[test]
    fn picks_free_ula_subnets() {
        let a = pick_free_subnet_v6(&[], 42).unwrap();
        assert_eq!(a, pick_free_subnet_v6(&[], 42).unwrap());
        assert_eq!(a.prefix_len(), 64);
        assert_eq!(a.addr().segments()[0] >> 8, 0xfd);
        assert_eq!(u128::from(a.addr()) & 0xffff_ffff_ffff_ffff, 1);
        let b = pick_free_subnet_v6(&[a.trunc()], 42).unwrap();
        assert_ne!(a.trunc(), b.trunc());
        let all: Ipv6Net = "fd00::/8".parse().unwrap();
        assert!(matches!(
            pick_free_subnet_v6(&[all], 7),
            Err(Error::NoFreeSubnetV6(100))
        ));
    }

    #[test]
    fn dhcp_ranges_v6_default_and_explicit() {
        let n: Ipv6Net = "fd42:1:2:3::1/64".parse().unwrap();
        assert_eq!(
            dhcp_ranges_v6(&n, None).unwrap(),
            vec![(
                "fd42:1:2:3::2".parse().unwrap(),
                "fd42:1:2:3:ffff:ffff:ffff:ffff".parse().unwrap()
            )]
        );
        assert_eq!(
            dhcp_ranges_v6(&n, Some("fd42:1:2:3::10-fd42:1:2:3::20"))
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            dhcp_ranges_v6(&n, Some("fd42:9::10-fd42:9::20")),
            Err(Error::RangeOutside(..))
        ));
        assert!(dhcp_ranges_v6(&n, Some("fd42:1:2:3::20-fd42:1:2:3::10")).is_err());
    }

    #[test]
    fn dhcp_ranges_default_and_explicit() {
        let n: Ipv4Net = "10.1.2.1/24".parse().unwrap();
        assert_eq!(
            dhcp_ranges(&n, None).unwrap(),
            vec![("10.1.2.2".parse().unwrap(), "10.1.2.254".parse().unwrap())]
        );
        let r = dhcp_ranges(&n, Some("10.1.2.10-10.1.2.20, 10.1.2.100-10.1.2.100")).unwrap();
        assert_eq!(r.len(), 2);
        assert!(dhcp_ranges(&n, Some("10.1.2.20-10.1.2.10")).is_err());
        assert!(dhcp_ranges(&n, Some("10.1.3.2-10.1.3.9")).is_err());
        assert!(dhcp_ranges(&n, Some("10.1.2.2")).is_err());
    }
}
