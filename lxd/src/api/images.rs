//! `/1.0/images` and `/1.0/images/aliases`: upload (unified tarball as the raw body, split image as
//! multipart), list, show (fingerprint prefix), update, delete, export, and aliases (names may
//! contain `/`, sent as `%2F`).

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use lxd_api::image::{
    Image, ImageAlias, ImageAliasesEntry, ImageAliasesEntryPost, ImageAliasesEntryPut,
    ImageAliasesPost, ImagePut,
};
use std::collections::HashMap;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

use super::{AppState, params};
use crate::db::images::{AliasRow, ImageRow};
use crate::error::{ApiError, Result};
use crate::events::now;
use crate::response::{
    ApiResult, Json, async_op, check_etag, created, empty, etag_of, sync, sync_etag,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/images", get(list).post(upload))
        .route(
            "/1.0/images/{fp}",
            get(show).put(replace).patch(patch).delete(delete),
        )
        .route("/1.0/images/{fp}/export", get(export))
        .route("/1.0/images/aliases", get(list_aliases).post(create_alias))
        .route(
            "/1.0/images/aliases/{name}",
            get(show_alias)
                .put(replace_alias)
                .patch(patch_alias)
                .post(rename_alias)
                .delete(delete_alias),
        )
}

fn to_api(d: &AppState, img: &ImageRow) -> Result<Image> {
    let aliases =
        d.db.aliases()?
            .into_iter()
            .filter(|a| a.fingerprint == img.fingerprint)
            .map(|a| ImageAlias {
                name: a.name,
                description: a.description,
            })
            .collect();
    Ok(Image {
        auto_update: img.auto_update,
        properties: img.properties.clone(),
        public: img.public,
        expires_at: img.expires_at.clone(),
        profiles: img.profiles.clone(),
        aliases,
        architecture: img.architecture.clone(),
        cached: img.cached,
        filename: img.filename.clone(),
        fingerprint: img.fingerprint.clone(),
        size: img.size,
        update_source: img.source.clone(),
        kind: img.kind.clone(),
        created_at: img.created_at.clone(),
        last_used_at: img.last_used_at.clone(),
        uploaded_at: img.uploaded_at.clone(),
        project: "default".into(),
    })
}

async fn list(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let filter = crate::filter::Filter::parse(p.get("filter").unwrap_or(""))?;
    let mut out = Vec::new();
    for img in &d.db.images()? {
        let v = serde_json::to_value(to_api(&d, img)?)?;
        if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
            continue;
        }
        out.push(if p.recursion > 0 {
            v
        } else {
            serde_json::Value::String(format!("/1.0/images/{}", img.fingerprint))
        });
    }
    Ok(sync(out))
}

async fn show(State(d): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let img = d.db.image_by_prefix(&fp)?;
    let tag = etag_of(&(
        &img.auto_update,
        &img.properties,
        &img.public,
        &img.profiles,
    ));
    Ok(sync_etag(to_api(&d, &img)?, &tag))
}

fn img_etag(img: &ImageRow) -> String {
    etag_of(&(
        &img.auto_update,
        &img.properties,
        &img.public,
        &img.profiles,
    ))
}

async fn replace(
    State(d): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    Json(put): Json<ImagePut>,
) -> ApiResult {
    let mut img = d.db.image_by_prefix(&fp)?;
    check_etag(&headers, &img_etag(&img))?;
    img.auto_update = put.auto_update;
    img.properties = put.properties;
    img.public = put.public;
    img.profiles = put.profiles;
    if !put.expires_at.is_empty() {
        img.expires_at = put.expires_at;
    }
    d.db.image_update(&img)?;
    d.events.lifecycle(
        "image-updated",
        &format!("/1.0/images/{}", img.fingerprint),
        serde_json::json!({}),
    );
    Ok(empty())
}

async fn patch(
    State(d): State<AppState>,
    Path(fp): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let mut img = d.db.image_by_prefix(&fp)?;
    check_etag(&headers, &img_etag(&img))?;
    let v: serde_json::Value = crate::response::parse_json(&body)?;
    if let Some(x) = v.get("auto_update").and_then(|x| x.as_bool()) {
        img.auto_update = x;
    }
    if let Some(x) = v.get("public").and_then(|x| x.as_bool()) {
        img.public = x;
    }
    if let Some(x) = v.get("properties") {
        let props: lxd_api::ConfigMap = serde_json::from_value(x.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid properties: {e}")))?;
        img.properties.extend(props);
    }
    if let Some(x) = v.get("profiles") {
        img.profiles = serde_json::from_value(x.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid profiles: {e}")))?;
    }
    d.db.image_update(&img)?;
    Ok(empty())
}

/// Stream a request body into a new temporary file under the image store.
async fn spool(d: &AppState, body: Body) -> Result<PathBuf> {
    let path = d
        .images_dir()
        .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| crate::error::io_err("create", &path, e))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(ApiError::bad_request(format!(
                    "Failed to read the upload: {e}"
                )));
            }
        };
        if let Err(e) = f.write_all(&chunk).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(crate::error::io_err("write", &path, e));
        }
    }
    f.flush()
        .await
        .map_err(|e| crate::error::io_err("write", &path, e))?;
    Ok(path)
}

