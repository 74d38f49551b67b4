//! Images from other servers: pulls from simplestreams servers and LXD servers into the local
//! image store (verified against the fingerprint before anything is recorded), the image cache
//! behind `lxc launch REMOTE:ALIAS` (`cached`, `last_used_at`, reuse of a cached image for the
//! same server/protocol/alias), refresh with alias moves, and the auto-update and cache-expiry
//! tasks. A failed pull leaves no file, row or alias behind.

pub mod http;
pub mod lxd_server;
pub mod simplestreams;
pub mod tasks;

use lxd_api::image::{Image, ImageSource};
use lxd_api::simplestreams::StreamImage;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::daemon::Daemon;
use crate::db::images::ImageRow;
use crate::error::{ApiError, Result};
use crate::events::now;
use crate::operations::Op;

/// State shared by pulls and the image tasks.
#[derive(Debug)]
pub struct RemoteState {
    /// One pull per fingerprint at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Simplestreams catalogs by server URL, with when they were fetched.
    pub(crate) catalogs: Mutex<HashMap<String, (Instant, Arc<lxd_api::simplestreams::Catalog>)>>,
    /// Bumped when `images.auto_update_interval` or `images.remote_cache_expiry` changes: the
    /// tasks run again at once and pick up the new schedule (LXD resets them the same way).
    schedule: tokio::sync::watch::Sender<u64>,
}

