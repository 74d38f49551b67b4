//! `copy`, `move` and `rename`. Within one server copies are `POST /1.0/instances` with a
//! `copy` source, and moves and renames are `POST /1.0/instances/NAME {"name": ...}` (or the
//! snapshot equivalent). Between servers a copy is a migration (`migrate.rs`) and a move is a
//! copy that keeps the volatile keys, then deletes the source, as LXD's client does.

use anyhow::bail;
use clap::Args;
use lxd_api::instance::InstanceSource;
use lxd_api::{ConfigMap, DevicesMap, InstancePost, InstanceSnapshot, InstancesPost};
use reqwest::Method;

use super::{instance_path, wait, wait_progress};
use crate::Ctx;
use crate::client::{Client, esc};
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
    /// Config key/value to apply to the target instance
    #[arg(short, long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// New key/value to apply to a specific device
    #[arg(short, long = "device", value_name = "DEVICE,KEY=VALUE")]
    pub device: Vec<String>,
    /// Profile to apply to the target instance
    #[arg(short, long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Unset all profiles on the target instance
    #[arg(long)]
    pub no_profiles: bool,
    /// Storage pool name
    #[arg(short, long, value_name = "POOL")]
    pub storage: Option<String>,
    /// Move the instance without its snapshots
    #[arg(long)]
    pub instance_only: bool,
    /// Copy a stateful instance stateless
    #[arg(long)]
    pub stateless: bool,
    /// Transfer mode (pull, push or relay)
    #[arg(long, default_value = "pull")]
    pub mode: String,
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
    copy_instance(ctx, &a, false).await
}