/// Remove spooled uploads when dropped unless they were consumed.
struct Spooled(Vec<PathBuf>);

impl Drop for Spooled {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// LXD's architecture names: Debian/Go spellings map to the kernel's.
fn normalize_architecture(a: &str) -> String {
    match a {
        "amd64" | "x86_64" | "" => "x86_64",
        "i386" | "i686" | "x86" => "i686",
        "arm64" | "aarch64" => "aarch64",
        "armhf" | "armel" | "armv7l" => "armv7l",
        "ppc64el" | "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_string()
}

fn header_str<'a>(h: &'a HeaderMap, k: &str) -> &'a str {
    h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// `X-LXD-properties: a=b&c=d` (URL-encoded), `X-LXD-profiles: profile=a&profile=b`.
fn parse_form(v: &str) -> Vec<(String, String)> {
    url_decode_pairs(v)
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_decode_pairs(v: &str) -> Vec<(String, String)> {
    v.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (url_decode(k), url_decode(v)),
            None => (url_decode(p), String::new()),
        })
        .collect()
}

async fn upload(State(d): State<AppState>, headers: HeaderMap, req: Request) -> ApiResult {
    let ctype = header_str(&headers, "content-type").to_string();
    if ctype.starts_with("application/json") {
        let Json(post): Json<lxd_api::ImagesPost> = Json::from_request(req, &()).await?;
        let kind = post.source.as_ref().map(|s| s.kind.as_str()).unwrap_or("");
        return Err(ApiError::bad_request(format!(
            "Creating images from source type \"{kind}\" is not supported yet"
        )));
    }
    let public = crate::config::parse_bool(header_str(&headers, "x-lxd-public")).unwrap_or(false);
    let filename = header_str(&headers, "x-lxd-filename").to_string();
    let props: lxd_api::ConfigMap = parse_form(header_str(&headers, "x-lxd-properties"))
        .into_iter()
        .collect();
    let profiles: Vec<String> = parse_form(header_str(&headers, "x-lxd-profiles"))
        .into_iter()
        .filter(|(k, _)| k == "profile")
        .map(|(_, v)| v)
        .collect();

    let spooled = if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid multipart upload: {e}")))?;
        let mut meta = None;
        let mut rootfs = None;
        let mut files = Spooled(vec![]);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid multipart upload: {e}")))?
        {
            let name = field.name().unwrap_or("").to_string();
            let path = d
                .images_dir()
                .join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
            files.0.push(path.clone());
            let mut f = tokio::fs::File::create(&path)
                .await
                .map_err(|e| crate::error::io_err("create", &path, e))?;
            let mut field = field;
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| ApiError::bad_request(format!("Failed to read the upload: {e}")))?
            {
                f.write_all(&chunk)
                    .await
                    .map_err(|e| crate::error::io_err("write", &path, e))?;
            }
            f.flush()
                .await
                .map_err(|e| crate::error::io_err("write", &path, e))?;
            match name.as_str() {
                "metadata" => meta = Some(path),
                "rootfs" => rootfs = Some(path),
                "rootfs.img" => {
                    return Err(ApiError::bad_request(
                        "Virtual-machine images are not supported",
                    ));
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Unexpected multipart field \"{other}\""
                    )));
                }
            }
        }
        match (meta, rootfs) {
            (Some(m), Some(r)) => (files, Some((m, r))),
            (Some(m), None) => {
                files.0.retain(|p| p != &m);
                (Spooled(vec![m]), None)
            }
            _ => return Err(ApiError::bad_request("The upload has no metadata part")),
        }
    } else {
        let path = spool(&d, req.into_body()).await?;
        (Spooled(vec![path]), None)
    };

    let d2 = d.clone();
    let op = d.ops.start_task(
        "Downloading image",
        Default::default(),
        false,
        move |_op| async move {
            let (files, split) = spooled;
            let images_dir = d2.images_dir();
            let imported = tokio::task::spawn_blocking(move || {
                let r = match &split {
                    Some((m, r)) => crate::images::import_split(&images_dir, m, r, None),
                    None => crate::images::import_unified(&images_dir, &files.0[0], None),
                };
                drop(files);
                r
            })
            .await?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                    e.to_string(),
                )
            })?;
            let fp = imported.fingerprint.clone();
            if d2.db.image_opt(&fp)?.is_some() {
                return Err(ApiError::conflict(format!(
                    "Image with same fingerprint already exists: {fp}"
                )));
            }
            let meta = &imported.metadata;
            let mut properties = meta.properties.clone();
            properties.extend(props);
            let created = jiff::Timestamp::from_second(meta.creation_date)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| lxd_api::ZERO_TIME.into());
            let expires = if meta.expiry_date > 0 {
                jiff::Timestamp::from_second(meta.expiry_date)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| lxd_api::ZERO_TIME.into())
            } else {
                lxd_api::ZERO_TIME.into()
            };
            let row = ImageRow {
                fingerprint: fp.clone(),
                filename,
                size: imported.size as i64,
                public,
                architecture: normalize_architecture(&meta.architecture),
                kind: "container".into(),
                created_at: created,
                uploaded_at: now(),
                last_used_at: lxd_api::ZERO_TIME.into(),
                expires_at: expires,
                cached: false,
                auto_update: false,
                properties,
                profiles: if profiles.is_empty() {
                    vec!["default".into()]
                } else {
                    profiles
                },
                source: None,
                split: imported.kind == crate::images::ImageKind::Split,
            };
            if let Err(e) = d2.db.image_create(&row) {
                let _ = crate::images::delete_image(&d2.images_dir(), &fp);
                return Err(e);
            }
            d2.events.lifecycle(
                "image-created",
                &format!("/1.0/images/{fp}"),
                serde_json::json!({"type": "container"}),
            );
            Ok(Some(serde_json::json!({
                "fingerprint": fp,
                "size": imported.size.to_string(),
            })))
        },
    );
    Ok(async_op(&op.to_api()))
}

