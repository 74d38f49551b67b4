//! `nic` devices: a veth pair whose host end joins a bridge (`nictype=bridged parent=BR`, or
//! `network=NAME` for a managed network, or `p2p` with no bridge), or a macvlan on a parent.
//! The container end is created on the host with the instance's MAC, handed to the runtime
//! (which moves it into the container's namespace and renames it), and brought up. Hot-plug on
//! a running instance moves it from here; stopping deletes the host end.

use lxd_api::{ConfigMap, DevicesMap};
use lxd_network::link::Netlink;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::db::instances::InstanceRow;
use crate::error::{ApiError, Result};
use crate::instance::Expanded;

/// The MAC of a NIC: its `hwaddr`, else the generated `volatile.DEV.hwaddr`.
pub fn hwaddr(config: &ConfigMap, dev: &str, cfg: &ConfigMap) -> Option<String> {
    cfg.get("hwaddr")
        .filter(|v| !v.is_empty())
        .or_else(|| config.get(&format!("volatile.{dev}.hwaddr")))
        .map(|m| m.to_ascii_lowercase())
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

fn nics(devices: &DevicesMap) -> Vec<(&String, &ConfigMap)> {
    devices
        .iter()
        .filter(|(_, d)| d.get("type").map(String::as_str) == Some("nic"))
        .collect()
}

/// How a NIC is wired on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wiring {
    /// veth with the host end on this bridge (managed when it is one of our networks).
    Bridged {
        bridge: String,
        managed: bool,
    },
    /// veth with the host end left alone.
    P2p,
    Macvlan {
        parent: String,
    },
}

fn wiring(d: &Daemon, dev: &str, cfg: &ConfigMap) -> Result<Wiring> {
    if let Some(n) = cfg.get("network").filter(|v| !v.is_empty()) {
        d.db.network_opt(n)?.ok_or_else(|| {
            ApiError::not_found(format!("Device \"{dev}\": network \"{n}\" not found"))
        })?;
        return Ok(Wiring::Bridged {
            bridge: n.clone(),
            managed: true,
        });
    }
    let parent = cfg.get("parent").cloned().unwrap_or_default();
    match cfg.get("nictype").map(String::as_str).unwrap_or("") {
        "bridged" => Ok(Wiring::Bridged {
            managed: d.db.network_opt(&parent)?.is_some(),
            bridge: parent,
        }),
        "p2p" => Ok(Wiring::P2p),
        "macvlan" => Ok(Wiring::Macvlan { parent }),
        other => Err(ApiError::bad_request(format!(
            "Device \"{dev}\": nictype \"{other}\" is not supported (bridged, macvlan, p2p)"
        ))),
    }
}

/// Check the NICs of an expanded device set against the host and our networks: the network or
/// parent exists, a bridged parent is a bridge, a static address fits its managed network.
pub async fn validate(d: &Daemon, devices: &DevicesMap, instance: &str) -> Result<()> {
    let list = nics(devices);
    if list.is_empty() {
        return Ok(());
    }
    let nl = Netlink::new()?;
    for (dev, cfg) in list {
        match wiring(d, dev, cfg)? {
            Wiring::Bridged { bridge, managed } => {
                if managed {
                    check_static(d, dev, cfg, &bridge, instance)?;
                } else {
                    match nl.link(&bridge).await? {
                        None => {
                            return Err(ApiError::not_found(format!(
                                "Device \"{dev}\": parent interface \"{bridge}\" not found"
                            )));
                        }
                        Some(l) if !lxd_network::link::is_bridge(&l) => {
                            return Err(ApiError::bad_request(format!(
                                "Device \"{dev}\": parent \"{bridge}\" is not a bridge"
                            )));
                        }
                        Some(_) => {}
                    }
                }
            }
            Wiring::Macvlan { parent } => {
                if nl.link(&parent).await?.is_none() {
                    return Err(ApiError::not_found(format!(
                        "Device \"{dev}\": parent interface \"{parent}\" not found"
                    )));
                }
            }
            Wiring::P2p => {}
        }
    }
    Ok(())
}

