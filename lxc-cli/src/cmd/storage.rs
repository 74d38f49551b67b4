//! `storage ...` and `storage volume ...`: `/1.0/storage-pools[/P[/volumes/TYPE/NAME]]`
//! (synchronous: we do not use `storage_and_network_operations`).

use anyhow::bail;
use clap::Subcommand;
use lxd_api::storage::{StoragePool, StoragePoolPut, StoragePoolResources, StorageVolume};
use reqwest::Method;
use serde_json::json;
use std::collections::BTreeMap;

use super::config::key_values;
use super::print_out;
use crate::Ctx;
use crate::client::{Client, esc};
use crate::{editor, output};

#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// Create storage pools
    Create {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        driver: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Storage pool description
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete storage pools
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
    },
    /// Edit storage pool configurations as YAML
    Edit {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
    },
    /// Get values for storage pool configuration keys
    Get {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        key: String,
    },
    /// Show useful information about storage pools
    Info {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        /// Show the used and free space in bytes
        #[arg(long)]
        bytes: bool,
    },
    /// List available storage pools
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Set storage pool configuration keys
    Set {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        #[arg(value_name = "<key><value>...", required = true)]
        args: Vec<String>,
    },
    /// Show storage pool configurations and resources
    Show {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        /// Show the resources available to the storage pool
        #[arg(long)]
        resources: bool,
    },
    /// Unset storage pool configuration keys
    Unset {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        key: String,
    },
    /// Manage storage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Attach new storage volumes to instances
    Attach {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        instance: String,
        /// [<device name>] <path>
        #[arg(value_name = "[<device name>] <path>", num_args = 1..=2, required = true)]
        rest: Vec<String>,
    },
    /// Attach new storage volumes to profiles
    AttachProfile {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        profile: String,
        #[arg(value_name = "[<device name>] <path>", num_args = 1..=2, required = true)]
        rest: Vec<String>,
    },
    /// Copy storage volumes
    Copy {
        #[arg(value_name = "[<remote>:]<pool>/<volume>[/<snapshot>]")]
        source: String,
        #[arg(value_name = "[<remote>:]<pool>/<volume>")]
        target: String,
        /// Copy the volume without its snapshots
        #[arg(long)]
        volume_only: bool,
        /// Refresh and update the existing storage volume copies
        #[arg(long)]
        refresh: bool,
    },
    /// Detach storage volumes from instances
    Detach {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        instance: String,
        device: Option<String>,
    },
    /// Detach storage volumes from profiles
    DetachProfile {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        profile: String,
        device: Option<String>,
    },
    /// Show storage volume state information
    Info {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
    },
    /// Move storage volumes between pools
    Move {
        #[arg(value_name = "[<remote>:]<pool>/<volume>")]
        source: String,
        #[arg(value_name = "[<remote>:]<pool>/<volume>")]
        target: String,
    },
    /// Restore storage volume snapshots
    Restore {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        snapshot: String,
    },
    /// Snapshot storage volumes
    Snapshot {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        snapshot: Option<String>,
        /// If the snapshot name already exists, delete and create a new one
        #[arg(long)]
        reuse: bool,
    },
    /// Create new custom storage volumes
    Create {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Content type, block or filesystem
        #[arg(long, default_value = "filesystem")]
        content_type: String,
    },
    /// Delete storage volumes
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
    },
    /// Edit storage volume configurations as YAML
    Edit {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
    },
    /// Get values for storage volume configuration keys
    Get {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        key: String,
    },
    /// List storage volumes
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Rename storage volumes and storage volume snapshots
    Rename {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        old: String,
        new: String,
    },
    /// Set storage volume configuration keys
    Set {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        #[arg(value_name = "<key><value>...", required = true)]
        args: Vec<String>,
    },
    /// Show storage volume configurations
    Show {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
    },
    /// Unset storage volume configuration keys
    Unset {
        #[arg(value_name = "[<remote>:]<pool>")]
        pool: String,
        volume: String,
        key: String,
    },
}

