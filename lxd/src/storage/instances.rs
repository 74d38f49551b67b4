//! Instance volumes beyond what `instance/` does itself: the root disk's `size` quota (checked
//! up front, applied at creation and live on update), copies to another pool, `--refresh`
//! copies, disk usage for `state.disk`, and LXD's `@startup` snapshot.

use lxd_api::DevicesMap;
use lxd_api::instance::{InstanceStateDisk, InstancesPost};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::db::instances::InstanceRow;
use crate::error::{ApiError, Result};
use crate::instance::runtime::{self as rt, RunState};
use crate::instance::{Expanded, devices};

/// The root disk device's `size` (bytes), if set.
pub fn root_size(devices: &DevicesMap) -> Option<u64> {
    let (name, _) = devices::root_disk(devices)?;
    devices
        .get(&name)?
        .get("size")
        .filter(|s| !s.is_empty())
        .and_then(|s| crate::config::parse_size(s))
}

/// A root disk `size` needs a pool that can limit volumes: a clear 400 on dir.
pub fn check_root_size(d: &Daemon, expanded: &Expanded) -> Result<()> {
    let Some((_, pool)) = devices::root_disk(&expanded.devices) else {
        return Ok(());
    };
    if root_size(&expanded.devices).is_some() {
        let info = d.pool(&pool)?.info();
        if !info.quotas {
            return Err(ApiError::bad_request(format!(
                "Storage pool \"{pool}\" ({} driver) cannot limit the size of instance volumes; remove the root disk's \"size\"",
                info.driver
            )));
        }
    }
    Ok(())
}

/// Set (or clear, with None) the quota of an instance volume.
pub async fn apply_root_quota(d: &Daemon, pool: &str, name: &str, size: Option<u64>) -> Result<()> {
    let drv = d.pool(pool)?;
    let n = name.to_string();
    tokio::task::spawn_blocking(move || drv.set_instance_quota(&n, size)).await??;
    Ok(())
}

/// On update: a changed root `size` is applied to the volume at once (running or not; zfs
/// refquota and btrfs qgroups take effect live).
pub async fn update_root_quota(
    d: &Daemon,
    pool: &str,
    name: &str,
    old: &Expanded,
    new: &Expanded,
) -> Result<()> {
    check_root_size(d, new)?;
    let (a, b) = (root_size(&old.devices), root_size(&new.devices));
    if a != b {
        apply_root_quota(d, pool, name, b).await?;
    }
    Ok(())
}

/// `state.disk`: the root volume's usage as the driver reports it (none on dir, as LXD without
/// project quotas), with the quota as total.
pub fn disk_state(d: &Daemon, row: &InstanceRow) -> BTreeMap<String, InstanceStateDisk> {
    let mut out = BTreeMap::new();
    let Ok(drv) = d.pool(&row.pool) else {
        return out;
    };
    if let Ok(Some(usage)) = drv.instance_usage(&row.name) {
        let ex = crate::instance::expand_row(d, row).unwrap_or_default();
        let dev = devices::root_disk(&ex.devices)
            .map(|(n, _)| n)
            .unwrap_or_else(|| "root".into());
        let total = root_size(&ex.devices).map_or(-1, |s| s as i64);
        out.insert(
            dev,
            InstanceStateDisk {
                usage: usage as i64,
                total,
            },
        );
    }
    out
}

/// Run `f` with the instance frozen if it is running (file copies are not atomic).
async fn frozen<T>(
    d: &Daemon,
    name: &str,
    freeze: bool,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let freeze = freeze && matches!(rt::probe(d, name), RunState::Running { .. });
    if freeze {
        rt::freeze(d, name).await?;
    }
    let res = f.await;
    if freeze {
        let _ = rt::thaw(d, name).await;
    }
    res
}

/// Copy instance `src` (or its snapshot) from its pool to a new instance volume `name` on
/// `dst_pool`, file by file; a running source is frozen meanwhile.
pub async fn copy_across_pools(
    d: &Daemon,
    src: &InstanceRow,
    snapshot: Option<String>,
    dst_pool: &str,
    name: &str,
    with_snapshots: bool,
) -> Result<PathBuf> {
    let (sdrv, ddrv) = (d.pool(&src.pool)?, d.pool(dst_pool)?);
    let (s, n) = (src.name.clone(), name.to_string());
    let freeze = snapshot.is_none();
    frozen(d, &src.name, freeze, async move {
        Ok(tokio::task::spawn_blocking(move || {
            lxd_storage::copy_across(
                &*sdrv,
                lxd_storage::VolumeType::Container,
                &s,
                snapshot.as_deref(),
                &*ddrv,
                &n,
                with_snapshots,
            )
        })
        .await??)
    })
    .await
}

