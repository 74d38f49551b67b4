//! Custom storage volumes: rows in the database plus a volume of the pool's driver. Create, copy
//! (in a pool, across pools, refresh), move, rename, update (quota, restore), delete, snapshots;
//! what uses a volume; and the disk devices (`pool=P source=VOL`) that attach one to instances.
//! A volume in use is never deleted, renamed or moved; every multi-step change undoes itself.

use lxd_api::ConfigMap;
use lxd_api::storage::{
    StorageVolume, StorageVolumeSnapshot, StorageVolumeState, StorageVolumeStateUsage,
    StorageVolumesPost,
};
use lxd_storage::VolumeType;
use std::path::PathBuf;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::db::volumes::{VolumeRow, VolumeSnapshotRow};
use crate::error::{ApiError, Result};
use crate::events::now;

pub const CUSTOM: &str = "custom";
const VT: VolumeType = VolumeType::Custom;

/// The lock serialising changes to one volume (shares the daemon's keyed lock table; instance
/// names cannot contain `/`, so the keys never collide).
fn lock(d: &Daemon, pool: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
    d.instance_lock(&format!("volume/{pool}/{name}"))
}

/// LXD's volume name rule, which is also what our drivers accept as a path component.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(format!(
            "Invalid {kind} name \"{name}\": {why}"
        )))
    };
    if name.is_empty() {
        return bad("name is empty");
    }
    if name.len() > 200 {
        return bad("name is too long");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("name must not start with '.' or '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '@' | '#' | '%' | '\\') || c.is_control() || c.is_whitespace())
    {
        return bad(&format!("character '{c}' is not allowed"));
    }
    Ok(())
}

fn is_bool(v: &str) -> bool {
    crate::config::parse_bool(v).is_some()
}

/// Check a custom volume's config for a pool with driver `info`.
pub fn validate_config(info: &lxd_storage::Info, config: &ConfigMap) -> Result<()> {
    for (k, v) in config {
        let bad = |why: &str| {
            Err(ApiError::bad_request(format!(
                "Invalid value for {k}: \"{v}\" {why}"
            )))
        };
        match k.as_str() {
            "size" if v.is_empty() => {}
            "size" => {
                if lxd_storage::parse_size(v).is_err() {
                    return bad("is not a size");
                }
                if !info.quotas {
                    return Err(ApiError::bad_request(format!(
                        "Storage pools of the {} driver cannot limit the size of volumes",
                        info.driver
                    )));
                }
            }
            "security.shifted"
            | "security.unmapped"
            | "zfs.remove_snapshots"
            | "zfs.use_refquota"
            | "snapshots.schedule.stopped" => {
                if !v.is_empty() && !is_bool(v) {
                    return bad("is not a boolean");
                }
            }
            "snapshots.schedule" => super::schedule::validate_schedule(v)?,
            "snapshots.expiry" => super::schedule::validate_expiry(v)?,
            "snapshots.pattern" | "volatile.idmap.last" | "volatile.idmap.next" => {}
            k if k.starts_with("user.") => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid config key \"{k}\" for a custom volume"
                )));
            }
        }
    }
    Ok(())
}

/// Whether a device attaches custom volume `name` of `pool`.
fn device_uses(dev: &ConfigMap, pool: &str, name: &str) -> bool {
    dev.get("type").map(String::as_str) == Some("disk")
        && dev.get("pool").map(String::as_str) == Some(pool)
        && dev.get("path").map(String::as_str) != Some("/")
        && dev.get("source").map(String::as_str) == Some(name)
}

/// The instances and profiles whose devices attach the volume (LXD `used_by`).
pub fn used_by(d: &Daemon, pool: &str, name: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for row in d.db.instances()? {
        let ex = crate::instance::expand_row(d, &row)?;
        if ex.devices.values().any(|dev| device_uses(dev, pool, name)) {
            out.push(format!("/1.0/instances/{}", row.name));
        }
    }
    for p in d.db.profile_names()? {
        let prof = d.db.profile(&p)?;
        if prof
            .devices
            .values()
            .any(|dev| device_uses(dev, pool, name))
        {
            out.push(format!("/1.0/profiles/{p}"));
        }
    }
    Ok(out)
}

