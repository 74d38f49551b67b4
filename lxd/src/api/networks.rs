//! `/1.0/networks`: list (managed and host interfaces), create, show, replace, patch, rename,
//! delete, `/state`, `/leases`, and `/forwards`. Synchronous, as LXD without the
//! `storage_and_network_operations` extension.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use lxd_api::network::{
    NetworkForwardPut, NetworkForwardsPost, NetworkPost, NetworkPut, NetworksPost,
};
use std::collections::HashMap;

use super::{AppState, params};
use crate::error::{ApiError, Result};
use crate::network as net;
use crate::response::{ApiResult, Json, check_etag, created, empty, etag_of, sync, sync_etag};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/networks", get(list).post(create))
        .route(
            "/1.0/networks/{name}",
            get(show)
                .put(replace)
                .patch(patch)
                .post(rename)
                .delete(delete),
        )
        .route("/1.0/networks/{name}/state", get(state))
        .route("/1.0/networks/{name}/leases", get(leases))
        .route(
            "/1.0/networks/{name}/forwards",
            get(forwards_list).post(forwards_create),
        )
        .route(
            "/1.0/networks/{name}/forwards/{addr}",
            get(forward_show)
                .put(forward_replace)
                .patch(forward_patch)
                .delete(forward_delete),
        )
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let all = net::list(&d).await?;
    if p.recursion > 0 {
        Ok(sync(all))
    } else {
        Ok(sync(
            all.into_iter()
                .map(|n| format!("/1.0/networks/{}", n.name))
                .collect::<Vec<_>>(),
        ))
    }
}

async fn create(State(d): State<AppState>, Json(req): Json<NetworksPost>) -> ApiResult {
    let name = req.name.clone();
    net::create(&d, req).await?;
    Ok(created(&format!("/1.0/networks/{name}")))
}

fn etag(n: &lxd_api::network::Network) -> String {
    etag_of(&(&n.config, &n.description))
}

async fn show(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let n = net::get(&d, &name).await?;
    let tag = etag(&n);
    Ok(sync_etag(n, &tag))
}

async fn update(
    d: &AppState,
    name: &str,
    headers: &HeaderMap,
    put: NetworkPut,
    merge: bool,
) -> Result<()> {
    let current = net::get(d, name).await?;
    if !current.managed {
        return Err(ApiError::bad_request(format!(
            "Network \"{name}\" is not managed and cannot be modified"
        )));
    }
    check_etag(headers, &etag(&current))?;
    net::update(d, name, put, merge).await
}

async fn replace(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(put): Json<NetworkPut>,
) -> ApiResult {
    update(&d, &name, &headers, put, false).await?;
    Ok(empty())
}

async fn patch(
    State(d): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(put): Json<NetworkPut>,
) -> ApiResult {
    update(&d, &name, &headers, put, true).await?;
    Ok(empty())
}

async fn rename(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<NetworkPost>,
) -> ApiResult {
    if req.name.is_empty() {
        return Err(ApiError::bad_request("No new name provided"));
    }
    net::rename(&d, &name, &req.name).await?;
    Ok(created(&format!("/1.0/networks/{}", req.name)))
}

async fn delete(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    net::delete(&d, &name).await?;
    Ok(empty())
}

async fn state(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    Ok(sync(net::state(&d, &name).await?))
}

async fn leases(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    if d.db.network_opt(&name)?.is_none() {
        net::get(&d, &name).await?;
        return Err(ApiError::bad_request(format!(
            "Network \"{name}\" is not managed: no leases to show"
        )));
    }
    Ok(sync(net::leases(&d, &name)?))
}

async fn forwards_list(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    let rows = net::forwards::list(&d, &name)?;
    if p.recursion > 0 {
        Ok(sync(
            rows.into_iter()
                .map(net::forwards::to_api)
                .collect::<Vec<_>>(),
        ))
    } else {
        Ok(sync(
            rows.into_iter()
                .map(|f| format!("/1.0/networks/{name}/forwards/{}", f.listen_address))
                .collect::<Vec<_>>(),
        ))
    }
}

async fn forwards_create(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<NetworkForwardsPost>,
) -> ApiResult {
    let addr = req.listen_address.clone();
    net::forwards::create(&d, &name, req).await?;
    Ok(created(&format!("/1.0/networks/{name}/forwards/{addr}")))
}

fn forward_etag(f: &lxd_api::network::NetworkForward) -> String {
    etag_of(&(&f.config, &f.description, &f.ports))
}

async fn forward_show(
    State(d): State<AppState>,
    Path((name, addr)): Path<(String, String)>,
) -> ApiResult {
    let f = net::forwards::to_api(net::forwards::get(&d, &name, &addr)?);
    let tag = forward_etag(&f);
    Ok(sync_etag(f, &tag))
}

async fn forward_update(
    d: &AppState,
    name: &str,
    addr: &str,
    headers: &HeaderMap,
    put: NetworkForwardPut,
    merge: bool,
) -> Result<()> {
    let cur = net::forwards::to_api(net::forwards::get(d, name, addr)?);
    check_etag(headers, &forward_etag(&cur))?;
    net::forwards::update(d, name, addr, put, merge).await
}

async fn forward_replace(
    State(d): State<AppState>,
    Path((name, addr)): Path<(String, String)>,
    headers: HeaderMap,
    Json(put): Json<NetworkForwardPut>,
) -> ApiResult {
    forward_update(&d, &name, &addr, &headers, put, false).await?;
    Ok(empty())
}

async fn forward_patch(
    State(d): State<AppState>,
    Path((name, addr)): Path<(String, String)>,
    headers: HeaderMap,
    Json(put): Json<NetworkForwardPut>,
) -> ApiResult {
    forward_update(&d, &name, &addr, &headers, put, true).await?;
    Ok(empty())
}

async fn forward_delete(
    State(d): State<AppState>,
    Path((name, addr)): Path<(String, String)>,
) -> ApiResult {
    net::forwards::delete(&d, &name, &addr).await?;
    Ok(empty())
}
