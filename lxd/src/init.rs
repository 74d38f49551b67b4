//! `lxd init`: `--auto`, `--preseed` (YAML on stdin) and the interactive questions, applied to the
//! running daemon through its API exactly as LXD's init does.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::{BufRead, Write};

use crate::local_client::LocalClient;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Preseed {
    #[serde(skip_serializing_if = "lxd_api::ConfigMap::is_empty")]
    pub config: lxd_api::ConfigMap,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<lxd_api::network::NetworksPost>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub storage_pools: Vec<lxd_api::storage::StoragePoolsPost>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<lxd_api::profile::ProfilesPost>,
}

/// The bridge `--auto` creates: the first `lxdbrN` that is not already a host interface, as
/// LXD's `main_init_auto.go` picks it (so a real LXD's `lxdbr0` is never touched).
pub fn first_free_bridge(from: u32) -> String {
    (from..)
        .map(|i| format!("lxdbr{i}"))
        .find(|n| !std::path::Path::new("/sys/class/net").join(n).exists())
        .expect("an unused lxdbrN exists")
}

/// A managed bridge for a preseed, and the `eth0` NIC of the default profile on it.
pub fn bridge_preseed(
    name: &str,
    ipv4: &str,
    ipv6: &str,
) -> (lxd_api::network::NetworksPost, lxd_api::ConfigMap) {
    let mut config = lxd_api::ConfigMap::new();
    config.insert("ipv4.address".into(), ipv4.into());
    config.insert("ipv6.address".into(), ipv6.into());
    let net = lxd_api::network::NetworksPost {
        name: name.into(),
        kind: "bridge".into(),
        config,
        ..Default::default()
    };
    (net, nic_device(&[("network", name)]))
}

fn nic_device(pairs: &[(&str, &str)]) -> lxd_api::ConfigMap {
    let mut nic = lxd_api::ConfigMap::new();
    nic.insert("type".into(), "nic".into());
    nic.insert("name".into(), "eth0".into());
    for (k, v) in pairs {
        nic.insert(k.to_string(), v.to_string());
    }
    nic
}

