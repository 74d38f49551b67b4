//! `/1.0/storage-pools`: create (dir, btrfs, zfs), list, show, update, delete, resources.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use lxd_api::storage::{
    StoragePool, StoragePoolPut, StoragePoolResources, StoragePoolResourcesSpace, StoragePoolsPost,
};
use std::collections::HashMap;
use std::sync::Arc;

use super::{AppState, params};
use crate::db::pools::PoolRow;
use crate::error::{ApiError, Result};
use crate::response::{ApiResult, Json, check_etag, created, empty, etag_of, sync, sync_etag};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/storage-pools", get(list).post(create))
        .route(
            "/1.0/storage-pools/{name}",
            get(show).put(replace).patch(patch).delete(delete),
        )
        .route("/1.0/storage-pools/{name}/resources", get(resources))
}

fn used_by(d: &AppState, pool: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in d.db.profile_names()? {
        let prof = d.db.profile(&p)?;
        if prof.devices.values().any(|dev| {
            dev.get("type").map(String::as_str) == Some("disk")
                && dev.get("pool").map(String::as_str) == Some(pool)
        }) {
            out.push(format!("/1.0/profiles/{p}"));
        }
    }
    for i in d.db.instances()? {
        if i.pool == pool {
            out.push(format!("/1.0/instances/{}", i.name));
        }
    }
    for img in d.db.images()? {
        if let Ok(drv) = d.pool(pool)
            && drv.image_volume_exists(&img.fingerprint).unwrap_or(false)
        {
            out.push(format!("/1.0/images/{}", img.fingerprint));
        }
    }
    for v in d.db.volumes(Some(pool))? {
        out.push(format!(
            "/1.0/storage-pools/{pool}/volumes/{}/{}",
            v.kind, v.name
        ));
    }
    Ok(out)
}