/// Running instances among a volume's users.
fn running_users(d: &Daemon, users: &[String]) -> Vec<String> {
    users
        .iter()
        .filter_map(|u| u.strip_prefix("/1.0/instances/"))
        .filter(|n| crate::instance::runtime::probe(d, n).is_active())
        .map(str::to_string)
        .collect()
}

pub fn to_api(d: &Daemon, v: &VolumeRow) -> Result<StorageVolume> {
    Ok(StorageVolume {
        name: v.name.clone(),
        kind: v.kind.clone(),
        description: v.description.clone(),
        config: v.config.clone(),
        used_by: used_by(d, &v.pool, &v.name)?,
        location: "none".into(),
        content_type: v.content_type.clone(),
        project: "default".into(),
        created_at: v.created_at.clone(),
    })
}

pub fn snapshot_to_api(s: &VolumeSnapshotRow, content_type: &str) -> StorageVolumeSnapshot {
    StorageVolumeSnapshot {
        name: s.name.clone(),
        description: s.description.clone(),
        config: s.config.clone(),
        content_type: content_type.to_string(),
        created_at: s.created_at.clone(),
        expires_at: s.expires_at.clone(),
    }
}

/// The volumes LXD lists for a pool besides custom ones: one per instance (`container`) and,
/// on pools with optimized images, one per image (`image`).
pub fn other_volumes(d: &Daemon, pool: &str) -> Result<Vec<StorageVolume>> {
    let mut out = Vec::new();
    for row in d.db.instances()? {
        if row.pool == pool {
            out.push(StorageVolume {
                name: row.name.clone(),
                kind: "container".into(),
                used_by: vec![format!("/1.0/instances/{}", row.name)],
                location: "none".into(),
                content_type: "filesystem".into(),
                project: "default".into(),
                created_at: row.created_at.clone(),
                ..Default::default()
            });
        }
    }
    let drv = d.pool(pool)?;
    if drv.info().optimized_images {
        for img in d.db.images()? {
            if drv.image_volume_exists(&img.fingerprint).unwrap_or(false) {
                out.push(StorageVolume {
                    name: img.fingerprint.clone(),
                    kind: "image".into(),
                    used_by: vec![format!("/1.0/images/{}", img.fingerprint)],
                    location: "none".into(),
                    content_type: "filesystem".into(),
                    project: "default".into(),
                    created_at: img.uploaded_at.clone(),
                    ..Default::default()
                });
            }
        }
    }
    Ok(out)
}

