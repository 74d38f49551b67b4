//! `profile ...`: `/1.0/profiles` (synchronous), plus assigning profiles to instances.

use anyhow::bail;
use clap::Subcommand;
use lxd_api::profile::{ProfilePost, ProfilePut};
use lxd_api::{Profile, ProfilesPost};
use reqwest::Method;

use super::config::{DeviceCmd, key_values};
use super::{get_instance, print_out, put_instance, writable};
use crate::Ctx;
use crate::client::{Client, esc};
use crate::{editor, output};

#[derive(Debug, Subcommand)]
pub enum ProfileCmd {
    /// Add profiles to instances
    Add {
        #[arg(value_name = "[<remote>:]<instance>")]
        instance: String,
        profile: String,
    },
    /// Assign sets of profiles to instances
    Assign {
        #[arg(value_name = "[<remote>:]<instance>")]
        instance: String,
        #[arg(value_name = "<profile>[,<profile>...]")]
        profiles: String,
    },
    /// Copy profiles
    #[command(visible_alias = "cp")]
    Copy {
        #[arg(value_name = "[<remote>:]<profile>")]
        source: String,
        #[arg(value_name = "[<remote>:]<profile>")]
        destination: String,
    },
    /// Create profiles
    Create {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
    },
    /// Delete profiles
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
    },
    /// Manage devices
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Edit profile configurations as YAML
    Edit {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
    },
    /// Get values for profile configuration keys
    Get {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
        key: String,
    },
    /// List profiles
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Remove profiles from instances
    Remove {
        #[arg(value_name = "[<remote>:]<instance>")]
        instance: String,
        profile: String,
    },
    /// Rename profiles
    #[command(visible_alias = "mv")]
    Rename {
        #[arg(value_name = "[<remote>:]<profile>")]
        old: String,
        new: String,
    },
    /// Set profile configuration keys
    Set {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
        #[arg(value_name = "<key><value>...", required = true)]
        args: Vec<String>,
    },
    /// Show profile configurations
    Show {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
    },
    /// Unset profile configuration keys
    Unset {
        #[arg(value_name = "[<remote>:]<profile>")]
        name: String,
        key: String,
    },
}

/// LXD's YAML key order for a profile.
pub const PROFILE_ORDER: &[&str] = &["config", "description", "devices", "name", "used_by"];

fn path(name: &str) -> String {
    format!("/1.0/profiles/{}", esc(name))
}

async fn load(client: &Client, name: &str) -> anyhow::Result<(Profile, Option<String>)> {
    Ok(client.get_etag(&path(name)).await?)
}

fn put_of(p: &Profile) -> ProfilePut {
    ProfilePut {
        config: p.config.clone(),
        description: p.description.clone(),
        devices: p.devices.clone(),
    }
}

async fn save(
    client: &Client,
    name: &str,
    put: &ProfilePut,
    etag: Option<&str>,
) -> anyhow::Result<()> {
    client
        .send(Method::PUT, &path(name), Some(put), etag)
        .await?;
    Ok(())
}

const EDIT_HEADER: &str = "### This is a YAML representation of the profile.
### Any line starting with a '# will be ignored.
###
### A profile consists of a set of configuration items followed by a set of
### devices.
###
### An example would look like:
### name: onenic
### config:
###   raw.lxc: lxc.aa_profile=unconfined
### devices:
###   eth0:
###     nictype: bridged
###     parent: lxdbr0
###     type: nic
###
### Note that the name is shown but cannot be changed
";

