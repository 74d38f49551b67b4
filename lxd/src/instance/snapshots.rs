//! Instance snapshots: the driver's native snapshot plus a row recording the config at that time.
//! A running instance on a driver without atomic snapshots is frozen while it is copied.

use std::sync::Arc;

use super::runtime::{self as rt, RunState};
use crate::daemon::Daemon;
use crate::db::instances::SnapshotRow;
use crate::error::{ApiError, Result};
use crate::events::now;

/// The next free name from `snapshots.pattern` (default `snap%d`), as LXD picks it.
pub fn next_name(d: &Daemon, name: &str) -> Result<String> {
    let row = d.db.instance(name)?;
    let ex = super::expand_row(d, &row)?;
    let pattern = ex
        .config
        .get("snapshots.pattern")
        .cloned()
        .unwrap_or_default();
    let existing: Vec<String> = d.db.snapshots(name)?.into_iter().map(|s| s.name).collect();
    crate::storage::schedule::next_snapshot_name(&pattern, &existing, jiff::Timestamp::now())
}

pub async fn create(
    d: &Arc<Daemon>,
    name: &str,
    snap: &str,
    expires_at: Option<String>,
) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    create_locked(d, name, snap, expires_at).await
}

/// `create` for callers holding the instance lock. Without `expires_at` the snapshot expires
/// after `snapshots.expiry` (LXD 5.0 applies it to every snapshot).
pub async fn create_locked(
    d: &Arc<Daemon>,
    name: &str,
    snap: &str,
    expires_at: Option<String>,
) -> Result<()> {
    let row = d.db.instance(name)?;
    let pool = d.pool(&row.pool)?;
    let expires = match expires_at.filter(|e| !e.is_empty()) {
        Some(e) => {
            e.parse::<jiff::Timestamp>()
                .map_err(|_| ApiError::bad_request(format!("Invalid expiry date \"{e}\"")))?;
            e
        }
        None => {
            let ex = super::expand_row(d, &row)?;
            crate::storage::schedule::expires_at(
                jiff::Timestamp::now(),
                ex.config.get("snapshots.expiry").map_or("", String::as_str),
            )?
        }
    };
    let freeze =
        pool.info().running_copy_freeze && matches!(rt::probe(d, name), RunState::Running { .. });
    if freeze {
        rt::freeze(d, name).await?;
    }
    let (n, s, p) = (name.to_string(), snap.to_string(), pool.clone());
    let res = tokio::task::spawn_blocking(move || p.create_snapshot(&n, &s)).await;
    if freeze {
        let _ = rt::thaw(d, name).await;
    }
    res??;
    let srow = SnapshotRow {
        id: 0,
        instance_id: row.id,
        name: snap.to_string(),
        architecture: row.architecture.clone(),
        stateful: false,
        description: String::new(),
        created_at: now(),
        expires_at: expires,
        config: row.config.clone(),
        devices: row.devices.clone(),
        profiles: row.profiles.clone(),
        ephemeral: row.ephemeral,
    };
    if let Err(e) = d.db.snapshot_create(&srow) {
        let (n, s) = (name.to_string(), snap.to_string());
        let _ = tokio::task::spawn_blocking(move || pool.delete_snapshot(&n, &s)).await;
        return Err(e);
    }
    d.events.lifecycle(
        "instance-snapshot-created",
        &format!("/1.0/instances/{name}/snapshots/{snap}"),
        serde_json::json!({}),
    );
    Ok(())
}

pub async fn delete(d: &Arc<Daemon>, name: &str, snap: &str) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let row = d.db.instance(name)?;
    d.db.snapshot(name, snap)?;
    let pool = d.pool(&row.pool)?;
    let (n, s) = (name.to_string(), snap.to_string());
    tokio::task::spawn_blocking(move || pool.delete_snapshot(&n, &s)).await??;
    d.db.snapshot_delete(name, snap)?;
    d.events.lifecycle(
        "instance-snapshot-deleted",
        &format!("/1.0/instances/{name}/snapshots/{snap}"),
        serde_json::json!({}),
    );
    Ok(())
}

pub async fn rename(d: &Arc<Daemon>, name: &str, old: &str, new: &str) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let row = d.db.instance(name)?;
    d.db.snapshot(name, old)?;
    if d.db.snapshot(name, new).is_ok() {
        return Err(ApiError::conflict(format!(
            "Snapshot \"{new}\" already exists"
        )));
    }
    let pool = d.pool(&row.pool)?;
    let (n, o, nw, p) = (
        name.to_string(),
        old.to_string(),
        new.to_string(),
        pool.clone(),
    );
    tokio::task::spawn_blocking(move || p.rename_snapshot(&n, &o, &nw)).await??;
    if let Err(e) = d.db.snapshot_rename(name, old, new) {
        let (n, o, nw) = (name.to_string(), old.to_string(), new.to_string());
        let _ = tokio::task::spawn_blocking(move || pool.rename_snapshot(&n, &nw, &o)).await;
        return Err(e);
    }
    d.events.lifecycle(
        "instance-snapshot-renamed",
        &format!("/1.0/instances/{name}/snapshots/{new}"),
        serde_json::json!({"old_name": old}),
    );
    Ok(())
}

/// Restore a snapshot: a running instance is stopped first and started again afterwards, and its
/// config goes back to the snapshot's (volatile keys of the instance are kept).
pub async fn restore(d: &Arc<Daemon>, name: &str, snap: &str) -> Result<()> {
    let lock = d.instance_lock(name);
    let g = lock.lock().await;
    let mut row = d.db.instance(name)?;
    let s = d.db.snapshot(name, snap)?;
    let was_running = rt::probe(d, name).is_active();
    if was_running {
        super::lifecycle::stop_locked(d, &row, false, Some(std::time::Duration::from_secs(30)))
            .await
            .or(Ok::<(), ApiError>(()))?;
        if rt::probe(d, name).is_active() {
            super::lifecycle::stop_locked(d, &row, true, None).await?;
        }
        row = d.db.instance(name)?;
    }
    let pool = d.pool(&row.pool)?;
    let (n, sn) = (name.to_string(), snap.to_string());
    let res = tokio::task::spawn_blocking(move || pool.restore_snapshot(&n, &sn)).await;
    let removed = match res
        .map_err(ApiError::from)
        .and_then(|r| r.map_err(ApiError::from))
    {
        Ok(r) => r,
        Err(e) => {
            // Undo the stop: a refused restore (zfs newer snapshots) leaves it as it was.
            if was_running {
                let _ = super::lifecycle::start_locked(d, &row).await;
            }
            return Err(e);
        }
    };
    for r in removed {
        let _ = d.db.snapshot_delete(name, &r);
    }
    let volatile: Vec<(String, String)> = row
        .config
        .iter()
        .filter(|(k, _)| k.starts_with("volatile."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    row.config = s
        .config
        .into_iter()
        .filter(|(k, _)| !k.starts_with("volatile."))
        .collect();
    row.config.extend(volatile);
    // The files now are the snapshot's: record the ownership they had then.
    if let Some(v) =
        d.db.snapshot(name, snap)
            .ok()
            .and_then(|s| s.config.get("volatile.last_state.idmap").cloned())
    {
        row.config.insert("volatile.last_state.idmap".into(), v);
    }
    row.devices = s.devices;
    row.profiles = s.profiles;
    d.db.instance_update(&row)?;
    d.events.lifecycle(
        "instance-restored",
        &format!("/1.0/instances/{name}"),
        serde_json::json!({"snapshot": snap}),
    );
    if was_running {
        super::lifecycle::start_locked(d, &row).await?;
    }
    drop(g);
    Ok(())
}
