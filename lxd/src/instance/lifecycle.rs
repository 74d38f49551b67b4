//! Start, stop, restart, freeze and unfreeze; what happens when an instance stops on its own
//! (poweroff inside, crash); re-attaching to running instances when the daemon starts; autostart
//! and clean shutdown of all instances. Callers hold the instance lock for the `_locked` variants.

use lxd_runtime::spec::RootfsIdmap;
use std::sync::Arc;
use std::time::Duration;

use super::runtime::{self as rt, RunState};
use super::{expand_row, idmap};
use crate::config::is_true;
use crate::daemon::Daemon;
use crate::db::instances::InstanceRow;
use crate::error::{ApiError, Result};
use crate::events::now;

/// `lxc stop` without `--timeout` waits this long for a clean shutdown.
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(600);

fn source(name: &str) -> String {
    format!("/1.0/instances/{name}")
}

pub async fn start(d: &Arc<Daemon>, name: &str) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let row = d.db.instance(name)?;
    start_locked(d, &row).await
}

/// Decide how the rootfs ids are presented and bring the on-disk ownership in line: idmapped
/// mount over an unshifted tree where the filesystem allows it, else shift the files on disk.
/// Returns the map for the user namespace (None = privileged), the mode, and the new
/// `volatile.last_state.idmap` value.
async fn prepare_idmap(
    row: &InstanceRow,
    rootfs: &std::path::Path,
    expanded: &super::Expanded,
    pool_idmapped: bool,
) -> Result<(Option<lxd_runtime::spec::IdMap>, RootfsIdmap, String)> {
    let privileged = is_true(&expanded.config, "security.privileged");
    let on_disk = row
        .config
        .get("volatile.last_state.idmap")
        .and_then(|v| idmap::from_volatile(v));
    let target = if privileged {
        None
    } else {
        let base = lxd_runtime::idmap::host_idmap();
        let raw = match expanded.config.get("raw.idmap") {
            Some(v) if !v.trim().is_empty() => idmap::parse_raw_idmap(v)?,
            _ => vec![],
        };
        Some(idmap::apply_raw_idmap(&base, &raw)?)
    };
    let rootfs = rootfs.to_path_buf();
    let use_idmapped = target.is_some() && pool_idmapped && {
        let r = rootfs.clone();
        tokio::task::spawn_blocking(move || lxd_runtime::idmap::idmapped_mounts_supported(&r))
            .await
            .unwrap_or(false)
    };
    // What the files on disk must look like for this start.
    let wanted_on_disk = if use_idmapped || target.is_none() {
        None
    } else {
        target.clone()
    };
    if on_disk != wanted_on_disk {
        let (from, to) = (on_disk.clone(), wanted_on_disk.clone());
        let r = rootfs.clone();
        tokio::task::spawn_blocking(
            move || -> std::result::Result<(), lxd_runtime::error::Error> {
                if let Some(m) = from {
                    lxd_runtime::idmap::shift_tree(&r, &m, true)?;
                }
                if let Some(m) = to {
                    lxd_runtime::idmap::shift_tree(&r, &m, false)?;
                }
                Ok(())
            },
        )
        .await?
        .map_err(|e| ApiError::internal(format!("Failed to shift the rootfs ownership: {e}")))?;
    }
    let last_state = wanted_on_disk
        .as_ref()
        .map(idmap::to_volatile)
        .unwrap_or_else(|| "[]".into());
    let mode = if use_idmapped {
        RootfsIdmap::IdmappedMount
    } else {
        RootfsIdmap::None
    };
    Ok((target, mode, last_state))
}

/// The volume's top directory belongs to root with mode 0100, as LXD keeps it for a stopped
/// instance; a volume received from a running LXD container (or restored from a snapshot taken
/// while it ran) is owned by that container's root user, which would block our mounts.
fn own_volume_dir(volume: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = std::fs::metadata(volume).map_err(|e| crate::error::io_err("stat", volume, e))?;
    if md.uid() != 0 || md.gid() != 0 {
        std::os::unix::fs::chown(volume, Some(0), Some(0))
            .map_err(|e| crate::error::io_err("chown", volume, e))?;
        std::fs::set_permissions(volume, std::fs::Permissions::from_mode(0o100))
            .map_err(|e| crate::error::io_err("chmod", volume, e))?;
    }
    Ok(())
}

