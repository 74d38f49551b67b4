//! Instances: the domain behind `/1.0/instances`. Creation from images, config and device updates,
//! rename and delete live here; start/stop in `lifecycle`, exec in `exec`, rendering to API types
//! in `render`. Nothing here speaks HTTP; handlers in `api/` call these functions.

pub mod console;
pub mod devices;
pub mod exec;
pub mod idmap;
pub mod lifecycle;
pub mod render;
pub mod runtime;
pub mod snapshots;

use lxd_api::instance::{InstancePut, InstancesPost};
use lxd_api::{ConfigMap, DevicesMap};
use std::sync::Arc;

use crate::daemon::Daemon;
use crate::db::instances::InstanceRow;
use crate::error::{ApiError, Result};
use crate::events::now;
use crate::operations::Op;

/// LXD's instance name rule (a valid hostname label): 1-63 chars of letters, digits and dashes,
/// not starting with a digit or a dash, not ending with a dash.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(format!(
            "Invalid instance name \"{name}\": {why}"
        )))
    };
    if name.is_empty() {
        return bad("name is empty");
    }
    if name.len() > 63 {
        return bad("name is longer than 63 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return bad("only letters, digits and dashes are allowed");
    }
    let first = name.chars().next().unwrap_or('-');
    if first == '-' || first.is_ascii_digit() {
        return bad("name must not start with a digit or a dash");
    }
    if name.ends_with('-') {
        return bad("name must not end with a dash");
    }
    Ok(())
}

/// Validate a snapshot name (no `/`, not empty, not `.`/`..`).
pub fn validate_snapshot_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.len() > 255 {
        return Err(ApiError::bad_request(format!(
            "Invalid snapshot name \"{name}\""
        )));
    }
    Ok(())
}

/// Config and devices after applying the profiles in order, then the instance's own keys.
#[derive(Debug, Clone, Default)]
pub struct Expanded {
    pub config: ConfigMap,
    pub devices: DevicesMap,
}

pub fn expand(
    d: &Daemon,
    profiles: &[String],
    config: &ConfigMap,
    devices: &DevicesMap,
) -> Result<Expanded> {
    let mut out = Expanded::default();
    for p in profiles {
        let prof = d.db.profile_opt(p)?.ok_or_else(|| {
            ApiError::bad_request(format!("Requested profile \"{p}\" doesn't exist"))
        })?;
        out.config.extend(prof.config);
        out.devices.extend(prof.devices);
    }
    out.config.extend(config.clone());
    out.devices.extend(devices.clone());
    Ok(out)
}

pub fn expand_row(d: &Daemon, row: &InstanceRow) -> Result<Expanded> {
    expand(d, &row.profiles, &row.config, &row.devices)
}

/// Reject user-supplied volatile keys that only the daemon may set, as LXD does for PUT.
fn check_user_config(config: &ConfigMap) -> Result<()> {
    crate::config::validate_instance_config(config)
}