async fn delete(State(d): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let img = d.db.image_by_prefix(&fp)?;
    let fp = img.fingerprint.clone();
    let d2 = d.clone();
    let mut res = std::collections::BTreeMap::new();
    res.insert("images".to_string(), vec![format!("/1.0/images/{fp}")]);
    let op = d
        .ops
        .start_task("Deleting image", res, false, move |_op| async move {
            delete_image(&d2, &fp).await?;
            Ok(None)
        });
    Ok(async_op(&op.to_api()))
}

/// Delete an image: its volumes on every pool (a driver may keep one alive for its clones), its
/// row and aliases, and its files in the store.
async fn delete_image(d: &AppState, fp: &str) -> Result<()> {
    let pools: Vec<_> = d
        .pools
        .read()
        .expect("pools lock")
        .values()
        .cloned()
        .collect();
    for pool in pools {
        let fp2 = fp.to_string();
        tokio::task::spawn_blocking(move || -> std::result::Result<(), lxd_storage::Error> {
            if pool.image_volume_exists(&fp2)? {
                pool.delete_image_volume(&fp2)?;
            }
            Ok(())
        })
        .await??;
    }
    d.db.image_delete(fp)?;
    let _ = crate::images::delete_image(&d.images_dir(), fp);
    d.events.lifecycle(
        "image-deleted",
        &format!("/1.0/images/{fp}"),
        serde_json::json!({}),
    );
    Ok(())
}

