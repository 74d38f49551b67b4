//! `start`, `stop`, `restart`, `pause`: `PUT /1.0/instances/NAME/state` and wait.

use anyhow::bail;
use clap::Args;
use lxd_api::{Instance, InstanceStatePut, StatusCode};
use reqwest::Method;

use super::{instance_path, wait_progress};
use crate::Ctx;

#[derive(Debug, Args)]
pub struct ActionArgs {
    #[arg(value_name = "[<remote>:]<instance>")]
    pub instances: Vec<String>,
    /// Run against all instances
    #[arg(long)]
    pub all: bool,
    /// Ignore the instance state
    #[arg(long)]
    pub stateless: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[arg(value_name = "[<remote>:]<instance>")]
    pub instances: Vec<String>,
    /// Run against all instances
    #[arg(long)]
    pub all: bool,
    /// Force the instance to stop
    #[arg(short, long)]
    pub force: bool,
    /// Store the instance state
    #[arg(long)]
    pub stateful: bool,
    /// Time to wait for the instance to shutdown cleanly
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub timeout: i64,
}

pub async fn run_stop(ctx: &Ctx, action: &str, a: StopArgs) -> anyhow::Result<()> {
    let req = InstanceStatePut {
        action: action.to_string(),
        timeout: a.timeout,
        force: a.force,
        stateful: a.stateful,
    };
    let args = ActionArgs {
        instances: a.instances,
        all: a.all,
        stateless: false,
    };
    run(ctx, action, action, args, Some(req)).await
}

/// Apply `action` to every named instance (or all of them with `--all`).
pub async fn run(
    ctx: &Ctx,
    action: &str,
    cmd_name: &str,
    a: ActionArgs,
    req: Option<InstanceStatePut>,
) -> anyhow::Result<()> {
    // LXD 5.0 sends timeout 0 for start and pause (only stop/restart have --timeout).
    let req = req.unwrap_or(InstanceStatePut {
        action: action.to_string(),
        timeout: 0,
        force: false,
        stateful: false,
    });
    if a.all && !a.instances.is_empty() {
        bail!("Both --all and instance name given");
    }
    let mut names = a.instances.clone();
    if a.all {
        names = all_instances(ctx, action).await?;
    } else if names.is_empty() {
        bail!("Invalid number of arguments");
    }

    let results = futures_util::future::join_all(
        names
            .iter()
            .map(|n| one(ctx, n, req.clone(), names.len() == 1)),
    )
    .await;
    if results.len() == 1 {
        return results.into_iter().next().unwrap_or(Ok(()));
    }
    let mut ok = true;
    for (name, r) in names.iter().zip(results) {
        if let Err(e) = r {
            ok = false;
            for line in format!("error: {e:#}").lines() {
                eprintln!("{name}: {line}");
            }
        }
    }
    if !ok {
        eprintln!();
        bail!("Some instances failed to {cmd_name}");
    }
    Ok(())
}

async fn all_instances(ctx: &Ctx, action: &str) -> anyhow::Result<Vec<String>> {
    let client = ctx.client(&ctx.conf.default_remote)?;
    let list: Vec<Instance> = client.get("/1.0/instances?recursion=1").await?;
    Ok(list
        .into_iter()
        .filter(|i| {
            let code = StatusCode::from(i.status_code);
            match action {
                "start" => code != StatusCode::Running,
                "stop" => code != StatusCode::Stopped,
                _ => true,
            }
        })
        .map(|i| i.name)
        .collect())
}

async fn one(ctx: &Ctx, raw: &str, mut req: InstanceStatePut, single: bool) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(raw)?;
    let client = ctx.client(&remote)?;
    if req.action == "start" {
        // Starting a frozen instance means resuming it (LXD's `lxc start`).
        let (inst, _) = super::get_instance(&client, &name).await?;
        if StatusCode::from(inst.status_code) == StatusCode::Frozen {
            req.action = "unfreeze".into();
        }
    }
    let mut op = client
        .operation(
            Method::PUT,
            &format!("{}/state", instance_path(&name)),
            Some(&req),
            None,
        )
        .await?;
    wait_progress(&mut op, "", ctx.global.quiet || !single).await?;
    Ok(())
}