impl Default for RemoteState {
    fn default() -> Self {
        RemoteState {
            locks: Mutex::new(HashMap::new()),
            catalogs: Mutex::new(HashMap::new()),
            schedule: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl RemoteState {
    pub fn reschedule(&self) {
        self.schedule.send_modify(|v| *v += 1);
    }

    pub(crate) fn schedule_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.schedule.subscribe()
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("pull locks")
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// Where to pull an image from and which one (`name` is an alias or a fingerprint prefix, as
/// LXD's `source.alias`/`source.fingerprint`).
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    pub server: String,
    pub protocol: String,
    /// PEM of an LXD server's certificate, pinned when given.
    pub certificate: String,
    /// Secret of a private image on an LXD server (`POST /1.0/images/<fp>/secret` there).
    pub secret: String,
    pub name: String,
    pub image_type: String,
}

impl PullRequest {
    /// Check the request before any work: a known protocol and an https server.
    pub fn validate(&mut self) -> Result<()> {
        if self.protocol.is_empty() {
            self.protocol = "lxd".into();
        }
        if !matches!(self.protocol.as_str(), "lxd" | "simplestreams") {
            return Err(ApiError::bad_request(format!(
                "Unsupported remote image server protocol \"{}\"",
                self.protocol
            )));
        }
        self.server = simplestreams::base_url(&self.server)?;
        if self.name.is_empty() {
            return Err(ApiError::bad_request("No image fingerprint or alias given"));
        }
        if !self.certificate.trim().is_empty() {
            crate::tls::parse_cert_pem(&self.certificate)?;
        }
        Ok(())
    }

    fn kind(&self) -> &str {
        if self.image_type.is_empty() {
            "container"
        } else {
            &self.image_type
        }
    }
}

/// How the pulled image is recorded.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// A cache entry for instance creation (pruned after `images.remote_cache_expiry`).
    pub cached: bool,
    pub auto_update: bool,
    pub public: bool,
    /// Use an image already pulled for the same server/protocol/alias without asking the server.
    pub prefer_cached: bool,
    /// Bypass the index cache (refresh).
    pub fresh: bool,
}

/// A remote image and how to get its files.
pub(crate) enum Plan {
    Streams { base: String, image: StreamImage },
    Lxd(lxd_server::Remote),
}

impl Plan {
    fn info(&self) -> &Image {
        match self {
            Plan::Streams { image, .. } => &image.image,
            Plan::Lxd(r) => &r.info,
        }
    }
}

/// Ask the server which image `req.name` stands for today.
pub(crate) async fn resolve(d: &Daemon, req: &PullRequest, fresh: bool) -> Result<Plan> {
    let wrap = |e: ApiError| {
        ApiError::new(
            e.status,
            format!("Failed getting remote image info: {}", e.message),
        )
    };
    match req.protocol.as_str() {
        "simplestreams" => {
            let cat = simplestreams::catalog(d, &req.server, fresh)
                .await
                .map_err(wrap)?;
            let image = cat
                .resolve(req.kind(), &req.name)
                .map_err(|m| wrap(ApiError::not_found(m)))?
                .clone();
            Ok(Plan::Streams {
                base: req.server.clone(),
                image,
            })
        }
        _ => Ok(Plan::Lxd(lxd_server::resolve(d, req).await.map_err(wrap)?)),
    }
}

fn auto_update_interval(d: &Daemon) -> i64 {
    config_int(d, "images.auto_update_interval")
}

pub(crate) fn config_int(d: &Daemon, key: &str) -> i64 {
    d.db.server_config_get(key)
        .ok()
        .flatten()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| crate::config::server_default(key).to_string())
        .parse()
        .unwrap_or(0)
}

/// The image a previous pull cached for this server/protocol/alias (LXD's PreferCached).
fn cached_for(d: &Daemon, req: &PullRequest) -> Result<Option<ImageRow>> {
    Ok(d.db.images()?.into_iter().find(|i| {
        i.cached
            && i.kind == req.kind()
            && i.source.as_ref().is_some_and(|s| {
                s.server == req.server && s.protocol == req.protocol && s.alias == req.name
            })
    }))
}

/// The image for a new instance: a cached one when LXD would reuse it, else pulled and
/// cached (`images.auto_update_cached` decides its auto-update).
pub async fn pull_for_instance(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    req: &PullRequest,
) -> Result<ImageRow> {
    let auto_update =
        d.db.server_config_get("images.auto_update_cached")?
            .map(|v| crate::config::parse_bool(&v).unwrap_or(true))
            .unwrap_or(true);
    pull(
        d,
        Some(op),
        req,
        &PullOptions {
            cached: true,
            auto_update,
            public: false,
            prefer_cached: true,
            fresh: false,
        },
    )
    .await
}

/// Make the image named by `req` available locally and return its row.
pub async fn pull(
    d: &Arc<Daemon>,
    op: Option<&Arc<Op>>,
    req: &PullRequest,
    opts: &PullOptions,
) -> Result<ImageRow> {
    // With auto-update on, a cached image stays current by itself: reuse it without asking.
    if opts.prefer_cached
        && auto_update_interval(d) > 0
        && let Some(img) = cached_for(d, req)?
    {
        d.db.image_touch(&img.fingerprint, &now())?;
        return d.db.image_by_prefix(&img.fingerprint);
    }
    let plan = resolve(d, req, opts.fresh).await?;
    fetch(d, op, req, opts, plan).await
}

/// Download and record a resolved image (or find it already there).
pub(crate) async fn fetch(
    d: &Arc<Daemon>,
    op: Option<&Arc<Op>>,
    req: &PullRequest,
    opts: &PullOptions,
    plan: Plan,
) -> Result<ImageRow> {
    let fp = plan.info().fingerprint.clone();
    crate::images::store::check_fingerprint(&fp)
        .map_err(|e| ApiError::bad_request(format!("Invalid remote image: {e}")))?;
    let lock = d.remotes.lock(&fp);
    let _g = lock.lock().await;
    if let Some(mut img) = d.db.image_opt(&fp)? {
        // Already here. An explicit copy makes a cache entry permanent.
        let mut changed = false;
        if !opts.cached && img.cached {
            img.cached = false;
            changed = true;
        }
        if opts.cached {
            img.last_used_at = now();
            changed = true;
        }
        if opts.public && !img.public {
            img.public = true;
            changed = true;
        }
        if opts.auto_update && !img.auto_update {
            img.auto_update = true;
            changed = true;
        }
        if img.source.is_none() {
            img.source = Some(source_of(req));
            d.db.image_set_source(&fp, img.source.as_ref())?;
        }
        if changed {
            d.db.image_update(&img)?;
        }
        return Ok(img);
    }

    let tmp = Temp::new(d.images_dir());
    let (meta_path, rootfs_path) = (tmp.path(""), tmp.path(".rootfs"));
    let split = match &plan {
        Plan::Streams { base, image } => {
            let get = |dl: &lxd_api::simplestreams::Download| -> Result<(String, http::Expect)> {
                if !lxd_api::simplestreams::safe_relative_path(&dl.path) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid path \"{}\" in simplestreams index of {base}",
                        dl.path
                    )));
                }
                Ok((
                    format!("{base}/{}", dl.path),
                    http::Expect {
                        sha256: Some(dl.sha256.clone()).filter(|s| !s.is_empty()),
                        size: u64::try_from(dl.size).ok().filter(|s| *s > 0),
                    },
                ))
            };
            let client = http::client(None, None)?;
            let (url, expect) = get(&image.meta)?;
            let mut p = http::Progress::new(op, "metadata: ", 0);
            http::download(&client, &url, &meta_path, &expect, &mut p).await?;
            match &image.rootfs {
                Some(r) => {
                    let (url, expect) = get(r)?;
                    let mut p = http::Progress::new(op, "rootfs: ", 0);
                    http::download(&client, &url, &rootfs_path, &expect, &mut p).await?;
                    true
                }
                None => false,
            }
        }
        Plan::Lxd(remote) => lxd_server::download(remote, op, &meta_path, &rootfs_path).await?,
    };

    let images_dir = d.images_dir();
    let (m, r, fp2) = (meta_path.clone(), rootfs_path.clone(), fp.clone());
    let imported = tokio::task::spawn_blocking(move || {
        if split {
            crate::images::import_split(&images_dir, &m, &r, Some(&fp2))
        } else {
            crate::images::import_unified(&images_dir, &m, Some(&fp2))
        }
    })
    .await?
    .map_err(|e| {
        let status = axum::http::StatusCode::from_u16(e.http_status())
            .unwrap_or(axum::http::StatusCode::BAD_REQUEST);
        ApiError::new(status, e.to_string())
    })?;
    drop(tmp);

    let info = plan.info();
    let meta = &imported.metadata;
    let properties = if info.properties.is_empty() {
        meta.properties.clone()
    } else {
        info.properties.clone()
    };
    let created_at = if info.created_at.is_empty() {
        jiff::Timestamp::from_second(meta.creation_date)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| lxd_api::ZERO_TIME.into())
    } else {
        info.created_at.clone()
    };
    let architecture = if info.architecture.is_empty() {
        meta.architecture.clone()
    } else {
        info.architecture.clone()
    };
    let at = now();
    let row = ImageRow {
        fingerprint: fp.clone(),
        filename: info.filename.clone(),
        size: imported.size as i64,
        public: opts.public,
        architecture: lxd_api::simplestreams::kernel_architecture(&architecture)
            .map(str::to_string)
            .unwrap_or(architecture),
        kind: req.kind().to_string(),
        created_at,
        uploaded_at: at.clone(),
        last_used_at: if opts.cached {
            at
        } else {
            lxd_api::ZERO_TIME.into()
        },
        expires_at: if info.expires_at.is_empty() {
            lxd_api::ZERO_TIME.into()
        } else {
            info.expires_at.clone()
        },
        cached: opts.cached,
        auto_update: opts.auto_update,
        properties,
        profiles: vec!["default".into()],
        source: Some(source_of(req)),
        split: imported.kind == crate::images::ImageKind::Split,
    };
    if let Err(e) = d.db.image_create(&row) {
        let _ = crate::images::delete_image(&d.images_dir(), &fp);
        return Err(e);
    }
    d.events.lifecycle(
        "image-created",
        &format!("/1.0/images/{fp}"),
        serde_json::json!({"type": row.kind}),
    );
    Ok(row)
}

