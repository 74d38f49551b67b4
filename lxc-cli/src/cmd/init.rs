//! `init` and `launch`: resolve the image (client side, as LXD does), `POST /1.0/instances`,
//! and for launch `PUT .../state {"action":"start"}`.

use anyhow::bail;
use clap::Args;
use lxd_api::instance::InstanceSource;
use lxd_api::{ConfigMap, Image, ImageAliasesEntry, InstancesPost};
use reqwest::Method;

use super::{instance_path, wait_progress};
use crate::Ctx;
use crate::client::{Client, esc};
use crate::parse::key_value;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// `[<remote>:]<image> [<remote>:][<name>]`
    #[arg(value_name = "ARGS")]
    pub args: Vec<String>,
    /// Create an empty instance
    #[arg(long)]
    pub empty: bool,
    /// Profile to apply to the new instance
    #[arg(short, long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Create the instance with no profiles applied
    #[arg(long)]
    pub no_profiles: bool,
    /// Config key/value to apply to the new instance
    #[arg(short, long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Ephemeral instance
    #[arg(short, long)]
    pub ephemeral: bool,
    /// Storage pool name
    #[arg(short, long, value_name = "POOL")]
    pub storage: Option<String>,
    /// Network name
    #[arg(short, long, value_name = "NETWORK")]
    pub network: Option<String>,
    /// Instance type
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub instance_type: Option<String>,
    /// Create a virtual machine
    #[arg(long)]
    pub vm: bool,
    /// Cluster member name
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,
}

/// Where the image comes from, resolved on the client.
#[derive(Debug)]
pub struct ImageSource {
    pub source: InstanceSource,
    /// The instance type implied by the image ("" for simplestreams).
    pub kind: String,
}

/// Resolve `image` on remote `iremote` for an instance created on `client`'s server: an alias
/// or fingerprint (prefix) of a local image becomes a full fingerprint; a simplestreams remote
/// is passed to the server as `server/protocol/alias` without contacting it (LXD `getImgInfo`).
pub async fn resolve_image(
    ctx: &Ctx,
    client: &Client,
    iremote: &str,
    image: &str,
    same_server: bool,
) -> anyhow::Result<ImageSource> {
    let image = if image.is_empty() { "default" } else { image };
    let r = ctx.remote(iremote)?.clone();
    if r.is_simplestreams() {
        return Ok(ImageSource {
            source: InstanceSource {
                kind: "image".into(),
                mode: "pull".into(),
                // The Go simplestreams client trims the trailing slash of the remote URL.
                server: r.addr.trim_end_matches('/').to_string(),
                protocol: "simplestreams".into(),
                alias: image.to_string(),
                ..Default::default()
            },
            // LXD 5.0 asks for a container unless --vm.
            kind: "container".into(),
        });
    }
    if !same_server {
        // LXD's CreateInstanceFromImage from another server: the daemon pulls the image, by
        // alias when it is public, with a secret when it is private.
        let source = ctx.image_server(iremote)?;
        let info = find_image(&source, image).await?;
        let conn = super::image::connection_info(ctx, iremote, &source).await?;
        let secret = if info.public {
            String::new()
        } else {
            super::image::image_secret(&source, &info.fingerprint).await?
        };
        let by_alias = info.public && !info.fingerprint.starts_with(image);
        return Ok(ImageSource {
            source: InstanceSource {
                kind: "image".into(),
                mode: "pull".into(),
                server: conn.addresses.first().cloned().unwrap_or_default(),
                protocol: "lxd".into(),
                certificate: conn.certificate,
                secret,
                alias: if by_alias {
                    image.to_string()
                } else {
                    String::new()
                },
                fingerprint: if by_alias {
                    String::new()
                } else {
                    info.fingerprint.clone()
                },
                ..Default::default()
            },
            kind: info.kind,
        });
    }
    let info = find_image(client, image).await?;
    Ok(ImageSource {
        source: InstanceSource {
            kind: "image".into(),
            fingerprint: info.fingerprint.clone(),
            ..Default::default()
        },
        kind: info.kind,
    })
}

/// An image by alias, else by fingerprint prefix (`GET /1.0/images/aliases/X` tolerating 404,
/// then `GET /1.0/images/FP`).
pub async fn find_image(client: &Client, name: &str) -> anyhow::Result<Image> {
    let fp = match client
        .get::<ImageAliasesEntry>(&format!("/1.0/images/aliases/{}", esc(name)))
        .await
    {
        Ok(a) => a.target,
        Err(e) if e.is_not_found() => name.to_string(),
        Err(e) => return Err(e.into()),
    };
    Ok(client
        .get::<Image>(&format!("/1.0/images/{}", esc(&fp)))
        .await?)
}