async fn export(State(d): State<AppState>, Path(fp): Path<String>) -> Result<Response> {
    let img = d.db.image_by_prefix(&fp)?;
    let dir = d.images_dir();
    let meta_path = dir.join(&img.fingerprint);
    let fname = if img.filename.is_empty() {
        format!("{}.tar.xz", img.fingerprint)
    } else {
        img.filename.clone()
    };
    if img.split {
        let rootfs = dir.join(format!("{}.rootfs", img.fingerprint));
        let boundary = uuid::Uuid::new_v4().simple().to_string();
        let mut body = Vec::new();
        // Metadata tarballs are small; the rootfs is streamed.
        let meta = tokio::fs::read(&meta_path)
            .await
            .map_err(|e| crate::error::io_err("read", &meta_path, e))?;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"{fname}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&meta);
        body.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"rootfs\"; filename=\"{}.rootfs\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                img.fingerprint
            )
            .as_bytes(),
        );
        let f = tokio::fs::File::open(&rootfs)
            .await
            .map_err(|e| crate::error::io_err("open", &rootfs, e))?;
        let head = futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(axum::body::Bytes::from(body))
        });
        let mid = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
        let ctype = format!("multipart/form-data; boundary={boundary}");
        let tail = futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(axum::body::Bytes::from(format!("\r\n--{boundary}--\r\n")))
        });
        let stream = head.chain(mid).chain(tail);
        let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&ctype) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        return Ok(r);
    }
    let f = tokio::fs::File::open(&meta_path)
        .await
        .map_err(|e| crate::error::io_err("open", &meta_path, e))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut r = (
        StatusCode::OK,
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename={fname}")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

fn alias_api(a: AliasRow) -> ImageAliasesEntry {
    ImageAliasesEntry {
        name: a.name,
        description: a.description,
        target: a.fingerprint,
        kind: a.kind,
    }
}

fn validate_alias_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(ApiError::bad_request("Alias name missing"));
    }
    if name.contains(':') || name.contains(char::is_whitespace) {
        return Err(ApiError::bad_request(format!(
            "Invalid alias name \"{name}\""
        )));
    }
    Ok(())
}

async fn list_aliases(State(d): State<AppState>, q: Query<HashMap<String, String>>) -> ApiResult {
    let p = params(q)?;
    let aliases = d.db.aliases()?;
    if p.recursion > 0 {
        Ok(sync(aliases.into_iter().map(alias_api).collect::<Vec<_>>()))
    } else {
        Ok(sync(
            aliases
                .into_iter()
                .map(|a| format!("/1.0/images/aliases/{}", encode_segment(&a.name)))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Percent-encode a path segment the way Go's url.PathEscape does for `/`.
fn encode_segment(s: &str) -> String {
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

async fn create_alias(State(d): State<AppState>, Json(req): Json<ImageAliasesPost>) -> ApiResult {
    validate_alias_name(&req.name)?;
    let img = d.db.image_by_prefix(&req.target)?;
    d.db.alias_create(&AliasRow {
        name: req.name.clone(),
        fingerprint: img.fingerprint,
        description: req.description,
        kind: if req.kind.is_empty() {
            "container".into()
        } else {
            req.kind
        },
    })?;
    let url = format!("/1.0/images/aliases/{}", encode_segment(&req.name));
    d.events
        .lifecycle("image-alias-created", &url, serde_json::json!({}));
    Ok(created(&url))
}

async fn show_alias(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let a = d.db.alias(&name)?;
    let tag = etag_of(&(&a.fingerprint, &a.description));
    Ok(sync_etag(alias_api(a), &tag))
}

async fn replace_alias(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ImageAliasesEntryPut>,
) -> ApiResult {
    let mut a = d.db.alias(&name)?;
    let img = d.db.image_by_prefix(&req.target)?;
    a.fingerprint = img.fingerprint;
    a.description = req.description;
    d.db.alias_update(&a)?;
    Ok(empty())
}

async fn patch_alias(
    State(d): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let mut a = d.db.alias(&name)?;
    let v: serde_json::Value = crate::response::parse_json(&body)?;
    if let Some(t) = v.get("target").and_then(|x| x.as_str()) {
        a.fingerprint = d.db.image_by_prefix(t)?.fingerprint;
    }
    if let Some(x) = v.get("description").and_then(|x| x.as_str()) {
        a.description = x.to_string();
    }
    d.db.alias_update(&a)?;
    Ok(empty())
}

async fn rename_alias(
    State(d): State<AppState>,
    Path(name): Path<String>,
    Json(req): Json<ImageAliasesEntryPost>,
) -> ApiResult {
    validate_alias_name(&req.name)?;
    d.db.alias_rename(&name, &req.name)?;
    Ok(created(&format!(
        "/1.0/images/aliases/{}",
        encode_segment(&req.name)
    )))
}

async fn delete_alias(State(d): State<AppState>, Path(name): Path<String>) -> ApiResult {
    d.db.alias_delete(&name)?;
    d.events.lifecycle(
        "image-alias-deleted",
        &format!("/1.0/images/aliases/{}", encode_segment(&name)),
        serde_json::json!({}),
    );
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_lxd_header_forms() {
        assert_eq!(
            parse_form("os=Debian&description=a+b%2Fc"),
            vec![
                ("os".to_string(), "Debian".to_string()),
                ("description".to_string(), "a b/c".to_string())
            ]
        );
        assert_eq!(encode_segment("a/b"), "a%2Fb");
    }
}
