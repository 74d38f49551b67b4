//! `publish`: make an image out of an instance or snapshot (`POST /1.0/images` with
//! `source.type=instance|snapshot`); a running instance is stopped and started again with
//! `--force`, as LXD's client does.

use anyhow::bail;
use clap::Args;
use lxd_api::image::ImagesPostSource;
use lxd_api::{ImageAlias, ImagesPost, InstanceStatePut};
use reqwest::Method;

use super::{instance_path, wait, wait_progress};
use crate::Ctx;
use crate::client::Client;
use crate::parse::{key_value, split_snapshot};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// `[<remote>:]<instance>[/<snapshot>] [<remote>:] [key=value...]`
    #[arg(value_name = "ARGS", required = true)]
    pub args: Vec<String>,
    /// New alias to define at target
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Compression algorithm to use (none for uncompressed)
    #[arg(long, default_value = "")]
    pub compression: String,
    /// Image expiration date (format: rfc3339)
    #[arg(long, default_value = "")]
    pub expire: String,
    /// Stop the instance if currently running
    #[arg(short, long)]
    pub force: bool,
    /// Make the image public
    #[arg(long)]
    pub public: bool,
    /// If the image alias already exists, delete and create a new one
    #[arg(long)]
    pub reuse: bool,
}

async fn set_state(client: &Client, name: &str, action: &str) -> anyhow::Result<()> {
    let req = InstanceStatePut {
        action: action.into(),
        timeout: -1,
        force: false,
        stateful: false,
    };
    let mut op = client
        .operation(
            Method::PUT,
            &format!("{}/state", instance_path(name)),
            Some(&req),
            None,
        )
        .await?;
    wait(&mut op).await
}

pub async fn run(ctx: &Ctx, a: PublishArgs) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(&a.args[0])?;
    let mut target = remote.clone();
    let mut properties = lxd_api::ConfigMap::new();
    for arg in &a.args[1..] {
        if arg.ends_with(':') && !arg.contains('=') {
            target = ctx.parse_remote(arg)?.0;
        } else {
            let (k, v) = key_value(arg)?;
            properties.insert(k, v);
        }
    }
    if target != remote {
        bail!("Publishing to another server is not supported by this client");
    }
    let client = ctx.client(&remote)?;
    let (inst, snap) = split_snapshot(&name);
    let mut restart = false;
    if snap.is_none() {
        let (i, _) = super::get_instance(&client, inst).await?;
        // 103 Running, 110 Frozen.
        if i.status_code == 103 || i.status_code == 110 {
            if !a.force {
                bail!(
                    "The instance is currently running. Use --force to have it stopped and restarted"
                );
            }
            set_state(&client, inst, "stop").await?;
            restart = true;
        }
    }
    if a.reuse {
        for alias in &a.aliases {
            let path = format!("/1.0/images/aliases/{}", crate::client::esc(alias));
            if client.get::<serde_json::Value>(&path).await.is_ok() {
                client.send::<()>(Method::DELETE, &path, None, None).await?;
            }
        }
    }
    let body = ImagesPost {
        public: a.public,
        properties,
        compression_algorithm: a.compression.clone(),
        expires_at: a.expire.clone(),
        aliases: a
            .aliases
            .iter()
            .map(|n| ImageAlias {
                name: n.clone(),
                description: String::new(),
            })
            .collect(),
        source: Some(ImagesPostSource {
            kind: if snap.is_some() {
                "snapshot"
            } else {
                "instance"
            }
            .into(),
            name: name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let res = async {
        let mut op = client
            .operation(Method::POST, "/1.0/images", Some(&body), None)
            .await?;
        wait_progress(&mut op, "Publishing instance: %s", ctx.global.quiet).await?;
        anyhow::Ok(
            op.op
                .metadata
                .get("fingerprint")
                .and_then(|f| f.as_str())
                .unwrap_or_default()
                .to_string(),
        )
    }
    .await;
    if restart {
        set_state(&client, inst, "start").await?;
    }
    let fp = res?;
    println!("Instance published with fingerprint: {fp}");
    Ok(())
}