pub async fn run(ctx: &Ctx, a: InitArgs, launch: bool) -> anyhow::Result<()> {
    let max = if a.empty { 1 } else { 2 };
    let min = if a.empty { 0 } else { 1 };
    super::check_args(&a.args, min, Some(max))?;
    let (image_arg, name_arg) = if a.empty {
        (None, a.args.first().cloned())
    } else {
        (a.args.first().cloned(), a.args.get(1).cloned())
    };
    if a.empty && launch {
        bail!("--empty cannot be combined with an image name");
    }

    let (remote, name) = match &name_arg {
        Some(n) => ctx.parse_remote(n)?,
        None => (ctx.conf.default_remote.clone(), String::new()),
    };
    let image_ref = image_arg
        .as_deref()
        .map(|img| ctx.parse_remote(img))
        .transpose()?;
    if !ctx.global.quiet {
        if name.is_empty() {
            println!("Creating the instance");
        } else {
            println!("Creating {name}");
        }
    }

    let client = ctx.client(&remote)?;
    let mut config = ConfigMap::new();
    for c in &a.config {
        let (k, v) = key_value(c)?;
        config.insert(k, v);
    }
    let mut devices = lxd_api::DevicesMap::new();
    if let Some(net) = &a.network {
        let n: lxd_api::network::Network = client
            .get(&format!("/1.0/networks/{}", esc(net)))
            .await
            .map_err(|e| anyhow::anyhow!("Failed loading network {net:?}: {e}"))?;
        devices.insert("eth0".into(), nic_for(&n, net));
    }
    if let Some(pool) = &a.storage {
        client
            .get::<serde_json::Value>(&format!("/1.0/storage-pools/{}", esc(pool)))
            .await
            .map_err(|e| anyhow::anyhow!("Failed loading storage pool {pool:?}: {e}"))?;
        let mut d = ConfigMap::new();
        d.insert("type".into(), "disk".into());
        d.insert("path".into(), "/".into());
        d.insert("pool".into(), pool.clone());
        devices.insert("root".into(), d);
    }
    let profiles = if a.no_profiles {
        Some(vec![])
    } else if a.profiles.is_empty() {
        None
    } else {
        Some(a.profiles.clone())
    };

    let (source, mut kind) = match &image_ref {
        None => (
            InstanceSource {
                kind: "none".into(),
                ..Default::default()
            },
            "container".to_string(),
        ),
        Some((iremote, image)) => {
            let same = *iremote == remote || ctx.remote(iremote)?.addr == ctx.remote(&remote)?.addr;
            let s = resolve_image(ctx, &client, iremote, image, same).await?;
            (s.source, s.kind)
        }
    };
    if a.vm {
        kind = "virtual-machine".into();
    }
    let req = InstancesPost {
        name: name.clone(),
        config,
        devices,
        ephemeral: a.ephemeral,
        profiles,
        source,
        instance_type: a.instance_type.clone().unwrap_or_default(),
        kind,
        ..Default::default()
    };
    let path = match &a.target {
        Some(t) => format!("/1.0/instances?target={}", esc(t)),
        None => "/1.0/instances".to_string(),
    };
    // LXD's client words failures of server-side image pulls this way (`tryCreateInstance`).
    let pull = req.source.mode == "pull";
    let wrap = |e: anyhow::Error| {
        if pull {
            anyhow::anyhow!("Failed instance creation: {e:#}")
        } else {
            e
        }
    };
    let mut op = client
        .operation(Method::POST, &path, Some(&req), None)
        .await
        .map_err(|e| wrap(e.into()))?;
    wait_progress(&mut op, "Retrieving image: %s", ctx.global.quiet)
        .await
        .map_err(wrap)?;

    let name = if name.is_empty() {
        let url = op
            .resource("instances")
            .or_else(|| op.resource("containers"))
            .ok_or_else(|| anyhow::anyhow!("Failed to get the new instance name"))?;
        let n = url.rsplit('/').next().unwrap_or_default().to_string();
        println!("Instance name is: {n}");
        n
    } else {
        name
    };

    check_network(&client, &name).await;

    if launch {
        if !ctx.global.quiet {
            println!("Starting {name}");
        }
        let req = lxd_api::InstanceStatePut {
            action: "start".into(),
            timeout: -1,
            force: false,
            stateful: false,
        };
        let mut op = client
            .operation(
                Method::PUT,
                &format!("{}/state", instance_path(&name)),
                Some(&req),
                None,
            )
            .await?;
        if let Err(e) = wait_progress(&mut op, "", ctx.global.quiet).await {
            // LXD names the remote whenever the instance name was given.
            let pretty = if name_arg.is_some() {
                format!("{remote}:{name}")
            } else {
                name.clone()
            };
            bail!("{e:#}\nTry `lxc info --show-log {pretty}` for more info");
        }
    }
    Ok(())
}

/// The `eth0` of `--network`: `network=` for a managed network, else a macvlan (or bridged,
/// for an unmanaged bridge) NIC on the host interface, as LXD's `init` builds it.
fn nic_for(n: &lxd_api::network::Network, name: &str) -> ConfigMap {
    let mut d = ConfigMap::new();
    d.insert("name".into(), "eth0".into());
    d.insert("type".into(), "nic".into());
    if n.managed {
        d.insert("network".into(), n.name.clone());
    } else {
        let nictype = if n.kind == "bridge" {
            "bridged"
        } else {
            "macvlan"
        };
        d.insert("nictype".into(), nictype.into());
        d.insert("parent".into(), name.into());
    }
    d
}

/// LXD's hint when the new instance has no NIC at all.
async fn check_network(client: &Client, name: &str) {
    let Ok((inst, _)) = super::get_instance(client, name).await else {
        return;
    };
    if inst
        .expanded_devices
        .values()
        .any(|d| d.get("type").map(String::as_str) == Some("nic"))
    {
        return;
    }
    eprintln!("\nThe instance you are starting doesn't have any network attached to it.");
    eprintln!("  To create a new network, use: lxc network create");
    eprintln!("  To attach a network to an instance, use: lxc network attach\n");
}