pub async fn start_locked(d: &Arc<Daemon>, row: &InstanceRow) -> Result<()> {
    let name = row.name.clone();
    match rt::probe(d, &name) {
        RunState::Running { .. } => {
            return Err(ApiError::bad_request("The instance is already running"));
        }
        RunState::Frozen { .. } => {
            return Err(ApiError::bad_request(
                "The instance is frozen, use unfreeze (lxc start) to resume it",
            ));
        }
        RunState::Stopped => {}
    }
    let expanded = expand_row(d, row)?;
    crate::storage::instances::startup_snapshot(d, row, &expanded).await?;
    crate::storage::volumes::prepare_disks(d, &expanded).await?;
    let pool = d.pool(&row.pool)?;
    let pool_idmapped = pool.info().idmapped_mounts;
    let n = name.clone();
    let p2 = pool.clone();
    let volume = tokio::task::spawn_blocking(move || p2.mount_instance(&n)).await??;
    own_volume_dir(&volume)?;
    let rootfs = volume.join("rootfs");

    let (map, mode, last_state) = prepare_idmap(row, &rootfs, &expanded, pool_idmapped).await?;

    // Templates: the pending create/copy trigger once, then start every time.
    let mut row = row.clone();
    let pending = row.config.get("volatile.apply_template").cloned();
    if volume.join("metadata.yaml").exists() {
        let name2 = name.clone();
        let arch = row.architecture.clone();
        let ephemeral = row.ephemeral;
        let config = expanded.config.clone();
        let privileged = map.is_none();
        let root_owner = map
            .as_ref()
            .filter(|_| mode == RootfsIdmap::None)
            .map(|m| {
                (
                    m.uid.first().map(|r| r.host_id).unwrap_or(0),
                    m.gid.first().map(|r| r.host_id).unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        let volume = volume.clone();
        tokio::task::spawn_blocking(move || -> crate::images::Result<()> {
            use crate::images::{TemplateContext, Trigger, apply_templates};
            let ctx = TemplateContext {
                name: &name2,
                architecture: &arch,
                privileged,
                ephemeral,
                config: &config,
                root_owner,
            };
            match pending.as_deref() {
                Some("create") => {
                    apply_templates(&volume, Trigger::Create, &ctx)?;
                }
                Some("copy") => {
                    apply_templates(&volume, Trigger::Copy, &ctx)?;
                }
                _ => {}
            }
            apply_templates(&volume, Trigger::Start, &ctx)?;
            Ok(())
        })
        .await?
        .map_err(|e| ApiError::internal(format!("Failed to apply templates: {e}")))?;
    }

    row.config.remove("volatile.apply_template");
    row.config
        .insert("volatile.last_state.idmap".into(), last_state);
    let next = map
        .as_ref()
        .map(idmap::to_volatile)
        .unwrap_or_else(|| "[]".into());
    row.config
        .insert("volatile.idmap.next".into(), next.clone());
    row.config.insert("volatile.idmap.current".into(), next);
    row.config.insert(
        "volatile.idmap.base".into(),
        map.as_ref()
            .and_then(|m| m.uid.first())
            .map(|r| r.host_id.to_string())
            .unwrap_or_else(|| "0".into()),
    );
    // Network devices: proxies bind their host side first (a busy port fails the start before
    // anything runs), then the NICs' links are made for the runtime to move in.
    let proxies = crate::network::proxy::prepare_all(d, &name, &expanded)?;
    let nics = crate::network::nic::start(d, &mut row, &expanded).await?;
    if let Err(e) = d.db.instance_update(&row) {
        crate::network::nic::failed(&nics).await;
        return Err(e);
    }

    let mut spec = match rt::build_spec(d, &name, &rootfs, &expanded, map, mode) {
        Ok(s) => s,
        Err(e) => {
            crate::network::nic::failed(&nics).await;
            return Err(e);
        }
    };
    spec.nics = nics.runtime.clone();
    spec.reboot_via_daemon = !spec.nics.is_empty();
    if let Err(e) = rt::forkstart(d, &name, &spec).await {
        crate::network::nic::failed(&nics).await;
        return Err(e);
    }
    if let Some(pid) = rt::probe(d, &name).init_pid() {
        crate::network::nic::post_start(pid, &nics).await;
        if let Err(e) = crate::network::proxy::run(d, &name, pid, proxies).await {
            tracing::error!(instance = %name, "failed to start proxy devices: {e}");
        }
    }

    row.config
        .insert("volatile.last_state.power".into(), "RUNNING".into());
    row.last_used_at = now();
    d.db.instance_update(&row)?;
    watch(d.clone(), name.clone());
    d.events
        .lifecycle("instance-started", &source(&name), serde_json::json!({}));
    Ok(())
}

/// Stop an instance. `force` kills at once; otherwise ask init to power off and wait up to
/// `timeout` (None: LXD's default).
pub async fn stop(
    d: &Arc<Daemon>,
    name: &str,
    force: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    let lock = d.instance_lock(name);
    let g = lock.lock().await;
    let row = d.db.instance(name)?;
    stop_locked(d, &row, force, timeout).await?;
    drop(g);
    if row.ephemeral {
        super::delete(d, name, true).await?;
    }
    Ok(())
}

pub async fn stop_locked(
    d: &Arc<Daemon>,
    row: &InstanceRow,
    force: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    let name = &row.name;
    let state = rt::probe(d, name);
    match state {
        RunState::Stopped => {
            return Err(ApiError::bad_request("The instance is already stopped"));
        }
        RunState::Frozen { .. } if !force => {
            return Err(ApiError::bad_request(
                "The instance is frozen; unfreeze it first or use --force",
            ));
        }
        _ => {}
    }
    if force {
        rt::kill(d, name).await?;
        if !rt::wait_stopped(d, name, Duration::from_secs(30)).await {
            return Err(ApiError::internal("Failed to kill the instance"));
        }
    } else {
        rt::request_shutdown(d, name).await?;
        let t = timeout.unwrap_or(DEFAULT_STOP_TIMEOUT);
        if !rt::wait_stopped(d, name, t).await {
            return Err(ApiError::internal(format!(
                "Failed to stop instance: it did not shut down within {}s",
                t.as_secs()
            )));
        }
    }
    after_stop(d, row, true).await;
    Ok(())
}

/// Bookkeeping once an instance is down: record the power state, unmount the volume, tell
/// listeners. Idempotent.
async fn after_stop(d: &Arc<Daemon>, row: &InstanceRow, record: bool) {
    let name = row.name.clone();
    crate::network::proxy::stop(d, &name, None).await;
    crate::network::nic::stop(d, &name).await;
    if record
        && let Ok(mut cur) = d.db.instance(&name)
        && cur
            .config
            .get("volatile.last_state.power")
            .map(String::as_str)
            != Some("STOPPED")
    {
        cur.config
            .insert("volatile.last_state.power".into(), "STOPPED".into());
        let _ = d.db.instance_update(&cur);
        if let Ok(pool) = d.pool(&row.pool) {
            let n = name.clone();
            let _ = tokio::task::spawn_blocking(move || pool.unmount_instance(&n)).await;
        }
        d.events
            .lifecycle("instance-stopped", &source(&name), serde_json::json!({}));
    }
}

pub async fn restart(
    d: &Arc<Daemon>,
    name: &str,
    force: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let row = d.db.instance(name)?;
    if row.ephemeral {
        return Err(ApiError::bad_request(
            "Ephemeral instances cannot be restarted (they are deleted when stopped)",
        ));
    }
    stop_locked(d, &row, force, timeout).await?;
    let row = d.db.instance(name)?;
    start_locked(d, &row).await?;
    d.events
        .lifecycle("instance-restarted", &source(name), serde_json::json!({}));
    Ok(())
}

pub async fn freeze(d: &Arc<Daemon>, name: &str) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    d.db.instance(name)?;
    match rt::probe(d, name) {
        RunState::Running { .. } => {}
        RunState::Frozen { .. } => {
            return Err(ApiError::bad_request("The instance is already frozen"));
        }
        RunState::Stopped => return Err(ApiError::bad_request("The instance isn't running")),
    }
    rt::freeze(d, name).await?;
    d.events
        .lifecycle("instance-paused", &source(name), serde_json::json!({}));
    Ok(())
}

pub async fn unfreeze(d: &Arc<Daemon>, name: &str) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    d.db.instance(name)?;
    match rt::probe(d, name) {
        RunState::Frozen { .. } => {}
        _ => return Err(ApiError::bad_request("The instance is not frozen")),
    }
    rt::thaw(d, name).await?;
    d.events
        .lifecycle("instance-resumed", &source(name), serde_json::json!({}));
    Ok(())
}

/// Follow a running instance until its monitor exits, then do the post-stop bookkeeping (also
/// when it stopped from inside: poweroff, crash). Ephemeral instances are deleted.
pub fn watch(d: Arc<Daemon>, name: String) {
    tokio::spawn(async move {
        loop {
            if rt::wait_stopped(&d, &name, Duration::from_secs(3600)).await {
                break;
            }
            if d.stop.is_cancelled() {
                return;
            }
        }
        if d.stop.is_cancelled() && d.stop_mode() != Some(crate::daemon::StopMode::Shutdown) {
            return;
        }
        let lock = d.instance_lock(&name);
        let g = lock.lock().await;
        let Ok(row) = d.db.instance(&name) else {
            return;
        };
        if rt::probe(&d, &name).is_active() {
            // Restarted in the meantime (start raced us); its new watcher takes over.
            return;
        }
        let shutting_down = d.stop_mode() == Some(crate::daemon::StopMode::Shutdown);
        let rebooted = matches!(
            lxd_runtime::state::probe(&d.run_dir(&name)),
            lxd_runtime::state::Probe::Stopped { reason: Some(r) } if r == "reboot"
        );
        if rebooted && !shutting_down && !row.ephemeral {
            // A reboot from inside that the monitor left to us (host-side NICs): start again.
            after_stop(&d, &row, false).await;
            if let Err(e) = start_locked(&d, &row).await {
                tracing::error!(instance = %name, "restart after reboot failed: {e}");
                after_stop(&d, &row, true).await;
            } else {
                d.events
                    .lifecycle("instance-restarted", &source(&name), serde_json::json!({}));
            }
            return;
        }
        after_stop(&d, &row, !shutting_down).await;
        drop(g);
        if row.ephemeral && !shutting_down {
            let _ = super::delete(&d, &name, true).await;
        }
    });
}

/// At daemon start: follow instances still running from before (the daemon may have been
/// restarted or upgraded), and settle the ones that stopped while we were away.
pub async fn reattach(d: &Arc<Daemon>) -> Result<()> {
    for row in d.db.instances()? {
        let power = row
            .config
            .get("volatile.last_state.power")
            .cloned()
            .unwrap_or_default();
        match lxd_runtime::state::probe(&d.run_dir(&row.name)) {
            lxd_runtime::state::Probe::Stopped { reason } => {
                // It stopped while we were away. A stop from inside (poweroff, halt) or a kill is
                // recorded as such; no reason means a host reboot or a lost monitor, so the
                // recorded RUNNING stays and autostart brings it back, as LXD does.
                let clean = reason
                    .as_deref()
                    .is_some_and(|r| r != "reboot" && !r.starts_with("reboot failed"));
                if power == "RUNNING" && row.ephemeral {
                    let _ = super::delete(d, &row.name, true).await;
                    continue;
                }
                if power == "RUNNING" && clean {
                    crate::network::nic::stop(d, &row.name).await;
                    let _ = d.db.instance_set_config_key(
                        &row.name,
                        "volatile.last_state.power",
                        Some("STOPPED"),
                    );
                }
            }
            _ => {
                // A crash between starting the container and recording it leaves the database
                // behind: the runtime is the truth.
                if power != "RUNNING" {
                    let _ = d.db.instance_set_config_key(
                        &row.name,
                        "volatile.last_state.power",
                        Some("RUNNING"),
                    );
                }
                tracing::info!(instance = %row.name, "re-attached to running instance");
                crate::network::proxy::reattach(d, &row.name).await;
                watch(d.clone(), row.name.clone());
            }
        }
    }
    Ok(())
}

/// Apply config changes to a running instance where LXD applies them live (limits).
pub async fn apply_live(d: &Arc<Daemon>, old: &InstanceRow, new: &InstanceRow) -> Result<()> {
    if !rt::probe(d, &new.name).is_active() {
        return Ok(());
    }
    let old_expanded = expand_row(d, old)?;
    let expanded = expand_row(d, new)?;
    let limits = rt::limits(&expanded.config)?;
    rt::apply_limits(d, &new.name, limits).await?;
    if let Some(pid) = rt::probe(d, &new.name).init_pid() {
        crate::network::nic::apply_live(d, &old_expanded, &expanded, &new.name, pid).await?;
        crate::network::proxy::apply_live(d, &old_expanded, &expanded, &new.name, pid).await?;
        apply_disks_live(d, &old_expanded, &expanded, &new.name, pid).await?;
    }
    Ok(())
}

/// Hot-plug disk devices: unmount the ones removed or changed, mount the ones added or changed,
/// and record the new set in spec.json so a reboot from inside keeps them.
async fn apply_disks_live(
    d: &Arc<Daemon>,
    old: &super::Expanded,
    new: &super::Expanded,
    name: &str,
    init_pid: i32,
) -> Result<()> {
    let privileged = is_true(&new.config, "security.privileged");
    crate::storage::volumes::prepare_disks(d, new).await?;
    let before = rt::bind_mounts(d, old, privileged).unwrap_or_default();
    let after = rt::bind_mounts(d, new, privileged)?;
    for m in before.iter().filter(|m| !after.contains(m)) {
        let req = lxd_runtime::hotplug::MountRequest {
            init_pid,
            mount: None,
            unmount: Some(m.target.clone()),
        };
        rt::forkmount(d, &req).await?;
    }
    for m in after.iter().filter(|m| !before.contains(m)) {
        let req = lxd_runtime::hotplug::MountRequest {
            init_pid,
            mount: Some(m.clone()),
            unmount: None,
        };
        rt::forkmount(d, &req).await?;
    }
    if before != after {
        rt::update_spec_mounts(d, name, after)?;
    }
    Ok(())
}
