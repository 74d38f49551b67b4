//! `/1.0/profiles`: list, create, show, replace, patch, rename, delete.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use lxd_api::profile::{Profile, ProfilePost, ProfilePut, ProfilesPost};
use std::collections::HashMap;

use super::{AppState, params};
use crate::db::profiles::ProfileRow;
use crate::error::{ApiError, Result};
use crate::response::{ApiResult, Json, check_etag, created, empty, etag_of, sync, sync_etag};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/profiles", get(list).post(create))
        .route(
            "/1.0/profiles/{name}",
            get(show)
                .put(replace)
                .patch(patch)
                .post(rename)
                .delete(delete),
        )
}

fn to_api(d: &AppState, p: ProfileRow) -> Result<Profile> {
    let used_by =
        d.db.instances_using_profile(&p.name)?
            .into_iter()
            .map(|n| format!("/1.0/instances/{n}"))
            .collect();
    Ok(Profile {
        name: p.name,
        config: p.config,
        description: p.description,
        devices: p.devices,
        used_by,
    })
}

fn etag(p: &ProfileRow) -> String {
    etag_of(&(&p.config, &p.description, &p.devices))
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let names = d.db.profile_names()?;
    if p.recursion > 0 {
        let mut out = Vec::new();
        for n in names {
            out.push(to_api(&d, d.db.profile(&n)?)?);
        }
        Ok(sync(out))
    } else {
        Ok(sync(
            names
                .into_iter()
                .map(|n| format!("/1.0/profiles/{n}"))
                .collect::<Vec<_>>(),
        ))
    }
}

pub fn validate_profile_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(ApiError::bad_request("No name provided"));
    }
    if name.contains('/') || name == "." || name == ".." || name.contains(char::is_whitespace) {
        return Err(ApiError::bad_request(format!(
            "Invalid profile name \"{name}\""
        )));
    }
    Ok(())
}

fn validate(config: &lxd_api::ConfigMap, devices: &lxd_api::DevicesMap) -> Result<()> {
    for k in config.keys() {
        if k.starts_with("volatile.") {
            return Err(ApiError::bad_request(format!(
                "Volatile keys can't be set in profiles: \"{k}\""
            )));
        }
    }
    crate::config::validate_instance_config(config)?;
    crate::instance::devices::validate_devices(devices)
}

async fn create(State(d): State<AppState>, Json(req): Json<ProfilesPost>) -> ApiResult {
    validate_profile_name(&req.name)?;
    validate(&req.config, &req.devices)?;
    d.db.profile_create(&ProfileRow {
        name: req.name.clone(),
        description: req.description,
        config: req.config,
        devices: req.devices,
    })?;
    let url = format!("/1.0/profiles/{}", req.name);
    d.events
        .lifecycle("profile-created", &url, serde_json::json!({}));
    Ok(created(&url))
}

async fn show(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let p = d.db.profile(&name)?;
    let tag = etag(&p);
    Ok(sync_etag(to_api(&d, p)?, &tag))
}

async fn store(d: &AppState, row: ProfileRow) -> Result<()> {
    validate(&row.config, &row.devices)?;
    d.db.profile_update(&row)?;
    crate::instance::profile_changed(d, &row.name).await?;
    d.events.lifecycle(
        "profile-updated",
        &format!("/1.0/profiles/{}", row.name),
        serde_json::json!({}),
    );
    Ok(())
}

async fn replace(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(req): Json<ProfilePut>,
) -> ApiResult {
    let cur = d.db.profile(&name)?;
    check_etag(&headers, &etag(&cur))?;
    store(
        &d,
        ProfileRow {
            name,
            description: req.description,
            config: req.config,
            devices: req.devices,
        },
    )
    .await?;
    Ok(empty())
}

async fn patch(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let mut cur = d.db.profile(&name)?;
    check_etag(&headers, &etag(&cur))?;
    let v: serde_json::Value = crate::response::parse_json(&body)?;
    if let Some(desc) = v.get("description").and_then(|x| x.as_str()) {
        cur.description = desc.to_string();
    }
    if let Some(cfg) = v.get("config") {
        let cfg: lxd_api::ConfigMap = serde_json::from_value(cfg.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid config: {e}")))?;
        cur.config.extend(cfg);
    }
    if let Some(devs) = v.get("devices") {
        let devs: lxd_api::DevicesMap = serde_json::from_value(devs.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid devices: {e}")))?;
        cur.devices.extend(devs);
    }
    store(&d, cur).await?;
    Ok(empty())
}

async fn rename(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ProfilePost>,
) -> ApiResult {
    if name == "default" {
        return Err(ApiError::forbidden(
            "The \"default\" profile cannot be renamed",
        ));
    }
    validate_profile_name(&req.name)?;
    d.db.profile_rename(&name, &req.name)?;
    let url = format!("/1.0/profiles/{}", req.name);
    d.events.lifecycle(
        "profile-renamed",
        &url,
        serde_json::json!({"old_name": name}),
    );
    Ok(created(&url))
}

async fn delete(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    if name == "default" {
        return Err(ApiError::forbidden(
            "The \"default\" profile cannot be deleted",
        ));
    }
    d.db.profile(&name)?;
    if !d.db.instances_using_profile(&name)?.is_empty() {
        return Err(ApiError::bad_request("Profile is currently in use"));
    }
    d.db.profile_delete(&name)?;
    d.events.lifecycle(
        "profile-deleted",
        &format!("/1.0/profiles/{name}"),
        serde_json::json!({}),
    );
    Ok(empty())
}
