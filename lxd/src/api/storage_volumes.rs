//! `/1.0/storage-pools/P/volumes[/TYPE[/NAME[/state|/snapshots[/SNAP]]]]`: custom volumes in
//! full, instance and image volumes for listing and showing. Sync or async per endpoint exactly
//! as LXD's Go client expects (create, delete, update, rename: sync; copy, move, snapshots: an
//! operation). The domain is `crate::storage::volumes`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use lxd_api::storage::{
    StorageVolume, StorageVolumePost, StorageVolumePut, StorageVolumeSnapshotsPost,
    StorageVolumesPost,
};
use std::collections::{BTreeMap, HashMap};

use super::{AppState, params};
use crate::error::{ApiError, Result};
use crate::response::{
    ApiResult, Json, async_op, check_etag, created, empty, etag_of, sync, sync_etag,
};
use crate::storage::volumes::{self, CUSTOM};

pub fn routes() -> Router<AppState> {
    let base = "/1.0/storage-pools/{pool}/volumes";
    Router::new()
        .route(base, get(list_all).post(create_untyped))
        .route(&format!("{base}/{{kind}}"), get(list_typed).post(create))
        .route(
            &format!("{base}/{{kind}}/{{name}}"),
            get(show)
                .put(replace)
                .patch(patch)
                .post(rename)
                .delete(delete),
        )
        .route(&format!("{base}/{{kind}}/{{name}}/state"), get(state))
        .route(
            &format!("{base}/{{kind}}/{{name}}/snapshots"),
            get(list_snapshots).post(create_snapshot),
        )
        .route(
            &format!("{base}/{{kind}}/{{name}}/snapshots/{{snap}}"),
            get(show_snapshot)
                .put(update_snapshot)
                .patch(update_snapshot)
                .post(rename_snapshot)
                .delete(delete_snapshot),
        )
}

fn url(pool: &str, kind: &str, name: &str) -> String {
    format!("/1.0/storage-pools/{pool}/volumes/{kind}/{name}")
}

/// LXD accepts the type's plural-free names only.
fn check_kind(kind: &str) -> Result<()> {
    match kind {
        "custom" | "container" | "image" => Ok(()),
        "virtual-machine" => Err(ApiError::bad_request(
            "Virtual machine volumes are not supported",
        )),
        other => Err(ApiError::bad_request(format!(
            "Invalid storage volume type \"{other}\""
        ))),
    }
}

fn only_custom(kind: &str) -> Result<()> {
    check_kind(kind)?;
    if kind != CUSTOM {
        return Err(ApiError::bad_request(format!(
            "Only custom volumes can be changed here; {kind} volumes follow their {kind}"
        )));
    }
    Ok(())
}

fn resources(pool: &str, name: &str) -> BTreeMap<String, Vec<String>> {
    let mut r = BTreeMap::new();
    r.insert("storage_volumes".into(), vec![url(pool, CUSTOM, name)]);
    r
}

fn all_volumes(d: &AppState, pool: &str, kind: Option<&str>) -> Result<Vec<StorageVolume>> {
    d.db.pool(pool)?;
    let mut out = Vec::new();
    if kind.is_none_or(|k| k == CUSTOM) {
        for v in d.db.volumes(Some(pool))? {
            out.push(volumes::to_api(d, &v)?);
        }
    }
    if kind != Some(CUSTOM) {
        out.extend(
            volumes::other_volumes(d, pool)?
                .into_iter()
                .filter(|v| kind.is_none_or(|k| k == v.kind)),
        );
    }
    Ok(out)
}

fn list_response(d: &AppState, pool: &str, kind: Option<&str>, recursion: u8) -> ApiResult {
    let vols = all_volumes(d, pool, kind)?;
    if recursion > 0 {
        Ok(sync(vols))
    } else {
        Ok(sync(
            vols.iter()
                .map(|v| url(pool, &v.kind, &v.name))
                .collect::<Vec<_>>(),
        ))
    }
}

async fn list_all(
    State(d): State<AppState>,
    Path(pool): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    list_response(&d, &pool, None, p.recursion)
}

async fn list_typed(
    State(d): State<AppState>,
    Path((pool, kind)): Path<(String, String)>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    check_kind(&kind)?;
    list_response(&d, &pool, Some(&kind), p.recursion)
}

async fn create_untyped(
    State(d): State<AppState>,
    Path(pool): Path<String>,
    Json(req): Json<StorageVolumesPost>,
) -> ApiResult {
    let kind = if req.kind.is_empty() {
        CUSTOM.to_string()
    } else {
        req.kind.clone()
    };
    create_volume(d, pool, kind, req).await
}

