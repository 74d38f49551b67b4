//! The REST API router: one module per resource. A handler parses and validates the request, then
//! calls the domain (`instance`, `images`, storage); it never touches a mount or a process itself.

mod certificates;
mod events;
mod files;
mod images;
mod instances;
mod internal;
mod networks;
mod operations;
mod profiles;
mod projects;
mod resources;
mod server;
pub mod storage;
mod storage_volumes;

use axum::Router;
use axum::extract::{Query, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::error::ApiError;

pub type AppState = Arc<Daemon>;

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/", get(server::get_root))
        .merge(server::routes())
        .merge(certificates::routes())
        .merge(events::routes())
        .merge(operations::routes())
        .merge(internal::routes())
        .merge(projects::routes())
        .merge(profiles::routes())
        .merge(instances::routes())
        .merge(files::routes())
        .merge(images::routes())
        .merge(storage::routes())
        .merge(storage_volumes::routes())
        .merge(resources::routes())
        .merge(networks::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(d)
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!("Not found: {}", req.uri().path())).into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!("Method {method} not allowed"),
    )
    .into_response()
}

/// Common query parameters: `recursion`, `project`, `filter`.
#[derive(Debug, Default)]
pub struct Params {
    pub recursion: u8,
    pub raw: HashMap<String, String>,
}

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.raw.get(k).map(String::as_str)
    }
    pub fn flag(&self, k: &str) -> bool {
        self.get(k)
            .is_some_and(|v| crate::config::parse_bool(v).unwrap_or(true))
    }
}

/// Parse the query, rejecting projects other than `default` (only that one exists).
pub fn params(q: Query<HashMap<String, String>>) -> Result<Params, ApiError> {
    let raw = q.0;
    let recursion = match raw.get("recursion").map(String::as_str) {
        None | Some("") | Some("0") => 0,
        Some(v) => {
            // 6.x clients may send "2;fields=state.network"; the level is what counts.
            let level = v.split(';').next().unwrap_or("0");
            level
                .parse::<u8>()
                .map_err(|_| ApiError::bad_request(format!("Invalid recursion level \"{v}\"")))?
        }
    };
    if let Some(p) = raw.get("project")
        && !p.is_empty()
        && p != "default"
    {
        return Err(ApiError::not_found(format!("Project \"{p}\" not found")));
    }
    Ok(Params { recursion, raw })
}
