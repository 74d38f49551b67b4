//! `network ...`: `/1.0/networks` (synchronous), attaching instances with NIC devices, leases.

use anyhow::bail;
use clap::Subcommand;
use lxd_api::network::{Network, NetworksPost};
use lxd_api::{ConfigMap, Profile};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::config::key_values;
use super::{get_instance, print_out, put_instance, writable};
use crate::Ctx;
use crate::client::{Client, esc};
use crate::{editor, output};

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Attach network interfaces to instances
    Attach {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        instance: String,
        #[arg(value_name = "DEVICE")]
        device: Option<String>,
        #[arg(value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// Attach network interfaces to profiles
    AttachProfile {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        profile: String,
        #[arg(value_name = "DEVICE")]
        device: Option<String>,
        #[arg(value_name = "INTERFACE")]
        interface: Option<String>,
    },
    /// Create new networks
    Create {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Network type
        #[arg(short, long = "type", default_value = "")]
        kind: String,
        /// Network description
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete networks
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
    },
    /// Detach network interfaces from instances
    Detach {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        instance: String,
        #[arg(value_name = "DEVICE")]
        device: Option<String>,
    },
    /// Detach network interfaces from profiles
    DetachProfile {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        profile: String,
        #[arg(value_name = "DEVICE")]
        device: Option<String>,
    },
    /// Edit network configurations as YAML
    Edit {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
    },
    /// Get values for network configuration keys
    Get {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        key: String,
    },
    /// Get runtime information on networks
    Info {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
    },
    /// List available networks
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// List DHCP leases
    ListLeases {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Rename networks
    #[command(visible_alias = "mv")]
    Rename {
        #[arg(value_name = "[<remote>:]<network>")]
        old: String,
        new: String,
    },
    /// Set network configuration keys
    Set {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        #[arg(value_name = "<key><value>...", required = true)]
        args: Vec<String>,
    },
    /// Show network configurations
    Show {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
    },
    /// Unset network configuration keys
    Unset {
        #[arg(value_name = "[<remote>:]<network>")]
        network: String,
        key: String,
    },
}

const NETWORK_ORDER: &[&str] = &[
    "config",
    "description",
    "name",
    "type",
    "used_by",
    "managed",
    "status",
    "locations",
];

fn path(name: &str) -> String {
    format!("/1.0/networks/{}", esc(name))
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default)]
struct Lease {
    hostname: String,
    hwaddr: String,
    address: String,
    #[serde(rename = "type")]
    kind: String,
    location: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkStateBridge {
    id: String,
    stp: bool,
    forward_delay: u64,
    vlan_default: u64,
    vlan_filtering: bool,
    upper_devices: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkState {
    addresses: Vec<NetworkStateAddress>,
    bridge: Option<NetworkStateBridge>,
    counters: lxd_api::instance::InstanceStateNetworkCounters,
    hwaddr: String,
    mtu: i64,
    state: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NetworkStateAddress {
    family: String,
    address: String,
    netmask: String,
    scope: String,
}

/// The NIC device LXD's `network attach` adds: `network=` for managed networks, else a
/// bridged or macvlan NIC on the host interface.
fn nic_device(net: &Network, interface: &str) -> ConfigMap {
    let mut d = ConfigMap::new();
    d.insert("type".into(), "nic".into());
    if net.managed {
        d.insert("network".into(), net.name.clone());
    } else {
        let nictype = if net.kind == "bridge" {
            "bridged"
        } else {
            "macvlan"
        };
        d.insert("nictype".into(), nictype.into());
        d.insert("parent".into(), net.name.clone());
    }
    if !interface.is_empty() {
        d.insert("name".into(), interface.into());
    }
    d
}

fn attached_to(d: &ConfigMap, net: &str) -> bool {
    d.get("type").map(String::as_str) == Some("nic")
        && (d.get("network").map(String::as_str) == Some(net)
            || d.get("parent").map(String::as_str) == Some(net))
}

async fn load(client: &Client, name: &str) -> anyhow::Result<(Network, Option<String>)> {
    Ok(client.get_etag(&path(name)).await?)
}

async fn update(
    client: &Client,
    name: &str,
    f: impl FnOnce(&mut ConfigMap, &mut String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (mut n, etag) = load(client, name).await?;
    f(&mut n.config, &mut n.description)?;
    let put = json!({"config": n.config, "description": n.description});
    client
        .send(Method::PUT, &path(name), Some(&put), etag.as_deref())
        .await?;
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: NetworkCmd) -> anyhow::Result<()> {
    let quiet = ctx.global.quiet;
    match cmd {
        NetworkCmd::Attach {
            network,
            instance,
            device,
            interface,
        } => {
            let (client, net_name) = ctx.client_for(&network)?;
            let (net, _) = load(&client, &net_name).await?;
            let dev_name = device.unwrap_or_else(|| net_name.clone());
            let (inst, etag) = get_instance(&client, &instance).await?;
            let mut put = writable(&inst);
            if put.devices.contains_key(&dev_name) {
                bail!("The device already exists");
            }
            put.devices.insert(
                dev_name,
                nic_device(&net, interface.as_deref().unwrap_or("")),
            );
            put_instance(&client, &instance, &put, etag.as_deref()).await?;
        }
        NetworkCmd::AttachProfile {
            network,
            profile,
            device,
            interface,
        } => {
            let (client, net_name) = ctx.client_for(&network)?;
            let (net, _) = load(&client, &net_name).await?;
            let dev_name = device.unwrap_or_else(|| net_name.clone());
            let ppath = format!("/1.0/profiles/{}", esc(&profile));
            let (mut p, etag): (Profile, _) = client.get_etag(&ppath).await?;
            if p.devices.contains_key(&dev_name) {
                bail!("The device already exists");
            }
            p.devices.insert(
                dev_name,
                nic_device(&net, interface.as_deref().unwrap_or("")),
            );
            let put =
                json!({"config": p.config, "description": p.description, "devices": p.devices});
            client
                .send(Method::PUT, &ppath, Some(&put), etag.as_deref())
                .await?;
        }
        NetworkCmd::Create {
            network,
            config,
            kind,
            description,
        } => {
            let (client, name) = ctx.client_for(&network)?;
            let body = NetworksPost {
                name: name.clone(),
                description: description.unwrap_or_default(),
                kind,
                config: crate::parse::key_values(&config)?,
            };
            client
                .send(Method::POST, "/1.0/networks", Some(&body), None)
                .await?;
            if !quiet {
                println!("Network {name} created");
            }
        }
        NetworkCmd::Delete { network } => {
            let (client, name) = ctx.client_for(&network)?;
            client
                .send::<()>(Method::DELETE, &path(&name), None, None)
                .await?;
            if !quiet {
                println!("Network {name} deleted");
            }
        }
        NetworkCmd::Detach {
            network,
            instance,
            device,
        } => {
            let (client, net_name) = ctx.client_for(&network)?;
            let (inst, etag) = get_instance(&client, &instance).await?;
            let mut put = writable(&inst);
            let dev = match device {
                Some(d) => {
                    let Some(dev) = put.devices.get(&d) else {
                        bail!("The specified device doesn't exist");
                    };
                    if !attached_to(dev, &net_name) {
                        bail!("The specified device doesn't match the network");
                    }
                    d
                }
                None => put
                    .devices
                    .iter()
                    .find(|(_, d)| attached_to(d, &net_name))
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| anyhow::anyhow!("No device found for this network"))?,
            };
            put.devices.remove(&dev);
            put_instance(&client, &instance, &put, etag.as_deref()).await?;
        }
        NetworkCmd::DetachProfile {
            network,
            profile,
            device,
        } => {
            let (client, net_name) = ctx.client_for(&network)?;
            let ppath = format!("/1.0/profiles/{}", esc(&profile));
            let (mut p, etag): (Profile, _) = client.get_etag(&ppath).await?;
            let dev = match device {
                Some(d) => d,
                None => p
                    .devices
                    .iter()
                    .find(|(_, d)| attached_to(d, &net_name))
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| anyhow::anyhow!("No device found for this network"))?,
            };
            if p.devices.remove(&dev).is_none() {
                bail!("The specified device doesn't exist");
            }
            let put =
                json!({"config": p.config, "description": p.description, "devices": p.devices});
            client
                .send(Method::PUT, &ppath, Some(&put), etag.as_deref())
                .await?;
        }
        NetworkCmd::Edit { network } => {
            let (client, name) = ctx.client_for(&network)?;
            let (n, etag) = load(&client, &name).await?;
            let current = output::yaml_ordered(&n, NETWORK_ORDER)?;
            let (client, name, etag) = (&client, &name, etag.as_deref());
            editor::edit_yaml("", &current, |text| async move {
                let n: Network = editor::parse_yaml(&text)?;
                let put = json!({"config": n.config, "description": n.description});
                client
                    .send(Method::PUT, &path(name), Some(&put), etag)
                    .await?;
                Ok(())
            })
            .await?;
        }
        NetworkCmd::Get { network, key } => {
            let (client, name) = ctx.client_for(&network)?;
            let (n, _) = load(&client, &name).await?;
            println!("{}", n.config.get(&key).cloned().unwrap_or_default());
        }
        NetworkCmd::Info { network } => {
            let (client, name) = ctx.client_for(&network)?;
            let s: NetworkState = client.get(&format!("{}/state", path(&name))).await?;
            let mut out = format!(
                "Name: {name}\nMAC address: {}\nMTU: {}\nState: {}\nType: {}\n",
                s.hwaddr, s.mtu, s.state, s.kind
            );
            if !s.addresses.is_empty() {
                out.push_str("\nIP addresses:\n");
                for a in &s.addresses {
                    out.push_str(&format!(
                        "  {}\t{}/{} ({})\n",
                        a.family, a.address, a.netmask, a.scope
                    ));
                }
            }
            let c = &s.counters;
            out.push_str(&format!(
                "\nNetwork usage:\n  Bytes received: {}\n  Bytes sent: {}\n  Packets received: {}\n  Packets sent: {}\n",
                output::byte_size(c.bytes_received, 2),
                output::byte_size(c.bytes_sent, 2),
                c.packets_received,
                c.packets_sent
            ));
            if let Some(b) = &s.bridge {
                out.push_str(&format!(
                    "\nBridge:\n  ID: {}\n  STP: {}\n  Forward delay: {}\n  Default VLAN ID: {}\n  VLAN filtering: {}\n  Upper devices: {}\n",
                    b.id,
                    b.stp,
                    b.forward_delay,
                    b.vlan_default,
                    b.vlan_filtering,
                    b.upper_devices.join(", ")
                ));
            }
            print_out(&out);
        }
        NetworkCmd::List { remote, format } => {
            let format = super::format(&format)?;
            let (remote, _) = ctx.parse_remote(remote.as_deref().unwrap_or(""))?;
            let client = ctx.client(&remote)?;
            let (nets, raw): (Vec<Network>, _) =
                client.get_both("/1.0/networks?recursion=1").await?;
            // LXD's table leaves out loopback and unknown interfaces (json/yaml keep them).
            let nets: Vec<Network> = nets
                .into_iter()
                .filter(|n| n.kind != "loopback" && n.kind != "unknown")
                .collect();
            let mut rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    let get = |k: &str| n.config.get(k).cloned().unwrap_or_default();
                    vec![
                        n.name.clone(),
                        n.kind.clone(),
                        output::yes_no(n.managed),
                        get("ipv4.address"),
                        get("ipv6.address"),
                        n.description.clone(),
                        n.used_by.len().to_string(),
                        n.status.to_uppercase(),
                    ]
                })
                .collect();
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &[
                    "NAME",
                    "TYPE",
                    "MANAGED",
                    "IPV4",
                    "IPV6",
                    "DESCRIPTION",
                    "USED BY",
                    "STATE",
                ],
                &rows,
                &raw,
            )?);
        }
        NetworkCmd::ListLeases { network, format } => {
            let format = super::format(&format)?;
            let (client, name) = ctx.client_for(&network)?;
            let leases: Vec<Lease> = client.get(&format!("{}/leases", path(&name))).await?;
            let mut rows: Vec<Vec<String>> = leases
                .iter()
                .map(|l| {
                    vec![
                        l.hostname.clone(),
                        l.hwaddr.clone(),
                        l.address.clone(),
                        l.kind.to_uppercase(),
                    ]
                })
                .collect();
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &["HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"],
                &rows,
                &leases,
            )?);
        }
        NetworkCmd::Rename { old, new } => {
            let (client, name) = ctx.client_for(&old)?;
            client
                .send(
                    Method::POST,
                    &path(&name),
                    Some(&json!({"name": new})),
                    None,
                )
                .await?;
            if !quiet {
                println!("Network {name} renamed to {new}");
            }
        }
        NetworkCmd::Set { network, args } => {
            let (client, name) = ctx.client_for(&network)?;
            let keys = key_values(&args)?;
            update(&client, &name, |c, _| {
                c.extend(keys);
                Ok(())
            })
            .await?;
        }
        NetworkCmd::Show { network } => {
            let (client, name) = ctx.client_for(&network)?;
            let (n, _) = load(&client, &name).await?;
            print_out(&output::yaml_ordered(&n, NETWORK_ORDER)?);
        }
        NetworkCmd::Unset { network, key } => {
            let (client, name) = ctx.client_for(&network)?;
            update(&client, &name, |c, _| {
                if c.remove(&key).is_none() {
                    bail!("Can't unset key '{key}', it's not currently set");
                }
                Ok(())
            })
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_builds_the_nic_lxd_builds() {
        let managed: Network =
            serde_json::from_value(json!({"name": "br0", "type": "bridge", "managed": true}))
                .unwrap();
        let d = nic_device(&managed, "eth1");
        assert_eq!(d["network"], "br0");
        assert_eq!(d["name"], "eth1");
        assert!(!d.contains_key("nictype"));
        let host: Network =
            serde_json::from_value(json!({"name": "eth0", "type": "physical", "managed": false}))
                .unwrap();
        let d = nic_device(&host, "");
        assert_eq!(d["nictype"], "macvlan");
        assert_eq!(d["parent"], "eth0");
        assert!(attached_to(&d, "eth0"));
    }
}
