//! Managed networks: the domain behind `/1.0/networks`. Creating, reconfiguring, renaming and
//! deleting bridges; bringing them back when the daemon starts; the one nftables ruleset of all
//! our bridges (rendered by `lxd_network::firewall`); the dnsmasq of each bridge and its static
//! host files. NIC devices live in `nic`, proxy devices in `proxy`, forwards in `forwards`.
//! Nothing here speaks HTTP, and nothing here touches LXD's own `lxdbr*` bridges or `inet lxd`.

pub mod forwards;
pub mod nic;
pub mod proxy;

use ipnet::{Ipv4Net, Ipv6Net};
use lxd_api::network::{
    Network, NetworkLease, NetworkPut, NetworkState, NetworkStateAddress, NetworkStateBridge,
    NetworkStateCounters, NetworksPost,
};
use lxd_api::{ConfigMap, DevicesMap};
use lxd_network::config::BridgeConfig;
use lxd_network::dnsmasq::{self, Dhcp6Config, DnsmasqConfig, Paths, Supervisor};
use lxd_network::firewall::{self, BridgeRules, Dnat};
use lxd_network::link::Netlink;
use lxd_network::{addr, config as netconfig};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::db::networks::NetworkRow;
use crate::error::{ApiError, Result};

/// Runtime state of the networks part of the daemon.
#[derive(Debug, Default)]
pub struct NetState {
    /// Serialises network changes, host file rewrites and ruleset swaps.
    pub lock: tokio::sync::Mutex<()>,
    dnsmasq: std::sync::Mutex<HashMap<String, Supervisor>>,
    /// Running userspace proxy relays by (instance, device).
    relays: std::sync::Mutex<HashMap<(String, String), lxd_network::proxy::Relay>>,
    /// DNAT rules of running proxy devices in nat mode, by instance: (bridge, rule).
    proxy_nat: std::sync::Mutex<HashMap<String, Vec<(String, Dnat)>>>,
}

pub fn net_dir(d: &Daemon, name: &str) -> PathBuf {
    d.dir.join("networks").join(name)
}

fn paths(d: &Daemon, name: &str) -> Paths {
    Paths::new(net_dir(d, name))
}

fn source(name: &str) -> String {
    format!("/1.0/networks/{name}")
}