fn quota_of(config: &ConfigMap) -> Option<u64> {
    config
        .get("size")
        .filter(|s| !s.is_empty())
        .and_then(|s| lxd_storage::parse_size(s).ok())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> lxd_storage::Result<T> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn lifecycle(d: &Daemon, action: &str, pool: &str, name: &str) {
    d.events.lifecycle(
        action,
        &format!("/1.0/storage-pools/{pool}/volumes/custom/{name}"),
        serde_json::json!({}),
    );
}

/// Keys a client may not set: the daemon's own bookkeeping.
fn user_config(config: &ConfigMap) -> ConfigMap {
    config
        .iter()
        .filter(|(k, v)| !k.starts_with("volatile.") && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `POST /1.0/storage-pools/P/volumes/custom` without a source: a new empty volume.
pub async fn create(d: &Arc<Daemon>, pool: &str, req: &StorageVolumesPost) -> Result<()> {
    validate_name("storage volume", &req.name)?;
    if !req.content_type.is_empty() && req.content_type != "filesystem" {
        return Err(ApiError::bad_request(
            "Only filesystem volumes are supported (zfs-fuse has no zvols)",
        ));
    }
    let drv = d.pool(pool)?;
    let config = user_config(&req.config);
    validate_config(&drv.info(), &config)?;
    let l = lock(d, pool, &req.name);
    let _g = l.lock().await;
    if d.db.volume_opt(pool, CUSTOM, &req.name)?.is_some() {
        return Err(ApiError::conflict(format!(
            "Storage volume \"{}\" already exists",
            req.name
        )));
    }
    let (n, size, drv2) = (req.name.clone(), quota_of(&config), drv.clone());
    blocking(move || {
        drv2.create_volume(VT, &n)?;
        if size.is_some()
            && let Err(e) = drv2.set_volume_quota(VT, &n, size)
        {
            let _ = drv2.delete_volume(VT, &n);
            return Err(e);
        }
        Ok(())
    })
    .await?;
    let row = VolumeRow {
        id: 0,
        pool: pool.to_string(),
        kind: CUSTOM.into(),
        name: req.name.clone(),
        description: req.description.clone(),
        config,
        content_type: "filesystem".into(),
        created_at: now(),
    };
    if let Err(e) = d.db.volume_create(&row) {
        let n = req.name.clone();
        let _ = blocking(move || drv.delete_volume(VT, &n)).await;
        return Err(e);
    }
    lifecycle(d, "storage-volume-created", pool, &req.name);
    Ok(())
}

/// Where a copy comes from: `VOL` or `VOL/SNAP` on `pool`.
fn split_source(name: &str) -> (String, Option<String>) {
    match name.split_once('/') {
        Some((v, s)) => (v.to_string(), Some(s.to_string())),
        None => (name.to_string(), None),
    }
}

/// Validate a copy request before its operation starts: the source exists, the target name is
/// free (unless refreshing), the config suits the target pool.
pub fn check_copy(d: &Daemon, pool: &str, req: &StorageVolumesPost) -> Result<()> {
    validate_name("storage volume", &req.name)?;
    let src_pool = if req.source.pool.is_empty() {
        pool
    } else {
        &req.source.pool
    };
    d.pool(src_pool)?;
    let dst = d.pool(pool)?;
    let (src, snap) = split_source(&req.source.name);
    let row = d.db.volume(src_pool, CUSTOM, &src)?;
    if let Some(s) = &snap {
        d.db.volume_snapshot(row.id, s)?;
    }
    if d.db.volume_opt(pool, CUSTOM, &req.name)?.is_some() {
        if req.source.refresh {
            // The target keeps its own config.
            return Ok(());
        }
        return Err(ApiError::conflict(format!(
            "Storage volume \"{}\" already exists",
            req.name
        )));
    }
    validate_config(&dst.info(), &copy_config(&dst.info(), &req.config))
}

/// The config a copy gets on its target pool: the request's (the client sends the source's),
/// without a `size` a pool that cannot limit volumes (dir) would refuse.
fn copy_config(info: &lxd_storage::Info, config: &ConfigMap) -> ConfigMap {
    let mut c = user_config(config);
    if !info.quotas && c.remove("size").is_some() {
        tracing::info!(
            "copy to a {} pool: dropping the volume size limit",
            info.driver
        );
    }
    c
}

/// `POST /1.0/storage-pools/P/volumes/custom` with `source.type=copy` (an operation): a copy of
/// a volume or snapshot in the same pool (native clone or send) or from another pool (rsync);
/// with `source.refresh` an existing target is brought up to date instead.
pub async fn copy(d: &Arc<Daemon>, pool: &str, req: &StorageVolumesPost) -> Result<()> {
    check_copy(d, pool, req)?;
    let src_pool = if req.source.pool.is_empty() {
        pool.to_string()
    } else {
        req.source.pool.clone()
    };
    let (src, snap) = split_source(&req.source.name);
    if req.source.refresh && d.db.volume_opt(pool, CUSTOM, &req.name)?.is_some() {
        if snap.is_some() {
            return Err(ApiError::bad_request(
                "A refresh copies from a volume, not from one of its snapshots",
            ));
        }
        return refresh(d, &src_pool, &src, pool, &req.name, !req.source.volume_only).await;
    }
    let src_row = d.db.volume(&src_pool, CUSTOM, &src)?;
    let (sdrv, ddrv) = (d.pool(&src_pool)?, d.pool(pool)?);
    let l = lock(d, pool, &req.name);
    let _g = l.lock().await;
    let with_snapshots = snap.is_none() && !req.source.volume_only;
    let (s2, sn2, n2, same) = (
        src.clone(),
        snap.clone(),
        req.name.clone(),
        src_pool == pool,
    );
    let (sd, dd) = (sdrv.clone(), ddrv.clone());
    let mut config = copy_config(&ddrv.info(), &req.config);
    if req.config.is_empty() {
        config = copy_config(&ddrv.info(), &src_row.config);
    }
    // The files keep the source's on-disk ownership.
    if let Some(v) = src_row.config.get("volatile.idmap.last") {
        config.insert("volatile.idmap.last".into(), v.clone());
    }
    let size = quota_of(&config);
    blocking(move || {
        if same {
            match &sn2 {
                Some(s) => dd.create_volume_from_snapshot(VT, &s2, s, &n2)?,
                None => dd.copy_volume(VT, &s2, &n2, with_snapshots)?,
            };
        } else {
            lxd_storage::copy_across(&*sd, VT, &s2, sn2.as_deref(), &*dd, &n2, with_snapshots)?;
        }
        if size.is_some()
            && let Err(e) = dd.set_volume_quota(VT, &n2, size)
        {
            let _ = dd.delete_volume(VT, &n2);
            return Err(e);
        }
        Ok(())
    })
    .await?;
    let row = VolumeRow {
        id: 0,
        pool: pool.to_string(),
        kind: CUSTOM.into(),
        name: req.name.clone(),
        description: if req.description.is_empty() {
            src_row.description.clone()
        } else {
            req.description.clone()
        },
        config,
        content_type: "filesystem".into(),
        created_at: now(),
    };
    let undo = |d: &Arc<Daemon>, id: Option<i64>| {
        if let Some(id) = id {
            let _ = d.db.volume_delete(id);
        }
        let (dd, n) = (ddrv.clone(), req.name.clone());
        async move {
            let _ = blocking(move || dd.delete_volume(VT, &n)).await;
        }
    };
    let id = match d.db.volume_create(&row) {
        Ok(id) => id,
        Err(e) => {
            undo(d, None).await;
            return Err(e);
        }
    };
    if with_snapshots {
        for mut s in d.db.volume_snapshots(src_row.id)? {
            s.volume_id = id;
            if let Err(e) = d.db.volume_snapshot_create(&s) {
                undo(d, Some(id)).await;
                return Err(e);
            }
        }
    }
    lifecycle(d, "storage-volume-created", pool, &req.name);
    Ok(())
}

/// Bring custom volume `dst` of `dst_pool` up to date with `src` of `src_pool`.
async fn refresh(
    d: &Arc<Daemon>,
    src_pool: &str,
    src: &str,
    dst_pool: &str,
    dst: &str,
    with_snapshots: bool,
) -> Result<()> {
    let l = lock(d, dst_pool, dst);
    let _g = l.lock().await;
    let src_row = d.db.volume(src_pool, CUSTOM, src)?;
    let mut dst_row = d.db.volume(dst_pool, CUSTOM, dst)?;
    let users = used_by(d, dst_pool, dst)?;
    if !running_users(d, &users).is_empty() {
        return Err(ApiError::bad_request(
            "Cannot refresh a volume attached to running instances",
        ));
    }
    let src_snaps = d.db.volume_snapshots(src_row.id)?;
    let dst_snaps = d.db.volume_snapshots(dst_row.id)?;
    let common: Vec<String> = src_snaps
        .iter()
        .zip(dst_snaps.iter())
        .take_while(|(a, b)| a.name == b.name && a.created_at == b.created_at)
        .map(|(a, _)| a.name.clone())
        .collect();
    let (sdrv, ddrv) = (d.pool(src_pool)?, d.pool(dst_pool)?);
    let (s, t, c, same) = (
        src.to_string(),
        dst.to_string(),
        common.clone(),
        src_pool == dst_pool,
    );
    let out = blocking(move || {
        if same {
            ddrv.refresh_volume(VT, &s, &t, &c, with_snapshots)
        } else {
            lxd_storage::refresh_across(&*sdrv, VT, &s, &*ddrv, &t, &c, with_snapshots)
        }
    })
    .await?;
    for r in &out.removed {
        d.db.volume_snapshot_delete(dst_row.id, r)?;
    }
    for a in &out.added {
        if let Some(mut s) = src_snaps.iter().find(|s| &s.name == a).cloned() {
            s.volume_id = dst_row.id;
            d.db.volume_snapshot_create(&s)?;
        }
    }
    match src_row.config.get("volatile.idmap.last") {
        Some(v) => dst_row
            .config
            .insert("volatile.idmap.last".into(), v.clone()),
        None => dst_row.config.remove("volatile.idmap.last"),
    };
    d.db.volume_update(&dst_row)?;
    lifecycle(d, "storage-volume-updated", dst_pool, dst);
    Ok(())
}

/// `DELETE /1.0/storage-pools/P/volumes/custom/NAME`: refused while anything uses it.
pub async fn delete(d: &Arc<Daemon>, pool: &str, name: &str) -> Result<()> {
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let row = d.db.volume(pool, CUSTOM, name)?;
    if !used_by(d, pool, name)?.is_empty() {
        return Err(ApiError::bad_request("The storage volume is still in use"));
    }
    let (drv, n) = (d.pool(pool)?, name.to_string());
    blocking(move || drv.delete_volume(VT, &n)).await?;
    d.db.volume_delete(row.id)?;
    lifecycle(d, "storage-volume-deleted", pool, name);
    Ok(())
}

/// Rename in place (`POST` without `pool`).
pub async fn rename(d: &Arc<Daemon>, pool: &str, name: &str, new: &str) -> Result<()> {
    validate_name("storage volume", new)?;
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let row = d.db.volume(pool, CUSTOM, name)?;
    if !used_by(d, pool, name)?.is_empty() {
        return Err(ApiError::bad_request(
            "Storage volumes cannot be renamed while in use",
        ));
    }
    if d.db.volume_opt(pool, CUSTOM, new)?.is_some() {
        return Err(ApiError::conflict(format!(
            "Storage volume \"{new}\" already exists"
        )));
    }
    let drv = d.pool(pool)?;
    let (o, n, d2) = (name.to_string(), new.to_string(), drv.clone());
    blocking(move || d2.rename_volume(VT, &o, &n)).await?;
    if let Err(e) = d.db.volume_rename(row.id, new) {
        let (o, n) = (name.to_string(), new.to_string());
        let _ = blocking(move || drv.rename_volume(VT, &n, &o)).await;
        return Err(e);
    }
    lifecycle(d, "storage-volume-renamed", pool, new);
    Ok(())
}

/// Move to another pool (`POST` with `pool`): copy with snapshots, then remove the source.
pub async fn move_to(
    d: &Arc<Daemon>,
    pool: &str,
    name: &str,
    dst_pool: &str,
    new: &str,
) -> Result<()> {
    validate_name("storage volume", new)?;
    if !used_by(d, pool, name)?.is_empty() {
        return Err(ApiError::bad_request(
            "Storage volumes cannot be moved while in use",
        ));
    }
    let src = d.db.volume(pool, CUSTOM, name)?;
    let req = StorageVolumesPost {
        name: new.to_string(),
        kind: CUSTOM.into(),
        description: src.description.clone(),
        config: src.config.clone(),
        content_type: src.content_type.clone(),
        source: lxd_api::storage::StorageVolumeSource {
            name: name.to_string(),
            kind: "copy".into(),
            pool: pool.to_string(),
            ..Default::default()
        },
    };
    copy(d, dst_pool, &req).await?;
    if let Err(e) = delete(d, pool, name).await {
        // Keep exactly one copy: take the new one away again.
        if let Ok(r) = d.db.volume(dst_pool, CUSTOM, new) {
            let (drv, n) = (d.pool(dst_pool)?, new.to_string());
            let _ = blocking(move || drv.delete_volume(VT, &n)).await;
            let _ = d.db.volume_delete(r.id);
        }
        return Err(e);
    }
    Ok(())
}

/// `PUT`/`PATCH`: description and config (a `size` change is applied to the volume at once), or
/// a restore when `restore` names a snapshot.
pub async fn update(
    d: &Arc<Daemon>,
    pool: &str,
    name: &str,
    description: String,
    config: ConfigMap,
) -> Result<()> {
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let mut row = d.db.volume(pool, CUSTOM, name)?;
    let drv = d.pool(pool)?;
    let mut config = user_config(&config);
    validate_config(&drv.info(), &config)?;
    for (k, v) in &row.config {
        if k.starts_with("volatile.") {
            config.insert(k.clone(), v.clone());
        }
    }
    let (old, new) = (quota_of(&row.config), quota_of(&config));
    if old != new {
        let (n, d2) = (name.to_string(), drv.clone());
        blocking(move || d2.set_volume_quota(VT, &n, new)).await?;
    }
    row.config = config;
    row.description = description;
    d.db.volume_update(&row)?;
    lifecycle(d, "storage-volume-updated", pool, name);
    Ok(())
}

/// Restore a snapshot: refused while instances using the volume run.
pub async fn restore(d: &Arc<Daemon>, pool: &str, name: &str, snap: &str) -> Result<()> {
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let mut row = d.db.volume(pool, CUSTOM, name)?;
    let s = d.db.volume_snapshot(row.id, snap)?;
    let running = running_users(d, &used_by(d, pool, name)?);
    if !running.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Storage volume is in use by running instances ({}); stop them first",
            running.join(", ")
        )));
    }
    let remove_newer = row
        .config
        .get("zfs.remove_snapshots")
        .filter(|v| !v.is_empty())
        .map(|v| crate::config::parse_bool(v).unwrap_or(false));
    let (drv, n, sn) = (d.pool(pool)?, name.to_string(), snap.to_string());
    let removed = blocking(move || drv.restore_volume_snapshot(VT, &n, &sn, remove_newer)).await?;
    for r in removed {
        d.db.volume_snapshot_delete(row.id, &r)?;
    }
    // The files now carry the ownership they had when the snapshot was taken.
    match s.config.get("volatile.idmap.last") {
        Some(v) => row.config.insert("volatile.idmap.last".into(), v.clone()),
        None => row.config.remove("volatile.idmap.last"),
    };
    d.db.volume_update(&row)?;
    lifecycle(d, "storage-volume-restored", pool, name);
    Ok(())
}