const POOL_ORDER: &[&str] = &[
    "config",
    "description",
    "name",
    "driver",
    "used_by",
    "status",
    "locations",
];
const VOLUME_ORDER: &[&str] = &[
    "config",
    "description",
    "name",
    "type",
    "used_by",
    "location",
    "content_type",
    "project",
    "created_at",
];

fn pool_path(pool: &str) -> String {
    format!("/1.0/storage-pools/{}", esc(pool))
}

/// `custom/v1` or `v1` (custom) -> (type, name).
pub fn volume_type_name(v: &str) -> (String, String) {
    match v.split_once('/') {
        Some((t, n)) if matches!(t, "custom" | "container" | "virtual-machine" | "image") => {
            (t.to_string(), n.to_string())
        }
        _ => ("custom".to_string(), v.to_string()),
    }
}

fn volume_path(pool: &str, volume: &str) -> String {
    let (t, n) = volume_type_name(volume);
    let n = match n.split_once('/') {
        Some((v, s)) => format!("{}/snapshots/{}", esc(v), esc(s)),
        None => esc(&n),
    };
    format!("{}/volumes/{}/{}", pool_path(pool), esc(&t), n)
}

const POOL_EDIT_HEADER: &str = "### This is a YAML representation of a storage pool.
### Any line starting with a '#' will be ignored.
###
### A storage pool consists of a set of configuration items.
###
### An example would look like:
### name: default
### driver: zfs
### used_by: []
### config:
###   size: \"61203283968\"
###   source: /home/chb/mnt/lxd_test/default.img
###   zfs.pool_name: default
";

/// `lxc storage info`: the overview and what uses the pool, grouped by kind.
pub fn info_text(
    pool: &StoragePool,
    res: Option<&StoragePoolResources>,
    bytes: bool,
) -> anyhow::Result<String> {
    let size = |n: u64| {
        if bytes {
            n.to_string()
        } else {
            output::byte_size_iec(n as i64, 2)
        }
    };
    let mut info = BTreeMap::new();
    info.insert("name".to_string(), pool.name.clone());
    info.insert("driver".to_string(), pool.driver.clone());
    info.insert("description".to_string(), pool.description.clone());
    if let Some(r) = res {
        info.insert("total space".to_string(), size(r.space.total));
        info.insert("space used".to_string(), size(r.space.used));
    }
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for url in &pool.used_by {
        let path = url.split('?').next().unwrap_or(url);
        let parts: Vec<&str> = path.trim_start_matches("/1.0/").split('/').collect();
        let (kind, name) = match parts.as_slice() {
            ["instances", n, ..] => ("instances", *n),
            ["profiles", n, ..] => ("profiles", *n),
            ["images", n, ..] => ("images", *n),
            ["storage-pools", _, "volumes", _, n, ..] => ("volumes", *n),
            [k, n, ..] => (*k, *n),
            _ => continue,
        };
        used.entry(kind.to_string())
            .or_default()
            .push(name.to_string());
    }
    let mut doc = BTreeMap::new();
    doc.insert(
        "info".to_string(),
        serde_json::to_value(&info).unwrap_or_default(),
    );
    doc.insert(
        "used by".to_string(),
        serde_json::to_value(&used).unwrap_or_default(),
    );
    Ok(output::yaml(&doc)?)
}

async fn load_pool(client: &Client, pool: &str) -> anyhow::Result<(StoragePool, Option<String>)> {
    Ok(client.get_etag(&pool_path(pool)).await?)
}

async fn update_pool(
    client: &Client,
    name: &str,
    f: impl FnOnce(&mut StoragePoolPut) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let (p, etag) = load_pool(client, name).await?;
    let mut put = StoragePoolPut {
        description: p.description,
        config: p.config,
    };
    f(&mut put)?;
    client
        .send(Method::PUT, &pool_path(name), Some(&put), etag.as_deref())
        .await?;
    Ok(())
}

