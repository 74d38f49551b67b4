//! A simplestreams image server read by the client, as LXD's client reads `images:` and
//! `ubuntu:` for `lxc image list/info/alias list`: the index and products files are fetched
//! over HTTPS (system CAs) and cached for an hour under `$XDG_CACHE_HOME/lxc` (else
//! `~/.cache/lxc`); a stale cache is used when the server cannot be reached.

use lxd_api::simplestreams::{Catalog, Products, Stream, safe_relative_path};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Error;
use super::tls::{ServerTrust, client_config};

const CACHE_FOR: Duration = Duration::from_secs(3600);
const MAX_INDEX: usize = 64 << 20;

/// The client's cache directory (Go's `os.UserCacheDir()` + `lxc`).
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("lxc")
}

fn cache_path(url: &str, file: &str) -> PathBuf {
    let key: String = url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    cache_dir().join("simplestreams").join(key).join(file)
}

/// A simplestreams server.
#[derive(Debug)]
pub struct Streams {
    pub url: String,
    http: reqwest::Client,
}

impl Streams {
    pub fn new(url: &str) -> Result<Streams, Error> {
        let tls = client_config(ServerTrust::System, None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("LXD ", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Streams {
            url: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    async fn fetch(&self, path: &str) -> Result<Vec<u8>, Error> {
        let file = path.rsplit('/').next().unwrap_or(path);
        let cached = cache_path(&self.url, file);
        let fresh = std::fs::metadata(&cached)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < CACHE_FOR);
        if fresh && let Ok(b) = std::fs::read(&cached) {
            return Ok(b);
        }
        let url = format!("{}/{path}", self.url);
        match self.download(&url).await {
            Ok(body) => {
                if let Some(dir) = cached.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let tmp = cached.with_extension("tmp");
                if std::fs::write(&tmp, &body).is_ok() {
                    let _ = std::fs::rename(&tmp, &cached);
                }
                Ok(body)
            }
            // A server that cannot be reached: LXD's client falls back to its cache.
            Err(e) => std::fs::read(&cached).map_err(|_| e),
        }
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, Error> {
        use futures_util::StreamExt;
        let resp = self.http.get(url).send().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            Error::Connect(format!("Get \"{url}\": {msg}"))
        })?;
        if !resp.status().is_success() {
            return Err(Error::Status {
                status: resp.status().as_u16(),
                message: format!("Unable to fetch {url}: {}", resp.status()),
            });
        }
        let mut body = Vec::new();
        let mut s = resp.bytes_stream();
        while let Some(c) = s.next().await {
            let c = c.map_err(|e| Error::Http(e.to_string()))?;
            if body.len() + c.len() > MAX_INDEX {
                return Err(Error::Other(format!("{url} is too large for an index")));
            }
            body.extend_from_slice(&c);
        }
        Ok(body)
    }

    /// All images and aliases of the server.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, Error> {
        let body = self.fetch("streams/v1/index.json").await?;
        let stream: Stream = serde_json::from_slice(&body).map_err(|e| Error::Decode {
            url: format!("{}/streams/v1/index.json", self.url),
            reason: e.to_string(),
        })?;
        let mut products = Vec::new();
        for entry in stream.index.values() {
            if entry.datatype != "image-downloads" || entry.products.is_empty() {
                continue;
            }
            if !safe_relative_path(&entry.path) {
                return Err(Error::Other(format!(
                    "Invalid path \"{}\" in the simplestreams index of {}",
                    entry.path, self.url
                )));
            }
            let body = self.fetch(&entry.path).await?;
            let p: Products = serde_json::from_slice(&body).map_err(|e| Error::Decode {
                url: format!("{}/{}", self.url, entry.path),
                reason: e.to_string(),
            })?;
            products.push(p);
        }
        let arch = nix::sys::utsname::uname()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "x86_64".into());
        Ok(Arc::new(Catalog::new(&products, &self.url, &arch)))
    }
}