pub fn state(d: &Daemon, pool: &str, name: &str) -> Result<StorageVolumeState> {
    d.db.volume(pool, CUSTOM, name)?;
    let usage = d.pool(pool)?.volume_usage(VT, name)?;
    Ok(StorageVolumeState {
        usage: usage.map(|used| StorageVolumeStateUsage { used, total: 0 }),
    })
}

/// Take a snapshot (`snap` empty: from `snapshots.pattern`); expiry from `expires_at`, else the
/// volume's `snapshots.expiry`.
pub async fn create_snapshot(
    d: &Arc<Daemon>,
    pool: &str,
    name: &str,
    snap: &str,
    expires_at: Option<String>,
) -> Result<String> {
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let row = d.db.volume(pool, CUSTOM, name)?;
    let existing: Vec<String> =
        d.db.volume_snapshots(row.id)?
            .into_iter()
            .map(|s| s.name)
            .collect();
    let t = jiff::Timestamp::now();
    let snap = if snap.is_empty() {
        let pattern = row
            .config
            .get("snapshots.pattern")
            .cloned()
            .unwrap_or_default();
        super::schedule::next_snapshot_name(&pattern, &existing, t)?
    } else {
        snap.to_string()
    };
    validate_name("snapshot", &snap)?;
    if existing.contains(&snap) {
        return Err(ApiError::conflict(format!(
            "Snapshot \"{snap}\" already exists"
        )));
    }
    let expires_at = match expires_at.filter(|e| !e.is_empty()) {
        Some(e) => {
            e.parse::<jiff::Timestamp>()
                .map_err(|_| ApiError::bad_request(format!("Invalid expiry date \"{e}\"")))?;
            e
        }
        None => super::schedule::expires_at(
            t,
            row.config
                .get("snapshots.expiry")
                .map_or("", String::as_str),
        )?,
    };
    let drv = d.pool(pool)?;
    let (n, s, d2) = (name.to_string(), snap.clone(), drv.clone());
    blocking(move || d2.create_volume_snapshot(VT, &n, &s)).await?;
    let srow = VolumeSnapshotRow {
        id: 0,
        volume_id: row.id,
        name: snap.clone(),
        description: String::new(),
        config: row.config.clone(),
        created_at: t.to_string(),
        expires_at,
    };
    if let Err(e) = d.db.volume_snapshot_create(&srow) {
        let (n, s) = (name.to_string(), snap.clone());
        let _ = blocking(move || drv.delete_volume_snapshot(VT, &n, &s)).await;
        return Err(e);
    }
    lifecycle(d, "storage-volume-snapshot-created", pool, name);
    Ok(snap)
}