pub async fn run(ctx: &Ctx, cmd: StorageCmd) -> anyhow::Result<()> {
    let quiet = ctx.global.quiet;
    match cmd {
        StorageCmd::Create {
            pool,
            driver,
            config,
            description,
        } => {
            let (client, name) = ctx.client_for(&pool)?;
            let body = lxd_api::storage::StoragePoolsPost {
                name: name.clone(),
                driver,
                description: description.unwrap_or_default(),
                config: crate::parse::key_values(&config)?,
            };
            client
                .send(Method::POST, "/1.0/storage-pools", Some(&body), None)
                .await?;
            if !quiet {
                println!("Storage pool {name} created");
            }
        }
        StorageCmd::Delete { pool } => {
            let (client, name) = ctx.client_for(&pool)?;
            client
                .send::<()>(Method::DELETE, &pool_path(&name), None, None)
                .await?;
            if !quiet {
                println!("Storage pool {name} deleted");
            }
        }
        StorageCmd::Edit { pool } => {
            let (client, name) = ctx.client_for(&pool)?;
            let (p, etag) = load_pool(&client, &name).await?;
            let current = output::yaml_ordered(&p, POOL_ORDER)?;
            let (client, name, etag) = (&client, &name, etag.as_deref());
            editor::edit_yaml(POOL_EDIT_HEADER, &current, |text| async move {
                let put: StoragePoolPut = editor::parse_yaml(&text)?;
                client
                    .send(Method::PUT, &pool_path(name), Some(&put), etag)
                    .await?;
                Ok(())
            })
            .await?;
        }
        StorageCmd::Get { pool, key } => {
            let (client, name) = ctx.client_for(&pool)?;
            let (p, _) = load_pool(&client, &name).await?;
            println!("{}", p.config.get(&key).cloned().unwrap_or_default());
        }
        StorageCmd::Info { pool, bytes } => {
            let (client, name) = ctx.client_for(&pool)?;
            let (p, _) = load_pool(&client, &name).await?;
            let res: Option<StoragePoolResources> = client
                .get(&format!("{}/resources", pool_path(&name)))
                .await
                .ok();
            print_out(&info_text(&p, res.as_ref(), bytes)?);
        }
        StorageCmd::List { remote, format } => {
            let format = super::format(&format)?;
            let (remote, _) = ctx.parse_remote(remote.as_deref().unwrap_or(""))?;
            let client = ctx.client(&remote)?;
            let (pools, raw): (Vec<StoragePool>, _) =
                client.get_both("/1.0/storage-pools?recursion=1").await?;
            let mut rows: Vec<Vec<String>> = pools
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.driver.clone(),
                        p.config.get("source").cloned().unwrap_or_default(),
                        p.description.clone(),
                        p.used_by.len().to_string(),
                        p.status.to_uppercase(),
                    ]
                })
                .collect();
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &[
                    "NAME",
                    "DRIVER",
                    "SOURCE",
                    "DESCRIPTION",
                    "USED BY",
                    "STATE",
                ],
                &rows,
                &raw,
            )?);
        }
        StorageCmd::Set { pool, args } => {
            let (client, name) = ctx.client_for(&pool)?;
            let keys = key_values(&args)?;
            update_pool(&client, &name, |p| {
                p.config.extend(keys);
                Ok(())
            })
            .await?;
        }
        StorageCmd::Show { pool, resources } => {
            let (client, name) = ctx.client_for(&pool)?;
            if resources {
                let res: StoragePoolResources = client
                    .get(&format!("{}/resources", pool_path(&name)))
                    .await?;
                print_out(&output::yaml(&res)?);
                return Ok(());
            }
            let (p, _) = load_pool(&client, &name).await?;
            print_out(&output::yaml_ordered(&p, POOL_ORDER)?);
        }
        StorageCmd::Unset { pool, key } => {
            let (client, name) = ctx.client_for(&pool)?;
            update_pool(&client, &name, |p| {
                if p.config.remove(&key).is_none() {
                    bail!("Can't unset key '{key}', it's not currently set");
                }
                Ok(())
            })
            .await?;
        }
        StorageCmd::Volume(v) => volume(ctx, v).await?,
    }
    Ok(())
}