/// A static `ipv4.address` must be a host address of the managed network's subnet, not its
/// gateway, and not another instance's.
fn check_static(
    d: &Daemon,
    dev: &str,
    cfg: &ConfigMap,
    network: &str,
    instance: &str,
) -> Result<()> {
    check_static_v6(d, dev, cfg, network, instance)?;
    let Some(ip) = cfg.get("ipv4.address").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| {
        ApiError::bad_request(format!("Device \"{dev}\": invalid IPv4 address \"{ip}\""))
    })?;
    let row = d.db.network(network)?;
    let Some(net) = super::bridge_config(&row)?.ipv4 else {
        return Err(ApiError::bad_request(format!(
            "Device \"{dev}\": network \"{network}\" has no IPv4 subnet for address {ip}"
        )));
    };
    if !net.contains(&ip) || ip == net.network() || ip == net.broadcast() || ip == net.addr() {
        return Err(ApiError::bad_request(format!(
            "Device \"{dev}\": address {ip} is not a free host address of {}",
            net.trunc()
        )));
    }
    for other in d.db.instances()? {
        if other.name == instance {
            continue;
        }
        let ex = crate::instance::expand_row(d, &other)?;
        for (odev, ocfg) in &ex.devices {
            if super::nic_network(ocfg) == Some(network)
                && ocfg.get("ipv4.address").map(String::as_str) == Some(&ip.to_string())
            {
                return Err(ApiError::conflict(format!(
                    "Device \"{dev}\": address {ip} is already used by {}/{odev}",
                    other.name
                )));
            }
        }
    }
    Ok(())
}

/// A static `ipv6.address` needs stateful DHCPv6 on the managed network (LXD: "Cannot specify
/// ipv6.address when DHCP or ipv6.dhcp.stateful are disabled"), must be a host address of its
/// subnet other than the gateway, and not another instance's.
fn check_static_v6(
    d: &Daemon,
    dev: &str,
    cfg: &ConfigMap,
    network: &str,
    instance: &str,
) -> Result<()> {
    let Some(ip) = cfg.get("ipv6.address").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| {
        ApiError::bad_request(format!("Device \"{dev}\": invalid IPv6 address \"{ip}\""))
    })?;
    let row = d.db.network(network)?;
    let bc = super::bridge_config(&row)?;
    let Some(net) = bc.ipv6.filter(|_| bc.dhcp6 && bc.dhcp6_stateful) else {
        return Err(ApiError::bad_request(format!(
            "Device \"{dev}\": cannot specify ipv6.address when DHCP or ipv6.dhcp.stateful are \
             disabled on network \"{network}\""
        )));
    };
    if !net.contains(&ip) || ip == net.network() || ip == net.addr() {
        return Err(ApiError::bad_request(format!(
            "Device \"{dev}\": address {ip} is not a free host address of {}",
            net.trunc()
        )));
    }
    for other in d.db.instances()? {
        if other.name == instance {
            continue;
        }
        let ex = crate::instance::expand_row(d, &other)?;
        for (odev, ocfg) in &ex.devices {
            if super::nic_network(ocfg) == Some(network)
                && ocfg
                    .get("ipv6.address")
                    .and_then(|v| v.parse::<std::net::Ipv6Addr>().ok())
                    == Some(ip)
            {
                return Err(ApiError::conflict(format!(
                    "Device \"{dev}\": address {ip} is already used by {}/{odev}",
                    other.name
                )));
            }
        }
    }
    Ok(())
}

/// What a start made on the host for the NICs.
#[derive(Debug, Default)]
pub struct Started {
    /// For the runtime: host-side link -> name inside.
    pub runtime: Vec<lxd_runtime::spec::Nic>,
    /// Links to delete if the start fails (veth host ends, macvlans not yet moved).
    pub host_links: Vec<String>,
    /// Managed networks whose host files were refreshed.
    pub networks: Vec<String>,
}

/// Name of the interface inside: `name`, else the remembered `volatile.DEV.name`, else the
/// first free `ethN`.
fn inside_name(config: &ConfigMap, dev: &str, cfg: &ConfigMap, taken: &[String]) -> String {
    if let Some(n) = cfg.get("name").filter(|v| !v.is_empty()) {
        return n.clone();
    }
    if let Some(n) = config.get(&format!("volatile.{dev}.name")) {
        return n.clone();
    }
    (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !taken.contains(n))
        .expect("an unused ethN exists")
}

