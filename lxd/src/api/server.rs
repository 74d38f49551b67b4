//! `GET /1.0` (the server description), `PUT`/`PATCH /1.0` (server config).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use lxd_api::server::{Server, ServerEnvironment, ServerPut, ServerStorageDriverInfo};
use std::collections::HashMap;

use super::{AppState, params};
use crate::response::{ApiResult, Json, check_etag, empty, etag_of, sync, sync_etag};

pub fn routes() -> Router<AppState> {
    Router::new().route("/1.0", get(get_server).put(put_server).patch(patch_server))
}

pub async fn get_root() -> ApiResult {
    Ok(sync(vec!["/1.0"]))
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("NAME"), field("VERSION_ID"))
}

/// The storage drivers this host supports; probing runs tools, so it is done once.
pub fn supported_drivers() -> Vec<(&'static str, String)> {
    static DRIVERS: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    DRIVERS.get_or_init(lxd_storage::supported_drivers).clone()
}

fn server_info(d: &AppState) -> crate::error::Result<Server> {
    let config = d.db.server_config()?;
    let uts = nix::sys::utsname::uname().ok();
    let s = |f: Option<&std::ffi::OsStr>| {
        f.map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let (os_name, os_version) = os_release();
    let pools = d.db.pools()?;
    let storage = pools
        .iter()
        .find(|p| p.name == "default")
        .or(pools.first())
        .map(|p| p.driver.clone())
        .unwrap_or_default();
    let drivers = supported_drivers();
    let supported = drivers
        .iter()
        .cloned()
        .map(|(name, version)| ServerStorageDriverInfo {
            name: name.to_string(),
            version,
            remote: false,
        })
        .collect();
    let storage_version = drivers
        .into_iter()
        .find(|(n, _)| *n == storage)
        .map(|(_, v)| v)
        .unwrap_or_default();
    Ok(Server {
        config,
        api_extensions: lxd_api::extensions::API_EXTENSIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        api_status: "stable".into(),
        api_version: "1.0".into(),
        auth: "trusted".into(),
        public: false,
        auth_methods: vec!["tls".into()],
        environment: ServerEnvironment {
            addresses: vec![],
            architectures: vec!["x86_64".into(), "i686".into()],
            driver: "lxc".into(),
            driver_version: env!("CARGO_PKG_VERSION").into(),
            firewall: "nftables".into(),
            kernel: s(uts.as_ref().map(|u| u.sysname())),
            kernel_architecture: s(uts.as_ref().map(|u| u.machine())),
            kernel_version: s(uts.as_ref().map(|u| u.release())),
            os_name,
            os_version,
            project: "default".into(),
            server: "lxd".into(),
            server_clustered: false,
            server_event_mode: "full-mesh".into(),
            server_name: s(uts.as_ref().map(|u| u.nodename())),
            server_pid: i64::from(std::process::id()),
            server_version: crate::SERVER_VERSION.into(),
            storage,
            storage_version,
            storage_supported_drivers: supported,
            ..Default::default()
        },
    })
}

async fn get_server(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    params(q)?;
    let s = server_info(&d)?;
    let etag = etag_of(&s.config);
    Ok(sync_etag(s, &etag))
}

async fn put_server(
    State(d): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    check_etag(&headers, &etag_of(&d.db.server_config()?))?;
    crate::config::validate_server_config(&req.config)?;
    let config: lxd_api::ConfigMap = req
        .config
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    apply_server_config(&d, config).await?;
    Ok(empty())
}

async fn patch_server(
    State(d): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    let mut config = d.db.server_config()?;
    check_etag(&headers, &etag_of(&config))?;
    crate::config::validate_server_config(&req.config)?;
    for (k, v) in req.config {
        if v.is_empty() {
            config.remove(&k);
        } else {
            config.insert(k, v);
        }
    }
    apply_server_config(&d, config).await?;
    Ok(empty())
}

async fn apply_server_config(d: &AppState, config: lxd_api::ConfigMap) -> crate::error::Result<()> {
    d.db.server_config_replace(&config)?;
    d.events
        .lifecycle("config-updated", "/1.0", serde_json::json!({}));
    Ok(())
}
