//! `/1.0/projects`: only the `default` project exists.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use lxd_api::project::Project;
use std::collections::HashMap;

use super::{AppState, params};
use crate::error::ApiError;
use crate::response::{ApiResult, sync};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/projects", get(list))
        .route("/1.0/projects/{name}", get(get_project))
}

fn default_project(d: &AppState) -> crate::error::Result<Project> {
    let mut used_by: Vec<String> =
        d.db.instance_names()?
            .into_iter()
            .map(|n| format!("/1.0/instances/{n}"))
            .collect();
    used_by.extend(
        d.db.profile_names()?
            .into_iter()
            .map(|n| format!("/1.0/profiles/{n}")),
    );
    let mut config = lxd_api::ConfigMap::new();
    for k in [
        "features.images",
        "features.profiles",
        "features.storage.volumes",
    ] {
        config.insert(k.into(), "true".into());
    }
    Ok(Project {
        name: "default".into(),
        config,
        description: "Default LXD project".into(),
        used_by,
    })
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    if p.recursion > 0 {
        Ok(sync(vec![default_project(&d)?]))
    } else {
        Ok(sync(vec!["/1.0/projects/default"]))
    }
}

async fn get_project(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    if name != "default" {
        return Err(ApiError::not_found("Project not found"));
    }
    Ok(sync(default_project(&d)?))
}