fn random_hwaddr() -> String {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

/// Fill the volatile keys LXD keeps for a new instance (and MACs for new NICs).
pub fn fill_volatile(config: &mut ConfigMap, expanded_devices: &DevicesMap) {
    config
        .entry("volatile.uuid".into())
        .or_insert_with(|| uuid::Uuid::new_v4().to_string());
    for (name, dev) in expanded_devices {
        if dev.get("type").map(String::as_str) == Some("nic") {
            let key = format!("volatile.{name}.hwaddr");
            if dev.get("hwaddr").is_none_or(String::is_empty) && !config.contains_key(&key) {
                config.insert(key, random_hwaddr());
            }
        }
    }
}

/// Resolve the image named by a create request's source: alias first, then fingerprint prefix.
pub fn resolve_image(
    d: &Daemon,
    alias: &str,
    fingerprint: &str,
) -> Result<crate::db::images::ImageRow> {
    if !alias.is_empty() {
        let a =
            d.db.alias_opt(alias)?
                .ok_or_else(|| ApiError::not_found(format!("Image alias \"{alias}\" not found")))?;
        return d.db.image_by_prefix(&a.fingerprint);
    }
    if fingerprint.is_empty() {
        return Err(ApiError::bad_request("No image fingerprint or alias given"));
    }
    match d.db.image_by_prefix(fingerprint) {
        Ok(img) => Ok(img),
        Err(e) if e.is_not_found() => {
            // The CLI may pass an alias in the fingerprint field.
            if let Some(a) = d.db.alias_opt(fingerprint)? {
                d.db.image_by_prefix(&a.fingerprint)
            } else {
                Err(ApiError::not_found("Image not found"))
            }
        }
        Err(e) => Err(e),
    }
}

/// Where a new instance's root filesystem comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Empty,
    Image(Box<crate::db::images::ImageRow>),
    /// An image on another server (`source.server`), pulled or taken from the cache first.
    Remote(Box<crate::remotes::PullRequest>),
    /// A local copy of another instance (or of one of its snapshots).
    Copy {
        instance: String,
        snapshot: Option<String>,
        with_snapshots: bool,
    },
    /// Another server's instance, over LXD's migration protocol.
    Migration(Box<crate::migration::SinkSource>),
}

/// Validate a create request and build the instance row; the volume is made by `create`.
pub fn prepare_create(d: &Daemon, req: &InstancesPost) -> Result<(InstanceRow, Source)> {
    validate_name(&req.name)?;
    if !req.kind.is_empty() && req.kind != "container" {
        return Err(ApiError::bad_request(format!(
            "Instance type \"{}\" is not supported (only containers)",
            req.kind
        )));
    }
    if d.db.instance_exists(&req.name)? {
        return Err(ApiError::conflict(format!(
            "Instance \"{}\" already exists",
            req.name
        )));
    }
    check_user_config(&req.config)?;
    devices::validate_devices(&req.devices)?;
    let profiles = req
        .profiles
        .clone()
        .unwrap_or_else(|| vec!["default".into()]);
    for (i, p) in profiles.iter().enumerate() {
        if profiles[..i].contains(p) {
            return Err(ApiError::bad_request(format!("Duplicate profile \"{p}\"")));
        }
    }
    let expanded = expand(d, &profiles, &req.config, &req.devices)?;
    crate::config::validate_instance_config(&expanded.config)?;
    let (_, pool) = devices::root_disk(&expanded.devices).ok_or_else(|| {
        ApiError::bad_request("No root device could be found (add a root disk to the instance or one of its profiles)")
    })?;
    d.pool(&pool)?;
    crate::storage::instances::check_root_size(d, &expanded)?;

    let source = match req.source.kind.as_str() {
        "image" => {
            if !req.source.server.is_empty() {
                let mut pull = crate::remotes::PullRequest {
                    server: req.source.server.clone(),
                    protocol: req.source.protocol.clone(),
                    certificate: req.source.certificate.clone(),
                    secret: req.source.secret.clone(),
                    name: if req.source.alias.is_empty() {
                        req.source.fingerprint.clone()
                    } else {
                        req.source.alias.clone()
                    },
                    image_type: req.source.image_type.clone(),
                };
                pull.validate()?;
                Source::Remote(Box::new(pull))
            } else {
                Source::Image(Box::new(resolve_image(
                    d,
                    &req.source.alias,
                    &req.source.fingerprint,
                )?))
            }
        }
        "none" | "" => Source::Empty,
        "copy" => {
            let (inst, snap) = match req.source.source.split_once('/') {
                Some((i, s)) => (i.to_string(), Some(s.to_string())),
                None => (req.source.source.clone(), None),
            };
            let src = d.db.instance_opt(&inst)?.ok_or_else(|| {
                ApiError::not_found(format!("Source instance \"{inst}\" not found"))
            })?;
            if let Some(s) = &snap {
                d.db.snapshot(&inst, s)?;
            }
            let _ = src;
            Source::Copy {
                instance: inst,
                with_snapshots: snap.is_none() && !req.source.instance_only,
                snapshot: snap,
            }
        }
        "migration" => Source::Migration(Box::new(crate::migration::SinkSource::from_request(
            &req.source,
        )?)),
        other => {
            return Err(ApiError::bad_request(format!(
                "Unknown instance source \"{other}\""
            )));
        }
    };

    let mut config = req.config.clone();
    let mut architecture = "x86_64".to_string();
    if let Source::Image(img) = &source {
        apply_image(&mut config, &mut architecture, img);
    }
    config.insert("volatile.last_state.idmap".into(), "[]".into());
    if let Source::Copy {
        instance, snapshot, ..
    } = &source
    {
        // The copied files keep the source's on-disk ownership and image; the rest of the
        // volatile keys (MACs, uuid, idmap) are regenerated, as LXD does.
        let src = d.db.instance(instance)?;
        let src_config = match snapshot {
            Some(s) => d.db.snapshot(instance, s)?.config,
            None => src.config.clone(),
        };
        config.retain(|k, _| !k.starts_with("volatile."));
        for k in ["volatile.base_image", "volatile.last_state.idmap"] {
            if let Some(v) = src_config.get(k).or_else(|| src.config.get(k)) {
                config.insert(k.to_string(), v.clone());
            }
        }
        config.insert("volatile.apply_template".into(), "copy".into());
        architecture = src.architecture.clone();
    }
    if let Source::Migration(_) = &source {
        // The source's volatile keys come along (MACs, uuid, base image, as LXD keeps them);
        // the on-disk id map is set from the migration header, the rest is recomputed at start.
        config.retain(|k, _| {
            !k.starts_with("volatile.idmap.")
                && !k.starts_with("volatile.last_state.")
                && k != "volatile.apply_template"
        });
        config.insert("volatile.last_state.idmap".into(), "[]".into());
        config.insert("volatile.apply_template".into(), "copy".into());
        if !req.architecture.is_empty() {
            architecture = req.architecture.clone();
        }
    }
    fill_volatile(&mut config, &expanded.devices);
    let at = now();
    let row = InstanceRow {
        id: 0,
        name: req.name.clone(),
        architecture,
        kind: "container".into(),
        ephemeral: req.ephemeral,
        stateful: req.stateful,
        description: req.description.clone(),
        created_at: at,
        last_used_at: lxd_api::ZERO_TIME.into(),
        config,
        devices: req.devices.clone(),
        profiles,
        pool,
    };
    Ok((row, source))
}

