//! Network forwards (`lxc network forward`, `/1.0/networks/NAME/forwards`): ports of a listen
//! address on the host DNAT'ed to addresses on a managed bridge. Stored in the database and
//! rendered into the bridge's `prert.`/`dnatout.` chains.

use lxd_api::network::{
    NetworkForward, NetworkForwardPort, NetworkForwardPut, NetworkForwardsPost,
};
use lxd_network::firewall::{Dnat, Protocol};
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::db::networks::{ForwardRow, NetworkRow};
use crate::error::{ApiError, Result};

pub fn to_api(f: ForwardRow) -> NetworkForward {
    NetworkForward {
        listen_address: f.listen_address,
        description: f.description,
        config: f.config,
        ports: f.ports,
        location: "none".into(),
    }
}

fn parse_port(what: &str, v: &str) -> Result<u16> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid {what} \"{v}\": one port number (ranges and lists are not supported)"
            ))
        })
}

/// The DNAT rules of a network's forwards (ports whose target cannot be parsed are skipped;
/// they were validated when stored).
pub fn dnats(d: &Daemon, row: &NetworkRow) -> Result<Vec<Dnat>> {
    let mut out = Vec::new();
    for f in d.db.forwards(&row.name)? {
        let Ok(listen) = f.listen_address.parse::<Ipv4Addr>() else {
            continue;
        };
        for p in &f.ports {
            let Ok(rule) = port_rule(&f, p, listen) else {
                continue;
            };
            out.push(rule);
        }
    }
    Ok(out)
}

fn port_rule(f: &ForwardRow, p: &NetworkForwardPort, listen: Ipv4Addr) -> Result<Dnat> {
    let protocol = match p.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid protocol \"{other}\" (tcp or udp)"
            )));
        }
    };
    let listen_port = parse_port("listen port", &p.listen_port)?;
    let target_port = if p.target_port.trim().is_empty() {
        listen_port
    } else {
        parse_port("target port", &p.target_port)?
    };
    let target = if p.target_address.is_empty() {
        f.config.get("target_address").cloned().unwrap_or_default()
    } else {
        p.target_address.clone()
    };
    let target: Ipv4Addr = target.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid target address \"{target}\" for port {listen_port}"
        ))
    })?;
    Ok(Dnat {
        protocol,
        listen: Some(listen),
        listen_port,
        target,
        target_port,
        comment: format!("forward {}", f.listen_address),
    })
}

/// Validate a forward against its network: an IPv4 listen address outside the bridge subnet,
/// distinct listen ports, and targets that are addresses of instances on the network.
fn validate(d: &Daemon, net: &NetworkRow, f: &ForwardRow) -> Result<()> {
    let cfg = super::bridge_config(net)?;
    let Some(subnet) = cfg.ipv4 else {
        return Err(ApiError::bad_request(format!(
            "Network \"{}\" has no IPv4 address to forward to",
            net.name
        )));
    };
    let listen: Ipv4Addr = f.listen_address.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid listen address \"{}\" (an IPv4 address)",
            f.listen_address
        ))
    })?;
    if subnet.contains(&listen) || listen.is_unspecified() {
        return Err(ApiError::bad_request(format!(
            "Listen address {listen} must be outside the network's subnet {}",
            subnet.trunc()
        )));
    }
    for (k, v) in &f.config {
        if k != "target_address" && !k.starts_with("user.") {
            return Err(ApiError::bad_request(format!(
                "Invalid network forward option \"{k}\""
            )));
        }
        if k == "target_address" && !v.is_empty() && v.parse::<Ipv4Addr>().is_err() {
            return Err(ApiError::bad_request(format!(
                "Invalid target_address \"{v}\""
            )));
        }
    }
    let mut seen = Vec::new();
    for p in &f.ports {
        let r = port_rule(f, p, listen)?;
        if seen.contains(&(r.protocol, r.listen_port)) {
            return Err(ApiError::bad_request(format!(
                "Duplicate listen port {}/{}",
                r.listen_port,
                r.protocol.as_str()
            )));
        }
        seen.push((r.protocol, r.listen_port));
        if !subnet.contains(&r.target) || r.target == subnet.addr() {
            return Err(ApiError::bad_request(format!(
                "Target address {} is not an instance address in {}",
                r.target,
                subnet.trunc()
            )));
        }
        if !address_in_use(d, &net.name, r.target)? {
            return Err(ApiError::bad_request(format!(
                "No instance on network \"{}\" has address {}",
                net.name, r.target
            )));
        }
    }
    Ok(())
}

