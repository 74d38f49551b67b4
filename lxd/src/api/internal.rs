//! `/internal/*`: what `lxd waitready` and `lxd shutdown` call.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};

use super::AppState;
use crate::daemon::StopMode;
use crate::error::ApiError;
use crate::response::{ApiResult, empty};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/ready", get(ready))
        .route("/internal/shutdown", put(shutdown).post(shutdown))
}

async fn ready(State(d): State<AppState>) -> ApiResult {
    if d.is_ready() {
        Ok(empty())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "LXD daemon not ready yet",
        ))
    }
}

async fn shutdown(State(d): State<AppState>) -> ApiResult {
    d.request_stop(StopMode::Shutdown);
    Ok(empty())
}