pub async fn run(ctx: &Ctx, cmd: ProfileCmd) -> anyhow::Result<()> {
    let quiet = ctx.global.quiet;
    match cmd {
        ProfileCmd::Add { instance, profile } => {
            let (client, name) = ctx.client_for(&instance)?;
            let (inst, etag) = get_instance(&client, &name).await?;
            let mut put = writable(&inst);
            // A duplicate is left for the server to refuse, as LXD's client does.
            put.profiles.push(profile.clone());
            put_instance(&client, &name, &put, etag.as_deref()).await?;
            if !quiet {
                println!("Profile {profile} added to {name}");
            }
        }
        ProfileCmd::Assign { instance, profiles } => {
            let (client, name) = ctx.client_for(&instance)?;
            let (inst, etag) = get_instance(&client, &name).await?;
            let mut put = writable(&inst);
            put.profiles = if profiles.is_empty() {
                vec![]
            } else {
                profiles.split(',').map(str::to_string).collect()
            };
            put_instance(&client, &name, &put, etag.as_deref()).await?;
            if !quiet {
                if profiles.is_empty() {
                    println!("All profiles removed from {name}");
                } else {
                    println!("Profiles {profiles} applied to {name}");
                }
            }
        }
        ProfileCmd::Remove { instance, profile } => {
            let (client, name) = ctx.client_for(&instance)?;
            let (inst, etag) = get_instance(&client, &name).await?;
            let mut put = writable(&inst);
            if !put.profiles.contains(&profile) {
                bail!("Profile {profile} isn't currently applied to {name}");
            }
            put.profiles.retain(|p| *p != profile);
            put_instance(&client, &name, &put, etag.as_deref()).await?;
            if !quiet {
                println!("Profile {profile} removed from {name}");
            }
        }
        ProfileCmd::Copy {
            source,
            destination,
        } => {
            let (client, name) = ctx.client_for(&source)?;
            let (dremote, dname) = ctx.parse_remote(&destination)?;
            let dclient = ctx.client(&dremote)?;
            let (p, _) = load(&client, &name).await?;
            let body = ProfilesPost {
                name: if dname.is_empty() { name } else { dname },
                config: p.config,
                description: p.description,
                devices: p.devices,
            };
            dclient
                .send(Method::POST, "/1.0/profiles", Some(&body), None)
                .await?;
        }
        ProfileCmd::Create { name } => {
            let (client, name) = ctx.client_for(&name)?;
            let mut body = ProfilesPost {
                name: name.clone(),
                ..Default::default()
            };
            // A YAML profile may be piped in, as with LXD.
            if !crate::term::stdin_is_tty() {
                let text = editor::read_stdin()?;
                if !text.trim().is_empty() {
                    let put: ProfilePut = editor::parse_yaml(&text)?;
                    body.config = put.config;
                    body.description = put.description;
                    body.devices = put.devices;
                }
            }
            client
                .send(Method::POST, "/1.0/profiles", Some(&body), None)
                .await?;
            if !quiet {
                println!("Profile {name} created");
            }
        }
        ProfileCmd::Delete { name } => {
            let (client, name) = ctx.client_for(&name)?;
            client
                .send::<()>(Method::DELETE, &path(&name), None, None)
                .await?;
            if !quiet {
                println!("Profile {name} deleted");
            }
        }
        ProfileCmd::Device(d) => super::config::device(ctx, d, true).await?,
        ProfileCmd::Edit { name } => {
            let (client, name) = ctx.client_for(&name)?;
            let (p, etag) = load(&client, &name).await?;
            let current = output::yaml_ordered(&p, PROFILE_ORDER)?;
            let (client, name, etag) = (&client, &name, etag.as_deref());
            editor::edit_yaml(EDIT_HEADER, &current, |text| async move {
                let put: ProfilePut = editor::parse_yaml(&text)?;
                save(client, name, &put, etag).await
            })
            .await?;
        }
        ProfileCmd::Get { name, key } => {
            let (client, name) = ctx.client_for(&name)?;
            let (p, _) = load(&client, &name).await?;
            println!("{}", p.config.get(&key).cloned().unwrap_or_default());
        }
        ProfileCmd::List { remote, format } => {
            let format = super::format(&format)?;
            let (remote, _) = ctx.parse_remote(remote.as_deref().unwrap_or(""))?;
            let client = ctx.client(&remote)?;
            let (profiles, raw): (Vec<Profile>, _) =
                client.get_both("/1.0/profiles?recursion=1").await?;
            let mut rows: Vec<Vec<String>> = profiles
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.description.clone(),
                        p.used_by.len().to_string(),
                    ]
                })
                .collect();
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &["NAME", "DESCRIPTION", "USED BY"],
                &rows,
                &raw,
            )?);
        }
        ProfileCmd::Rename { old, new } => {
            let (client, name) = ctx.client_for(&old)?;
            client
                .send(
                    Method::POST,
                    &path(&name),
                    Some(&ProfilePost { name: new.clone() }),
                    None,
                )
                .await?;
            if !quiet {
                println!("Profile {name} renamed to {new}");
            }
        }
        ProfileCmd::Set { name, args } => {
            let (client, name) = ctx.client_for(&name)?;
            let keys = key_values(&args)?;
            let (p, etag) = load(&client, &name).await?;
            let mut put = put_of(&p);
            put.config.extend(keys);
            save(&client, &name, &put, etag.as_deref()).await?;
        }
        ProfileCmd::Show { name } => {
            let (client, name) = ctx.client_for(&name)?;
            let (p, _) = load(&client, &name).await?;
            print_out(&output::yaml_ordered(&p, PROFILE_ORDER)?);
        }
        ProfileCmd::Unset { name, key } => {
            let (client, name) = ctx.client_for(&name)?;
            let (p, etag) = load(&client, &name).await?;
            let mut put = put_of(&p);
            if put.config.remove(&key).is_none() {
                bail!("Can't unset key '{key}', it's not currently set");
            }
            save(&client, &name, &put, etag.as_deref()).await?;
        }
    }
    Ok(())
}
