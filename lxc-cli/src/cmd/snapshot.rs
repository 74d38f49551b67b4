//! `snapshot` (`POST .../snapshots`) and `restore` (a `PUT` of the instance with `restore`).

use anyhow::bail;
use clap::Args;
use lxd_api::InstancePut;
use lxd_api::instance::InstanceSnapshotsPost;
use reqwest::Method;

use super::{instance_path, wait};
use crate::Ctx;
use crate::client::esc;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[arg(value_name = "[<remote>:]<instance>")]
    pub instance: String,
    #[arg(value_name = "SNAPSHOT")]
    pub name: Option<String>,
    /// Whether or not to snapshot the instance's running state
    #[arg(long)]
    pub stateful: bool,
    /// If the snapshot name already exists, delete and create a new one
    #[arg(long)]
    pub reuse: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[arg(value_name = "[<remote>:]<instance>")]
    pub instance: String,
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Whether or not to restore the instance's running state from snapshot (if available)
    #[arg(long)]
    pub stateful: bool,
}

pub async fn snapshot(ctx: &Ctx, a: SnapshotArgs) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(&a.instance)?;
    if name.contains('/') {
        bail!("Snapshots are read-only and can't have their own snapshots");
    }
    let client = ctx.client(&remote)?;
    let snap = a.name.clone().unwrap_or_default();
    if a.reuse && !snap.is_empty() {
        let path = format!("{}/snapshots/{}", instance_path(&name), esc(&snap));
        match client.get::<serde_json::Value>(&path).await {
            Ok(_) => {
                let mut op = client
                    .operation::<()>(Method::DELETE, &path, None, None)
                    .await?;
                wait(&mut op).await?;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let req = InstanceSnapshotsPost {
        name: snap,
        stateful: a.stateful,
        expires_at: None,
    };
    let mut op = client
        .operation(
            Method::POST,
            &format!("{}/snapshots", instance_path(&name)),
            Some(&req),
            None,
        )
        .await?;
    wait(&mut op).await
}

pub async fn restore(ctx: &Ctx, a: RestoreArgs) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(&a.instance)?;
    let client = ctx.client(&remote)?;
    let snap = if a.snapshot.contains('/') {
        a.snapshot.clone()
    } else {
        format!("{name}/{}", a.snapshot)
    };
    let req = InstancePut {
        restore: snap,
        stateful: a.stateful,
        ..Default::default()
    };
    super::put_instance(&client, &name, &req, None).await
}
