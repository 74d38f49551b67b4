//! `copy`, `move` and `rename` within one server: copies are `POST /1.0/instances` with a
//! `copy` source; moves and renames are `POST /1.0/instances/NAME {"name": ...}` (or the
//! snapshot equivalent). Cross-server migration is not implemented yet.

use anyhow::bail;
use clap::Args;
use lxd_api::instance::InstanceSource;
use lxd_api::{ConfigMap, DevicesMap, InstancePost, InstanceSnapshot, InstancesPost};
use reqwest::Method;

use super::{instance_path, wait, wait_progress};
use crate::Ctx;
use crate::client::esc;
use crate::parse::{key_value, split_snapshot};

#[derive(Debug, Args)]
pub struct CopyArgs {
    #[arg(value_name = "[<remote>:]<source>[/<snapshot>]")]
    pub source: String,
    #[arg(value_name = "[<remote>:][<destination>]")]
    pub destination: Option<String>,
    /// Config key/value to apply to the new instance
    #[arg(short, long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// New key/value to apply to a specific device
    #[arg(short, long = "device", value_name = "DEVICE,KEY=VALUE")]
    pub device: Vec<String>,
    /// Profile to apply to the new instance
    #[arg(short, long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Ephemeral instance
    #[arg(short, long)]
    pub ephemeral: bool,
    /// Copy the instance without its snapshots
    #[arg(long)]
    pub instance_only: bool,
    /// Copy a stateful instance stateless
    #[arg(long)]
    pub stateless: bool,
    /// Create the instance with no profiles applied
    #[arg(long)]
    pub no_profiles: bool,
    /// Storage pool name
    #[arg(short, long, value_name = "POOL")]
    pub storage: Option<String>,
    /// Copy will ignore the volatile keys unless this is set
    #[arg(long)]
    pub keep_volatile: bool,
    /// Perform an incremental copy
    #[arg(long)]
    pub refresh: bool,
    /// Transfer mode (pull, push or relay)
    #[arg(long, default_value = "pull")]
    pub mode: String,
    /// Cluster member name
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    #[arg(value_name = "[<remote>:]<source>[/<snapshot>]")]
    pub source: String,
    #[arg(value_name = "[<remote>:][<destination>][/<snapshot>]")]
    pub destination: Option<String>,
    /// Storage pool name
    #[arg(short, long, value_name = "POOL")]
    pub storage: Option<String>,
    /// Move the instance without its snapshots
    #[arg(long)]
    pub instance_only: bool,
    /// Cluster member name
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    #[arg(value_name = "[<remote>:]<instance>[/<snapshot>]")]
    pub old: String,
    #[arg(value_name = "[<remote>:]<instance>[/<snapshot>]")]
    pub new: String,
}

/// Drop volatile keys (except `volatile.base_image`) as LXD's copy does without `--keep-volatile`.
pub fn strip_volatile(config: &mut ConfigMap) {
    config.retain(|k, _| k == "volatile.base_image" || !k.starts_with("volatile"));
}

/// Point the root disk at `pool`, adding one if the instance has none of its own.
pub fn set_root_pool(devices: &mut DevicesMap, pool: &str) {
    let root = devices.iter_mut().find(|(_, d)| {
        d.get("type").map(String::as_str) == Some("disk")
            && d.get("path").map(String::as_str) == Some("/")
    });
    match root {
        Some((_, d)) => {
            d.insert("pool".into(), pool.into());
        }
        None => {
            let mut d = ConfigMap::new();
            d.insert("type".into(), "disk".into());
            d.insert("path".into(), "/".into());
            d.insert("pool".into(), pool.into());
            devices.insert("root".into(), d);
        }
    }
}

fn same_server(ctx: &Ctx, a: &str, b: &str) -> anyhow::Result<bool> {
    Ok(a == b || ctx.remote(a)?.addr == ctx.remote(b)?.addr)
}