async fn create(
    State(d): State<AppState>,
    Path((pool, kind)): Path<(String, String)>,
    Json(req): Json<StorageVolumesPost>,
) -> ApiResult {
    create_volume(d, pool, kind, req).await
}

async fn create_volume(
    d: AppState,
    pool: String,
    kind: String,
    req: StorageVolumesPost,
) -> ApiResult {
    only_custom(&kind)?;
    d.db.pool(&pool)?;
    match req.source.kind.as_str() {
        "" | "none" => {
            volumes::create(&d, &pool, &req).await?;
            Ok(created(&url(&pool, CUSTOM, &req.name)))
        }
        "copy" => {
            volumes::check_copy(&d, &pool, &req)?;
            let d2 = d.clone();
            let name = req.name.clone();
            let op = d.ops.start_task(
                "Copying storage volume",
                resources(&pool, &name),
                false,
                move |_op| async move {
                    volumes::copy(&d2, &pool, &req).await?;
                    Ok(None)
                },
            );
            Ok(async_op(&op.to_api()))
        }
        other => Err(ApiError::bad_request(format!(
            "Storage volume source \"{other}\" is not supported"
        ))),
    }
}

fn volume_etag(v: &StorageVolume) -> String {
    etag_of(&(&v.description, &v.config))
}

async fn show(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
) -> ApiResult {
    check_kind(&kind)?;
    let v = all_volumes(&d, &pool, Some(&kind))?
        .into_iter()
        .find(|v| v.name == name)
        .ok_or_else(|| ApiError::not_found("Storage volume not found"))?;
    let tag = volume_etag(&v);
    Ok(sync_etag(v, &tag))
}

async fn update(
    d: &AppState,
    pool: &str,
    kind: &str,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    merge: bool,
) -> ApiResult {
    only_custom(kind)?;
    let row = d.db.volume(pool, CUSTOM, name)?;
    check_etag(headers, &volume_etag(&volumes::to_api(d, &row)?))?;
    let put: StorageVolumePut = crate::response::parse_json(body)?;
    if !put.restore.is_empty() {
        volumes::restore(d, pool, name, &put.restore).await?;
        return Ok(empty());
    }
    let v: serde_json::Value = crate::response::parse_json(body)?;
    let mut config = if merge {
        row.config.clone()
    } else {
        Default::default()
    };
    config.extend(put.config);
    let description = match v.get("description").and_then(|x| x.as_str()) {
        Some(s) => s.to_string(),
        None if merge => row.description.clone(),
        None => String::new(),
    };
    volumes::update(d, pool, name, description, config).await?;
    Ok(empty())
}

async fn replace(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    update(&d, &pool, &kind, &name, &headers, &body, false).await
}

async fn patch(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    update(&d, &pool, &kind, &name, &headers, &body, true).await
}

/// Rename in the pool (sync), or move to another pool (`pool` set: an operation).
async fn rename(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
    Json(req): Json<StorageVolumePost>,
) -> ApiResult {
    only_custom(&kind)?;
    d.db.volume(&pool, CUSTOM, &name)?;
    if req.migration {
        return Err(ApiError::bad_request(
            "Migrating storage volumes to another server is not supported",
        ));
    }
    let new = if req.name.is_empty() {
        name.clone()
    } else {
        req.name.clone()
    };
    if !req.pool.is_empty() && req.pool != pool {
        d.db.pool(&req.pool)?;
        volumes::validate_name("storage volume", &new)?;
        if d.db.volume_opt(&req.pool, CUSTOM, &new)?.is_some() {
            return Err(ApiError::conflict(format!(
                "Storage volume \"{new}\" already exists"
            )));
        }
        let d2 = d.clone();
        let op = d.ops.start_task(
            "Moving storage volume",
            resources(&pool, &name),
            false,
            move |_op| async move {
                volumes::move_to(&d2, &pool, &name, &req.pool, &new).await?;
                Ok(None)
            },
        );
        return Ok(async_op(&op.to_api()));
    }
    if new == name {
        return Err(ApiError::bad_request("No new name given"));
    }
    volumes::rename(&d, &pool, &name, &new).await?;
    Ok(created(&url(&pool, CUSTOM, &new)))
}

async fn delete(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
) -> ApiResult {
    only_custom(&kind)?;
    volumes::delete(&d, &pool, &name).await?;
    Ok(empty())
}