/// `lxc copy SRC DST --refresh` onto an existing DST: checked here, run as an operation.
/// Returns None when the request is not a refresh of an existing instance.
pub fn refresh_request(
    d: &Arc<Daemon>,
    req: &InstancesPost,
) -> Result<Option<crate::response::ApiResult>> {
    if req.source.kind != "copy" || !req.source.refresh || !d.db.instance_exists(&req.name)? {
        return Ok(None);
    }
    if req.source.source.contains('/') {
        return Err(ApiError::bad_request(
            "A refresh copies from an instance, not from one of its snapshots",
        ));
    }
    let src = d.db.instance_opt(&req.source.source)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "Source instance \"{}\" not found",
            req.source.source
        ))
    })?;
    if src.name == req.name {
        return Err(ApiError::bad_request(
            "Cannot refresh an instance from itself",
        ));
    }
    if rt::probe(d, &req.name).is_active() {
        return Err(ApiError::bad_request("Cannot refresh a running instance"));
    }
    let (d2, target, with) = (d.clone(), req.name.clone(), !req.source.instance_only);
    let op = d.ops.start_task(
        "Refreshing instance",
        crate::operations::instance_resources(&[&src.name, &req.name]),
        false,
        move |_op| async move {
            refresh(&d2, &src.name, &target, with).await?;
            Ok(None)
        },
    );
    Ok(Some(Ok(crate::response::async_op(&op.to_api()))))
}

/// Bring instance `dst` up to date with `src`: snapshots that no longer match go, the source's
/// newer snapshots arrive, then the root filesystem; native within a btrfs or zfs pool, rsync
/// otherwise. The target keeps its own config; its on-disk ownership is now the source's.
pub async fn refresh(d: &Arc<Daemon>, src: &str, dst: &str, with_snapshots: bool) -> Result<()> {
    let lock = d.instance_lock(dst);
    let _g = lock.lock().await;
    let src_row = d.db.instance(src)?;
    let mut dst_row = d.db.instance(dst)?;
    if rt::probe(d, dst).is_active() {
        return Err(ApiError::bad_request("Cannot refresh a running instance"));
    }
    let src_snaps = d.db.snapshots(src)?;
    let dst_snaps = d.db.snapshots(dst)?;
    let common: Vec<String> = src_snaps
        .iter()
        .zip(dst_snaps.iter())
        .take_while(|(a, b)| a.name == b.name && a.created_at == b.created_at)
        .map(|(a, _)| a.name.clone())
        .collect();
    let (sdrv, ddrv) = (d.pool(&src_row.pool)?, d.pool(&dst_row.pool)?);
    let same = src_row.pool == dst_row.pool;
    let freeze = !same || ddrv.info().running_copy_freeze;
    let (s, t, c) = (src.to_string(), dst.to_string(), common);
    let out = frozen(d, src, freeze, async move {
        Ok(tokio::task::spawn_blocking(move || {
            if same {
                ddrv.refresh_volume(
                    lxd_storage::VolumeType::Container,
                    &s,
                    &t,
                    &c,
                    with_snapshots,
                )
            } else {
                lxd_storage::refresh_across(
                    &*sdrv,
                    lxd_storage::VolumeType::Container,
                    &s,
                    &*ddrv,
                    &t,
                    &c,
                    with_snapshots,
                )
            }
        })
        .await??)
    })
    .await?;
    tracing::info!(
        source = src,
        target = dst,
        incremental = out.incremental,
        "refreshed: {} snapshot(s) added, {} removed",
        out.added.len(),
        out.removed.len()
    );
    for r in &out.removed {
        d.db.snapshot_delete(dst, r)?;
    }
    for a in &out.added {
        if let Some(mut s) = src_snaps.iter().find(|s| &s.name == a).cloned() {
            s.instance_id = dst_row.id;
            s.config.retain(|k, _| {
                !k.starts_with("volatile.")
                    || k == "volatile.base_image"
                    || k == "volatile.last_state.idmap"
            });
            d.db.snapshot_create(&s)?;
        }
    }
    for k in ["volatile.base_image", "volatile.last_state.idmap"] {
        match src_row.config.get(k) {
            Some(v) => dst_row.config.insert(k.to_string(), v.clone()),
            None => dst_row.config.remove(k),
        };
    }
    d.db.instance_update(&dst_row)?;
    d.events.lifecycle(
        "instance-updated",
        &format!("/1.0/instances/{dst}"),
        serde_json::json!({}),
    );
    Ok(())
}

/// LXD's `startupSnapshot`: with `@startup` among `snapshots.schedule`, starting an instance
/// snapshots it first. The caller holds the instance lock.
pub async fn startup_snapshot(
    d: &Arc<Daemon>,
    row: &InstanceRow,
    expanded: &Expanded,
) -> Result<()> {
    let sched = expanded
        .config
        .get("snapshots.schedule")
        .map_or("", String::as_str);
    if !super::schedule::has_startup(sched) {
        return Ok(());
    }
    let name = crate::instance::snapshots::next_name(d, &row.name)?;
    crate::instance::snapshots::create_locked(d, &row.name, &name, None).await
}