/// Whether some instance on `network` has `ip` (static, or leased).
fn address_in_use(d: &Daemon, network: &str, ip: Ipv4Addr) -> Result<bool> {
    for inst in d.db.instances()? {
        if super::instance_address(d, &inst.name, network)? == Some(ip) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn managed(d: &Daemon, network: &str) -> Result<NetworkRow> {
    d.db.network_opt(network)?
        .ok_or_else(|| ApiError::not_found(format!("Network \"{network}\" not found")))
}

pub fn list(d: &Daemon, network: &str) -> Result<Vec<ForwardRow>> {
    managed(d, network)?;
    d.db.forwards(network)
}

pub fn get(d: &Daemon, network: &str, listen: &str) -> Result<ForwardRow> {
    managed(d, network)?;
    d.db.forward(network, listen)
}

async fn apply(d: &Arc<Daemon>) -> Result<()> {
    super::apply_firewall(d).await
}

pub async fn create(d: &Arc<Daemon>, network: &str, req: NetworkForwardsPost) -> Result<()> {
    let net = managed(d, network)?;
    let f = ForwardRow {
        network: network.to_string(),
        listen_address: req.listen_address,
        description: req.description,
        config: req.config,
        ports: req.ports,
    };
    validate(d, &net, &f)?;
    for other in d.db.networks()? {
        if d.db
            .forwards(&other.name)?
            .iter()
            .any(|o| o.listen_address == f.listen_address)
        {
            return Err(ApiError::conflict(format!(
                "A forward for {} already exists on network \"{}\"",
                f.listen_address, other.name
            )));
        }
    }
    d.db.forward_create(&f)?;
    if let Err(e) = apply(d).await {
        let _ = d.db.forward_delete(network, &f.listen_address);
        let _ = apply(d).await;
        return Err(e);
    }
    d.events.lifecycle(
        "network-forward-created",
        &format!("/1.0/networks/{network}/forwards/{}", f.listen_address),
        serde_json::json!({}),
    );
    Ok(())
}

pub async fn update(
    d: &Arc<Daemon>,
    network: &str,
    listen: &str,
    put: NetworkForwardPut,
    merge: bool,
) -> Result<()> {
    let net = managed(d, network)?;
    let old = d.db.forward(network, listen)?;
    let mut f = old.clone();
    if merge {
        f.config.extend(put.config);
        if !put.description.is_empty() {
            f.description = put.description;
        }
        if !put.ports.is_empty() {
            f.ports = put.ports;
        }
    } else {
        f.config = put.config;
        f.description = put.description;
        f.ports = put.ports;
    }
    validate(d, &net, &f)?;
    d.db.forward_update(&f)?;
    if let Err(e) = apply(d).await {
        let _ = d.db.forward_update(&old);
        let _ = apply(d).await;
        return Err(e);
    }
    Ok(())
}

pub async fn delete(d: &Arc<Daemon>, network: &str, listen: &str) -> Result<()> {
    managed(d, network)?;
    d.db.forward(network, listen)?;
    d.db.forward_delete(network, listen)?;
    apply(d).await?;
    d.events.lifecycle(
        "network-forward-deleted",
        &format!("/1.0/networks/{network}/forwards/{listen}"),
        serde_json::json!({}),
    );
    Ok(())
}
