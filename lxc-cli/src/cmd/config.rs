//! `config show|get|set|unset|edit` for instances and the server, and `config device ...`
//! (shared with `profile device ...`). The first argument names an instance unless it looks
//! like a config key (contains a `.`), as in LXD's `lxc config set`.

use anyhow::bail;
use clap::{Args, Subcommand};
use lxd_api::profile::ProfilePut;
use lxd_api::{ConfigMap, DevicesMap, Instance, InstanceSnapshot, Server, ServerPut};
use reqwest::Method;
use std::collections::BTreeMap;

use super::{get_instance, instance_path, print_out, put_instance, writable};
use crate::Ctx;
use crate::client::{Client, esc};
use crate::editor;
use crate::output;
use crate::parse::split_snapshot;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub cmd: ConfigCmd,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show instance or server configurations
    Show {
        #[arg(value_name = "[<remote>:][<instance>[/<snapshot>]]")]
        name: Option<String>,
        /// Show the expanded configuration
        #[arg(long)]
        expanded: bool,
    },
    /// Get values for instance or server configuration keys
    Get {
        #[arg(value_name = "[<remote>:][<instance>] <key>", required = true)]
        args: Vec<String>,
        /// Access the expanded configuration
        #[arg(short, long)]
        expanded: bool,
    },
    /// Set instance or server configuration keys
    Set {
        #[arg(
            value_name = "[<remote>:][<instance>] <key>=<value>...",
            required = true
        )]
        args: Vec<String>,
    },
    /// Unset instance or server configuration keys
    Unset {
        #[arg(value_name = "[<remote>:][<instance>] <key>", required = true)]
        args: Vec<String>,
    },
    /// Edit instance or server configurations as YAML
    Edit {
        #[arg(value_name = "[<remote>:][<instance>[/<snapshot>]]")]
        name: Option<String>,
    },
    /// Manage devices
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Manage trusted clients
    #[command(subcommand)]
    Trust(super::trust::TrustCmd),
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Add instance devices
    Add {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
        device: String,
        #[arg(value_name = "TYPE")]
        kind: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Get values for device configuration keys
    Get {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
        device: String,
        key: String,
    },
    /// List instance devices
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
    },
    /// Copy profile inherited devices and override configuration keys
    Override {
        #[arg(value_name = "[<remote>:]<instance>")]
        target: String,
        device: String,
        #[arg(value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Remove instance devices
    #[command(visible_alias = "rm")]
    Remove {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Set device configuration keys
    Set {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
        device: String,
        #[arg(value_name = "<key>=<value>...", required = true)]
        args: Vec<String>,
    },
    /// Show full device configuration
    Show {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
    },
    /// Unset device configuration keys
    Unset {
        #[arg(value_name = "[<remote>:]<instance|profile>")]
        target: String,
        device: String,
        key: String,
    },
}

pub async fn run(ctx: &Ctx, a: ConfigArgs) -> anyhow::Result<()> {
    match a.cmd {
        ConfigCmd::Show { name, expanded } => show(ctx, name.as_deref(), expanded).await,
        ConfigCmd::Get { args, expanded } => get(ctx, &args, expanded).await,
        ConfigCmd::Set { args } => set(ctx, &args, false).await,
        ConfigCmd::Unset { args } => {
            super::check_args(&args, 1, Some(2))?;
            let mut args = args;
            args.push(String::new());
            set(ctx, &args, true).await
        }
        ConfigCmd::Edit { name } => edit(ctx, name.as_deref()).await,
        ConfigCmd::Device(d) => device(ctx, d, false).await,
        ConfigCmd::Trust(t) => super::trust::run(ctx, t).await,
    }
}

/// The YAML key order of a snapshot as LXD 5.0 prints it.
const SNAPSHOT_ORDER: &[&str] = &[
    "expires_at",
    "architecture",
    "config",
    "created_at",
    "devices",
    "ephemeral",
    "expanded_config",
    "expanded_devices",
    "last_used_at",
    "name",
    "profiles",
    "stateful",
    "size",
];

async fn show(ctx: &Ctx, name: Option<&str>, expanded: bool) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(name.unwrap_or(""))?;
    let client = ctx.client(&remote)?;
    if name.is_empty() {
        let server: Server = client.get("/1.0").await?;
        print_out(&output::yaml(&ServerPut {
            config: server.config,
        })?);
        return Ok(());
    }
    let (inst, snap) = split_snapshot(&name);
    if let Some(snap) = snap {
        let s: InstanceSnapshot = client
            .get(&format!("{}/snapshots/{}", instance_path(inst), esc(snap)))
            .await?;
        // LXD 5.0 snapshots have no description; newer servers send one.
        let mut v = serde_json::to_value(&s)?;
        if let Some(m) = v.as_object_mut()
            && m.get("description").and_then(|d| d.as_str()) == Some("")
        {
            m.remove("description");
        }
        print_out(&output::yaml_ordered(&v, SNAPSHOT_ORDER)?);
        return Ok(());
    }
    let (i, _) = get_instance(&client, inst).await?;
    let mut put = writable(&i);
    if expanded {
        put.config = i.expanded_config;
        put.devices = i.expanded_devices;
    }
    print_out(&output::yaml(&put)?);
    Ok(())
}

