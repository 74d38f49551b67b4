//! `/1.0/images` and `/1.0/images/aliases`: upload (unified tarball as the raw body, split image as
//! multipart), copy from a remote server (`source.type=image`, pulled by `crate::remotes`),
//! publish an instance or snapshot (`source.type=instance|snapshot`), list, show (fingerprint
//! prefix), update, delete, export, refresh, secrets, and aliases (names may contain `/`, sent as
//! `%2F`). Untrusted HTTPS clients see public images only, or a private one with its secret.

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
use crate::trust::Caller;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/images", get(list).post(upload))
        .route(
            "/1.0/images/{fp}",
            get(show).put(replace).patch(patch).delete(delete),
        )
        .route("/1.0/images/{fp}/export", get(export))
        .route("/1.0/images/{fp}/refresh", axum::routing::post(refresh))
        .route("/1.0/images/{fp}/secret", axum::routing::post(secret))
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

async fn list(
    State(d): State<AppState>,
    caller: Caller,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    let filter = crate::filter::Filter::parse(p.get("filter").unwrap_or(""))?;
    let mut out = Vec::new();
    for img in &d.db.images()? {
        if !img.public && !caller.is_trusted() {
            continue;
        }
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

/// An image the caller may see: any for trusted callers, else a public one or one whose
/// secret they hold (LXD answers 404 either way).
fn visible_image(
    d: &AppState,
    caller: &Caller,
    fp: &str,
    q: &HashMap<String, String>,
) -> Result<ImageRow> {
    let img = d.db.image_by_prefix(fp)?;
    if caller.is_trusted() || img.public {
        return Ok(img);
    }
    let secret = q.get("secret").map(String::as_str).unwrap_or("");
    if crate::trust::image_secret_valid(d, &img.fingerprint, secret) {
        return Ok(img);
    }
    Err(ApiError::not_found("Image not found"))
}

async fn show(
    State(d): State<AppState>,
    caller: Caller,
    Path(fp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let img = visible_image(&d, &caller, &fp, &q)?;
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
        return create_from_source(&d, post).await;
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
            crate::remotes::delete_image(&d2, &fp).await?;
            Ok(None)
        });
    Ok(async_op(&op.to_api()))
}

async fn export(
    State(d): State<AppState>,
    caller: Caller,
    Path(fp): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response> {
    let img = visible_image(&d, &caller, &fp, &q)?;
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

/// `POST /1.0/images` with a JSON body: copy from another server or publish an instance.
async fn create_from_source(d: &AppState, post: lxd_api::ImagesPost) -> ApiResult {
    let src = post
        .source
        .clone()
        .ok_or_else(|| ApiError::bad_request("No image source given"))?;
    // Requested aliases must be free before any download starts.
    for a in &post.aliases {
        validate_alias_name(&a.name)?;
        if d.db.alias_opt(&a.name)?.is_some() {
            return Err(ApiError::conflict(format!(
                "Alias \"{}\" already exists",
                a.name
            )));
        }
    }
    match src.kind.as_str() {
        "image" => pull_image(d, post, src),
        "instance" | "container" | "snapshot" => publish(d, post, src),
        "url" => Err(ApiError::bad_request(
            "Importing images from a URL is not supported",
        )),
        other => Err(ApiError::bad_request(format!(
            "Unknown image source type \"{other}\""
        ))),
    }
}

fn pull_image(
    d: &AppState,
    post: lxd_api::ImagesPost,
    src: lxd_api::image::ImagesPostSource,
) -> ApiResult {
    if !matches!(src.mode.as_str(), "" | "pull") {
        return Err(ApiError::bad_request(format!(
            "Transfer mode \"{}\" is not supported (use pull)",
            src.mode
        )));
    }
    let mut req = crate::remotes::PullRequest {
        server: src.server,
        protocol: src.protocol,
        certificate: src.certificate,
        secret: src.secret,
        // LXD clients put an alias in `fingerprint` so that auto-update can follow it.
        name: if src.alias.is_empty() {
            src.fingerprint
        } else {
            src.alias
        },
        image_type: src.image_type,
    };
    req.validate()?;
    let opts = crate::remotes::PullOptions {
        cached: false,
        auto_update: post.auto_update,
        public: post.public,
        prefer_cached: false,
        fresh: false,
    };
    let d2 = d.clone();
    let op = d.ops.start_task(
        "Downloading image",
        Default::default(),
        true,
        move |op| async move {
            let mut img = crate::remotes::pull(&d2, Some(&op), &req, &opts).await?;
            finish_new_image(&d2, &mut img, &post)?;
            Ok(Some(serde_json::json!({
                "fingerprint": img.fingerprint,
                "size": img.size.to_string(),
            })))
        },
    );
    Ok(async_op(&op.to_api()))
}

/// What a JSON create asks beyond the image itself: extra properties, profiles, expiry and
/// aliases (`image_create_aliases`).
fn finish_new_image(d: &AppState, img: &mut ImageRow, post: &lxd_api::ImagesPost) -> Result<()> {
    let mut changed = false;
    if !post.properties.is_empty() {
        img.properties.extend(post.properties.clone());
        changed = true;
    }
    if let Some(p) = &post.profiles {
        img.profiles = p.clone();
        changed = true;
    }
    if !post.expires_at.is_empty() {
        img.expires_at = post.expires_at.clone();
        changed = true;
    }
    if changed {
        d.db.image_update(img)?;
    }
    for a in &post.aliases {
        d.db.alias_create(&AliasRow {
            name: a.name.clone(),
            fingerprint: img.fingerprint.clone(),
            description: a.description.clone(),
            kind: img.kind.clone(),
        })?;
        d.events.lifecycle(
            "image-alias-created",
            &format!("/1.0/images/aliases/{}", encode_segment(&a.name)),
            serde_json::json!({"target": img.fingerprint}),
        );
    }
    Ok(())
}

/// `lxc publish C01[/snap]`: pack the volume into a unified tarball and store it.
fn publish(
    d: &AppState,
    post: lxd_api::ImagesPost,
    src: lxd_api::image::ImagesPostSource,
) -> ApiResult {
    let (inst, snap) = match src.name.split_once('/') {
        Some((i, s)) => (i.to_string(), Some(s.to_string())),
        None => (src.name.clone(), None),
    };
    if src.kind == "snapshot" && snap.is_none() {
        return Err(ApiError::bad_request(
            "A snapshot source needs INSTANCE/SNAPSHOT",
        ));
    }
    let row = d.db.instance(&inst)?;
    if let Some(s) = &snap {
        d.db.snapshot(&inst, s)?;
    } else if crate::instance::runtime::probe(d, &inst).is_active() {
        return Err(ApiError::bad_request(
            "Cannot publish a running instance; stop it first",
        ));
    }
    let algorithm = if post.compression_algorithm.is_empty() {
        d.db.server_config_get("images.compression_algorithm")?
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "gzip".into())
    } else {
        post.compression_algorithm.clone()
    };
    let compression = crate::images::publish::compression_for(&algorithm)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let d2 = d.clone();
    let mut res = std::collections::BTreeMap::new();
    res.insert(
        "instances".to_string(),
        vec![format!("/1.0/instances/{inst}")],
    );
    let op = d
        .ops
        .start_task("Creating image", res, false, move |op| async move {
            let lock = d2.instance_lock(&inst);
            let _g = lock.lock().await;
            if snap.is_none() && crate::instance::runtime::probe(&d2, &inst).is_active() {
                return Err(ApiError::bad_request(
                    "Cannot publish a running instance; stop it first",
                ));
            }
            let pool = d2.pool(&row.pool)?;
            let (i2, s2) = (inst.clone(), snap.clone());
            let volume = tokio::task::spawn_blocking(move || match s2 {
                Some(s) => Ok(pool.snapshot_path(&i2, &s)),
                None => pool.mount_instance(&i2),
            })
            .await??;
            let config = match &snap {
                Some(s) => d2.db.snapshot(&inst, s)?.config,
                None => row.config.clone(),
            };
            let shifted = config
                .get("volatile.last_state.idmap")
                .and_then(|v| crate::instance::idmap::from_volatile(v));
            let mut meta = match std::fs::read_to_string(volume.join("metadata.yaml")) {
                Ok(t) => crate::images::store::parse_metadata(&t).unwrap_or_default(),
                Err(_) => Default::default(),
            };
            meta.architecture = row.architecture.clone();
            meta.creation_date = jiff::Timestamp::now().as_second();
            meta.properties.extend(post.properties.clone());
            let tmp = d2
                .images_dir()
                .join(format!(".publish-{}", uuid::Uuid::new_v4().simple()));
            let (tmp2, op2) = (tmp.clone(), op.clone());
            let meta2 = meta.clone();
            let packed = tokio::task::spawn_blocking(move || {
                let start = std::time::Instant::now();
                let mut done = 0u64;
                let mut last = start;
                let mut report = |n: u64| {
                    done += n;
                    if last.elapsed() >= std::time::Duration::from_millis(200) {
                        last = std::time::Instant::now();
                        let speed = done as f64 / start.elapsed().as_secs_f64().max(0.001);
                        op2.progress(
                            "create_image_from_container_pack",
                            &format!(
                                "Image pack: {} ({}/s)",
                                crate::remotes::http::byte_size(done),
                                crate::remotes::http::byte_size(speed as u64)
                            ),
                            None,
                        );
                    }
                };
                crate::images::publish::pack_image(
                    &volume,
                    &meta2,
                    compression,
                    shifted.as_ref(),
                    &tmp2,
                    &mut report,
                )
            })
            .await?;
            let packed = match packed {
                Ok(p) => p,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(ApiError::internal(e.to_string()));
                }
            };
            let fp = packed.fingerprint.clone();
            let dest = d2.images_dir().join(&fp);
            if dest.exists() || d2.db.image_opt(&fp)?.is_some() {
                let _ = std::fs::remove_file(&tmp);
                return Err(ApiError::conflict(format!(
                    "Image with same fingerprint already exists: {fp}"
                )));
            }
            std::fs::rename(&tmp, &dest).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                crate::error::io_err("store", &dest, e)
            })?;
            let at = now();
            let mut img = ImageRow {
                fingerprint: fp.clone(),
                filename: post.filename.clone(),
                size: packed.size as i64,
                public: post.public,
                architecture: normalize_architecture(&meta.architecture),
                kind: "container".into(),
                created_at: at.clone(),
                uploaded_at: at,
                last_used_at: lxd_api::ZERO_TIME.into(),
                expires_at: lxd_api::ZERO_TIME.into(),
                cached: false,
                auto_update: false,
                properties: meta.properties.clone(),
                profiles: vec!["default".into()],
                source: None,
                split: false,
            };
            if let Err(e) = d2.db.image_create(&img) {
                let _ = crate::images::delete_image(&d2.images_dir(), &fp);
                return Err(e);
            }
            finish_new_image(&d2, &mut img, &post)?;
            d2.events.lifecycle(
                "image-created",
                &format!("/1.0/images/{fp}"),
                serde_json::json!({"type": "container"}),
            );
            Ok(Some(serde_json::json!({
                "fingerprint": fp,
                "size": packed.size.to_string(),
            })))
        });
    Ok(async_op(&op.to_api()))
}