/// Create one NIC's host links; returns (link to move in, host end to record if any).
async fn create_one(
    d: &Daemon,
    nl: &Netlink,
    row: &mut InstanceRow,
    dev: &str,
    cfg: &ConfigMap,
) -> Result<(String, Option<String>)> {
    let mac_s = match hwaddr(&row.config, dev, cfg) {
        Some(m) => m,
        None => {
            let mut c = ConfigMap::new();
            let mut devs = DevicesMap::new();
            devs.insert(dev.to_string(), cfg.clone());
            crate::instance::fill_volatile(&mut c, &devs);
            let m = c
                .get(&format!("volatile.{dev}.hwaddr"))
                .cloned()
                .unwrap_or_default();
            row.config
                .insert(format!("volatile.{dev}.hwaddr"), m.clone());
            m
        }
    };
    let mac = lxd_network::parse_mac(&mac_s);
    let mut mtu: Option<u32> = cfg.get("mtu").and_then(|v| v.parse().ok());
    match wiring(d, dev, cfg)? {
        Wiring::Macvlan { parent } => {
            let p = nl.link(&parent).await?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "Device \"{dev}\": parent interface \"{parent}\" not found"
                ))
            })?;
            let name = format!("mac{}", random_suffix());
            nl.create_macvlan(&name, p.index, mac, mtu).await?;
            Ok((name, None))
        }
        w => {
            let bridge = match &w {
                Wiring::Bridged { bridge, managed } => {
                    let b = nl.link(bridge).await?.ok_or_else(|| {
                        if *managed {
                            ApiError::internal(format!(
                                "Device \"{dev}\": bridge \"{bridge}\" of network \"{bridge}\" is not up"
                            ))
                        } else {
                            ApiError::not_found(format!(
                                "Device \"{dev}\": parent interface \"{bridge}\" not found"
                            ))
                        }
                    })?;
                    if !lxd_network::link::is_bridge(&b) {
                        return Err(ApiError::bad_request(format!(
                            "Device \"{dev}\": parent \"{bridge}\" is not a bridge"
                        )));
                    }
                    if *managed {
                        check_static(d, dev, cfg, bridge, &row.name)?;
                        if mtu.is_none() {
                            mtu =
                                d.db.network(bridge)?
                                    .config
                                    .get("bridge.mtu")
                                    .and_then(|v| v.parse().ok());
                        }
                    }
                    Some(b)
                }
                _ => None,
            };
            let host = cfg
                .get("host_name")
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| format!("veth{}", random_suffix()));
            if !lxd_network::valid_ifname(&host) {
                return Err(ApiError::bad_request(format!(
                    "Device \"{dev}\": invalid host_name \"{host}\""
                )));
            }
            if nl.link(&host).await?.is_some() {
                return Err(ApiError::conflict(format!(
                    "Device \"{dev}\": host interface \"{host}\" already exists"
                )));
            }
            let peer = format!("veth{}", random_suffix());
            nl.create_veth(&host, &peer, mac, mtu).await?;
            if let Some(b) = bridge {
                let res = async {
                    let h = nl.require(&host).await?;
                    nl.set_master(h.index, b.index, &host).await
                }
                .await;
                if let Err(e) = res {
                    let _ = nl.delete_by_name(&host).await;
                    return Err(e.into());
                }
            }
            Ok((peer, Some(host)))
        }
    }
}

/// Before `forkstart`: make every NIC's links and record `volatile.DEV.host_name` and
/// `volatile.DEV.name` in `row`. Undoes its own links when one fails.
pub async fn start(d: &Arc<Daemon>, row: &mut InstanceRow, expanded: &Expanded) -> Result<Started> {
    let list: Vec<(String, ConfigMap)> = nics(&expanded.devices)
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut st = Started::default();
    if list.is_empty() {
        return Ok(st);
    }
    let mut networks: Vec<String> = list
        .iter()
        .filter_map(|(_, c)| super::nic_network(c).map(str::to_string))
        .collect();
    networks.dedup();
    // Host files first, so dnsmasq knows the MAC (and any static address) before the first
    // DHCP request.
    super::sync_hosts(d, &networks).await?;
    st.networks = networks;
    let nl = Netlink::new()?;
    let mut taken: Vec<String> = Vec::new();
    for (dev, cfg) in &list {
        match create_one(d, &nl, row, dev, cfg).await {
            Ok((link, host)) => {
                let inside = inside_name(&row.config, dev, cfg, &taken);
                taken.push(inside.clone());
                row.config
                    .insert(format!("volatile.{dev}.name"), inside.clone());
                match &host {
                    Some(h) => {
                        row.config
                            .insert(format!("volatile.{dev}.host_name"), h.clone());
                        st.host_links.push(h.clone());
                    }
                    None => {
                        row.config.remove(&format!("volatile.{dev}.host_name"));
                        st.host_links.push(link.clone());
                    }
                }
                st.runtime.push(lxd_runtime::spec::Nic {
                    host_name: link,
                    name: inside,
                });
            }
            Err(e) => {
                failed(&st).await;
                return Err(e);
            }
        }
    }
    Ok(st)
}

/// The start failed: remove what `start` made (links already moved into a dead container are
/// gone with it).
pub async fn failed(st: &Started) {
    if let Ok(nl) = Netlink::new() {
        for l in &st.host_links {
            let _ = nl.delete_by_name(l).await;
        }
    }
}