async fn update_volume(
    client: &Client,
    pool: &str,
    vol: &str,
    f: impl FnOnce(&mut StorageVolume) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let path = volume_path(pool, vol);
    let (mut v, etag): (StorageVolume, _) = client.get_etag(&path).await?;
    f(&mut v)?;
    let put = json!({"config": v.config, "description": v.description});
    client
        .send(Method::PUT, &path, Some(&put), etag.as_deref())
        .await?;
    Ok(())
}

async fn volume(ctx: &Ctx, cmd: VolumeCmd) -> anyhow::Result<()> {
    let quiet = ctx.global.quiet;
    match cmd {
        VolumeCmd::Attach {
            pool,
            volume,
            instance,
            rest,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            attach(&client, &pool, &volume, &instance, &rest, false).await?;
        }
        VolumeCmd::AttachProfile {
            pool,
            volume,
            profile,
            rest,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            attach(&client, &pool, &volume, &profile, &rest, true).await?;
        }
        VolumeCmd::Detach {
            pool,
            volume,
            instance,
            device,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            detach(&client, &pool, &volume, &instance, device.as_deref(), false).await?;
        }
        VolumeCmd::DetachProfile {
            pool,
            volume,
            profile,
            device,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            detach(&client, &pool, &volume, &profile, device.as_deref(), true).await?;
        }
        VolumeCmd::Snapshot {
            pool,
            volume,
            snapshot,
            reuse,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let snap = snapshot.unwrap_or_default();
            let base = format!("{}/snapshots", volume_path(&pool, &volume));
            if reuse && !snap.is_empty() {
                let path = format!("{base}/{}", esc(&snap));
                match client.get::<serde_json::Value>(&path).await {
                    Ok(_) => {
                        let mut op = client
                            .operation::<()>(Method::DELETE, &path, None, None)
                            .await?;
                        super::wait(&mut op).await?;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let mut op = client
                .operation(Method::POST, &base, Some(&json!({"name": snap})), None)
                .await?;
            super::wait(&mut op).await?;
        }
        VolumeCmd::Restore {
            pool,
            volume,
            snapshot,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let path = volume_path(&pool, &volume);
            let (v, etag): (StorageVolume, _) = client.get_etag(&path).await?;
            let put =
                json!({"config": v.config, "description": v.description, "restore": snapshot});
            client
                .send(Method::PUT, &path, Some(&put), etag.as_deref())
                .await?;
        }
        VolumeCmd::Copy {
            source,
            target,
            volume_only,
            refresh,
        } => {
            let (client, src) = ctx.client_for(&source)?;
            let (_, dst) = ctx.client_for(&target)?;
            let (src_pool, src_vol) = split_pool_volume(&src)?;
            let (dst_pool, dst_vol) = split_pool_volume(&dst)?;
            let (_, vol_name) = volume_type_name(&src_vol);
            let parent = vol_name.split('/').next().unwrap_or(&vol_name).to_string();
            let v: StorageVolume = client.get(&volume_path(&src_pool, &parent)).await?;
            let body = json!({
                "name": volume_type_name(&dst_vol).1,
                "type": "custom",
                "config": v.config,
                "description": v.description,
                "content_type": v.content_type,
                "source": {
                    "name": vol_name,
                    "type": "copy",
                    "pool": src_pool,
                    "volume_only": volume_only,
                    "refresh": refresh,
                },
            });
            let mut op = client
                .operation(
                    Method::POST,
                    &format!("{}/volumes/custom", pool_path(&dst_pool)),
                    Some(&body),
                    None,
                )
                .await?;
            super::wait(&mut op).await?;
            if !quiet {
                println!("Storage volume copied successfully!");
            }
        }
        VolumeCmd::Move { source, target } => {
            let (client, src) = ctx.client_for(&source)?;
            let (_, dst) = ctx.client_for(&target)?;
            let (src_pool, src_vol) = split_pool_volume(&src)?;
            let (dst_pool, dst_vol) = split_pool_volume(&dst)?;
            let new_name = volume_type_name(&dst_vol).1;
            let path = volume_path(&src_pool, &src_vol);
            if src_pool == dst_pool {
                client
                    .send(Method::POST, &path, Some(&json!({"name": new_name})), None)
                    .await?;
                if !quiet {
                    println!(
                        "Renamed storage volume from \"{}\" to \"{new_name}\"",
                        volume_type_name(&src_vol).1
                    );
                }
            } else {
                let mut op = client
                    .operation(
                        Method::POST,
                        &path,
                        Some(&json!({"name": new_name, "pool": dst_pool})),
                        None,
                    )
                    .await?;
                super::wait(&mut op).await?;
                if !quiet {
                    println!("Storage volume moved successfully!");
                }
            }
        }
        VolumeCmd::Info { pool, volume } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let path = volume_path(&pool, &volume);
            let v: StorageVolume = client.get(&path).await?;
            let state: serde_json::Value = client
                .get(&format!("{path}/state"))
                .await
                .unwrap_or_default();
            let mut out = format!(
                "Name: {}\nType: {}\nContent type: {}\n",
                v.name, v.kind, v.content_type
            );
            if let Some(used) = state["usage"]["used"].as_i64() {
                out.push_str(&format!("Usage: {}\n", output::byte_size_iec(used, 2)));
            }
            if v.kind == "custom" {
                let snaps: Vec<serde_json::Value> =
                    client.get(&format!("{path}/snapshots?recursion=1")).await?;
                if !snaps.is_empty() {
                    out.push_str("\nSnapshots:\n");
                    let rows: Vec<Vec<String>> = snaps
                        .iter()
                        .map(|s| {
                            vec![
                                s["name"].as_str().unwrap_or("").to_string(),
                                s["description"].as_str().unwrap_or("").to_string(),
                                // LXD 5.0 prints the zero time too.
                                s["expires_at"]
                                    .as_str()
                                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                                    .map(|t| {
                                        t.to_zoned_datetime(jiff::tz::TimeZone::system())
                                            .strftime("%Y/%m/%d %H:%M %Z")
                                            .to_string()
                                    })
                                    .unwrap_or_default(),
                            ]
                        })
                        .collect();
                    out.push_str(&output::render(
                        output::Format::Table,
                        &["NAME", "DESCRIPTION", "EXPIRES AT"],
                        &rows,
                        &serde_json::Value::Null,
                    )?);
                }
            }
            print_out(&out);
        }
        VolumeCmd::Create {
            pool,
            volume,
            config,
            content_type,
        } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let (t, name) = volume_type_name(&volume);
            if t != "custom" {
                bail!("Only \"custom\" volumes can be created");
            }
            let body = json!({
                "name": name,
                "type": "custom",
                "config": crate::parse::key_values(&config)?,
                "description": "",
                "content_type": content_type,
            });
            client
                .send(
                    Method::POST,
                    &format!("{}/volumes/custom", pool_path(&pool)),
                    Some(&body),
                    None,
                )
                .await?;
            if !quiet {
                println!("Storage volume {name} created");
            }
        }
        VolumeCmd::Delete { pool, volume } => {
            let (client, pool) = ctx.client_for(&pool)?;
            client
                .send::<()>(Method::DELETE, &volume_path(&pool, &volume), None, None)
                .await?;
            if !quiet {
                println!("Storage volume {} deleted", volume_type_name(&volume).1);
            }
        }
        VolumeCmd::Edit { pool, volume } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let path = volume_path(&pool, &volume);
            let (v, etag): (StorageVolume, _) = client.get_etag(&path).await?;
            let current = output::yaml_ordered(&v, VOLUME_ORDER)?;
            let (client, path, etag) = (&client, &path, etag.as_deref());
            editor::edit_yaml("", &current, |text| async move {
                let v: StorageVolume = editor::parse_yaml(&text)?;
                let put = json!({"config": v.config, "description": v.description});
                client.send(Method::PUT, path, Some(&put), etag).await?;
                Ok(())
            })
            .await?;
        }
        VolumeCmd::Get { pool, volume, key } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let v: StorageVolume = client.get(&volume_path(&pool, &volume)).await?;
            println!("{}", v.config.get(&key).cloned().unwrap_or_default());
        }
        VolumeCmd::List { pool, format } => {
            let format = super::format(&format)?;
            let (client, pool) = ctx.client_for(&pool)?;
            let (vols, raw): (Vec<StorageVolume>, _) = client
                .get_both(&format!("{}/volumes?recursion=1", pool_path(&pool)))
                .await?;
            let mut rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    let t = if v.name.contains('/') {
                        format!("{} (snapshot)", v.kind)
                    } else {
                        v.kind.clone()
                    };
                    vec![
                        t,
                        v.name.clone(),
                        v.description.clone(),
                        v.content_type.clone(),
                        v.used_by.len().to_string(),
                    ]
                })
                .collect();
            sort_volumes(&mut rows);
            print_out(&output::render(
                format,
                &["TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"],
                &rows,
                &raw,
            )?);
        }
        VolumeCmd::Rename { pool, old, new } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let (_, new_name) = volume_type_name(&new);
            client
                .send(
                    Method::POST,
                    &volume_path(&pool, &old),
                    Some(&json!({"name": new_name})),
                    None,
                )
                .await?;
            if !quiet {
                println!(
                    "Renamed storage volume from \"{}\" to \"{new_name}\"",
                    volume_type_name(&old).1
                );
            }
        }
        VolumeCmd::Set { pool, volume, args } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let keys = key_values(&args)?;
            update_volume(&client, &pool, &volume, |v| {
                v.config.extend(keys);
                Ok(())
            })
            .await?;
        }
        VolumeCmd::Show { pool, volume } => {
            let (client, pool) = ctx.client_for(&pool)?;
            let v: StorageVolume = client.get(&volume_path(&pool, &volume)).await?;
            print_out(&output::yaml_ordered(&v, VOLUME_ORDER)?);
        }
        VolumeCmd::Unset { pool, volume, key } => {
            let (client, pool) = ctx.client_for(&pool)?;
            update_volume(&client, &pool, &volume, |v| {
                if v.config.remove(&key).is_none() {
                    bail!("Can't unset key '{key}', it's not currently set");
                }
                Ok(())
            })
            .await?;
        }
    }
    Ok(())
}