fn to_api(d: &AppState, p: PoolRow) -> Result<StoragePool> {
    Ok(StoragePool {
        used_by: used_by(d, &p.name)?,
        name: p.name,
        driver: p.driver,
        description: p.description,
        config: p.config,
        status: p.status,
        locations: vec!["none".into()],
    })
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let pools = d.db.pools()?;
    if p.recursion > 0 {
        let mut out = Vec::new();
        for row in pools {
            out.push(to_api(&d, row)?);
        }
        Ok(sync(out))
    } else {
        Ok(sync(
            pools
                .into_iter()
                .map(|p| format!("/1.0/storage-pools/{}", p.name))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Create a pool on disk and record it. Used by the API and by `lxd init`.
pub async fn create_pool(d: &AppState, req: StoragePoolsPost) -> Result<()> {
    if req.name.is_empty() {
        return Err(ApiError::bad_request("No name provided"));
    }
    crate::storage::volumes::validate_name("storage pool", &req.name)?;
    let pools = d.db.pools()?;
    if pools.iter().any(|p| p.name == req.name) {
        return Err(ApiError::conflict(format!(
            "Storage pool \"{}\" already exists",
            req.name
        )));
    }
    // One source (device, file, directory or zpool) backs one pool.
    if let Some(src) = req.config.get("source").filter(|s| !s.is_empty())
        && let Some(other) = pools.iter().find(|p| {
            p.config.get("source") == Some(src)
                || (p.driver == "zfs" && p.config.get("zfs.pool_name") == Some(src))
        })
    {
        return Err(ApiError::bad_request(format!(
            "Source \"{src}\" is already used by storage pool \"{}\"",
            other.name
        )));
    }
    if let Some(z) = req.config.get("zfs.pool_name")
        && pools
            .iter()
            .any(|p| p.driver == "zfs" && p.config.get("zfs.pool_name") == Some(z))
    {
        return Err(ApiError::bad_request(format!(
            "ZFS pool \"{z}\" is already used by another storage pool"
        )));
    }
    let dir = d.dir.clone();
    let (driver, name, config) = (req.driver.clone(), req.name.clone(), req.config.clone());
    let drv: Arc<dyn lxd_storage::Driver> = tokio::task::spawn_blocking(move || {
        let drv = lxd_storage::load(&driver, &name, &dir, &config)?;
        drv.create_pool()?;
        Ok::<_, lxd_storage::Error>(Arc::from(drv))
    })
    .await?
    .map_err(|e| match e {
        // A missing source is a bad request here, not a missing API object.
        lxd_storage::Error::NotFound(m) => ApiError::bad_request(format!("{m} not found")),
        e => ApiError::from(e),
    })?;
    let row = PoolRow {
        name: req.name.clone(),
        driver: req.driver,
        description: req.description,
        config: drv.config().clone(),
        status: "Created".into(),
    };
    if let Err(e) = d.db.pool_create(&row) {
        let drv2 = drv.clone();
        let _ = tokio::task::spawn_blocking(move || drv2.delete_pool()).await;
        return Err(e);
    }
    d.pools
        .write()
        .expect("pools lock")
        .insert(req.name.clone(), drv);
    d.events.lifecycle(
        "storage-pool-created",
        &format!("/1.0/storage-pools/{}", req.name),
        serde_json::json!({}),
    );
    Ok(())
}

async fn create(State(d): State<AppState>, Json(req): Json<StoragePoolsPost>) -> ApiResult {
    let name = req.name.clone();
    create_pool(&d, req).await?;
    Ok(created(&format!("/1.0/storage-pools/{name}")))
}

async fn show(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = d.db.pool(&name)?;
    let tag = etag_of(&(&p.config, &p.description));
    Ok(sync_etag(to_api(&d, p)?, &tag))
}

async fn update(
    d: &AppState,
    name: &str,
    headers: &HeaderMap,
    put: StoragePoolPut,
    merge: bool,
) -> Result<()> {
    let mut row = d.db.pool(name)?;
    check_etag(headers, &etag_of(&(&row.config, &row.description)))?;
    let mut config = if merge {
        row.config.clone()
    } else {
        Default::default()
    };
    for (k, v) in put.config {
        config.insert(k, v);
    }
    // An unset key arrives empty: drop it.
    config.retain(|_, v| !v.is_empty());
    // Keys fixed at creation keep their values (LXD refuses to change them).
    for k in ["source", "zfs.pool_name", "size"] {
        if let Some(old) = row.config.get(k) {
            match config.get(k) {
                Some(new) if new != old => {
                    return Err(ApiError::bad_request(format!(
                        "The \"{k}\" property of a storage pool cannot be changed"
                    )));
                }
                None => {
                    config.insert(k.to_string(), old.clone());
                }
                _ => {}
            }
        }
    }
    let drv = d.pool(name)?;
    drv.validate_config(&config)?;
    // The driver reads its config (zfs.remove_snapshots, volume.size, ...) when loaded: load it
    // again with the new one.
    let new_drv = lxd_storage::load(&row.driver, name, &d.dir, &config)?;
    row.config = config;
    row.description = put.description;
    d.db.pool_update(&row)?;
    d.pools
        .write()
        .expect("pools lock")
        .insert(name.to_string(), Arc::from(new_drv));
    Ok(())
}

async fn replace(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(put): Json<StoragePoolPut>,
) -> ApiResult {
    update(&d, &name, &headers, put, false).await?;
    Ok(empty())
}

async fn patch(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(put): Json<StoragePoolPut>,
) -> ApiResult {
    update(&d, &name, &headers, put, true).await?;
    Ok(empty())
}

async fn delete(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    d.db.pool(&name)?;
    let users: Vec<String> = used_by(&d, &name)?
        .into_iter()
        .filter(|u| !u.starts_with("/1.0/images/"))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::bad_request(
            "The storage pool is currently in use",
        ));
    }
    let drv = d.pool(&name)?;
    let d2 = drv.clone();
    let images: Vec<String> = d.db.images()?.into_iter().map(|i| i.fingerprint).collect();
    tokio::task::spawn_blocking(move || -> std::result::Result<(), lxd_storage::Error> {
        for fp in images {
            if d2.image_volume_exists(&fp)? {
                d2.delete_image_volume(&fp)?;
            }
        }
        d2.delete_pool()
    })
    .await??;
    d.db.pool_delete(&name)?;
    d.pools.write().expect("pools lock").remove(&name);
    d.events.lifecycle(
        "storage-pool-deleted",
        &format!("/1.0/storage-pools/{name}"),
        serde_json::json!({}),
    );
    Ok(empty())
}

async fn resources(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    d.db.pool(&name)?;
    let drv = d.pool(&name)?;
    let (used, total) = tokio::task::spawn_blocking(move || drv.resources()).await??;
    Ok(sync(StoragePoolResources {
        space: StoragePoolResourcesSpace { used, total },
        ..Default::default()
    }))
}