async fn get(ctx: &Ctx, args: &[String], expanded: bool) -> anyhow::Result<()> {
    super::check_args(args, 1, Some(2))?;
    let remote_arg = if args.len() > 1 { args[0].as_str() } else { "" };
    let key = &args[args.len() - 1];
    let (remote, name) = ctx.parse_remote(remote_arg)?;
    let client = ctx.client(&remote)?;
    if name.is_empty() {
        let server: Server = client.get("/1.0").await?;
        println!("{}", server.config.get(key).cloned().unwrap_or_default());
        return Ok(());
    }
    let (inst, _) = get_instance(&client, &name).await?;
    let map = if expanded {
        &inst.expanded_config
    } else {
        &inst.config
    };
    println!("{}", map.get(key).cloned().unwrap_or_default());
    Ok(())
}

/// LXD's `getConfig`: `key value` or `key=value...`; a value of `-` reads stdin when piped.
pub fn key_values(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let from_stdin = |v: &str| -> anyhow::Result<String> {
        if v == "-" && !crate::term::stdin_is_tty() {
            return Ok(editor::read_stdin()?);
        }
        Ok(v.to_string())
    };
    let mut out = BTreeMap::new();
    if args.len() == 2 && !args[0].contains('=') {
        out.insert(args[0].clone(), from_stdin(&args[1])?);
        return Ok(out);
    }
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            bail!("Invalid key=value configuration: {a}");
        };
        out.insert(k.to_string(), from_stdin(v)?);
    }
    Ok(out)
}

/// Whether an argument is a config key rather than `[remote:]instance`.
fn is_config_key(arg: &str) -> bool {
    let key = arg.split_once(':').map(|(_, k)| k).unwrap_or(arg);
    key.contains('.')
}

async fn set(ctx: &Ctx, args: &[String], unset: bool) -> anyhow::Result<()> {
    super::check_args(args, 1, None)?;
    let has_kv = args.iter().any(|a| a.contains('='));
    let remote_arg = if (args.len() != 2 && !has_kv) || !is_config_key(&args[0]) {
        Some(args[0].as_str())
    } else {
        None
    };
    let (remote, name) = ctx.parse_remote(remote_arg.unwrap_or(""))?;
    let client = ctx.client(&remote)?;
    let rest = if remote_arg.is_some() {
        &args[1..]
    } else {
        args
    };
    let keys = if unset {
        rest.iter()
            .filter(|k| !k.is_empty())
            .map(|k| (k.clone(), String::new()))
            .collect()
    } else {
        key_values(rest)?
    };
    if keys.is_empty() {
        bail!("Invalid number of arguments");
    }
    if name.is_empty() {
        let (server, etag) = client.get_etag::<Server>("/1.0").await?;
        let mut put = ServerPut {
            config: server.config,
        };
        for (k, v) in keys {
            put.config.insert(k, v);
        }
        client
            .send(Method::PUT, "/1.0", Some(&put), etag.as_deref())
            .await?;
        return Ok(());
    }
    if name.contains('/') {
        bail!("Snapshots cannot be configured with this command");
    }
    let (inst, etag) = get_instance(&client, &name).await?;
    let mut put = writable(&inst);
    for (k, v) in keys {
        if unset {
            if put.config.remove(&k).is_none() {
                bail!("Can't unset key '{k}', it's not currently set");
            }
        } else {
            put.config.insert(k, v);
        }
    }
    put_instance(&client, &name, &put, etag.as_deref()).await
}

const INSTANCE_EDIT_HEADER: &str = "### This is a YAML representation of the configuration.
### Any line starting with a '# will be ignored.
###
### A sample configuration looks like:
### name: instance1
### profiles:
### - default
### config:
###   volatile.eth0.hwaddr: 00:16:3e:e9:f8:7f
### devices:
###   homedir:
###     path: /extra
###     source: /home/user
###     type: disk
### ephemeral: false
###
### Note that the name is shown but cannot be changed
";

