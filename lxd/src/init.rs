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

/// What `--auto` (and Enter through every question) sets up.
pub fn auto_preseed(backend: &str, pool: &str) -> Preseed {
    let mut root = lxd_api::ConfigMap::new();
    root.insert("path".into(), "/".into());
    root.insert("pool".into(), pool.into());
    root.insert("type".into(), "disk".into());
    let mut devices = lxd_api::DevicesMap::new();
    devices.insert("root".into(), root);
    Preseed {
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
    if !p.networks.is_empty() {
        anyhow::bail!("Networks in preseeds are not supported yet");
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
    if ask_bool(
        input,
        out,
        "Would you like to create a new local network bridge?",
        false,
    )? {
        writeln!(
            out,
            "Managed networks are not supported yet; skipping the bridge."
        )?;
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
    if !pool_name.is_empty() {
        let mut root = lxd_api::ConfigMap::new();
        root.insert("path".into(), "/".into());
        root.insert("pool".into(), pool_name);
        root.insert("type".into(), "disk".into());
        let mut devices = lxd_api::DevicesMap::new();
        devices.insert("root".into(), root);
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
        let mut input = std::io::Cursor::new("\n\n\n\n\n\n\n\n");
        let mut out = Vec::new();
        let (p, print) =
            interactive(&mut input, &mut out, &["dir".into(), "btrfs".into()]).unwrap();
        assert!(!print);
        let auto = auto_preseed("dir", "default");
        assert_eq!(
            yaml_serde::to_string(&p).unwrap(),
            yaml_serde::to_string(&auto).unwrap()
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Name of the storage backend to use (dir, btrfs) [default=dir]: "));
    }

    #[test]
    fn preseed_parses_lxd_yaml() {
        let y = "config:\n  images.auto_update_interval: \"0\"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        let p: Preseed = yaml_serde::from_str(y).unwrap();
        assert_eq!(p.storage_pools[0].driver, "dir");
        assert_eq!(p.profiles[0].devices["root"]["pool"], "default");
        assert_eq!(p.config["images.auto_update_interval"], "0");
    }
}