/// `lxc image refresh`: check the image's source now; `metadata.refreshed` says if it changed.
async fn refresh(State(d): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let img = d.db.image_by_prefix(&fp)?;
    if img.source.as_ref().is_none_or(|s| s.server.is_empty()) {
        return Err(ApiError::bad_request(format!(
            "Image {} has no remote source to refresh from",
            img.fingerprint
        )));
    }
    let d2 = d.clone();
    let mut res = std::collections::BTreeMap::new();
    res.insert(
        "images".to_string(),
        vec![format!("/1.0/images/{}", img.fingerprint)],
    );
    let op = d
        .ops
        .start_task("Refreshing image", res, false, move |op| async move {
            let refreshed = crate::remotes::refresh(&d2, Some(&op), &img).await?;
            Ok(Some(serde_json::json!({"refreshed": refreshed.is_some()})))
        });
    Ok(async_op(&op.to_api()))
}

/// A one-use secret that lets an untrusted server fetch this private image (for a pull it
/// stays valid for the record and the files, while the finished operation is still listed).
async fn secret(State(d): State<AppState>, Path(fp): Path<String>) -> ApiResult {
    let img = d.db.image_by_prefix(&fp)?;
    let mut res = std::collections::BTreeMap::new();
    res.insert(
        "images".to_string(),
        vec![format!("/1.0/images/{}", img.fingerprint)],
    );
    let op = d.ops.start_token(
        "Executing operation",
        res,
        serde_json::json!({"secret": crate::operations::random_secret()}),
    );
    Ok(async_op(&op.to_api()))
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

async fn show_alias(
    State(d): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let a = d.db.alias(&name)?;
    if !caller.is_trusted() && !d.db.image_opt(&a.fingerprint)?.is_some_and(|i| i.public) {
        return Err(ApiError::not_found("Image alias not found"));
    }
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