const SERVER_EDIT_HEADER: &str = "### This is a YAML representation of the server configuration.
### Any line starting with a '# will be ignored.
###
### A sample configuration looks like:
### config:
###   core.https_address: \"[::]:8443\"
###   images.auto_update_interval: \"6\"
";

async fn edit(ctx: &Ctx, name: Option<&str>) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(name.unwrap_or(""))?;
    let client = ctx.client(&remote)?;
    if name.is_empty() {
        let (server, etag) = client.get_etag::<Server>("/1.0").await?;
        let current = output::yaml(&ServerPut {
            config: server.config,
        })?;
        let client = &client;
        let etag = etag.as_deref();
        return editor::edit_yaml(SERVER_EDIT_HEADER, &current, |text| async move {
            let put: ServerPut = editor::parse_yaml(&text)?;
            client.send(Method::PUT, "/1.0", Some(&put), etag).await?;
            Ok(())
        })
        .await;
    }
    if name.contains('/') {
        bail!("Editing snapshots is not supported by this client");
    }
    let (inst, etag) = get_instance(&client, &name).await?;
    let current = output::yaml(&writable(&inst))?;
    let client = &client;
    let name = &name;
    let etag = etag.as_deref();
    editor::edit_yaml(INSTANCE_EDIT_HEADER, &current, |text| async move {
        let put: lxd_api::InstancePut = editor::parse_yaml(&text)?;
        put_instance(client, name, &put, etag).await
    })
    .await
}

/// What `config device` and `profile device` act on.
#[derive(Debug)]
enum Owner {
    Instance(Box<Instance>, Option<String>),
    Profile(lxd_api::Profile, Option<String>),
}

impl Owner {
    async fn load(client: &Client, name: &str, profile: bool) -> anyhow::Result<Owner> {
        if profile {
            let (p, etag) = client
                .get_etag(&format!("/1.0/profiles/{}", esc(name)))
                .await?;
            Ok(Owner::Profile(p, etag))
        } else {
            let (i, etag) = get_instance(client, name).await?;
            Ok(Owner::Instance(Box::new(i), etag))
        }
    }

    fn devices(&self) -> &DevicesMap {
        match self {
            Owner::Instance(i, _) => &i.devices,
            Owner::Profile(p, _) => &p.devices,
        }
    }

    fn devices_mut(&mut self) -> &mut DevicesMap {
        match self {
            Owner::Instance(i, _) => &mut i.devices,
            Owner::Profile(p, _) => &mut p.devices,
        }
    }

    fn expanded(&self) -> Option<&DevicesMap> {
        match self {
            Owner::Instance(i, _) => Some(&i.expanded_devices),
            Owner::Profile(..) => None,
        }
    }