/// What an instance takes from its image: `image.*` keys, the base image, the create
/// template trigger and the architecture.
pub fn apply_image(
    config: &mut ConfigMap,
    architecture: &mut String,
    img: &crate::db::images::ImageRow,
) {
    for (k, v) in &img.properties {
        config
            .entry(format!("image.{k}"))
            .or_insert_with(|| v.clone());
    }
    config.insert("volatile.base_image".into(), img.fingerprint.clone());
    config.insert("volatile.apply_template".into(), "create".into());
    *architecture = img.architecture.clone();
}

/// Create the instance: row, storage volume (image unpacked once per pool), convenience symlink.
/// Undoes what it did on failure. A remote image is pulled (or found cached) first.
pub async fn create(d: &Arc<Daemon>, op: &Arc<Op>, row: InstanceRow, source: Source) -> Result<()> {
    let (row, source) = match source {
        Source::Remote(req) => {
            let mut row = row;
            let img = crate::remotes::pull_for_instance(d, op, &req).await?;
            apply_image(&mut row.config, &mut row.architecture, &img);
            (row, Source::Image(Box::new(img)))
        }
        s => (row, s),
    };
    let lock = d.instance_lock(&row.name);
    let _g = lock.lock().await;
    let id = d.db.instance_create(&row)?;
    let res = create_volume(d, op, &row, &source).await;
    if let Err(e) = res {
        let _ = d.db.instance_delete(&row.name);
        return Err(e);
    }
    if let Source::Image(img) = &source {
        let _ = d.db.image_touch(&img.fingerprint, &now());
    }
    if let Source::Copy {
        instance,
        with_snapshots: true,
        ..
    } = &source
    {
        for mut s in d.db.snapshots(instance)? {
            s.instance_id = id;
            s.config.retain(|k, _| {
                !k.starts_with("volatile.")
                    || k == "volatile.base_image"
                    || k == "volatile.last_state.idmap"
            });
            d.db.snapshot_create(&s)?;
        }
    }
    d.events.lifecycle(
        "instance-created",
        &format!("/1.0/instances/{}", row.name),
        serde_json::json!({"type": "container", "storage-pool": row.pool}),
    );
    Ok(())
}