/// `pool/volume[/snapshot]` as the copy and move commands take it.
fn split_pool_volume(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('/') {
        Some((p, v)) if !p.is_empty() && !v.is_empty() => Ok((p.to_string(), v.to_string())),
        _ => bail!("Invalid storage volume \"{s}\": expected <pool>/<volume>"),
    }
}

/// Add a disk device for custom volume `volume` of `pool` to an instance or a profile
/// (`rest` is `[<device name>] <path>`; the device is named after the volume by default).
async fn attach(
    client: &Client,
    pool: &str,
    volume: &str,
    target: &str,
    rest: &[String],
    profile: bool,
) -> anyhow::Result<()> {
    let (dev, path) = match rest {
        [path] => (volume.to_string(), path.clone()),
        [dev, path] => (dev.clone(), path.clone()),
        _ => bail!("Invalid number of arguments"),
    };
    let mut disk = lxd_api::ConfigMap::new();
    disk.insert("type".into(), "disk".into());
    disk.insert("pool".into(), pool.to_string());
    disk.insert("source".into(), volume.to_string());
    disk.insert("path".into(), path);
    update_devices(client, target, profile, |devices| {
        if devices.contains_key(&dev) {
            bail!("The device already exists");
        }
        devices.insert(dev, disk);
        Ok(())
    })
    .await
}

