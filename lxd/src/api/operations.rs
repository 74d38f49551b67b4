//! `/1.0/operations`: list, get, cancel, long-poll wait and the operation websockets (exec fds).

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::time::Duration;

use super::{AppState, params};
use crate::error::ApiError;
use crate::response::{ApiResult, empty, sync};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/operations", get(list))
        .route("/1.0/operations/{id}", get(get_op).delete(cancel))
        .route("/1.0/operations/{id}/wait", get(wait))
        .route("/1.0/operations/{id}/websocket", get(websocket))
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let mut by_status: std::collections::BTreeMap<String, Vec<serde_json::Value>> =
        Default::default();
    for op in d.ops.list() {
        let api = op.to_api();
        let key = api.status.to_lowercase();
        let v = if p.recursion > 0 {
            serde_json::to_value(&api)?
        } else {
            serde_json::Value::String(format!("/1.0/operations/{}", api.id))
        };
        by_status.entry(key).or_default().push(v);
    }
    Ok(sync(by_status))
}

fn find(d: &AppState, id: &str) -> Result<std::sync::Arc<crate::operations::Op>, ApiError> {
    d.ops
        .get(id)
        .ok_or_else(|| ApiError::not_found("Operation not found"))
}

async fn get_op(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(sync(find(&d, &id)?.to_api()))
}

async fn cancel(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let op = find(&d, &id)?;
    let api = op.to_api();
    if api.status_code.is_final() {
        return Err(ApiError::bad_request("Operation is already done"));
    }
    if !api.may_cancel {
        return Err(ApiError::bad_request("This operation can't be cancelled"));
    }
    op.cancel.cancel();
    Ok(empty())
}

async fn wait(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    let op = find(&d, &id)?;
    let timeout = match p.get("timeout") {
        None | Some("") => None,
        Some(t) => {
            let secs: i64 = t
                .parse()
                .map_err(|_| ApiError::bad_request(format!("Invalid timeout \"{t}\"")))?;
            (secs >= 0).then(|| Duration::from_secs(secs as u64))
        }
    };
    op.wait(timeout).await;
    Ok(sync(op.to_api()))
}

async fn websocket(
    State(d): State<AppState>,
    Path(id): Path<String>,
    q: Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let op = find(&d, &id)?;
    let secret = p.get("secret").unwrap_or("").to_string();
    if op.class != "websocket" || !op.has_socket_secret(&secret) {
        return Err(ApiError::forbidden("Invalid websocket secret"));
    }
    Ok(ws
        .on_upgrade(move |socket| async move {
            op.connect_socket(&secret, socket);
        })
        .into_response())
}