pub async fn copy(ctx: &Ctx, a: CopyArgs) -> anyhow::Result<()> {
    let (src_remote, src_name) = ctx.parse_remote(&a.source)?;
    // Without a destination LXD reuses the source name (useful between servers only).
    let (dst_remote, dst_name) = match &a.destination {
        Some(d) => ctx.parse_remote(d)?,
        None => (src_remote.clone(), split_snapshot(&src_name).0.to_string()),
    };
    if !same_server(ctx, &src_remote, &dst_remote)? {
        bail!("Copying instances between servers is not supported yet");
    }
    if a.mode != "pull" {
        bail!("The --mode flag is only meaningful between servers");
    }
    let client = ctx.client(&src_remote)?;
    let (parent, snap) = split_snapshot(&src_name);

    let mut live = false;
    let (mut req, base) = if let Some(snap) = snap {
        let s: InstanceSnapshot = client
            .get(&format!(
                "{}/snapshots/{}",
                instance_path(parent),
                esc(snap)
            ))
            .await?;
        let base = s.config.get("volatile.base_image").cloned();
        (
            InstancesPost {
                architecture: s.architecture,
                config: s.config,
                devices: s.devices,
                ephemeral: s.ephemeral,
                profiles: Some(s.profiles),
                stateful: s.stateful,
                description: s.description,
                ..Default::default()
            },
            base,
        )
    } else {
        let (inst, _) = super::get_instance(&client, parent).await?;
        let base = inst.config.get("volatile.base_image").cloned();
        // LXD copies an active instance "live" unless --stateless.
        live = !a.stateless
            && !matches!(
                lxd_api::StatusCode::from(inst.status_code),
                lxd_api::StatusCode::Stopped | lxd_api::StatusCode::Error
            );
        (
            InstancesPost {
                architecture: inst.architecture,
                config: inst.config,
                devices: inst.devices,
                ephemeral: inst.ephemeral,
                profiles: Some(inst.profiles),
                stateful: inst.stateful,
                description: inst.description,
                kind: inst.kind,
                ..Default::default()
            },
            base,
        )
    };
    if !a.keep_volatile {
        strip_volatile(&mut req.config);
    }
    for c in &a.config {
        let (k, v) = key_value(c)?;
        req.config.insert(k, v);
    }
    for d in &a.device {
        let (dev, kv) = d
            .split_once(',')
            .ok_or_else(|| anyhow::anyhow!("Bad syntax, expecting <device>,<key>=<value>: {d}"))?;
        let (k, v) = key_value(kv)?;
        match req.devices.get_mut(dev) {
            Some(entry) => {
                entry.insert(k, v);
            }
            None => bail!("Device {dev} doesn't exist"),
        }
    }
    if a.no_profiles {
        req.profiles = Some(vec![]);
    } else if !a.profiles.is_empty() {
        req.profiles = Some(a.profiles.clone());
    }
    if a.ephemeral {
        req.ephemeral = true;
    }
    if a.stateless {
        req.stateful = false;
    }
    if let Some(pool) = &a.storage {
        set_root_pool(&mut req.devices, pool);
    }
    if req.kind.is_empty() {
        req.kind = "container".into();
    }
    req.name = dst_name.clone();
    req.source = InstanceSource {
        kind: "copy".into(),
        source: src_name.clone(),
        base_image: base.unwrap_or_default(),
        instance_only: a.instance_only,
        refresh: a.refresh,
        live,
        ..Default::default()
    };
    let path = match &a.target {
        Some(t) => format!("/1.0/instances?target={}", esc(t)),
        None => "/1.0/instances".to_string(),
    };
    let mut op = client
        .operation(Method::POST, &path, Some(&req), None)
        .await?;
    wait_progress(&mut op, "Transferring instance: %s", ctx.global.quiet).await?;
    if dst_name.is_empty()
        && let Some(url) = op.resource("instances")
    {
        println!(
            "Instance name is: {}",
            url.rsplit('/').next().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn mv(ctx: &Ctx, a: MoveArgs) -> anyhow::Result<()> {
    let Some(dest) = a.destination.clone() else {
        bail!("Invalid number of arguments");
    };
    if a.storage.is_some() || a.target.is_some() {
        bail!("Moving instances between pools or cluster members is not supported yet");
    }
    rename_between(ctx, &a.source, &dest).await
}

pub async fn rename(ctx: &Ctx, a: RenameArgs) -> anyhow::Result<()> {
    // LXD's rename takes the new name on the same remote as the old one.
    let (remote, _) = ctx.parse_remote(&a.old)?;
    let new = if a.new.contains(':') {
        a.new.clone()
    } else {
        format!("{remote}:{}", a.new)
    };
    rename_between(ctx, &a.old, &new).await
}

async fn rename_between(ctx: &Ctx, source: &str, dest: &str) -> anyhow::Result<()> {
    let (src_remote, src_name) = ctx.parse_remote(source)?;
    let (dst_remote, mut dst_name) = ctx.parse_remote(dest)?;
    if !same_server(ctx, &src_remote, &dst_remote)? {
        bail!("Moving instances between servers is not supported yet");
    }
    let client = ctx.client(&src_remote)?;
    let (src_parent, src_snap) = split_snapshot(&src_name);
    if let Some(src_snap) = src_snap {
        // `lxc move c1/s1 s2` is accepted as shorthand for `c1/s2`.
        if !dst_name.contains('/') {
            dst_name = format!("{src_parent}/{dst_name}");
        }
        let (dst_parent, dst_snap) = split_snapshot(&dst_name);
        if dst_parent != src_parent {
            bail!("Invalid new snapshot name, parent must be the same as source");
        }
        let body = serde_json::json!({ "name": dst_snap.unwrap_or_default() });
        let mut op = client
            .operation(
                Method::POST,
                &format!("{}/snapshots/{}", instance_path(src_parent), esc(src_snap)),
                Some(&body),
                None,
            )
            .await?;
        return wait(&mut op).await;
    }
    if dst_name.contains('/') {
        bail!("Invalid new instance name: a snapshot name was given");
    }
    let body = InstancePost {
        name: dst_name,
        ..Default::default()
    };
    let mut op = client
        .operation(Method::POST, &instance_path(src_parent), Some(&body), None)
        .await?;
    wait(&mut op).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_keys_are_stripped_but_base_image() {
        let mut c = ConfigMap::new();
        c.insert("volatile.base_image".into(), "abc".into());
        c.insert("volatile.eth0.hwaddr".into(), "00:16:3e:00:00:01".into());
        c.insert("limits.cpu".into(), "2".into());
        strip_volatile(&mut c);
        assert_eq!(c.len(), 2);
        assert!(c.contains_key("volatile.base_image"));
    }

    #[test]
    fn root_pool_is_set_or_added() {
        let mut d = DevicesMap::new();
        set_root_pool(&mut d, "p1");
        assert_eq!(d["root"]["pool"], "p1");
        assert_eq!(d["root"]["path"], "/");
        set_root_pool(&mut d, "p2");
        assert_eq!(d.len(), 1);
        assert_eq!(d["root"]["pool"], "p2");
    }
}