async fn create_volume(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    row: &InstanceRow,
    source: &Source,
) -> Result<()> {
    let pool = d.pool(&row.pool)?;
    let name = row.name.clone();
    let path = match source {
        Source::Copy {
            instance,
            snapshot,
            with_snapshots,
        } => {
            let (src, snap, with) = (instance.clone(), snapshot.clone(), *with_snapshots);
            let src_row = d.db.instance(&src)?;
            if src_row.pool != row.pool {
                // Another pool: file by file (`lxc copy C1 C2 -s POOL`).
                crate::storage::instances::copy_across_pools(
                    d, &src_row, snap, &row.pool, &name, with,
                )
                .await?
            } else {
                // A running source on a driver without atomic copies is frozen meanwhile.
                let freeze = snap.is_none()
                    && pool.info().running_copy_freeze
                    && matches!(runtime::probe(d, &src), runtime::RunState::Running { .. });
                if freeze {
                    runtime::freeze(d, &src).await?;
                }
                let pool2 = pool.clone();
                let src2 = src.clone();
                let res = tokio::task::spawn_blocking(move || match snap {
                    Some(s) => pool2.create_instance_from_snapshot(&src2, &s, &name),
                    None => pool2.copy_instance(&src2, &name, with),
                })
                .await;
                if freeze {
                    let _ = runtime::thaw(d, &src).await;
                }
                res??
            }
        }
        Source::Image(img) => {
            let fp = img.fingerprint.clone();
            let images_dir = d.images_dir();
            let op2 = op.clone();
            let pool2 = pool.clone();
            let (path, on_disk) = tokio::task::spawn_blocking(
                move || -> Result<(std::path::PathBuf, Option<String>)> {
                    if !pool2.image_volume_exists(&fp)? {
                        op2.progress("create_instance_from_image_unpack", "Unpack: 0%", Some(0));
                        let opts = crate::images::UnpackOptions {
                            xattrs: pool2.info().xattrs,
                            ..Default::default()
                        };
                        // Without idmapped mounts every unprivileged start needs the files
                        // shifted on disk: shift the image volume once for the default map,
                        // so its clones start shifted.
                        let preshift = !pool2.info().idmapped_mounts;
                        let mut filler = |dir: &std::path::Path| -> std::result::Result<
                            (),
                            Box<dyn std::error::Error + Send + Sync>,
                        > {
                            crate::images::unpack_image_with(&images_dir, &fp, dir, &opts)
                                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                                    crate::storage::error_chain(&e).into()
                                })?;
                            if preshift {
                                idmap::shift_image_volume(dir)?;
                            }
                            Ok(())
                        };
                        pool2.create_image_volume(&fp, &mut filler)?;
                        op2.progress(
                            "create_instance_from_image_unpack",
                            "Unpack: 100%",
                            Some(100),
                        );
                    }
                    let path = pool2.create_instance_from_image(&name, &fp)?;
                    let on_disk = idmap::take_volume_idmap(&path)
                        .map_err(|e| crate::error::io_err("read the id map of", &path, e))?;
                    Ok((path, on_disk))
                },
            )
            .await??;
            if let Some(v) = on_disk {
                d.db.instance_set_config_key(&row.name, "volatile.last_state.idmap", Some(&v))?;
            }
            path
        }
        Source::Remote(_) => {
            return Err(ApiError::internal("Remote image was not pulled first"));
        }
        Source::Migration(_) => {
            return Err(ApiError::internal(
                "Migrations are received by crate::migration",
            ));
        }
        Source::Empty => {
            let pool2 = pool.clone();
            tokio::task::spawn_blocking(move || pool2.create_instance_empty(&name)).await??
        }
    };
    let expanded = expand_row(d, row)?;
    if let Some(size) = crate::storage::instances::root_size(&expanded.devices)
        && let Err(e) =
            crate::storage::instances::apply_root_quota(d, &row.pool, &row.name, Some(size)).await
    {
        let (pool2, name) = (pool.clone(), row.name.clone());
        let _ = tokio::task::spawn_blocking(move || pool2.delete_instance(&name)).await;
        return Err(e);
    }
    let link = d.dir.join("containers").join(&row.name);
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(&path, &link) {
        let pool2 = pool.clone();
        let name = row.name.clone();
        let _ = tokio::task::spawn_blocking(move || pool2.delete_instance(&name)).await;
        return Err(crate::error::io_err("create symlink", &link, e));
    }
    Ok(())
}