/// After `forkstart`: bring the NICs up inside (liblxc's `flags = up`).
pub async fn post_start(pid: i32, st: &Started) {
    if st.runtime.is_empty() {
        return;
    }
    let names: Vec<String> = st.runtime.iter().map(|n| n.name.clone()).collect();
    let res = tokio::task::spawn_blocking(move || lxd_network::netns::set_up(pid, names)).await;
    if let Ok(Err(e)) = res {
        tracing::warn!("failed to bring the NICs up inside {pid}: {e}");
    }
}

/// After the instance stopped: delete host ends still there and forget them.
pub async fn stop(d: &Daemon, name: &str) {
    let Ok(row) = d.db.instance(name) else {
        return;
    };
    let hosts: BTreeMap<String, String> = row
        .config
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("volatile.")
                .and_then(|r| r.strip_suffix(".host_name"))
                .map(|dev| (format!("volatile.{dev}.host_name"), v.clone()))
        })
        .collect();
    if hosts.is_empty() {
        return;
    }
    if let Ok(nl) = Netlink::new() {
        for h in hosts.values() {
            let _ = nl.delete_by_name(h).await;
        }
    }
    for k in hosts.keys() {
        let _ = d.db.instance_set_config_key(name, k, None);
    }
}

/// Hot-plug: NICs added to (or changed on) a running instance are created and moved in; removed
/// ones are deleted. Records the volatile keys in the database.
pub async fn apply_live(
    d: &Arc<Daemon>,
    old: &Expanded,
    new: &Expanded,
    name: &str,
    pid: i32,
) -> Result<()> {
    let old_nics: BTreeMap<&String, &ConfigMap> = nics(&old.devices).into_iter().collect();
    let new_nics: BTreeMap<&String, &ConfigMap> = nics(&new.devices).into_iter().collect();
    let nl = Netlink::new()?;
    let mut row = d.db.instance(name)?;
    // Removed or changed: take out first.
    for (dev, cfg) in &old_nics {
        if new_nics.get(dev) == Some(cfg) {
            continue;
        }
        match row.config.remove(&format!("volatile.{dev}.host_name")) {
            Some(h) => {
                let _ = nl.delete_by_name(&h).await;
            }
            None => {
                if let Some(inside) = row.config.get(&format!("volatile.{dev}.name")).cloned() {
                    let _ = tokio::task::spawn_blocking(move || {
                        lxd_network::netns::delete_link(pid, inside)
                    })
                    .await;
                }
            }
        }
        row.config.remove(&format!("volatile.{dev}.name"));
    }
    let mut added = Vec::new();
    let mut taken: Vec<String> = old_nics
        .keys()
        .filter(|dev| new_nics.get(*dev) == old_nics.get(*dev))
        .filter_map(|dev| row.config.get(&format!("volatile.{dev}.name")).cloned())
        .collect();
    for (dev, cfg) in &new_nics {
        if old_nics.get(dev) == Some(cfg) {
            continue;
        }
        validate(
            d,
            &DevicesMap::from([((*dev).clone(), (*cfg).clone())]),
            name,
        )
        .await?;
        if let Some(n) = super::nic_network(cfg) {
            super::sync_hosts(d, &[n.to_string()]).await?;
        }
        let (link, host) = create_one(d, &nl, &mut row, dev, cfg).await?;
        let inside = inside_name(&row.config, dev, cfg, &taken);
        let moved = async {
            let l = nl.require(&link).await?;
            nl.move_to_netns(l.index, pid as u32, &inside, &link).await
        }
        .await;
        if let Err(e) = moved {
            let _ = nl.delete_by_name(host.as_deref().unwrap_or(&link)).await;
            return Err(e.into());
        }
        taken.push(inside.clone());
        row.config
            .insert(format!("volatile.{dev}.name"), inside.clone());
        if let Some(h) = host {
            row.config.insert(format!("volatile.{dev}.host_name"), h);
        }
        added.push(inside);
    }
    d.db.instance_update(&row)?;
    if !added.is_empty() {
        tokio::task::spawn_blocking(move || lxd_network::netns::set_up(pid, added)).await??;
    }
    Ok(())
}

/// `validate` for a row about to be created.
pub async fn validate_row(d: &Daemon, row: &InstanceRow) -> Result<()> {
    let ex = crate::instance::expand(d, &row.profiles, &row.config, &row.devices)?;
    validate(d, &ex.devices, &row.name).await
}

/// `validate` for a `PUT` before its operation starts, so the client gets the status at once.
pub async fn validate_put(d: &Daemon, name: &str, put: &lxd_api::InstancePut) -> Result<()> {
    let Ok(ex) = crate::instance::expand(d, &put.profiles, &put.config, &put.devices) else {
        // The update itself reports a bad profile.
        return Ok(());
    };
    validate(d, &ex.devices, name).await
}