/// Remove the disk device attaching `volume` (or the one named `device`).
async fn detach(
    client: &Client,
    pool: &str,
    volume: &str,
    target: &str,
    device: Option<&str>,
    profile: bool,
) -> anyhow::Result<()> {
    update_devices(client, target, profile, |devices| {
        let name = match device {
            Some(d) => d.to_string(),
            None => devices
                .iter()
                .find(|(_, d)| {
                    d.get("type").map(String::as_str) == Some("disk")
                        && d.get("pool").map(String::as_str) == Some(pool)
                        && d.get("source").map(String::as_str) == Some(volume)
                })
                .map(|(n, _)| n.clone())
                .ok_or_else(|| anyhow::anyhow!("No device found for this storage volume"))?,
        };
        if devices.remove(&name).is_none() {
            bail!("The specified device doesn't exist");
        }
        Ok(())
    })
    .await
}

async fn update_devices(
    client: &Client,
    target: &str,
    profile: bool,
    f: impl FnOnce(&mut lxd_api::DevicesMap) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if profile {
        let path = format!("/1.0/profiles/{}", esc(target));
        let (mut p, etag): (lxd_api::Profile, _) = client.get_etag(&path).await?;
        f(&mut p.devices)?;
        let put = json!({"config": p.config, "description": p.description, "devices": p.devices});
        client
            .send(Method::PUT, &path, Some(&put), etag.as_deref())
            .await?;
    } else {
        let (mut inst, etag) = super::get_instance(client, target).await?;
        f(&mut inst.devices)?;
        super::put_instance(client, target, &super::writable(&inst), etag.as_deref()).await?;
    }
    Ok(())
}

