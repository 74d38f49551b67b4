//! `proxy` devices: reach a service inside an instance from the host. The default mode is a
//! userspace relay (`lxd_network::proxy`) that listens on the host and connects from inside the
//! container's network namespace; `nat=true` instead adds DNAT rules to our nft table towards the
//! instance's static address. Listeners are bound before the instance starts, so a busy port
//! fails the start (or the hot-plug) cleanly.

use lxd_api::{ConfigMap, DevicesMap};
use lxd_network::firewall::{Dnat, Protocol};
use lxd_network::proxy::{self as relay, Listener, ProxyAddr};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::error::{ApiError, Result};
use crate::instance::Expanded;

fn proxies(devices: &DevicesMap) -> BTreeMap<String, ConfigMap> {
    devices
        .iter()
        .filter(|(_, d)| d.get("type").map(String::as_str) == Some("proxy"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A proxy device ready to run: a bound listener, or DNAT rules.
#[derive(Debug)]
pub enum Prepared {
    Relay {
        listener: Listener,
        connect: ProxyAddr,
    },
    Nat(Vec<(String, Dnat)>),
}

fn bad(dev: &str, msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Proxy device \"{dev}\": {msg}"))
}

/// Check a proxy device and bind its host side (or compute its DNAT rules).
pub fn prepare(
    d: &Daemon,
    instance: &str,
    dev: &str,
    cfg: &ConfigMap,
    ex: &Expanded,
) -> Result<Prepared> {
    let get = |k: &str| cfg.get(k).map(String::as_str).unwrap_or("");
    let listen = relay::parse_addr(get("listen"))?;
    let connect = relay::parse_addr(get("connect"))?;
    relay::check_pair(&listen, &connect)?;
    if !matches!(get("bind"), "" | "host") {
        return Err(bad(dev, "only bind=host is supported"));
    }
    if crate::config::parse_bool(get("nat")).unwrap_or(false) {
        return Ok(Prepared::Nat(nat_rules(
            d, instance, dev, &listen, &connect, ex,
        )?));
    }
    let mode = cfg
        .get("mode")
        .filter(|m| !m.is_empty())
        .map(|m| u32::from_str_radix(m, 8).map_err(|_| bad(dev, format!("invalid mode \"{m}\""))))
        .transpose()?;
    let listener = relay::bind(&listen, mode.or(Some(0o644))).map_err(|e| match e {
        relay::Error::InUse(a) => ApiError::conflict(format!(
            "Proxy device \"{dev}\": address {a} is already in use"
        )),
        other => ApiError::from(other),
    })?;
    Ok(Prepared::Relay { listener, connect })
}

/// nat mode: both ends TCP or UDP over IPv4; the target is the instance's static address on a
/// managed network (LXD requires one too).
fn nat_rules(
    d: &Daemon,
    instance: &str,
    dev: &str,
    listen: &ProxyAddr,
    connect: &ProxyAddr,
    ex: &Expanded,
) -> Result<Vec<(String, Dnat)>> {
    let (proto, l, c) = match (listen, connect) {
        (ProxyAddr::Tcp(l), ProxyAddr::Tcp(c)) => (Protocol::Tcp, l, c),
        (ProxyAddr::Udp(l), ProxyAddr::Udp(c)) => (Protocol::Udp, l, c),
        _ => return Err(bad(dev, "nat mode needs tcp or udp on both ends")),
    };
    let IpAddr::V4(lip) = l.ip() else {
        return Err(bad(dev, "nat mode supports IPv4 listen addresses only"));
    };
    let mut target: Option<(String, Ipv4Addr)> = None;
    for (_, nic) in ex.devices.iter() {
        let Some(net) = super::nic_network(nic) else {
            continue;
        };
        if d.db.network_opt(net)?.is_none() {
            continue;
        }
        if let Some(ip) = nic.get("ipv4.address").and_then(|v| v.parse().ok()) {
            target = Some((net.to_string(), ip));
            break;
        }
    }
    let Some((bridge, ip)) = target else {
        return Err(bad(
            dev,
            format!(
                "nat mode needs a NIC of {instance} with a static ipv4.address on a managed network"
            ),
        ));
    };
    let cip = c.ip();
    if !(cip.is_unspecified() || cip.is_loopback() || cip == IpAddr::V4(ip)) {
        return Err(bad(
            dev,
            format!("in nat mode the connect address must be {ip} (the instance's static address)"),
        ));
    }
    Ok(vec![(
        bridge,
        Dnat {
            protocol: proto,
            listen: (!lip.is_unspecified()).then_some(lip),
            listen_port: l.port(),
            target: ip,
            target_port: c.port(),
            comment: format!("proxy {instance}/{dev}"),
        },
    )])
}

/// Prepare every proxy device of an instance about to start; nothing stays bound on error.
pub fn prepare_all(d: &Daemon, instance: &str, ex: &Expanded) -> Result<Vec<(String, Prepared)>> {
    let mut out = Vec::new();
    for (dev, cfg) in proxies(&ex.devices) {
        let p = prepare(d, instance, &dev, &cfg, ex)?;
        out.push((dev, p));
    }
    Ok(out)
}

/// Run prepared proxies for the instance whose init is `pid`.
pub async fn run(
    d: &Arc<Daemon>,
    instance: &str,
    pid: i32,
    prepared: Vec<(String, Prepared)>,
) -> Result<()> {
    let mut nat_changed = false;
    for (dev, p) in prepared {
        match p {
            Prepared::Relay { listener, connect } => {
                let label = format!("{instance}/{dev}");
                let r = tokio::task::spawn_blocking(move || {
                    relay::start(listener, connect, pid, &label)
                })
                .await??;
                if let Some(old) = d
                    .net
                    .relays
                    .lock()
                    .expect("relays")
                    .insert((instance.to_string(), dev.clone()), r)
                {
                    drop_relay(old);
                }
            }
            Prepared::Nat(rules) => {
                d.net
                    .proxy_nat
                    .lock()
                    .expect("proxy nat")
                    .entry(instance.to_string())
                    .or_default()
                    .extend(rules);
                nat_changed = true;
            }
        }
    }
    if nat_changed {
        super::apply_firewall(d).await?;
    }
    Ok(())
}

fn drop_relay(r: relay::Relay) {
    std::thread::spawn(move || r.stop());
}

/// Stop the proxies of an instance (all, or one device).
pub async fn stop(d: &Arc<Daemon>, instance: &str, only: Option<&str>) {
    let doomed: Vec<relay::Relay> = {
        let mut relays = d.net.relays.lock().expect("relays");
        let keys: Vec<(String, String)> = relays
            .keys()
            .filter(|(i, dev)| i == instance && only.is_none_or(|o| o == dev))
            .cloned()
            .collect();
        keys.into_iter().filter_map(|k| relays.remove(&k)).collect()
    };
    if !doomed.is_empty() {
        let _ =
            tokio::task::spawn_blocking(move || doomed.into_iter().for_each(|r| r.stop())).await;
    }
    let changed = {
        let mut nat = d.net.proxy_nat.lock().expect("proxy nat");
        match only {
            None => nat.remove(instance).is_some(),
            Some(dev) => match nat.get_mut(instance) {
                Some(list) => {
                    let before = list.len();
                    let tag = format!("proxy {instance}/{dev}");
                    list.retain(|(_, r)| r.comment != tag);
                    before != list.len()
                }
                None => false,
            },
        }
    };
    if changed && let Err(e) = super::apply_firewall(d).await {
        tracing::error!(instance, "failed to remove proxy NAT rules: {e}");
    }
}

/// Hot-plug: start added or changed proxy devices, stop removed or changed ones.
pub async fn apply_live(
    d: &Arc<Daemon>,
    old: &Expanded,
    new: &Expanded,
    instance: &str,
    pid: i32,
) -> Result<()> {
    let (o, n) = (proxies(&old.devices), proxies(&new.devices));
    for (dev, cfg) in &o {
        if n.get(dev) != Some(cfg) {
            stop(d, instance, Some(dev)).await;
        }
    }
    let mut todo = Vec::new();
    for (dev, cfg) in &n {
        if o.get(dev) != Some(cfg) {
            todo.push((dev.clone(), prepare(d, instance, dev, cfg, new)?));
        }
    }
    run(d, instance, pid, todo).await
}

/// The daemon restarted under a running instance: its relays died with the old daemon, start
/// them again (and re-register its NAT rules).
pub async fn reattach(d: &Arc<Daemon>, instance: &str) {
    let Some(pid) = crate::instance::runtime::probe(d, instance).init_pid() else {
        return;
    };
    let res = async {
        let row = d.db.instance(instance)?;
        let ex = crate::instance::expand_row(d, &row)?;
        let prepared = prepare_all(d, instance, &ex)?;
        run(d, instance, pid, prepared).await
    }
    .await;
    if let Err(e) = res {
        tracing::error!(instance, "failed to restart proxy devices: {e}");
    }
}