/// What `--auto` (and Enter through every question) sets up: a storage pool, a managed bridge
/// (unless `bridge` is None) and the default profile's `root` and `eth0` devices.
pub fn auto_preseed(backend: &str, pool: &str, bridge: Option<&str>) -> Preseed {
    let mut root = lxd_api::ConfigMap::new();
    root.insert("path".into(), "/".into());
    root.insert("pool".into(), pool.into());
    root.insert("type".into(), "disk".into());
    let mut devices = lxd_api::DevicesMap::new();
    devices.insert("root".into(), root);
    let mut networks = Vec::new();
    if let Some(b) = bridge {
        let (net, nic) = bridge_preseed(b, "auto", "none");
        networks.push(net);
        devices.insert("eth0".into(), nic);
    }
    Preseed {
        networks,
        storage_pools: vec![lxd_api::storage::StoragePoolsPost {
            name: pool.into(),
            driver: backend.into(),
            ..Default::default()
        }],
        profiles: vec![lxd_api::profile::ProfilesPost {
            name: "default".into(),
            devices,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Apply a preseed. Existing pools with the same driver are kept (so re-running is harmless);
/// profiles are merged key by key.
pub async fn apply(c: &LocalClient, p: &Preseed) -> anyhow::Result<()> {
    if !p.config.is_empty() {
        c.query("PATCH", "/1.0", Some(&json!({"config": p.config})))
            .await?;
    }
    for net in &p.networks {
        match c
            .query("GET", &format!("/1.0/networks/{}", net.name), None)
            .await
        {
            Ok(existing) if existing["managed"].as_bool() == Some(true) => {
                let body = json!({"config": net.config, "description": net.description});
                c.query("PATCH", &format!("/1.0/networks/{}", net.name), Some(&body))
                    .await?;
            }
            Ok(_) => anyhow::bail!(
                "Network interface \"{}\" already exists and is not managed by us",
                net.name
            ),
            Err(_) => {
                c.query("POST", "/1.0/networks", Some(&serde_json::to_value(net)?))
                    .await?;
            }
        }
    }
    for pool in &p.storage_pools {
        match c
            .query("GET", &format!("/1.0/storage-pools/{}", pool.name), None)
            .await
        {
            Ok(existing) => {
                let driver = existing["driver"].as_str().unwrap_or_default();
                if driver != pool.driver && !pool.driver.is_empty() {
                    anyhow::bail!(
                        "Storage pool \"{}\" already exists with driver {driver}",
                        pool.name
                    );
                }
            }
            Err(_) => {
                c.query(
                    "POST",
                    "/1.0/storage-pools",
                    Some(&serde_json::to_value(pool)?),
                )
                .await?;
            }
        }
    }
    for prof in &p.profiles {
        match c
            .query("GET", &format!("/1.0/profiles/{}", prof.name), None)
            .await
        {
            Ok(_) => {
                let body = json!({
                    "config": prof.config,
                    "devices": prof.devices,
                    "description": prof.description,
                });
                let body = if prof.description.is_empty() {
                    json!({"config": prof.config, "devices": prof.devices})
                } else {
                    body
                };
                c.query(
                    "PATCH",
                    &format!("/1.0/profiles/{}", prof.name),
                    Some(&body),
                )
                .await?;
            }
            Err(_) => {
                c.query("POST", "/1.0/profiles", Some(&serde_json::to_value(prof)?))
                    .await?;
            }
        }
    }
    Ok(())
}

fn ask(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    question: &str,
    default: &str,
) -> anyhow::Result<String> {
    write!(out, "{question} [default={default}]: ")?;
    out.flush()?;
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(default.to_string());
    }
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_string()
    } else {
        line.to_string()
    })
}

fn ask_bool(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    question: &str,
    default: bool,
) -> anyhow::Result<bool> {
    loop {
        let a = ask(
            input,
            out,
            &format!("{question} (yes/no)"),
            if default { "yes" } else { "no" },
        )?;
        match a.to_lowercase().as_str() {
            "yes" | "y" => return Ok(true),
            "no" | "n" => return Ok(false),
            _ => writeln!(out, "Invalid input, try again.\n")?,
        }
    }
}

/// The interactive questions, LXD's wording and defaults; Enter through all of them gives the
/// same setup as `--auto`.
pub fn interactive(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    drivers: &[String],
    default_bridge: &str,
) -> anyhow::Result<(Preseed, bool)> {
    let mut p = Preseed::default();
    if ask_bool(input, out, "Would you like to use LXD clustering?", false)? {
        writeln!(
            out,
            "Clustering is not supported; continuing with a standalone server."
        )?;
    }
    let mut pool_name = String::new();
    if ask_bool(
        input,
        out,
        "Do you want to configure a new storage pool?",
        true,
    )? {
        pool_name = ask(input, out, "Name of the new storage pool", "default")?;
        let list = drivers.join(", ");
        let backend = loop {
            let b = ask(
                input,
                out,
                &format!("Name of the storage backend to use ({list})"),
                "dir",
            )?;
            if drivers.iter().any(|d| d == &b) {
                break b;
            }
            writeln!(out, "The requested backend '{b}' isn't supported.")?;
        };
        let mut pool = lxd_api::storage::StoragePoolsPost {
            name: pool_name.clone(),
            driver: backend.clone(),
            ..Default::default()
        };
        if backend != "dir" {
            if ask_bool(input, out, "Create a new BTRFS/ZFS pool?", true)? {
                let size = ask(
                    input,
                    out,
                    "Size in GiB of the new loop device (1GiB minimum)",
                    "5GiB",
                )?;
                let size = if size.chars().all(|c| c.is_ascii_digit()) {
                    format!("{size}GiB")
                } else {
                    size
                };
                pool.config.insert("size".into(), size);
            } else {
                let src = ask(
                    input,
                    out,
                    "Name of the existing block device or dataset",
                    "",
                )?;
                pool.config.insert("source".into(), src);
            }
        }
        p.storage_pools.push(pool);
    }
    let mut eth0 = None;
    if ask_bool(
        input,
        out,
        "Would you like to create a new local network bridge?",
        true,
    )? {
        let name = ask(
            input,
            out,
            "What should the new bridge be called?",
            default_bridge,
        )?;
        let ipv4 = ask(
            input,
            out,
            "What IPv4 address should be used? (CIDR subnet notation, “auto” or “none”)",
            "auto",
        )?;
        let ipv6 = ask(
            input,
            out,
            // LXD's default here is auto; ours stays none because IPv6 routing turns on
            // host-wide IPv6 forwarding, which we only do when asked.
            "What IPv6 address should be used? (CIDR subnet notation, “auto” or “none”)",
            "none",
        )?;
        let (net, nic) = bridge_preseed(&name, &ipv4, &ipv6);
        p.networks.push(net);
        eth0 = Some(nic);
    } else if ask_bool(
        input,
        out,
        "Would you like to configure LXD to use an existing bridge or host interface?",
        false,
    )? {
        let parent = ask(
            input,
            out,
            "Name of the existing bridge or host interface",
            "",
        )?;
        let nictype = if std::path::Path::new("/sys/class/net")
            .join(&parent)
            .join("bridge")
            .exists()
        {
            "bridged"
        } else {
            "macvlan"
        };
        eth0 = Some(nic_device(&[("nictype", nictype), ("parent", &parent)]));
    }
    if ask_bool(
        input,
        out,
        "Would you like the LXD server to be available over the network?",
        false,
    )? {
        let addr = ask(
            input,
            out,
            "Address to bind LXD to (not including port)",
            "all",
        )?;
        let port = ask(input, out, "Port to bind LXD to", "8443")?;
        let addr = if addr == "all" {
            "[::]".to_string()
        } else {
            addr
        };
        p.config
            .insert("core.https_address".into(), format!("{addr}:{port}"));
    }
    if !ask_bool(
        input,
        out,
        "Would you like stale cached images to be updated automatically?",
        true,
    )? {
        p.config
            .insert("images.auto_update_interval".into(), "0".into());
    }
    if !pool_name.is_empty() || eth0.is_some() {
        let mut devices = lxd_api::DevicesMap::new();
        if !pool_name.is_empty() {
            let mut root = lxd_api::ConfigMap::new();
            root.insert("path".into(), "/".into());
            root.insert("pool".into(), pool_name);
            root.insert("type".into(), "disk".into());
            devices.insert("root".into(), root);
        }
        if let Some(nic) = eth0 {
            devices.insert("eth0".into(), nic);
        }
        p.profiles.push(lxd_api::profile::ProfilesPost {
            name: "default".into(),
            devices,
            ..Default::default()
        });
    }
    let print = ask_bool(
        input,
        out,
        "Would you like a YAML \"lxd init\" preseed to be printed?",
        false,
    )?;
    Ok((p, print))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_through_everything_equals_auto() {
        let mut input = std::io::Cursor::new("\n\n\n\n\n\n\n\n\n\n\n\n");
        let mut out = Vec::new();
        let (p, print) = interactive(
            &mut input,
            &mut out,
            &["dir".into(), "btrfs".into()],
            "lxdbr1",
        )
        .unwrap();
        assert!(!print);
        let auto = auto_preseed("dir", "default", Some("lxdbr1"));
        assert_eq!(
            yaml_serde::to_string(&p).unwrap(),
            yaml_serde::to_string(&auto).unwrap()
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Name of the storage backend to use (dir, btrfs) [default=dir]: "));
        assert!(text.contains("What should the new bridge be called? [default=lxdbr1]: "));
        assert_eq!(p.networks[0].config["ipv4.address"], "auto");
        assert_eq!(p.profiles[0].devices["eth0"]["network"], "lxdbr1");
    }

    #[test]
    fn preseed_parses_lxd_yaml() {
        let y = "config:\n  images.auto_update_interval: \"0\"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        let p: Preseed = yaml_serde::from_str(y).unwrap();
        assert_eq!(p.storage_pools[0].driver, "dir");
        assert_eq!(p.profiles[0].devices["root"]["pool"], "default");
        assert_eq!(p.config["images.auto_update_interval"], "0");
    }

    #[test]
    fn preseed_networks_and_no_bridge() {
        let y = "networks:\n- name: br7\n  type: bridge\n  config:\n    ipv4.address: 10.77.0.1/24\n    ipv4.nat: \"true\"\nprofiles:\n- name: default\n  devices:\n    eth0:\n      name: eth0\n      network: br7\n      type: nic\n";
        let p: Preseed = yaml_serde::from_str(y).unwrap();
        assert_eq!(p.networks[0].name, "br7");
        assert_eq!(p.networks[0].config["ipv4.nat"], "true");
        let auto = auto_preseed("dir", "default", None);
        assert!(auto.networks.is_empty());
        assert!(!auto.profiles[0].devices.contains_key("eth0"));
        let auto = auto_preseed("dir", "default", Some("lxdbr3"));
        assert_eq!(auto.networks[0].name, "lxdbr3");
        assert_eq!(auto.networks[0].config["ipv6.address"], "none");
        assert_eq!(auto.profiles[0].devices["eth0"]["name"], "eth0");
        let name = first_free_bridge(0);
        assert!(name.starts_with("lxdbr"));
    }
}