/// Delete an instance: refuse a running one unless `force` (then kill it), remove its volume,
/// snapshots, runtime and log directories, and its row.
pub async fn delete(d: &Arc<Daemon>, name: &str, force: bool) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let row = d.db.instance(name)?;
    if crate::config::is_true(&row.config, "security.protection.delete") {
        return Err(ApiError::forbidden(
            "Instance is protected from being deleted (security.protection.delete)",
        ));
    }
    if runtime::probe(d, name).is_active() {
        if !force {
            return Err(ApiError::bad_request(
                "Instance is running, stop it first or pass --force",
            ));
        }
        lifecycle::stop_locked(d, &row, true, None).await?;
    }
    let pool = d.pool(&row.pool)?;
    let n = name.to_string();
    tokio::task::spawn_blocking(move || pool.delete_instance(&n)).await??;
    let _ = std::fs::remove_file(d.dir.join("containers").join(name));
    let _ = std::fs::remove_dir_all(d.run_dir(name));
    let _ = std::fs::remove_dir_all(d.log_dir(name));
    d.db.instance_delete(name)?;
    let _ = crate::network::sync_all_hosts(d).await;
    d.events.lifecycle(
        "instance-deleted",
        &format!("/1.0/instances/{name}"),
        serde_json::json!({}),
    );
    Ok(())
}

/// Rename a stopped instance (volume, snapshots, symlink, logs, row).
pub async fn rename(d: &Arc<Daemon>, old: &str, new: &str) -> Result<()> {
    validate_name(new)?;
    let lock = d.instance_lock(old);
    let _g = lock.lock().await;
    let row = d.db.instance(old)?;
    if runtime::probe(d, old).is_active() {
        return Err(ApiError::bad_request(
            "Renaming of running instance not allowed",
        ));
    }
    if d.db.instance_exists(new)? {
        return Err(ApiError::conflict(format!("Name \"{new}\" already in use")));
    }
    let pool = d.pool(&row.pool)?;
    let (o, n) = (old.to_string(), new.to_string());
    let pool2 = pool.clone();
    let path = tokio::task::spawn_blocking(move || -> Result<std::path::PathBuf> {
        pool2.rename_instance(&o, &n)?;
        Ok(pool2.instance_path(&n))
    })
    .await??;
    if let Err(e) = d.db.instance_rename(old, new) {
        let (o, n) = (old.to_string(), new.to_string());
        let _ = tokio::task::spawn_blocking(move || pool.rename_instance(&n, &o)).await;
        return Err(e);
    }
    let _ = std::fs::remove_file(d.dir.join("containers").join(old));
    let _ = std::os::unix::fs::symlink(&path, d.dir.join("containers").join(new));
    let _ = std::fs::remove_dir_all(d.run_dir(old));
    let _ = std::fs::rename(d.log_dir(old), d.log_dir(new));
    let _ = crate::network::sync_all_hosts(d).await;
    d.events.lifecycle(
        "instance-renamed",
        &format!("/1.0/instances/{new}"),
        serde_json::json!({"old_name": old}),
    );
    Ok(())
}