fn source_of(req: &PullRequest) -> ImageSource {
    ImageSource {
        alias: req.name.clone(),
        certificate: req.certificate.clone(),
        protocol: req.protocol.clone(),
        server: req.server.clone(),
        image_type: req.kind().to_string(),
    }
}

/// Temporary download files in the image store, removed when dropped (a failed or cancelled
/// pull leaves nothing; a successful import has moved them already).
struct Temp {
    base: PathBuf,
}

impl Temp {
    fn new(dir: PathBuf) -> Temp {
        Temp {
            base: dir.join(format!(".pull-{}", uuid::Uuid::new_v4().simple())),
        }
    }

    fn path(&self, suffix: &str) -> PathBuf {
        PathBuf::from(format!("{}{suffix}", self.base.display()))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path(""));
        let _ = std::fs::remove_file(self.path(".rootfs"));
    }
}

/// Delete an image everywhere: its volumes on every pool (a driver may keep one alive for its
/// clones), its row and aliases, and its files in the store.
pub async fn delete_image(d: &Daemon, fp: &str) -> Result<()> {
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

/// Refresh one image from its recorded source: when the source now names another image, pull
/// it, hand it the aliases, cache state and profiles of the old one, and delete the old one.
/// Returns the new image when there was one. Images requested by fingerprint never change.
pub async fn refresh(
    d: &Arc<Daemon>,
    op: Option<&Arc<Op>>,
    img: &ImageRow,
) -> Result<Option<ImageRow>> {
    let Some(src) = img.source.clone().filter(|s| !s.server.is_empty()) else {
        return Err(ApiError::bad_request(format!(
            "Image {} has no remote source to refresh from",
            img.fingerprint
        )));
    };
    if src.alias.is_empty() || img.fingerprint.starts_with(&src.alias.to_ascii_lowercase()) {
        return Ok(None);
    }
    let mut req = PullRequest {
        server: src.server.clone(),
        protocol: src.protocol.clone(),
        certificate: src.certificate.clone(),
        secret: String::new(),
        name: src.alias.clone(),
        image_type: src.image_type.clone(),
    };
    req.validate()?;
    let plan = resolve(d, &req, true).await?;
    if plan.info().fingerprint == img.fingerprint {
        return Ok(None);
    }
    let opts = PullOptions {
        cached: img.cached,
        auto_update: img.auto_update,
        public: img.public,
        prefer_cached: false,
        fresh: true,
    };
    let mut new = fetch(d, op, &req, &opts, plan).await?;
    new.cached = img.cached;
    new.auto_update = img.auto_update;
    new.public = img.public;
    new.profiles = img.profiles.clone();
    if img.last_used_at != lxd_api::ZERO_TIME {
        new.last_used_at = img.last_used_at.clone();
    }
    d.db.image_update(&new)?;
    d.db.aliases_retarget(&img.fingerprint, &new.fingerprint)?;
    delete_image(d, &img.fingerprint).await?;
    d.events.lifecycle(
        "image-refreshed",
        &format!("/1.0/images/{}", img.fingerprint),
        serde_json::json!({"fingerprint": new.fingerprint}),
    );
    Ok(Some(new))
}