/// LXD's `ByNameAndType`: by type word, then by name, snapshots next to their parent.
fn sort_volumes(rows: &mut [Vec<String>]) {
    rows.sort_by(|a, b| {
        let ta = a[0].split(' ').next().unwrap_or("");
        let tb = b[0].split(' ').next().unwrap_or("");
        if ta != tb {
            return output::natural_cmp(&a[0], &b[0]);
        }
        output::natural_cmp(&a[1], &b[1])
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names() {
        assert_eq!(
            volume_type_name("v1"),
            ("custom".to_string(), "v1".to_string())
        );
        assert_eq!(
            volume_type_name("container/c1"),
            ("container".to_string(), "c1".to_string())
        );
        assert_eq!(
            volume_path("default", "custom/v1/snap0"),
            "/1.0/storage-pools/default/volumes/custom/v1/snapshots/snap0"
        );
    }

    #[test]
    fn volumes_sort_like_lxd() {
        let mut rows: Vec<Vec<String>> = [
            ["custom", "v1"],
            ["container", "c2"],
            ["container (snapshot)", "c1/snap0"],
            ["container", "c1"],
            ["container (snapshot)", "c1/s2"],
        ]
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
        sort_volumes(&mut rows);
        let names: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
        assert_eq!(names, ["c1", "c1/s2", "c1/snap0", "c2", "v1"]);
    }

    #[test]
    fn show_matches_lxd() {
        // `lxc query /1.0/storage-pools/default` and `lxc storage show default` on LXD 5.0.2.
        let pool: StoragePool = serde_json::from_str(r#"{"config": {"source": "/tmp/rlxd-client/storage-pools/default"},"description": "","driver": "dir","locations": ["none"],"name": "default","status": "Created","used_by": ["/1.0/instances/c1","/1.0/profiles/default"]}"#).unwrap();
        assert_eq!(
            output::yaml_ordered(&pool, POOL_ORDER).unwrap(),
            "config:\n  source: /tmp/rlxd-client/storage-pools/default\ndescription: \"\"\nname: default\ndriver: dir\nused_by:\n- /1.0/instances/c1\n- /1.0/profiles/default\nstatus: Created\nlocations:\n- none\n"
        );
    }

    #[test]
    fn info_groups_users() {
        let pool: StoragePool = serde_json::from_value(json!({
            "name": "default", "driver": "dir", "description": "",
            "used_by": ["/1.0/instances/c1", "/1.0/instances/c1/snapshots/s", "/1.0/profiles/default"]
        }))
        .unwrap();
        let res: StoragePoolResources = serde_json::from_value(json!({
            "space": {"used": 18693701632u64, "total": 270546812928u64}
        }))
        .unwrap();
        assert_eq!(
            info_text(&pool, Some(&res), false).unwrap(),
            "info:\n  description: \"\"\n  driver: dir\n  name: default\n  space used: 17.41GiB\n  total space: 251.97GiB\nused by:\n  instances:\n  - c1\n  - c1\n  profiles:\n  - default\n"
        );
    }
}