/// `PUT /1.0/instances/NAME`: replace config, devices, profiles, description, ephemeral.
/// Volatile keys the user did not send are kept (LXD keeps them too).
pub async fn update(d: &Arc<Daemon>, name: &str, put: InstancePut) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let mut row = d.db.instance(name)?;
    let mut config: ConfigMap = put
        .config
        .into_iter()
        .filter(|(k, _)| !k.starts_with("volatile."))
        .collect();
    check_user_config(&config)?;
    devices::validate_devices(&put.devices)?;
    for (k, v) in &row.config {
        if k.starts_with("volatile.") {
            config.insert(k.clone(), v.clone());
        }
    }
    let profiles = put.profiles;
    let expanded = expand(d, &profiles, &config, &put.devices)?;
    crate::config::validate_instance_config(&expanded.config)?;
    let (_, pool) = devices::root_disk(&expanded.devices)
        .ok_or_else(|| ApiError::bad_request("No root device could be found"))?;
    if pool != row.pool {
        return Err(ApiError::bad_request(
            "Changing the root disk's pool is not supported; use lxc move -s",
        ));
    }
    crate::network::nic::validate(d, &expanded.devices, name).await?;
    // Disk sources must exist now, not only at the next start.
    runtime::bind_mounts(
        d,
        &expanded,
        crate::config::is_true(&expanded.config, "security.privileged"),
    )?;
    fill_volatile(&mut config, &expanded.devices);
    crate::storage::instances::update_root_quota(
        d,
        &row.pool,
        name,
        &expand_row(d, &row)?,
        &expanded,
    )
    .await?;
    let old = row.clone();
    row.config = config;
    row.devices = put.devices;
    row.profiles = profiles;
    row.description = put.description;
    row.ephemeral = put.ephemeral;
    if !put.architecture.is_empty() {
        row.architecture = put.architecture;
    }
    d.db.instance_update(&row)?;
    if let Err(e) = lifecycle::apply_live(d, &old, &row).await {
        let _ = d.db.instance_update(&old);
        return Err(e);
    }
    d.events.lifecycle(
        "instance-updated",
        &format!("/1.0/instances/{name}"),
        serde_json::json!({}),
    );
    Ok(())
}

/// A profile changed: re-apply live settings to running instances that use it.
pub async fn profile_changed(d: &Arc<Daemon>, profile: &str) -> Result<()> {
    for name in d.db.instances_using_profile(profile)? {
        let row = d.db.instance(&name)?;
        let expanded = expand_row(d, &row)?;
        crate::config::validate_instance_config(&expanded.config)?;
        if devices::root_disk(&expanded.devices).is_none() {
            return Err(ApiError::bad_request(format!(
                "Instance \"{name}\" would be left without a root disk device"
            )));
        }
        if runtime::probe(d, &name).is_active() {
            lifecycle::apply_live(d, &row, &row).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_follow_lxd() {
        assert!(validate_name("C01").is_ok());
        assert!(validate_name("web-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("1abc").is_err());
        assert!(validate_name("-abc").is_err());
        assert!(validate_name("abc-").is_err());
        assert!(validate_name("a_b").is_err());
        assert!(validate_name("a.b").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
        assert!(validate_name(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn hwaddr_has_lxd_prefix() {
        let mut c = ConfigMap::new();
        let mut devs = DevicesMap::new();
        let mut nic = ConfigMap::new();
        nic.insert("type".into(), "nic".into());
        devs.insert("eth0".into(), nic);
        fill_volatile(&mut c, &devs);
        let mac = &c["volatile.eth0.hwaddr"];
        assert!(mac.starts_with("00:16:3e:"));
        assert!(devices::valid_mac(mac));
        assert!(c.contains_key("volatile.uuid"));
    }
}
