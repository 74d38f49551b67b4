//! `/1.0/instances`: list, create, show, update, rename, delete, state, exec, logs, snapshots.
//! Handlers validate and hand over to `crate::instance`; long work runs in operations.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lxd_api::exec::InstanceExecPost;
use lxd_api::instance::{
    InstancePost, InstancePut, InstanceSnapshotsPost, InstanceStatePut, InstancesPost,
};
use std::collections::HashMap;
use std::time::Duration;

use super::{AppState, params};
use crate::error::{ApiError, Result};
use crate::instance::{self, lifecycle, render, runtime as rt};
use crate::operations::instance_resources;
use crate::response::{ApiResult, Json, async_op, check_etag, empty, etag_of, sync, sync_etag};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/instances", get(list).post(create))
        .route(
            "/1.0/instances/{name}",
            get(show)
                .put(replace)
                .patch(patch)
                .post(rename)
                .delete(delete),
        )
        .route("/1.0/instances/{name}/state", get(get_state).put(put_state))
        .route("/1.0/instances/{name}/exec", post(exec))
        .route(
            "/1.0/instances/{name}/console",
            get(console_log).post(console).delete(console_clear),
        )
        .route("/1.0/instances/{name}/logs", get(list_logs))
        .route(
            "/1.0/instances/{name}/logs/{file}",
            get(get_log).delete(delete_log),
        )
        .route(
            "/1.0/instances/{name}/snapshots",
            get(list_snapshots).post(create_snapshot),
        )
        .route(
            "/1.0/instances/{name}/snapshots/{snap}",
            get(show_snapshot)
                .post(rename_snapshot)
                .put(update_snapshot)
                .patch(update_snapshot)
                .delete(delete_snapshot),
        )
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let filter = crate::filter::Filter::parse(p.get("filter").unwrap_or(""))?;
    if p.recursion == 0 && filter.is_none() {
        return Ok(sync(
            d.db.instance_names()?
                .into_iter()
                .map(|n| format!("/1.0/instances/{n}"))
                .collect::<Vec<_>>(),
        ));
    }
    let mut out = Vec::new();
    for row in d.db.instances()? {
        let v = if p.recursion >= 2 {
            serde_json::to_value(render::full(&d, &row)?)?
        } else {
            let st = rt::probe(&d, &row.name);
            serde_json::to_value(render::instance(&d, &row, st)?)?
        };
        if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
            continue;
        }
        out.push(if p.recursion == 0 {
            serde_json::Value::String(format!("/1.0/instances/{}", row.name))
        } else {
            v
        });
    }
    Ok(sync(out))
}

