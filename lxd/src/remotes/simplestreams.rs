//! Reading a simplestreams server: `streams/v1/index.json`, then each `image-downloads`
//! products file, into a [`Catalog`] (cached in memory for an hour per server, as LXD caches
//! its index files; refreshes bypass the cache). Paths from the index must stay below the
//! server URL.

use lxd_api::simplestreams::{Catalog, Products, Stream, safe_relative_path};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::error::{ApiError, Result};

const CACHE_FOR: Duration = Duration::from_secs(3600);
/// Index files of public servers are a few MB; anything past this is not an index.
const MAX_INDEX: usize = 64 << 20;

/// The kernel architecture of this host, which gets the short alias names.
pub fn local_architecture() -> String {
    nix::sys::utsname::uname()
        .ok()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|| "x86_64".into())
}

/// `server` without a trailing slash, checked to be an https:// URL.
pub fn base_url(server: &str) -> Result<String> {
    let s = server.trim().trim_end_matches('/');
    if !s.starts_with("https://") {
        return Err(ApiError::bad_request(format!(
            "Only https:// image servers are supported, not \"{server}\""
        )));
    }
    Ok(s.to_string())
}

/// The catalog of a server, from the cache unless `fresh`.
pub async fn catalog(d: &Daemon, server: &str, fresh: bool) -> Result<Arc<Catalog>> {
    let base = base_url(server)?;
    if !fresh
        && let Some((at, c)) = d.remotes.catalogs.lock().expect("catalogs").get(&base)
        && at.elapsed() < CACHE_FOR
    {
        return Ok(c.clone());
    }
    let http = super::http::client(None, None)?;
    let index_url = format!("{base}/streams/v1/index.json");
    let body = super::http::get_bytes(&http, &index_url, MAX_INDEX).await?;
    let stream: Stream = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("Invalid simplestreams index {index_url}: {e}"))
    })?;
    let mut products = Vec::new();
    for entry in stream.index.values() {
        if entry.datatype != "image-downloads" || entry.products.is_empty() {
            continue;
        }
        if !safe_relative_path(&entry.path) {
            return Err(ApiError::bad_request(format!(
                "Invalid path \"{}\" in simplestreams index {index_url}",
                entry.path
            )));
        }
        let url = format!("{base}/{}", entry.path);
        let body = super::http::get_bytes(&http, &url, MAX_INDEX).await?;
        let p: Products = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("Invalid simplestreams products {url}: {e}"))
        })?;
        products.push(p);
    }
    let cat = Arc::new(Catalog::new(&products, &base, &local_architecture()));
    d.remotes
        .catalogs
        .lock()
        .expect("catalogs")
        .insert(base, (Instant::now(), cat.clone()));
    Ok(cat)
}