pub async fn delete_snapshot(d: &Arc<Daemon>, pool: &str, name: &str, snap: &str) -> Result<()> {
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let row = d.db.volume(pool, CUSTOM, name)?;
    d.db.volume_snapshot(row.id, snap)?;
    let (drv, n, s) = (d.pool(pool)?, name.to_string(), snap.to_string());
    blocking(move || drv.delete_volume_snapshot(VT, &n, &s)).await?;
    d.db.volume_snapshot_delete(row.id, snap)?;
    lifecycle(d, "storage-volume-snapshot-deleted", pool, name);
    Ok(())
}

pub async fn rename_snapshot(
    d: &Arc<Daemon>,
    pool: &str,
    name: &str,
    snap: &str,
    new: &str,
) -> Result<()> {
    validate_name("snapshot", new)?;
    let l = lock(d, pool, name);
    let _g = l.lock().await;
    let row = d.db.volume(pool, CUSTOM, name)?;
    let mut s = d.db.volume_snapshot(row.id, snap)?;
    if d.db.volume_snapshot(row.id, new).is_ok() {
        return Err(ApiError::conflict(format!(
            "Snapshot \"{new}\" already exists"
        )));
    }
    let drv = d.pool(pool)?;
    let (n, o, nw, d2) = (
        name.to_string(),
        snap.to_string(),
        new.to_string(),
        drv.clone(),
    );
    blocking(move || d2.rename_volume_snapshot(VT, &n, &o, &nw)).await?;
    s.name = new.to_string();
    if let Err(e) = d.db.volume_snapshot_update(&s) {
        let (n, o, nw) = (name.to_string(), snap.to_string(), new.to_string());
        let _ = blocking(move || drv.rename_volume_snapshot(VT, &n, &nw, &o)).await;
        return Err(e);
    }
    Ok(())
}