async fn create(State(d): State<AppState>, Json(req): Json<InstancesPost>) -> ApiResult {
    if let Some(resp) = crate::storage::instances::refresh_request(&d, &req)? {
        return resp;
    }
    if req.source.kind == "migration" && req.source.refresh && d.db.instance_exists(&req.name)? {
        let src = crate::migration::SinkSource::from_request(&req.source)?;
        let row = d.db.instance(&req.name)?;
        let op = crate::migration::start_sink(&d, row, src, true, false)?;
        return Ok(async_op(&op.to_api()));
    }
    let (row, source) = instance::prepare_create(&d, &req)?;
    crate::network::nic::validate_row(&d, &row).await?;
    if let instance::Source::Migration(src) = source {
        let op = crate::migration::start_sink(&d, row, *src, false, req.start)?;
        return Ok(async_op(&op.to_api()));
    }
    let name = row.name.clone();
    let start = req.start;
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Creating instance",
        instance_resources(&[&name]),
        false,
        move |op| async move {
            instance::create(&d2, &op, row, source).await?;
            if start {
                lifecycle::start(&d2, &name).await?;
            }
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn show(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    let row = d.db.instance(&name)?;
    let tag = instance_etag(&row);
    if p.recursion > 0 {
        Ok(sync_etag(render::full(&d, &row)?, &tag))
    } else {
        let st = rt::probe(&d, &name);
        Ok(sync_etag(render::instance(&d, &row, st)?, &tag))
    }
}

fn instance_etag(row: &crate::db::instances::InstanceRow) -> String {
    etag_of(&(
        &row.architecture,
        &row.config,
        &row.devices,
        &row.profiles,
        &row.ephemeral,
        &row.description,
    ))
}

async fn replace(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(put): Json<InstancePut>,
) -> ApiResult {
    let row = d.db.instance(&name)?;
    check_etag(&headers, &instance_etag(&row))?;
    let d2 = d.clone();
    if !put.restore.is_empty() {
        let snap = put
            .restore
            .rsplit_once('/')
            .map(|(_, s)| s.to_string())
            .unwrap_or(put.restore.clone());
        d.db.snapshot(&name, &snap)?;
        let op = d.ops.start_task(
            "Restoring snapshot",
            instance_resources(&[&name]),
            false,
            move |_op| async move {
                crate::instance::snapshots::restore(&d2, &name, &snap).await?;
                Ok(None)
            },
        );
        return Ok(async_op(&op.to_api()));
    }
    crate::network::nic::validate_put(&d, &name, &put).await?;
    let op = d.ops.start_task(
        "Updating instance",
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            instance::update(&d2, &name, put).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn patch(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let row = d.db.instance(&name)?;
    check_etag(&headers, &instance_etag(&row))?;
    let v: serde_json::Value = crate::response::parse_json(&body)?;
    let mut put = InstancePut {
        architecture: row.architecture.clone(),
        config: row.config.clone(),
        devices: row.devices.clone(),
        ephemeral: row.ephemeral,
        profiles: row.profiles.clone(),
        stateful: row.stateful,
        description: row.description.clone(),
        restore: String::new(),
    };
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("Invalid request body: {e}"));
    if let Some(c) = v.get("config") {
        let c: lxd_api::ConfigMap = serde_json::from_value(c.clone()).map_err(bad)?;
        put.config.extend(c);
    }
    if let Some(x) = v.get("devices") {
        let x: lxd_api::DevicesMap = serde_json::from_value(x.clone()).map_err(bad)?;
        put.devices.extend(x);
    }
    if let Some(x) = v.get("profiles") {
        put.profiles = serde_json::from_value(x.clone()).map_err(bad)?;
    }
    if let Some(x) = v.get("description").and_then(|x| x.as_str()) {
        put.description = x.to_string();
    }
    if let Some(x) = v.get("ephemeral").and_then(|x| x.as_bool()) {
        put.ephemeral = x;
    }
    instance::update(&d, &name, put).await?;
    Ok(empty())
}

async fn rename(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstancePost>,
) -> ApiResult {
    d.db.instance(&name)?;
    if req.migration {
        let op = crate::migration::start_source(&d, &name, None, &req)?;
        return Ok(async_op(&op.to_api()));
    }
    if req.name.is_empty() {
        return Err(ApiError::bad_request("No new name given"));
    }
    instance::validate_name(&req.name)?;
    if d.db.instance_exists(&req.name)? {
        return Err(ApiError::conflict(format!(
            "Name \"{}\" already in use",
            req.name
        )));
    }
    let d2 = d.clone();
    let new = req.name.clone();
    let op = d.ops.start_task(
        "Renaming instance",
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            instance::rename(&d2, &name, &new).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn delete(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    let force = p.flag("force");
    let row = d.db.instance(&name)?;
    if !force && rt::probe(&d, &name).is_active() {
        return Err(ApiError::bad_request(
            "Instance is running, stop it first or pass --force",
        ));
    }
    if crate::config::is_true(&row.config, "security.protection.delete") {
        return Err(ApiError::forbidden(
            "Instance is protected from being deleted (security.protection.delete)",
        ));
    }
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Deleting instance",
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            instance::delete(&d2, &name, force).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn get_state(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let row = d.db.instance(&name)?;
    let st = rt::probe(&d, &name);
    Ok(sync(render::state(&d, &row, st)))
}

async fn put_state(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstanceStatePut>,
) -> ApiResult {
    d.db.instance(&name)?;
    let timeout = (req.timeout >= 0).then(|| Duration::from_secs(req.timeout as u64));
    let force = req.force;
    let description = match req.action.as_str() {
        "start" => "Starting instance",
        "stop" => "Stopping instance",
        "restart" => "Restarting instance",
        "freeze" => "Freezing instance",
        "unfreeze" => "Unfreezing instance",
        other => {
            return Err(ApiError::bad_request(format!("Unknown action \"{other}\"")));
        }
    };
    if req.stateful {
        return Err(ApiError::bad_request(
            "Stateful stop and start are not supported",
        ));
    }
    let action = req.action.clone();
    let d2 = d.clone();
    let op = d.ops.start_task(
        description,
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            match action.as_str() {
                "start" => lifecycle::start(&d2, &name).await?,
                "stop" => lifecycle::stop(&d2, &name, force, timeout).await?,
                "restart" => lifecycle::restart(&d2, &name, force, timeout).await?,
                "freeze" => lifecycle::freeze(&d2, &name).await?,
                _ => lifecycle::unfreeze(&d2, &name).await?,
            }
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn exec(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstanceExecPost>,
) -> ApiResult {
    let op = instance::exec::start(&d, &name, req)?;
    Ok(async_op(&op.to_api()))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ConsolePost {
    width: i64,
    height: i64,
    #[serde(rename = "type")]
    kind: String,
}

async fn console(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ConsolePost>,
) -> ApiResult {
    if !req.kind.is_empty() && req.kind != "console" {
        return Err(ApiError::bad_request(format!(
            "Console type \"{}\" is not supported for containers",
            req.kind
        )));
    }
    let op = instance::console::start(&d, &name, req.width, req.height)?;
    Ok(async_op(&op.to_api()))
}

async fn console_log(State(d): State<AppState>, Path(name): Path<String>) -> Result<Response> {
    let data = instance::console::log(&d, &name)?;
    let mut r = (StatusCode::OK, Body::from(data)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

async fn console_clear(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    d.db.instance(&name)?;
    let path = d.log_dir(&name).join("console.log");
    if path.exists() {
        std::fs::write(&path, b"").map_err(|e| crate::error::io_err("truncate", &path, e))?;
    }
    Ok(empty())
}

fn log_path(d: &AppState, name: &str, file: &str) -> Result<std::path::PathBuf> {
    if file.is_empty() || file.contains('/') || file.starts_with('.') {
        return Err(ApiError::bad_request(format!(
            "Invalid log file name \"{file}\""
        )));
    }
    Ok(d.log_dir(name).join(file))
}

async fn list_logs(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    d.db.instance(&name)?;
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d.log_dir(&name)) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            out.push(format!("/1.0/instances/{name}/logs/{f}"));
        }
    }
    out.sort();
    Ok(sync(out))
}

async fn get_log(
    State(d): State<AppState>,
    Path((name, file)): Path<(String, String)>,
) -> Result<Response> {
    d.db.instance(&name)?;
    let path = log_path(&d, &name, &file)?;
    let data = match std::fs::read(&path) {
        Ok(b) => b,
        // A fresh instance has no lxc.log yet: LXD shows an empty log.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file == "lxc.log" => Vec::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("Log file not found"));
        }
        Err(e) => return Err(crate::error::io_err("read", &path, e)),
    };
    let mut r = (StatusCode::OK, Body::from(data)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

async fn delete_log(
    State(d): State<AppState>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult {
    d.db.instance(&name)?;
    if file == "lxc.log" || file == "console.log" {
        return Err(ApiError::bad_request(
            "Only exec output logs can be deleted",
        ));
    }
    let path = log_path(&d, &name, &file)?;
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApiError::not_found("Log file not found"),
        _ => crate::error::io_err("remove", &path, e),
    })?;
    Ok(empty())
}

async fn list_snapshots(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    d.db.instance(&name)?;
    let snaps = d.db.snapshots(&name)?;
    if p.recursion > 0 {
        let mut out = Vec::new();
        for s in &snaps {
            out.push(render::snapshot(&d, s)?);
        }
        Ok(sync(out))
    } else {
        Ok(sync(
            snaps
                .iter()
                .map(|s| format!("/1.0/instances/{name}/snapshots/{}", s.name))
                .collect::<Vec<_>>(),
        ))
    }
}

async fn create_snapshot(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<InstanceSnapshotsPost>,
) -> ApiResult {
    d.db.instance(&name)?;
    if req.stateful {
        return Err(ApiError::bad_request(
            "Stateful snapshots are not supported",
        ));
    }
    let snap = if req.name.is_empty() {
        crate::instance::snapshots::next_name(&d, &name)?
    } else {
        req.name.clone()
    };
    instance::validate_snapshot_name(&snap)?;
    if d.db.snapshot(&name, &snap).is_ok() {
        return Err(ApiError::conflict(format!(
            "Snapshot \"{snap}\" already exists"
        )));
    }
    let d2 = d.clone();
    let expires = req.expires_at.clone();
    let op = d.ops.start_task(
        "Snapshotting instance",
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            crate::instance::snapshots::create(&d2, &name, &snap, expires).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn show_snapshot(
    State(d): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ApiResult {
    d.db.instance(&name)?;
    let s = d.db.snapshot(&name, &snap)?;
    Ok(sync(render::snapshot(&d, &s)?))
}

async fn rename_snapshot(
    State(d): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
    Json(req): Json<InstancePost>,
) -> ApiResult {
    d.db.snapshot(&name, &snap)?;
    if req.migration {
        let op = crate::migration::start_source(&d, &name, Some(snap), &req)?;
        return Ok(async_op(&op.to_api()));
    }
    instance::validate_snapshot_name(&req.name)?;
    let d2 = d.clone();
    let new = req.name.clone();
    let op = d.ops.start_task(
        "Renaming snapshot",
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            crate::instance::snapshots::rename(&d2, &name, &snap, &new).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn update_snapshot(
    State(d): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult {
    let mut s = d.db.snapshot(&name, &snap)?;
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
    d.db.snapshot_update(&s)?;
    let op = d.ops.start_task(
        "Updating snapshot",
        instance_resources(&[&name]),
        false,
        |_op| async { Ok(None) },
    );
    Ok(async_op(&op.to_api()))
}

async fn delete_snapshot(
    State(d): State<AppState>,
    Path((name, snap)): Path<(String, String)>,
) -> ApiResult {
    d.db.snapshot(&name, &snap)?;
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Deleting snapshot",
        instance_resources(&[&name]),
        false,
        move |_op| async move {
            crate::instance::snapshots::delete(&d2, &name, &snap).await?;
            Ok(None)
        },
    );
    Ok(async_op(&op.to_api()))
}