    async fn save(&self, client: &Client, name: &str) -> anyhow::Result<()> {
        match self {
            Owner::Instance(i, etag) => {
                put_instance(client, name, &writable(i), etag.as_deref()).await
            }
            Owner::Profile(p, etag) => {
                let put = ProfilePut {
                    config: p.config.clone(),
                    description: p.description.clone(),
                    devices: p.devices.clone(),
                };
                client
                    .send(
                        Method::PUT,
                        &format!("/1.0/profiles/{}", esc(name)),
                        Some(&put),
                        etag.as_deref(),
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// The error for a device that is not the owner's own.
    fn missing(&self, dev: &str, verb: &str) -> anyhow::Error {
        if self.expanded().is_some_and(|e| e.contains_key(dev)) {
            anyhow::anyhow!(
                "Device from profile(s) cannot be {verb} individual instance. Override device or modify profile instead"
            )
        } else {
            anyhow::anyhow!("Device doesn't exist")
        }
    }
}

fn parse_device_config(entries: &[String]) -> anyhow::Result<ConfigMap> {
    let mut m = ConfigMap::new();
    for e in entries {
        let Some((k, v)) = e.split_once('=') else {
            bail!("No value found in {e:?}");
        };
        m.insert(k.to_string(), v.to_string());
    }
    Ok(m)
}

/// `config device ...` and `profile device ...`.
pub async fn device(ctx: &Ctx, cmd: DeviceCmd, profile: bool) -> anyhow::Result<()> {
    match cmd {
        DeviceCmd::Add {
            target,
            device,
            kind,
            config,
        } => {
            let (client, name) = ctx.client_for(&target)?;
            let mut owner = Owner::load(&client, &name, profile).await?;
            if owner.devices().contains_key(&device) {
                bail!("The device already exists");
            }
            let mut dev = parse_device_config(&config)?;
            dev.insert("type".into(), kind);
            owner.devices_mut().insert(device.clone(), dev);
            owner.save(&client, &name).await?;
            if !ctx.global.quiet {
                println!("Device {device} added to {name}");
            }
        }
        DeviceCmd::Get {
            target,
            device,
            key,
        } => {
            let (client, name) = ctx.client_for(&target)?;
            let owner = Owner::load(&client, &name, profile).await?;
            let Some(dev) = owner.devices().get(&device) else {
                return Err(owner.missing(&device, "read from"));
            };
            println!("{}", dev.get(&key).cloned().unwrap_or_default());
        }
        DeviceCmd::List { target } => {
            let (client, name) = ctx.client_for(&target)?;
            let owner = Owner::load(&client, &name, profile).await?;
            for k in owner.devices().keys() {
                println!("{k}");
            }
        }
        DeviceCmd::Show { target } => {
            let (client, name) = ctx.client_for(&target)?;
            let owner = Owner::load(&client, &name, profile).await?;
            print_out(&output::yaml(owner.devices())?);
        }
        DeviceCmd::Override {
            target,
            device,
            config,
        } => {
            if profile {
                bail!("Profiles have no inherited devices to override");
            }
            let (client, name) = ctx.client_for(&target)?;
            let mut owner = Owner::load(&client, &name, false).await?;
            if owner.devices().contains_key(&device) {
                bail!("The device already exists");
            }
            let Some(mut dev) = owner.expanded().and_then(|e| e.get(&device)).cloned() else {
                bail!("The profile device doesn't exist");
            };
            dev.extend(parse_device_config(&config)?);
            owner.devices_mut().insert(device.clone(), dev);
            owner.save(&client, &name).await?;
            if !ctx.global.quiet {
                println!("Device {device} overridden for {name}");
            }
        }
        DeviceCmd::Remove { target, devices } => {
            let (client, name) = ctx.client_for(&target)?;
            let mut owner = Owner::load(&client, &name, profile).await?;
            for d in &devices {
                if owner.devices_mut().remove(d).is_none() {
                    return Err(owner.missing(d, "removed from"));
                }
            }
            owner.save(&client, &name).await?;
            if !ctx.global.quiet {
                println!("Device {} removed from {name}", devices.join(", "));
            }
        }
        DeviceCmd::Set {
            target,
            device,
            args,
        } => {
            let (client, name) = ctx.client_for(&target)?;
            let mut owner = Owner::load(&client, &name, profile).await?;
            let keys = key_values(&args)?;
            if !owner.devices().contains_key(&device) {
                return Err(owner.missing(&device, "modified for"));
            }
            if let Some(dev) = owner.devices_mut().get_mut(&device) {
                dev.extend(keys);
            }
            owner.save(&client, &name).await?;
        }
        DeviceCmd::Unset {
            target,
            device,
            key,
        } => {
            let (client, name) = ctx.client_for(&target)?;
            let mut owner = Owner::load(&client, &name, profile).await?;
            if !owner.devices().contains_key(&device) {
                return Err(owner.missing(&device, "modified for"));
            }
            if let Some(dev) = owner.devices_mut().get_mut(&device) {
                dev.remove(&key);
            }
            owner.save(&client, &name).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn config_keys_and_instances() {
        assert!(is_config_key("images.auto_update_interval"));
        assert!(is_config_key("local:core.https_address"));
        assert!(!is_config_key("c1"));
        assert!(!is_config_key("local:c1"));
    }

    #[test]
    fn key_value_forms() {
        let m = key_values(&v(&["limits.cpu", "2"])).unwrap();
        assert_eq!(m["limits.cpu"], "2");
        let m = key_values(&v(&["user.a=1", "user.b=2=3"])).unwrap();
        assert_eq!(m["user.b"], "2=3");
        assert_eq!(
            key_values(&v(&["user.c", "3", "4"]))
                .unwrap_err()
                .to_string(),
            "Invalid key=value configuration: user.c"
        );
    }

    #[test]
    fn device_config_entries() {
        let m = parse_device_config(&v(&["listen=tcp:0.0.0.0:8080", "connect=tcp:127.0.0.1:80"]))
            .unwrap();
        assert_eq!(m["listen"], "tcp:0.0.0.0:8080");
        assert!(parse_device_config(&v(&["bad"])).is_err());
    }
}
