//! The two image tasks of LXD 5.0: auto-update (every `images.auto_update_interval` hours, 0
//! disables) refreshes images with `auto_update` and a recorded source alias; cache expiry
//! (daily) deletes cached images unused for `images.remote_cache_expiry` days (0 disables).
//! Both run once when the daemon starts and again at once when their key changes.

use std::sync::Arc;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::db::images::ImageRow;

pub fn spawn(d: &Arc<Daemon>) {
    tokio::spawn(run_every(d.clone(), Task::AutoUpdate));
    tokio::spawn(run_every(d.clone(), Task::Expiry));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    AutoUpdate,
    Expiry,
}

async fn run_every(d: Arc<Daemon>, task: Task) {
    let mut changes = d.remotes.schedule_changes();
    loop {
        let period = match task {
            Task::AutoUpdate => {
                let h = super::config_int(&d, "images.auto_update_interval");
                (h > 0).then(|| Duration::from_secs(h as u64 * 3600))
            }
            Task::Expiry => Some(Duration::from_secs(24 * 3600)),
        };
        if period.is_some() {
            let res = match task {
                Task::AutoUpdate => auto_update(&d).await,
                Task::Expiry => prune_expired(&d).await,
            };
            if let Err(e) = res {
                tracing::warn!(?task, "image task failed: {e}");
            }
        }
        let wait = async {
            match period {
                Some(p) => tokio::time::sleep(p).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait => {}
            r = changes.changed() => if r.is_err() { return },
            _ = d.stop.cancelled() => return,
        }
    }
}

/// Refresh every image that asks for it; one failure does not stop the others.
pub async fn auto_update(d: &Arc<Daemon>) -> crate::error::Result<()> {
    let images: Vec<ImageRow> =
        d.db.images()?
            .into_iter()
            .filter(|i| i.auto_update && i.source.as_ref().is_some_and(|s| !s.alias.is_empty()))
            .collect();
    for img in images {
        let desc = format!(
            "Updating image {}",
            &img.fingerprint[..12.min(img.fingerprint.len())]
        );
        let d2 = d.clone();
        let op = d.ops.start_task(&desc, Default::default(), false, move |op| async move {
            match super::refresh(&d2, Some(&op), &img).await {
                Ok(Some(new)) => {
                    tracing::info!(old = %img.fingerprint, new = %new.fingerprint, "image refreshed");
                    Ok(Some(serde_json::json!({"refreshed": true})))
                }
                Ok(None) => Ok(Some(serde_json::json!({"refreshed": false}))),
                Err(e) => {
                    tracing::warn!(image = %img.fingerprint, "auto-update failed: {e}");
                    Err(e)
                }
            }
        });
        op.wait(None).await;
    }
    Ok(())
}

/// Whether a cached image has gone unused for `days` at time `now`.
pub fn expired(img: &ImageRow, days: i64, now: jiff::Timestamp) -> bool {
    if !img.cached || days <= 0 {
        return false;
    }
    let last = if img.last_used_at.is_empty() || img.last_used_at == lxd_api::ZERO_TIME {
        &img.uploaded_at
    } else {
        &img.last_used_at
    };
    let Ok(t) = last.parse::<jiff::Timestamp>() else {
        return false;
    };
    now.as_second() - t.as_second() > days * 86400
}

pub async fn prune_expired(d: &Arc<Daemon>) -> crate::error::Result<()> {
    let days = super::config_int(d, "images.remote_cache_expiry");
    let now = jiff::Timestamp::now();
    for img in d.db.images()? {
        if expired(&img, days, now) {
            tracing::info!(image = %img.fingerprint, "removing expired cached image");
            if let Err(e) = super::delete_image(d, &img.fingerprint).await {
                tracing::warn!(image = %img.fingerprint, "expiry failed: {e}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unused_cached_images_expire() {
        let now: jiff::Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        let mut img = ImageRow {
            cached: true,
            uploaded_at: "2026-11-01T00:00:00Z".into(),
            last_used_at: "2026-11-20T00:00:00Z".into(),
            ..Default::default()
        };
        assert!(!expired(&img, 10, now));
        assert!(expired(&img, 5, now));
        assert!(!expired(&img, 0, now));
        img.last_used_at = lxd_api::ZERO_TIME.into();
        assert!(expired(&img, 10, now));
        img.cached = false;
        assert!(!expired(&img, 1, now));
    }
}
