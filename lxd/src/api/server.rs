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

/// The server config as clients see it: the trust password is shown as "true", never hashed.
fn visible_config(d: &AppState) -> crate::error::Result<lxd_api::ConfigMap> {
    let mut config = d.db.server_config()?;
    if let Some(v) = config.get_mut("core.trust_password") {
        *v = "true".into();
    }
    Ok(config)
}

fn server_info(d: &AppState) -> crate::error::Result<Server> {
    let config = visible_config(d)?;
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

async fn get_server(
    State(d): State<AppState>,
    caller: crate::trust::Caller,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    params(q)?;
    if !caller.is_trusted() {
        // LXD's untrusted view: no config, no environment.
        return Ok(sync(serde_json::json!({
            "api_extensions": lxd_api::extensions::API_EXTENSIONS,
            "api_status": "stable",
            "api_version": "1.0",
            "auth": "untrusted",
            "public": false,
            "auth_methods": ["tls"],
        })));
    }
    let mut s = server_info(&d)?;
    let id = crate::endpoints::identity(&d)?;
    s.environment.certificate = id.cert_pem.clone();
    s.environment.certificate_fingerprint = id.fingerprint.clone();
    if let Some(addr) = crate::endpoints::https_address(&d).await {
        s.environment.addresses = crate::trust::listen_addresses(&addr).await;
    }
    let etag = etag_of(&s.config);
    Ok(sync_etag(s, &etag))
}

async fn put_server(
    State(d): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<ServerPut>,
) -> ApiResult {
    check_etag(&headers, &etag_of(&visible_config(&d)?))?;
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
    let mut config = visible_config(&d)?;
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

async fn apply_server_config(
    d: &AppState,
    mut config: lxd_api::ConfigMap,
) -> crate::error::Result<()> {
    let old = d.db.server_config()?;
    // The trust password is stored hashed; the "true" a client echoes back keeps it.
    match config.get("core.trust_password").map(String::as_str) {
        Some("true") if old.contains_key("core.trust_password") => {
            config.insert(
                "core.trust_password".into(),
                old["core.trust_password"].clone(),
            );
        }
        Some(pw) => {
            let h = crate::trust::hash_password(pw);
            config.insert("core.trust_password".into(), h);
        }
        None => {}
    }
    let https = config
        .get("core.https_address")
        .cloned()
        .unwrap_or_default();
    if old.get("core.https_address").cloned().unwrap_or_default() != https {
        crate::endpoints::set_https_address(d, &https).await?;
    }
    d.db.server_config_replace(&config)?;
    for key in ["images.auto_update_interval", "images.remote_cache_expiry"] {
        if old.get(key) != config.get(key) {
            d.remotes.reschedule();
        }
    }
    d.events
        .lifecycle("config-updated", "/1.0", serde_json::json!({}));
    Ok(())
}