/// A copy, or the copy half of a move between servers or pools (`moving`: volatile keys and
/// the ephemeral flag are kept, and an instance moved stateless is started on the target).
async fn copy_instance(ctx: &Ctx, a: &CopyArgs, moving: bool) -> anyhow::Result<()> {
    let (src_remote, src_name) = ctx.parse_remote(&a.source)?;
    if src_name.is_empty() {
        bail!("You must specify a source instance name");
    }
    let (parent, snap) = split_snapshot(&src_name);
    let (dst_remote, mut dst_name) = match &a.destination {
        Some(d) => ctx.parse_remote(d)?,
        None => (src_remote.clone(), String::new()),
    };
    let cross = !same_server(ctx, &src_remote, &dst_remote)?;
    // Another server (or a move) without a name takes the source's, as LXD does; a copy on the
    // same server without one lets the server choose.
    if dst_name.is_empty() && (cross || a.destination.is_none() && moving) {
        dst_name = parent.to_string();
    }
    let mode: super::migrate::Mode = a.mode.parse()?;
    if !cross && a.mode != "pull" {
        bail!("The --mode flag is only meaningful between servers");
    }
    if snap.is_some() && a.instance_only {
        bail!("--instance-only can't be passed when the source is a snapshot");
    }
    if snap.is_some() && a.refresh {
        bail!("--refresh can only be used with instances");
    }
    let client = ctx.client(&src_remote)?;
    let mut start_after = false;

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
        // LXD copies an active instance "live" unless --stateless (or --refresh); an instance
        // moved stateless is started again on the target.
        let running = !matches!(
            lxd_api::StatusCode::from(inst.status_code),
            lxd_api::StatusCode::Stopped | lxd_api::StatusCode::Error
        );
        live = running && !a.stateless && !a.refresh;
        start_after = running && moving && a.stateless;
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
    if !(a.keep_volatile || a.refresh || moving) {
        strip_volatile(&mut req.config);
    }
    req.config.remove("volatile.last_state.power");
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
    if !moving {
        req.ephemeral = a.ephemeral;
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
    if cross {
        let dst = ctx.client(&dst_remote)?;
        let writable = req.clone();
        let from = super::migrate::Source {
            instance: parent,
            snapshot: snap,
        };
        super::migrate::copy(&client, &dst, from, req, mode, ctx.global.quiet).await?;
        if a.refresh {
            refresh_config(&dst, &dst_name, writable).await?;
        }
        if start_after {
            start(&dst, &dst_name).await?;
        }
        return Ok(());
    }
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

/// After a `--refresh` between servers, the target takes the source's config, keeping its own
/// `volatile.idmap.next` and root disk pool (as LXD's client does).
async fn refresh_config(dst: &Client, name: &str, mut from: InstancesPost) -> anyhow::Result<()> {
    let (inst, etag): (lxd_api::Instance, _) = dst.get_etag(&instance_path(name)).await?;
    match inst.config.get("volatile.idmap.next") {
        Some(v) => from.config.insert("volatile.idmap.next".into(), v.clone()),
        None => from.config.remove("volatile.idmap.next"),
    };
    let root_pool = |d: &DevicesMap| {
        d.iter()
            .find(|(_, d)| {
                d.get("type").map(String::as_str) == Some("disk")
                    && d.get("path").map(String::as_str) == Some("/")
            })
            .map(|(k, d)| (k.clone(), d.get("pool").cloned()))
    };
    if let (Some((src_key, _)), Some((dst_key, Some(pool)))) =
        (root_pool(&from.devices), root_pool(&inst.devices))
        && src_key == dst_key
        && let Some(d) = from.devices.get_mut(&src_key)
    {
        d.insert("pool".into(), pool);
    }
    let put = lxd_api::InstancePut {
        architecture: from.architecture,
        config: from.config,
        devices: from.devices,
        ephemeral: from.ephemeral,
        profiles: from.profiles.unwrap_or_default(),
        stateful: from.stateful,
        description: from.description,
        ..Default::default()
    };
    let mut op = dst
        .operation(
            Method::PUT,
            &instance_path(name),
            Some(&put),
            etag.as_deref(),
        )
        .await?;
    wait(&mut op).await
}

async fn start(client: &Client, name: &str) -> anyhow::Result<()> {
    let body = lxd_api::InstanceStatePut {
        action: "start".into(),
        timeout: -1,
        ..Default::default()
    };
    let mut op = client
        .operation(
            Method::PUT,
            &format!("{}/state", instance_path(name)),
            Some(&body),
            None,
        )
        .await?;
    wait(&mut op).await
}

pub async fn mv(ctx: &Ctx, a: MoveArgs) -> anyhow::Result<()> {
    // With --storage alone the instance keeps its name.
    let Some(dest) = a
        .destination
        .clone()
        .or_else(|| a.storage.as_ref().map(|_| a.source.clone()))
    else {
        bail!("Invalid number of arguments");
    };
    if a.target.is_some() {
        bail!("The destination LXD server is not clustered");
    }
    let (src_remote, src_name) = ctx.parse_remote(&a.source)?;
    let (dst_remote, _) = ctx.parse_remote(&dest)?;
    let overrides = !a.config.is_empty() || !a.device.is_empty() || !a.profiles.is_empty();
    if src_remote == dst_remote && a.storage.is_none() {
        if overrides || a.no_profiles {
            bail!("Can't override configuration or profiles in local rename");
        }
        return rename_between(ctx, &a.source, &dest).await;
    }
    if split_snapshot(&src_name).1.is_some() {
        bail!("Snapshots cannot be moved between servers or pools: copy them instead");
    }
    if same_server(ctx, &src_remote, &dst_remote)? {
        // A move between pools of one server: a local copy, then the source goes.
        let client = ctx.client(&src_remote)?;
        let (inst, _) = super::get_instance(&client, &src_name).await?;
        if lxd_api::StatusCode::from(inst.status_code) != lxd_api::StatusCode::Stopped {
            bail!("Instance must be stopped to be moved between storage pools");
        }
        let (_, dst_name) = ctx.parse_remote(&dest)?;
        if !dst_name.is_empty() && dst_name != src_name {
            bail!("Moving between pools keeps the instance's name: rename it separately");
        }
        let tmp = format!("{src_name}-move-{}", std::process::id());
        copy_instance(
            ctx,
            &move_copy_args(&a, format!("{src_remote}:{tmp}")),
            true,
        )
        .await?;
        delete_forced(&client, &src_name).await?;
        return rename_between(
            ctx,
            &format!("{src_remote}:{tmp}"),
            &dest_or(&dest, &src_name),
        )
        .await;
    }
    copy_instance(ctx, &move_copy_args(&a, dest.clone()), true).await?;
    let client = ctx.client(&src_remote)?;
    delete_forced(&client, &src_name)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to delete original instance after copying it: {e}"))
}

/// `REMOTE:` alone names the source's name on that remote.
fn dest_or(dest: &str, name: &str) -> String {
    if dest.ends_with(':') {
        format!("{dest}{name}")
    } else {
        dest.to_string()
    }
}

/// The copy half of a move.
fn move_copy_args(a: &MoveArgs, destination: String) -> CopyArgs {
    CopyArgs {
        source: a.source.clone(),
        destination: Some(destination),
        config: a.config.clone(),
        device: a.device.clone(),
        profiles: a.profiles.clone(),
        ephemeral: false,
        instance_only: a.instance_only,
        stateless: a.stateless,
        no_profiles: a.no_profiles,
        storage: a.storage.clone(),
        keep_volatile: true,
        refresh: false,
        mode: a.mode.clone(),
        target: None,
    }
}

/// Delete an instance whatever its state (the source of a finished move).
async fn delete_forced(client: &Client, name: &str) -> anyhow::Result<()> {
    let (inst, _) = super::get_instance(client, name).await?;
    if lxd_api::StatusCode::from(inst.status_code) != lxd_api::StatusCode::Stopped {
        let body = lxd_api::InstanceStatePut {
            action: "stop".into(),
            timeout: -1,
            force: true,
            ..Default::default()
        };
        let mut op = client
            .operation(
                Method::PUT,
                &format!("{}/state", instance_path(name)),
                Some(&body),
                None,
            )
            .await?;
        wait(&mut op).await?;
    }
    let mut op = client
        .operation::<()>(Method::DELETE, &instance_path(name), None, None)
        .await?;
    wait(&mut op).await
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
        bail!("A rename stays on one server: use lxc move to go to another");
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