/// Managed network names double as interface names and nft chain suffixes.
pub fn validate_name(name: &str) -> Result<()> {
    if !lxd_network::valid_ifname(name)
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::bad_request(format!(
            "Invalid network name \"{name}\": use 1 to 15 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

fn netlink() -> Result<Netlink> {
    Ok(Netlink::new()?)
}

/// The typed config of a stored network.
pub fn bridge_config(row: &NetworkRow) -> Result<BridgeConfig> {
    Ok(netconfig::parse(&row.config)?)
}

/// Subnets already taken: host routes (other than through `except`) and our other networks.
fn used_subnets(d: &Daemon, except: Option<&str>) -> Result<Vec<Ipv4Net>> {
    let mut used: Vec<Ipv4Net> = addr::host_routes()?
        .into_iter()
        .filter(|r| r.dest.prefix_len() > 0 && Some(r.iface.as_str()) != except)
        .map(|r| r.dest)
        .collect();
    for n in d.db.networks()? {
        if Some(n.name.as_str()) == except {
            continue;
        }
        if let Some(Ok(net)) = n
            .config
            .get("ipv4.address")
            .map(|v| netconfig::parse_ipv4_cidr("ipv4.address", v))
        {
            used.push(net.trunc());
        }
    }
    Ok(used)
}

/// Replace `ipv4.address=auto` with a free subnet; check an explicit one against host routes
/// and our other networks.
fn resolve_addresses(d: &Daemon, name: &str, config: &mut ConfigMap) -> Result<()> {
    match config.get("ipv4.address").map(String::as_str) {
        Some("auto") => {
            let used = used_subnets(d, Some(name))?;
            let net = addr::pick_free_subnet(&used, addr::random_seed())?;
            config.insert("ipv4.address".into(), net.to_string());
        }
        Some(v) if !v.is_empty() && v != "none" => {
            let net = netconfig::parse_ipv4_cidr("ipv4.address", v)?;
            let routes = addr::host_routes()?;
            if let Some(r) = addr::conflicting_route(&routes, &net, Some(name)) {
                return Err(ApiError::bad_request(format!(
                    "The IPv4 subnet {} overlaps the host route {} via {}",
                    net.trunc(),
                    r.dest,
                    r.iface
                )));
            }
            for other in d.db.networks()? {
                if other.name == name {
                    continue;
                }
                if let Some(Ok(o)) = other
                    .config
                    .get("ipv4.address")
                    .map(|v| netconfig::parse_ipv4_cidr("ipv4.address", v))
                    && addr::overlaps(&o.trunc(), &net.trunc())
                {
                    return Err(ApiError::bad_request(format!(
                        "The IPv4 subnet {} overlaps network \"{}\"",
                        net.trunc(),
                        other.name
                    )));
                }
            }
        }
        _ => {}
    }
    resolve_ipv6(d, name, config)
}

/// IPv6 subnets already taken: host routes (other than through `except`) and our other networks.
fn used_subnets_v6(d: &Daemon, except: Option<&str>) -> Result<Vec<Ipv6Net>> {
    let mut used: Vec<Ipv6Net> = addr::host_routes_v6()?
        .into_iter()
        .filter(|r| Some(r.iface.as_str()) != except)
        .map(|r| r.dest)
        .collect();
    for n in d.db.networks()? {
        if Some(n.name.as_str()) == except {
            continue;
        }
        if let Some(Ok(net)) = n
            .config
            .get("ipv6.address")
            .map(|v| netconfig::parse_ipv6_cidr("ipv6.address", v))
        {
            used.push(net.trunc());
        }
    }
    Ok(used)
}

/// `ipv6.address=auto` becomes a random free ULA /64; an explicit subnet must not overlap a host
/// route or another of our networks; stateful ranges must lie in the subnet.
fn resolve_ipv6(d: &Daemon, name: &str, config: &mut ConfigMap) -> Result<()> {
    let net = match config.get("ipv6.address").map(String::as_str) {
        Some("auto") => {
            if !lxd_network::sysctl::has_ipv6() {
                return Err(ApiError::bad_request(
                    "Network has ipv6.address but the kernel has no IPv6 support",
                ));
            }
            let used = used_subnets_v6(d, Some(name))?;
            let net = addr::pick_free_subnet_v6(&used, addr::random_seed())?;
            config.insert("ipv6.address".into(), net.to_string());
            net
        }
        Some(v) if !v.is_empty() && v != "none" => {
            let net = netconfig::parse_ipv6_cidr("ipv6.address", v)?;
            if let Some(r) = addr::host_routes_v6()?
                .iter()
                .find(|r| r.iface != name && addr::overlaps_v6(&r.dest, &net.trunc()))
            {
                return Err(ApiError::bad_request(format!(
                    "The IPv6 subnet {} overlaps the host route {} via {}",
                    net.trunc(),
                    r.dest,
                    r.iface
                )));
            }
            for other in d.db.networks()? {
                if other.name == name {
                    continue;
                }
                if let Some(Ok(o)) = other
                    .config
                    .get("ipv6.address")
                    .map(|v| netconfig::parse_ipv6_cidr("ipv6.address", v))
                    && addr::overlaps_v6(&o.trunc(), &net.trunc())
                {
                    return Err(ApiError::bad_request(format!(
                        "The IPv6 subnet {} overlaps network \"{}\"",
                        net.trunc(),
                        other.name
                    )));
                }
            }
            net
        }
        _ => return Ok(()),
    };
    if let Some(r) = config.get("ipv6.dhcp.ranges").filter(|v| !v.is_empty()) {
        addr::dhcp_ranges_v6(&net, Some(r))?;
    }
    Ok(())
}

/// Which network a NIC device sits on (managed `network=` or `parent=` of a bridged NIC).
pub fn nic_network(dev: &ConfigMap) -> Option<&str> {
    if dev.get("type").map(String::as_str) != Some("nic") {
        return None;
    }
    if let Some(n) = dev.get("network").filter(|v| !v.is_empty()) {
        return Some(n);
    }
    match dev.get("nictype").map(String::as_str) {
        Some("bridged") | Some("macvlan") => dev.get("parent").map(String::as_str),
        _ => None,
    }
}

fn devices_use(devices: &DevicesMap, network: &str) -> bool {
    devices
        .values()
        .any(|dev| nic_network(dev) == Some(network))
}

/// Profiles and instances whose NICs use `network`.
pub fn used_by(d: &Daemon, network: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in d.db.profile_names()? {
        if devices_use(&d.db.profile(&p)?.devices, network) {
            out.push(format!("/1.0/profiles/{p}"));
        }
    }
    for row in d.db.instances()? {
        let ex = crate::instance::expand_row(d, &row)?;
        if devices_use(&ex.devices, network) {
            out.push(format!("/1.0/instances/{}", row.name));
        }
    }
    Ok(out)
}

fn to_api(d: &Daemon, row: NetworkRow) -> Result<Network> {
    Ok(Network {
        used_by: used_by(d, &row.name)?,
        name: row.name,
        description: row.description,
        kind: if row.kind.is_empty() {
            "bridge".into()
        } else {
            row.kind
        },
        managed: true,
        status: "Created".into(),
        config: row.config,
        locations: vec!["none".into()],
    })
}

/// LXD's type words for host interfaces it does not manage.
fn host_type(l: &lxd_network::link::Link) -> &'static str {
    if l.name == "lo" {
        "loopback"
    } else if lxd_network::link::is_bridge(l) {
        "bridge"
    } else if l.kind.as_deref() == Some("bond") {
        "bond"
    } else if l.kind.as_deref() == Some("vlan") {
        "vlan"
    } else if std::path::Path::new(&format!("/sys/class/net/{}/device", l.name)).exists() {
        "physical"
    } else {
        "unknown"
    }
}

fn unmanaged(d: &Daemon, l: &lxd_network::link::Link) -> Result<Network> {
    Ok(Network {
        used_by: used_by(d, &l.name)?,
        name: l.name.clone(),
        kind: host_type(l).into(),
        managed: false,
        status: String::new(),
        locations: vec!["none".into()],
        ..Default::default()
    })
}

/// Managed networks, then the host's other interfaces (unmanaged), by name.
pub async fn list(d: &Daemon) -> Result<Vec<Network>> {
    let rows = d.db.networks()?;
    let links = netlink()?.links().await?;
    let mut out = Vec::new();
    for row in &rows {
        out.push(to_api(d, row.clone())?);
    }
    for l in &links {
        if !rows.iter().any(|r| r.name == l.name) {
            out.push(unmanaged(d, l)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub async fn get(d: &Daemon, name: &str) -> Result<Network> {
    if let Some(row) = d.db.network_opt(name)? {
        return to_api(d, row);
    }
    match netlink()?.link(name).await? {
        Some(l) => unmanaged(d, &l),
        None => Err(ApiError::not_found(format!("Network \"{name}\" not found"))),
    }
}

/// `POST /1.0/networks`: validate, create the bridge, start dnsmasq, swap the ruleset. Nothing
/// is left behind when a step fails.
pub async fn create(d: &Arc<Daemon>, req: NetworksPost) -> Result<()> {
    if req.name.is_empty() {
        return Err(ApiError::bad_request("No name provided"));
    }
    validate_name(&req.name)?;
    if !req.kind.is_empty() && req.kind != "bridge" {
        return Err(ApiError::bad_request(format!(
            "Network type \"{}\" is not supported (only bridge)",
            req.kind
        )));
    }
    let _g = d.net.lock.lock().await;
    if d.db.network_opt(&req.name)?.is_some() {
        return Err(ApiError::conflict(format!(
            "Network \"{}\" already exists",
            req.name
        )));
    }
    let mut config = req.config.clone();
    netconfig::validate(&config)?;
    netconfig::fill_defaults(&mut config);
    let taken = || {
        ApiError::conflict(format!(
            "Network interface \"{}\" already exists and is not managed by us",
            req.name
        ))
    };
    let nl = netlink()?;
    if nl.link(&req.name).await?.is_some() {
        return Err(taken());
    }
    resolve_addresses(d, &req.name, &mut config)?;
    let row = NetworkRow {
        name: req.name.clone(),
        kind: "bridge".into(),
        description: req.description.clone(),
        config,
    };
    let cfg = bridge_config(&row)?;
    d.db.network_create(&row)?;
    // Create the link here, exclusively: if another process made an interface of that name
    // since the check above, it is theirs and the undo below must not delete it.
    if let Err(e) = nl.create_bridge(&row.name, cfg.mtu, cfg.hwaddr).await {
        let _ = d.db.network_delete(&row.name);
        return Err(match e {
            lxd_network::link::Error::Exists(_) => taken(),
            other => other.into(),
        });
    }
    if let Err(e) = start_bridge(d, &row).await {
        tracing::warn!(network = %row.name, "creation failed, undoing: {e}");
        stop_bridge(d, &row.name, true).await;
        let _ = d.db.network_delete(&row.name);
        let _ = apply_firewall_locked(d, std::slice::from_ref(&row.name)).await;
        let _ = std::fs::remove_dir_all(net_dir(d, &row.name));
        return Err(e);
    }
    d.events
        .lifecycle("network-created", &source(&row.name), serde_json::json!({}));
    Ok(())
}

/// Bring a stored network to its configured state on the host: the bridge (created when missing,
/// as after a host reboot), its addresses and MTU, IPv4/IPv6 forwarding, the static host files,
/// dnsmasq, and the ruleset. Idempotent.
async fn start_bridge(d: &Arc<Daemon>, row: &NetworkRow) -> Result<()> {
    let cfg = bridge_config(row)?;
    let name = &row.name;
    let nl = netlink()?;
    let link = match nl.link(name).await? {
        Some(l) if lxd_network::link::is_bridge(&l) => l,
        Some(_) => {
            return Err(ApiError::conflict(format!(
                "Network interface \"{name}\" exists and is not a bridge"
            )));
        }
        None => nl.create_bridge(name, cfg.mtu, cfg.hwaddr).await?,
    };
    if let Some(mtu) = cfg.mtu
        && link.mtu != mtu
    {
        nl.set_mtu(link.index, mtu, name).await?;
    }
    nl.remove_ipv4_except(link.index, cfg.ipv4, name).await?;
    if let Some(net) = cfg.ipv4 {
        nl.add_address(link.index, net, name).await?;
    }
    // IPv6 switches before the address: without DAD it is usable at once, for dnsmasq to bind.
    lxd_network::sysctl::set_bridge_ipv6(name, cfg.ipv6.is_some())?;
    if cfg.ipv6.is_some() || lxd_network::sysctl::has_ipv6() {
        nl.remove_ipv6_except(link.index, cfg.ipv6, name).await?;
    }
    if let Some(net) = cfg.ipv6 {
        nl.add_address(link.index, net, name).await?;
    }
    nl.set_up(link.index, name).await?;
    if cfg.ipv4.is_some() && (cfg.nat || cfg.routing) {
        enable_forwarding(d, name);
    }
    if cfg.ipv6.is_some() && cfg.routing6 {
        enable_ipv6_forwarding(d, name);
    }
    crate::daemon::create_dir_mode(&d.dir.join("networks"), 0o711)?;
    crate::daemon::create_dir_mode(&net_dir(d, name), 0o711)?;
    write_hosts(d, name)?;
    restart_dnsmasq(d, row, &cfg).await?;
    apply_firewall_locked(d, &[]).await
}

fn enable_forwarding(d: &Daemon, bridge: &str) {
    match lxd_network::sysctl::enable_ip_forward() {
        Ok(Some(old)) => {
            let note = d.dir.join("networks").join("ip_forward.before");
            let _ = std::fs::write(&note, format!("{old}\n"));
            tracing::warn!(
                "enabled IPv4 forwarding on the host (net.ipv4.ip_forward was {old}, now 1) so that \
                 managed bridge {bridge} can route and NAT for its instances, as LXD does; it stays \
                 on after the bridge is gone (old value kept in {})",
                note.display()
            );
        }
        Ok(None) => {}
        Err(e) => tracing::error!("cannot enable IPv4 forwarding for {bridge}: {e}"),
    }
}

fn enable_ipv6_forwarding(d: &Daemon, bridge: &str) {
    match lxd_network::sysctl::enable_ipv6_forward() {
        Ok(c) => {
            let Some(old) = c.forwarding_was else {
                return;
            };
            let note = d.dir.join("networks").join("ipv6_forwarding.before");
            let _ = std::fs::write(
                &note,
                format!(
                    "net.ipv6.conf.all.forwarding={old}\naccept_ra 1->2: {}\n",
                    c.accept_ra_raised.join(" ")
                ),
            );
            tracing::warn!(
                "enabled IPv6 forwarding on the host (net.ipv6.conf.all.forwarding was {old}, now 1) \
                 so that managed bridge {bridge} can route for its instances (ipv6.routing), as LXD \
                 does; accept_ra went from 1 to 2 on [{}] so the host still takes router \
                 advertisements; it stays on after the bridge is gone (old values kept in {})",
                c.accept_ra_raised.join(", "),
                note.display()
            );
        }
        Err(e) => tracing::error!("cannot enable IPv6 forwarding for {bridge}: {e}"),
    }
}

async fn restart_dnsmasq(d: &Daemon, row: &NetworkRow, cfg: &BridgeConfig) -> Result<()> {
    let old = d.net.dnsmasq.lock().expect("dnsmasq map").remove(&row.name);
    if let Some(s) = old {
        s.stop().await;
    }
    if cfg.ipv4.is_none() && cfg.ipv6.is_none() {
        let p = paths(d, &row.name);
        let b = row.name.clone();
        let _ = tokio::task::spawn_blocking(move || dnsmasq::kill_stale(&p, &b)).await;
        return Ok(());
    }
    // With IPv6 dnsmasq always runs: it sends the router advertisements.
    if cfg.ipv6.is_none() && !cfg.dhcp && cfg.dns_mode == netconfig::DnsMode::None {
        return Ok(());
    }
    let ipv6 = match cfg.ipv6 {
        Some(gw) => Some(Dhcp6Config {
            gateway: gw,
            dhcp: cfg.dhcp6,
            stateful: cfg.dhcp6_stateful,
            ranges: if cfg.dhcp6_stateful {
                addr::dhcp_ranges_v6(&gw, cfg.dhcp6_ranges.as_deref())?
            } else {
                vec![]
            },
            expiry: cfg.dhcp6_expiry.clone(),
        }),
        None => None,
    };
    let dc = DnsmasqConfig {
        bridge: row.name.clone(),
        gateway: cfg.ipv4,
        ipv6,
        dhcp: cfg.dhcp,
        dhcp_ranges: match cfg.ipv4 {
            Some(gw) => addr::dhcp_ranges(&gw, cfg.dhcp_ranges.as_deref())?,
            None => vec![],
        },
        dhcp_expiry: cfg.dhcp_expiry.clone(),
        dhcp_router: cfg.dhcp_gateway,
        domain: (cfg.dns_mode != netconfig::DnsMode::None).then(|| cfg.dns_domain.clone()),
        dns_search: cfg.dns_search.clone(),
        mtu: cfg.mtu,
        raw: cfg.raw_dnsmasq.clone(),
        paths: paths(d, &row.name),
    };
    let sup = Supervisor::start(dc).await?;
    d.net
        .dnsmasq
        .lock()
        .expect("dnsmasq map")
        .insert(row.name.clone(), sup);
    Ok(())
}

/// Stop dnsmasq and optionally delete the bridge. Best effort: logs what fails.
async fn stop_bridge(d: &Daemon, name: &str, delete_link: bool) {
    let sup = d.net.dnsmasq.lock().expect("dnsmasq map").remove(name);
    match sup {
        Some(s) => s.stop().await,
        None => {
            let p = paths(d, name);
            let b = name.to_string();
            let _ = tokio::task::spawn_blocking(move || dnsmasq::kill_stale(&p, &b)).await;
        }
    }
    if delete_link && let Ok(nl) = netlink() {
        match nl.link(name).await {
            Ok(Some(l)) if lxd_network::link::is_bridge(&l) => {
                if let Err(e) = nl.delete(l.index, name).await {
                    tracing::error!(network = %name, "{e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::error!(network = %name, "{e}"),
        }
    }
}

/// The ruleset of every stored network, plus deletions for `removed` bridges, in one nft
/// transaction. Callers hold `d.net.lock`.
async fn apply_firewall_locked(d: &Daemon, removed: &[String]) -> Result<()> {
    let mut rules = Vec::new();
    let proxy_nat = d.net.proxy_nat.lock().expect("proxy nat").clone();
    for row in d.db.networks()? {
        if removed.contains(&row.name) {
            continue;
        }
        let Ok(cfg) = bridge_config(&row) else {
            continue;
        };
        let mut dnats = forwards::dnats(d, &row)?;
        for list in proxy_nat.values() {
            for (bridge, dn) in list {
                if bridge == &row.name {
                    dnats.push(dn.clone());
                }
            }
        }
        rules.push(BridgeRules {
            bridge: row.name.clone(),
            active: true,
            subnet: cfg.ipv4,
            nat: cfg.nat,
            nat_address: cfg.nat_address,
            firewall: cfg.firewall,
            routing: cfg.routing,
            dnats,
            subnet6: cfg.ipv6,
            nat6: cfg.nat6,
            firewall6: cfg.firewall6,
            routing6: cfg.routing6,
        });
    }
    for r in removed {
        rules.push(BridgeRules::removed(r));
    }
    if rules.is_empty() {
        return Ok(());
    }
    let script = firewall::render_ruleset(&rules)?;
    tokio::task::spawn_blocking(move || firewall::apply(&script)).await??;
    Ok(())
}

pub async fn apply_firewall(d: &Daemon) -> Result<()> {
    let _g = d.net.lock.lock().await;
    apply_firewall_locked(d, &[]).await
}

/// Rewrite the static host files of `network` from every instance with a NIC on it, and reload
/// its dnsmasq when anything changed. Callers hold `d.net.lock`.
fn write_hosts(d: &Daemon, network: &str) -> Result<()> {
    let mut entries = Vec::new();
    for row in d.db.instances()? {
        let ex = crate::instance::expand_row(d, &row)?;
        for (dev, cfg) in &ex.devices {
            if nic_network(cfg) != Some(network)
                || cfg.get("nictype").map(String::as_str) == Some("macvlan")
            {
                continue;
            }
            let Some(mac) = nic::hwaddr(&row.config, dev, cfg) else {
                continue;
            };
            let ip = cfg
                .get("ipv4.address")
                .filter(|v| !v.is_empty())
                .and_then(|v| v.parse().ok());
            let ip6 = cfg
                .get("ipv6.address")
                .filter(|v| !v.is_empty())
                .and_then(|v| v.parse().ok());
            entries.push((
                format!("{}.{dev}", row.name),
                dnsmasq::host_entry(&mac, ip, ip6, &row.name),
            ));
        }
    }
    let p = paths(d, network);
    if dnsmasq::write_hosts(&p.hosts_dir(), &entries)?
        && let Some(s) = d.net.dnsmasq.lock().expect("dnsmasq map").get(network)
    {
        s.reload();
    }
    Ok(())
}

/// Refresh the host files of every managed network an instance's NICs use (or used).
pub async fn sync_hosts(d: &Daemon, networks: &[String]) -> Result<()> {
    let _g = d.net.lock.lock().await;
    for n in networks {
        if d.db.network_opt(n)?.is_some() {
            write_hosts(d, n)?;
        }
    }
    Ok(())
}

/// Refresh host files of all managed networks (an instance was deleted or renamed).
pub async fn sync_all_hosts(d: &Daemon) -> Result<()> {
    let names: Vec<String> = d.db.networks()?.into_iter().map(|n| n.name).collect();
    sync_hosts(d, &names).await
}

/// `PUT`/`PATCH /1.0/networks/NAME`. Applies the new config to the running bridge, or puts the
/// old one back when that fails.
pub async fn update(d: &Arc<Daemon>, name: &str, put: NetworkPut, merge: bool) -> Result<()> {
    let _g = d.net.lock.lock().await;
    let old = d.db.network(name)?;
    let mut config = if merge {
        old.config.clone()
    } else {
        ConfigMap::new()
    };
    for (k, v) in put.config {
        // An empty value unsets the key, as LXD stores config.
        if v.is_empty() {
            config.remove(&k);
        } else {
            config.insert(k, v);
        }
    }
    netconfig::validate(&config)?;
    resolve_addresses(d, name, &mut config)?;
    let row = NetworkRow {
        config,
        description: put.description,
        ..old.clone()
    };
    bridge_config(&row)?;
    d.db.network_update(&row)?;
    if let Err(e) = start_bridge(d, &row).await {
        tracing::warn!(network = %name, "update failed, restoring the old config: {e}");
        let _ = d.db.network_update(&old);
        let _ = start_bridge(d, &old).await;
        return Err(e);
    }
    d.events
        .lifecycle("network-updated", &source(name), serde_json::json!({}));
    Ok(())
}

/// `POST /1.0/networks/NAME`: rename an unused network (the bridge is recreated under the new
/// name; leases and forwards follow).
pub async fn rename(d: &Arc<Daemon>, old: &str, new: &str) -> Result<()> {
    validate_name(new)?;
    let _g = d.net.lock.lock().await;
    let row = d.db.network(old)?;
    if !used_by(d, old)?.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot rename a network that is in use",
        ));
    }
    if d.db.network_opt(new)?.is_some() {
        return Err(ApiError::conflict(format!(
            "Network \"{new}\" already exists"
        )));
    }
    if netlink()?.link(new).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "Network interface \"{new}\" already exists"
        )));
    }
    stop_bridge(d, old, true).await;
    d.db.network_rename(old, new)?;
    let _ = std::fs::rename(net_dir(d, old), net_dir(d, new));
    let mut renamed = row.clone();
    renamed.name = new.to_string();
    let res = start_bridge(d, &renamed).await;
    apply_firewall_locked(d, &[old.to_string()]).await?;
    res?;
    d.events.lifecycle(
        "network-renamed",
        &source(new),
        serde_json::json!({"old_name": old}),
    );
    Ok(())
}

/// `DELETE /1.0/networks/NAME`: refuse while used; stop dnsmasq, delete the bridge, its chains,
/// its directory and its row.
pub async fn delete(d: &Arc<Daemon>, name: &str) -> Result<()> {
    let _g = d.net.lock.lock().await;
    if d.db.network_opt(name)?.is_none() {
        if netlink()?.link(name).await?.is_some() {
            return Err(ApiError::bad_request(format!(
                "Network \"{name}\" is not managed by us and cannot be deleted"
            )));
        }
        return Err(ApiError::not_found(format!("Network \"{name}\" not found")));
    }
    if !used_by(d, name)?.is_empty() {
        return Err(ApiError::bad_request("The network is currently in use"));
    }
    stop_bridge(d, name, true).await;
    d.db.network_delete(name)?;
    apply_firewall_locked(d, &[name.to_string()]).await?;
    let _ = std::fs::remove_dir_all(net_dir(d, name));
    d.events
        .lifecycle("network-deleted", &source(name), serde_json::json!({}));
    Ok(())
}

/// At daemon start: bring every stored network back (bridges survive a daemon restart and are
/// recreated after a host reboot), with a fresh dnsmasq and our ruleset.
pub async fn startup(d: &Arc<Daemon>) -> Result<()> {
    let _g = d.net.lock.lock().await;
    for row in d.db.networks()? {
        if let Err(e) = start_bridge(d, &row).await {
            tracing::error!(network = %row.name, "failed to start network: {e}");
        }
    }
    Ok(())
}

/// Daemon shutdown (SIGPWR, `lxd shutdown`): stop proxies, dnsmasq, delete our bridges and
/// their chains, as LXD stops its networks. A reload (SIGTERM) leaves all of it running.
pub async fn shutdown(d: &Arc<Daemon>) {
    let relays: Vec<_> = d
        .net
        .relays
        .lock()
        .expect("relays")
        .drain()
        .map(|(_, r)| r)
        .collect();
    let _ = tokio::task::spawn_blocking(move || relays.into_iter().for_each(|r| r.stop())).await;
    d.net.proxy_nat.lock().expect("proxy nat").clear();
    let _g = d.net.lock.lock().await;
    let names: Vec<String> = match d.db.networks() {
        Ok(n) => n.into_iter().map(|n| n.name).collect(),
        Err(_) => return,
    };
    for n in &names {
        stop_bridge(d, n, true).await;
    }
    if let Err(e) = apply_firewall_locked(d, &names).await {
        tracing::error!("failed to remove our firewall rules: {e}");
    }
}

/// `GET /1.0/networks/NAME/state`: addresses, counters, MTU and bridge details from the host.
pub async fn state(d: &Daemon, name: &str) -> Result<NetworkState> {
    let nl = netlink()?;
    let Some(l) = nl.link(name).await? else {
        if d.db.network_opt(name)?.is_some() {
            return Err(ApiError::bad_request(format!(
                "Network \"{name}\" is not running"
            )));
        }
        return Err(ApiError::not_found(format!("Network \"{name}\" not found")));
    };
    let addrs = nl.addresses(Some(l.index)).await?;
    let mut st = NetworkState {
        addresses: addrs
            .iter()
            .map(|a| NetworkStateAddress {
                family: if a.addr.is_ipv4() { "inet" } else { "inet6" }.into(),
                address: a.addr.to_string(),
                netmask: a.prefix.to_string(),
                scope: a.scope.into(),
            })
            .collect(),
        counters: NetworkStateCounters {
            bytes_received: l.rx_bytes as i64,
            bytes_sent: l.tx_bytes as i64,
            packets_received: l.rx_packets as i64,
            packets_sent: l.tx_packets as i64,
        },
        hwaddr: l.mac.clone(),
        mtu: i64::from(l.mtu),
        state: if l.up { "up" } else { "down" }.into(),
        kind: if l.name == "lo" {
            "loopback"
        } else {
            "broadcast"
        }
        .into(),
        bridge: None,
    };
    if lxd_network::link::is_bridge(&l) {
        let sys = |f: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{name}/bridge/{f}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let uppers = nl
            .links()
            .await?
            .into_iter()
            .filter(|x| x.master == Some(l.index))
            .map(|x| x.name)
            .collect();
        st.bridge = Some(NetworkStateBridge {
            id: sys("bridge_id"),
            stp: sys("stp_state") == "1",
            forward_delay: sys("forward_delay").parse().unwrap_or(0),
            vlan_default: sys("default_pvid").parse().unwrap_or(0),
            vlan_filtering: sys("vlan_filtering") == "1",
            upper_devices: uppers,
        });
    }
    Ok(st)
}

/// `GET /1.0/networks/NAME/leases`: the gateway, static allocations, then dnsmasq's leases.
pub fn leases(d: &Daemon, name: &str) -> Result<Vec<NetworkLease>> {
    let row = d.db.network(name)?;
    let cfg = bridge_config(&row)?;
    let mut out = Vec::new();
    if let Some(gw) = cfg.ipv4 {
        out.push(NetworkLease {
            hostname: format!("{name}.gw"),
            address: gw.addr().to_string(),
            kind: "gateway".into(),
            location: "none".into(),
            ..Default::default()
        });
    }
    if let Some(gw) = cfg.ipv6 {
        out.push(NetworkLease {
            hostname: format!("{name}.gw"),
            address: gw.addr().to_string(),
            kind: "gateway".into(),
            location: "none".into(),
            ..Default::default()
        });
    }
    for inst in d.db.instances()? {
        let ex = crate::instance::expand_row(d, &inst)?;
        for (dev, cfg) in &ex.devices {
            if nic_network(cfg) != Some(name) {
                continue;
            }
            for key in ["ipv4.address", "ipv6.address"] {
                if let Some(ip) = cfg.get(key).filter(|v| !v.is_empty()) {
                    out.push(NetworkLease {
                        hostname: inst.name.clone(),
                        hwaddr: nic::hwaddr(&inst.config, dev, cfg).unwrap_or_default(),
                        address: ip.clone(),
                        kind: "static".into(),
                        location: "none".into(),
                    });
                }
            }
        }
    }
    for l in dnsmasq::read_leases(&paths(d, name)) {
        if out.iter().any(|o| o.hwaddr == l.mac && o.address == l.ip) {
            continue;
        }
        out.push(NetworkLease {
            hostname: l.hostname,
            hwaddr: l.mac,
            address: l.ip,
            kind: "dynamic".into(),
            location: "none".into(),
        });
    }
    Ok(out)
}

/// The current IPv4 address of an instance's NIC on `network`: its static `ipv4.address`, else
/// its lease.
pub fn instance_address(
    d: &Daemon,
    instance: &str,
    network: &str,
) -> Result<Option<std::net::Ipv4Addr>> {
    let row = d.db.instance(instance)?;
    let ex = crate::instance::expand_row(d, &row)?;
    let leases = dnsmasq::read_leases(&paths(d, network));
    for (dev, cfg) in &ex.devices {
        if nic_network(cfg) != Some(network) {
            continue;
        }
        if let Some(ip) = cfg.get("ipv4.address").and_then(|v| v.parse().ok()) {
            return Ok(Some(ip));
        }
        if let Some(mac) = nic::hwaddr(&row.config, dev, cfg)
            && let Some(l) = leases.iter().find(|l| l.mac == mac)
        {
            return Ok(l.ip.parse().ok());
        }
    }
    Ok(None)
}
