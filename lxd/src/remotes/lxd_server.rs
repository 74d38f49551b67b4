//! Pulling from another LXD server (ours or a real LXD): connect with its pinned certificate,
//! present our server certificate (as LXD does), resolve an alias, read the image record
//! (`?secret=` for a private image), and download `/export` (one tarball, or a multipart body
//! of metadata and rootfs).

use futures_util::StreamExt;
use lxd_api::{Image, ImageAliasesEntry};
use std::path::Path;
use std::sync::Arc;

use super::PullRequest;
use super::http::{self, Progress};
use crate::daemon::Daemon;
use crate::error::{ApiError, Result};
use crate::operations::Op;

/// A resolved image on an LXD server.
#[derive(Debug)]
pub struct Remote {
    pub base: String,
    pub http: reqwest::Client,
    pub secret: String,
    pub info: Image,
}

fn esc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn with_secret(url: String, secret: &str) -> String {
    if secret.is_empty() {
        url
    } else {
        format!("{url}?secret={}", esc(secret))
    }
}

/// GET an API object and unwrap LXD's envelope; an error envelope keeps its status and text.
async fn api_get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T> {
    let resp =
        http.get(url).send().await.map_err(|e| {
            ApiError::new(axum::http::StatusCode::BAD_GATEWAY, http::describe(url, &e))
        })?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, http::describe(url, &e)))?;
    let env: lxd_api::Response = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            format!("Unable to fetch {url}: {status}"),
        )
    })?;
    if env.kind == lxd_api::ResponseType::Error || !status.is_success() {
        let code = axum::http::StatusCode::from_u16(status.as_u16())
            .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
        return Err(ApiError::new(code, env.error));
    }
    serde_json::from_value(env.metadata)
        .map_err(|e| ApiError::bad_request(format!("Invalid answer from {url}: {e}")))
}

pub async fn resolve(d: &Daemon, req: &PullRequest) -> Result<Remote> {
    let id = crate::endpoints::identity(d)?;
    let http = http::client(Some(&req.certificate), Some(&id))?;
    let base = req.server.clone();
    let alias_url = format!("{base}/1.0/images/aliases/{}", esc(&req.name));
    let fp = match api_get::<ImageAliasesEntry>(&http, &alias_url).await {
        Ok(a) if !a.target.is_empty() => a.target,
        Ok(_) => req.name.clone(),
        Err(e) if e.is_not_found() => req.name.clone(),
        Err(e) => return Err(e),
    };
    if fp.is_empty() || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found(format!(
            "Image \"{}\" not found",
            req.name
        )));
    }
    let info: Image = api_get(
        &http,
        &with_secret(format!("{base}/1.0/images/{}", esc(&fp)), &req.secret),
    )
    .await?;
    if info.fingerprint.is_empty() {
        return Err(ApiError::not_found("Image not found"));
    }
    Ok(Remote {
        base,
        http,
        secret: req.secret.clone(),
        info,
    })
}

/// Download the image's files; returns whether it is split (a rootfs was written too).
pub async fn download(
    remote: &Remote,
    op: Option<&Arc<Op>>,
    meta_path: &Path,
    rootfs_path: &Path,
) -> Result<bool> {
    let url = with_secret(
        format!(
            "{}/1.0/images/{}/export",
            remote.base, remote.info.fingerprint
        ),
        &remote.secret,
    );
    let resp = remote.http.get(&url).send().await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            http::describe(&url, &e),
        )
    })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let msg = serde_json::from_slice::<lxd_api::Response>(&body)
            .map(|r| r.error)
            .unwrap_or_else(|_| format!("Unable to fetch {url}: {status}"));
        return Err(ApiError::new(axum::http::StatusCode::BAD_GATEWAY, msg));
    }
    let size = u64::try_from(remote.info.size).ok().filter(|s| *s > 0);
    let mut progress = Progress::new(op, "", size.unwrap_or(0));
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !ctype.starts_with("multipart/") {
        let expect = http::Expect { sha256: None, size };
        http::write_body(resp, &url, meta_path, &expect, &mut progress).await?;
        return Ok(false);
    }
    let boundary = multer::parse_boundary(&ctype)
        .map_err(|e| ApiError::bad_request(format!("Invalid export from {url}: {e}")))?;
    let mut mp = multer::Multipart::new(resp.bytes_stream(), boundary);
    let (mut meta, mut rootfs) = (false, false);
    let mut total = 0u64;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(format!("Invalid export from {url}: {e}")))?
    {
        let dest = match field.name().unwrap_or("") {
            "metadata" if !meta => {
                meta = true;
                meta_path
            }
            "rootfs" if !rootfs => {
                rootfs = true;
                rootfs_path
            }
            "rootfs.img" => {
                return Err(ApiError::bad_request(
                    "Virtual-machine images are not supported",
                ));
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "Unexpected part \"{other}\" in the export from {url}"
                )));
            }
        };
        let u = url.clone();
        let stream = field.map(move |c| {
            c.map_err(|e| ApiError::bad_request(format!("Invalid export from {u}: {e}")))
        });
        let (_, n) = http::write_stream(stream, dest, size, &mut progress).await?;
        total += n;
    }
    if !meta {
        return Err(ApiError::bad_request(format!(
            "The export from {url} has no metadata"
        )));
    }
    http::check(&url, &http::Expect { sha256: None, size }, "", total)?;
    Ok(rootfs)
}
