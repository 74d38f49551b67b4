//! `delete`: instances (refusing running ones without `--force`, as LXD's client does) and
//! snapshots (`NAME/SNAP`).

use anyhow::bail;
use clap::Args;
use lxd_api::{InstanceStatePut, StatusCode};
use reqwest::Method;
use std::io::{BufRead, Write};

use super::{instance_path, wait};
use crate::Ctx;
use crate::client::esc;
use crate::parse::split_snapshot;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(value_name = "[<remote>:]<instance>[/<snapshot>]", required = true)]
    pub names: Vec<String>,
    /// Force the removal of running instances
    #[arg(short, long)]
    pub force: bool,
    /// Require user confirmation
    #[arg(short, long)]
    pub interactive: bool,
}

pub async fn run(ctx: &Ctx, a: DeleteArgs) -> anyhow::Result<()> {
    for raw in &a.names {
        let (remote, name) = ctx.parse_remote(raw)?;
        let client = ctx.client(&remote)?;
        if a.interactive {
            print!("Remove {name} (yes/no): ");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let answer = line.trim().to_lowercase();
            if answer != "y" && answer != "yes" {
                bail!("User aborted delete operation");
            }
        }
        let (inst, snap) = split_snapshot(&name);
        if let Some(snap) = snap {
            let path = format!("{}/snapshots/{}", instance_path(inst), esc(snap));
            if let Err(e) = client.get::<serde_json::Value>(&path).await {
                bail!("Failed checking instance snapshot exists \"{remote}:{name}\": {e}");
            }
            let mut op = client
                .operation::<()>(
                    Method::DELETE,
                    &format!("{}/snapshots/{}", instance_path(inst), esc(snap)),
                    None,
                    None,
                )
                .await?;
            wait(&mut op).await?;
            continue;
        }
        let (info, _) = super::get_instance(&client, inst).await?;
        let code = StatusCode::from(info.status_code);
        if info.status_code != 0 && code != StatusCode::Stopped {
            if !a.force {
                bail!("The instance is currently running, stop it first or pass --force");
            }
            let req = InstanceStatePut {
                action: "stop".into(),
                timeout: -1,
                force: true,
                stateful: false,
            };
            let mut op = client
                .operation(
                    Method::PUT,
                    &format!("{}/state", instance_path(inst)),
                    Some(&req),
                    None,
                )
                .await?;
            wait(&mut op).await?;
            // An ephemeral instance deletes itself when it stops.
            if info.ephemeral {
                continue;
            }
        }
        let mut op = client
            .operation::<()>(Method::DELETE, &instance_path(inst), None, None)
            .await?;
        wait(&mut op).await?;
    }
    Ok(())
}