async fn state(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
) -> ApiResult {
    check_kind(&kind)?;
    if kind == "container" {
        let row = d.db.instance(&name)?;
        if row.pool != pool {
            return Err(ApiError::not_found("Storage volume not found"));
        }
        let drv = d.pool(&pool)?;
        let usage = tokio::task::spawn_blocking(move || drv.instance_usage(&name)).await??;
        return Ok(sync(lxd_api::storage::StorageVolumeState {
            usage: usage.map(|used| lxd_api::storage::StorageVolumeStateUsage { used, total: 0 }),
        }));
    }
    only_custom(&kind)?;
    let d2 = d.clone();
    let st = tokio::task::spawn_blocking(move || volumes::state(&d2, &pool, &name)).await??;
    Ok(sync(st))
}

async fn list_snapshots(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    only_custom(&kind)?;
    let row = d.db.volume(&pool, CUSTOM, &name)?;
    let snaps = d.db.volume_snapshots(row.id)?;
    if p.recursion > 0 {
        Ok(sync(
            snaps
                .iter()
                .map(|s| volumes::snapshot_to_api(s, &row.content_type))
                .collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(
            snaps
                .iter()
                .map(|s| format!("{}/snapshots/{}", url(&pool, CUSTOM, &name), s.name))
                .collect::<Vec<_>>(),
        ))
    }
}

async fn create_snapshot(
    State(d): State<AppState>,
    Path((pool, kind, name)): Path<(String, String, String)>,
    Json(req): Json<StorageVolumeSnapshotsPost>,
) -> ApiResult {
    only_custom(&kind)?;
    let row = d.db.volume(&pool, CUSTOM, &name)?;
    if !req.name.is_empty() {
        volumes::validate_name("snapshot", &req.name)?;
        if d.db.volume_snapshot(row.id, &req.name).is_ok() {
            return Err(ApiError::conflict(format!(
                "Snapshot \"{}\" already exists",
                req.name
            )));
        }
    }
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Snapshotting storage volume",
        resources(&pool, &name),
        false,
        move |_op| async move {
            volumes::create_snapshot(&d2, &pool, &name, &req.name, req.expires_at).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn show_snapshot(
    State(d): State<AppState>,
    Path((pool, kind, name, snap)): Path<(String, String, String, String)>,
) -> ApiResult {
    only_custom(&kind)?;
    let row = d.db.volume(&pool, CUSTOM, &name)?;
    let s = d.db.volume_snapshot(row.id, &snap)?;
    let v = volumes::snapshot_to_api(&s, &row.content_type);
    let tag = etag_of(&(&v.description, &v.expires_at));
    Ok(sync_etag(v, &tag))
}

async fn update_snapshot(
    State(d): State<AppState>,
    Path((pool, kind, name, snap)): Path<(String, String, String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    only_custom(&kind)?;
    let row = d.db.volume(&pool, CUSTOM, &name)?;
    let mut s = d.db.volume_snapshot(row.id, &snap)?;
    let v: serde_json::Value = crate::response::parse_json(&body)?;
    if let Some(e) = v.get("expires_at").and_then(|x| x.as_str()) {
        if !e.is_empty() && e.parse::<jiff::Timestamp>().is_err() {
            return Err(ApiError::bad_request(format!(
                "Invalid expiry date \"{e}\""
            )));
        }
        s.expires_at = if e.is_empty() {
            lxd_api::ZERO_TIME.into()
        } else {
            e.to_string()
        };
    }
    if let Some(x) = v.get("description").and_then(|x| x.as_str()) {
        s.description = x.to_string();
    }
    d.db.volume_snapshot_update(&s)?;
    let op = d.ops.start_task(
        "Updating storage volume snapshot",
        resources(&pool, &name),
        false,
        |_op| async { Ok(None) },
    );
    Ok(async_op(&op.to_api()))
}

async fn rename_snapshot(
    State(d): State<AppState>,
    Path((pool, kind, name, snap)): Path<(String, String, String, String)>,
    Json(req): Json<lxd_api::instance::InstancePost>,
) -> ApiResult {
    only_custom(&kind)?;
    let row = d.db.volume(&pool, CUSTOM, &name)?;
    d.db.volume_snapshot(row.id, &snap)?;
    volumes::validate_name("snapshot", &req.name)?;
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Renaming storage volume snapshot",
        resources(&pool, &name),
        false,
        move |_op| async move {
            volumes::rename_snapshot(&d2, &pool, &name, &snap, &req.name).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn delete_snapshot(
    State(d): State<AppState>,
    Path((pool, kind, name, snap)): Path<(String, String, String, String)>,
) -> ApiResult {
    only_custom(&kind)?;
    let row = d.db.volume(&pool, CUSTOM, &name)?;
    d.db.volume_snapshot(row.id, &snap)?;
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Deleting storage volume snapshot",
        resources(&pool, &name),
        false,
        move |_op| async move {
            volumes::delete_snapshot(&d2, &pool, &name, &snap).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}