/// The host path of the custom volume a disk device attaches, and whether the pool can present
/// it through an idmapped mount. Only looks things up: `prepare_disks` mounts and shifts.
pub fn disk_source(d: &Daemon, pool: &str, name: &str) -> Result<(PathBuf, bool)> {
    if d.db.volume_opt(pool, CUSTOM, name)?.is_none() {
        return Err(ApiError::bad_request(format!(
            "Storage volume \"{name}\" not found in pool \"{pool}\""
        )));
    }
    let drv = d.pool(pool)?;
    Ok((drv.volume_path(VT, name), drv.info().idmapped_mounts))
}

/// Before an instance starts or gets disk devices hot-plugged: mount the custom volumes it
/// attaches, and on pools without idmapped mounts (zfs-fuse) shift their ownership on disk to
/// the instance's map (back to unshifted for a privileged instance), recording it in the
/// volume's `volatile.idmap.last`, as LXD does.
pub async fn prepare_disks(d: &Arc<Daemon>, expanded: &crate::instance::Expanded) -> Result<()> {
    let privileged = crate::config::is_true(&expanded.config, "security.privileged");
    for dev in expanded.devices.values() {
        if dev.get("type").map(String::as_str) != Some("disk")
            || dev.get("path").map(String::as_str) == Some("/")
        {
            continue;
        }
        let (Some(pool), Some(name)) =
            (dev.get("pool").filter(|p| !p.is_empty()), dev.get("source"))
        else {
            continue;
        };
        let l = lock(d, pool, name);
        let _g = l.lock().await;
        let mut row = d.db.volume(pool, CUSTOM, name)?;
        let drv = d.pool(pool)?;
        let (d2, n) = (drv.clone(), name.clone());
        let path = blocking(move || d2.mount_volume(VT, &n)).await?;
        let shift = dev
            .get("shift")
            .map(|v| crate::config::parse_bool(v).unwrap_or(false))
            .unwrap_or(true);
        let wanted = if privileged || !shift || drv.info().idmapped_mounts {
            None
        } else {
            Some(lxd_runtime::idmap::host_idmap())
        };
        let on_disk = row
            .config
            .get("volatile.idmap.last")
            .and_then(|v| crate::instance::idmap::from_volatile(v));
        if on_disk == wanted {
            continue;
        }
        let (from, to) = (on_disk, wanted.clone());
        tokio::task::spawn_blocking(
            move || -> std::result::Result<(), lxd_runtime::error::Error> {
                if let Some(m) = from {
                    lxd_runtime::idmap::shift_tree(&path, &m, true)?;
                }
                if let Some(m) = to {
                    lxd_runtime::idmap::shift_tree(&path, &m, false)?;
                }
                Ok(())
            },
        )
        .await?
        .map_err(|e| {
            ApiError::internal(format!("Failed to shift storage volume \"{name}\": {e}"))
        })?;
        match wanted {
            Some(m) => row.config.insert(
                "volatile.idmap.last".into(),
                crate::instance::idmap::to_volatile(&m),
            ),
            None => row.config.remove("volatile.idmap.last"),
        };
        d.db.volume_update(&row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(driver: &'static str, quotas: bool) -> lxd_storage::Info {
        lxd_storage::Info {
            driver,
            optimized_images: false,
            snapshots: true,
            quotas,
            idmapped_mounts: true,
            xattrs: true,
            coarse_timestamps: false,
            running_copy_freeze: false,
            remote: false,
            preserves_inodes: false,
            restore_any_snapshot: true,
        }
    }

    fn cfg(kv: &[(&str, &str)]) -> ConfigMap {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn volume_names_and_config() {
        assert!(validate_name("storage volume", "data-1.x").is_ok());
        for bad in ["", "a/b", ".x", "-x", "a b", "a@b"] {
            assert!(validate_name("storage volume", bad).is_err(), "{bad}");
        }
        let zfs = info("zfs", true);
        assert!(validate_config(&zfs, &cfg(&[("size", "1GiB"), ("user.x", "y")])).is_ok());
        assert!(validate_config(&zfs, &cfg(&[("size", "lots")])).is_err());
        assert!(validate_config(&zfs, &cfg(&[("bogus", "1")])).is_err());
        assert!(validate_config(&zfs, &cfg(&[("snapshots.expiry", "1x")])).is_err());
        assert!(validate_config(&zfs, &cfg(&[("snapshots.schedule", "@daily")])).is_ok());
        let e = validate_config(&info("dir", false), &cfg(&[("size", "1GiB")])).unwrap_err();
        assert!(e.message.contains("cannot limit"), "{e}");
        assert_eq!(
            split_source("v/s"),
            ("v".to_string(), Some("s".to_string()))
        );
    }
}
