//! `remote ...`: the remotes in config.yml. Image-only (simplestreams) and unix-socket remotes
//! can be added today; HTTPS LXD remotes (certificates, trust tokens) come with the HTTPS
//! transport.

use anyhow::bail;
use clap::Subcommand;

use super::print_out;
use crate::config::Remote;
use crate::{Ctx, output};

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add new remote servers
    Add {
        #[arg(value_name = "[<remote>]")]
        name: String,
        #[arg(value_name = "<IP|FQDN|URL>")]
        addr: Option<String>,
        /// Server protocol (lxd or simplestreams)
        #[arg(long, default_value = "")]
        protocol: String,
        /// Public image server
        #[arg(long)]
        public: bool,
        /// Accept certificate
        #[arg(long)]
        accept_certificate: bool,
        /// Remote admin password
        #[arg(long)]
        password: Option<String>,
        /// Server authentication type (tls or candid)
        #[arg(long, default_value = "")]
        auth_type: String,
        /// Project to use for the remote
        #[arg(long, default_value = "")]
        project: String,
    },
    /// Show the default remote
    GetDefault,
    /// List the available remotes
    #[command(visible_alias = "ls")]
    List {
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Remove remotes
    #[command(visible_alias = "rm")]
    Remove { name: String },
    /// Rename remotes
    #[command(visible_alias = "mv")]
    Rename { old: String, new: String },
    /// Set the URL for the remote
    SetUrl { name: String, url: String },
    /// Switch the default remote
    Switch { name: String },
}

/// Normalise an address as LXD does: a bare host becomes `https://host` (with `:8443` for the
/// LXD protocol); `unix:` addresses are kept.
pub fn normalize_addr(addr: &str, protocol: &str) -> String {
    if addr.starts_with("unix:") {
        let path = addr.trim_start_matches("unix:").trim_start_matches("//");
        return format!("unix://{path}");
    }
    if addr.starts_with('/') {
        return format!("unix://{addr}");
    }
    let with_scheme = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("https://{addr}")
    };
    if protocol == "lxd" && with_scheme.starts_with("https://") {
        let host = &with_scheme["https://".len()..];
        let hostport = host.split('/').next().unwrap_or(host);
        let has_port = if hostport.starts_with('[') {
            hostport.contains("]:")
        } else {
            hostport.contains(':')
        };
        if !has_port {
            return format!("https://{hostport}:8443");
        }
    }
    with_scheme
}

/// The rows of `lxc remote list`.
pub fn list_rows(ctx: &Ctx) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = ctx
        .conf
        .remotes
        .iter()
        .map(|(name, r)| {
            let display = if *name == ctx.conf.default_remote {
                format!("{name} (current)")
            } else {
                name.clone()
            };
            vec![
                display,
                r.addr.clone(),
                r.protocol().to_string(),
                r.auth_type_display(),
                output::yes_no(r.public),
                output::yes_no(r.is_static),
                output::yes_no(r.global),
            ]
        })
        .collect();
    output::sort_rows(&mut rows);
    rows
}

pub async fn run(ctx: &mut Ctx, cmd: RemoteCmd) -> anyhow::Result<()> {
    match cmd {
        RemoteCmd::Add {
            name,
            addr,
            protocol,
            public,
            auth_type,
            project,
            ..
        } => {
            let addr = addr.unwrap_or_else(|| name.clone());
            if let Some(r) = ctx.conf.remotes.get(&name) {
                bail!("Remote {name} exists as <{}>", r.addr);
            }
            let protocol = if protocol.is_empty() {
                "lxd".to_string()
            } else {
                protocol
            };
            if protocol != "lxd" && protocol != "simplestreams" {
                bail!("Invalid protocol: {protocol}");
            }
            let addr = normalize_addr(&addr, &protocol);
            let mut remote = Remote {
                addr: addr.clone(),
                auth_type: String::new(),
                domain: String::new(),
                project,
                protocol: protocol.clone(),
                public: true,
                is_static: false,
                global: false,
            };
            if protocol == "simplestreams" {
                if !addr.starts_with("https://") {
                    bail!("Only https URLs are supported for simplestreams");
                }
                remote.project = String::new();
            } else if addr.starts_with("unix:") {
                remote.public = public;
                ctx.conf.remotes.insert(name.clone(), remote);
                // Check that the socket answers before keeping it.
                let check = async {
                    ctx.client(&name)?
                        .server()
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from)
                };
                if let Err(e) = check.await {
                    ctx.conf.remotes.remove(&name);
                    return Err(e);
                }
                return ctx.save_config();
            } else {
                let _ = auth_type;
                bail!(
                    "Adding HTTPS LXD remotes is not supported by this client yet (only --protocol=simplestreams and unix:// remotes)"
                );
            }
            ctx.conf.remotes.insert(name, remote);
            ctx.save_config()
        }
        RemoteCmd::GetDefault => {
            println!("{}", ctx.conf.default_remote);
            Ok(())
        }
        RemoteCmd::List { format } => {
            let format = super::format(&format)?;
            let rows = list_rows(ctx);
            print_out(&output::render(
                format,
                &[
                    "NAME",
                    "URL",
                    "PROTOCOL",
                    "AUTH TYPE",
                    "PUBLIC",
                    "STATIC",
                    "GLOBAL",
                ],
                &rows,
                &ctx.conf.remotes,
            )?);
            Ok(())
        }
        RemoteCmd::Remove { name } => {
            let Some(r) = ctx.conf.remotes.get(&name) else {
                bail!("Remote {name} doesn't exist");
            };
            if r.is_static {
                bail!("Remote {name} is static and cannot be modified");
            }
            if ctx.conf.default_remote == name {
                bail!("Can't remove the default remote");
            }
            ctx.conf.remotes.remove(&name);
            ctx.save_config()
        }
        RemoteCmd::Rename { old, new } => {
            let Some(r) = ctx.conf.remotes.get(&old).cloned() else {
                bail!("Remote {old} doesn't exist");
            };
            if r.is_static {
                bail!("Remote {old} is static and cannot be modified");
            }
            if ctx.conf.remotes.contains_key(&new) {
                bail!("Remote {new} already exists");
            }
            ctx.conf.remotes.remove(&old);
            ctx.conf.remotes.insert(new.clone(), r);
            if ctx.conf.default_remote == old {
                ctx.conf.default_remote = new;
            }
            ctx.save_config()
        }
        RemoteCmd::SetUrl { name, url } => {
            let Some(r) = ctx.conf.remotes.get_mut(&name) else {
                bail!("Remote {name} doesn't exist");
            };
            if r.is_static {
                bail!("Remote {name} is static and cannot be modified");
            }
            r.addr = normalize_addr(&url, r.protocol());
            ctx.save_config()
        }
        RemoteCmd::Switch { name } => {
            if !ctx.conf.remotes.contains_key(&name) {
                bail!("Remote {name} doesn't exist");
            }
            ctx.conf.default_remote = name;
            ctx.save_config()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_addr("images.example.com", "simplestreams"),
            "https://images.example.com"
        );
        assert_eq!(normalize_addr("10.0.0.1", "lxd"), "https://10.0.0.1:8443");
        assert_eq!(
            normalize_addr("https://10.0.0.1:9443", "lxd"),
            "https://10.0.0.1:9443"
        );
        assert_eq!(normalize_addr("[::1]", "lxd"), "https://[::1]:8443");
        assert_eq!(
            normalize_addr("unix:///run/lxd.socket", "lxd"),
            "unix:///run/lxd.socket"
        );
        assert_eq!(
            normalize_addr("http://127.0.0.1:8000/streams", "simplestreams"),
            "http://127.0.0.1:8000/streams"
        );
    }

    #[test]
    fn list_matches_lxd() {
        let ctx = Ctx {
            conf: Config::default_in(std::path::Path::new("/x")),
            global: Default::default(),
        };
        let rows = list_rows(&ctx);
        let table = output::table(
            &[
                "NAME",
                "URL",
                "PROTOCOL",
                "AUTH TYPE",
                "PUBLIC",
                "STATIC",
                "GLOBAL",
            ],
            &rows,
        );
        let expected = "\
+-----------------+------------------------------------------+---------------+-------------+--------+--------+--------+
|      NAME       |                   URL                    |   PROTOCOL    |  AUTH TYPE  | PUBLIC | STATIC | GLOBAL |
+-----------------+------------------------------------------+---------------+-------------+--------+--------+--------+
| images          | https://images.lxd.canonical.com         | simplestreams | none        | YES    | NO     | NO     |
+-----------------+------------------------------------------+---------------+-------------+--------+--------+--------+
| local (current) | unix://                                  | lxd           | file access | NO     | YES    | NO     |
+-----------------+------------------------------------------+---------------+-------------+--------+--------+--------+
| ubuntu          | https://cloud-images.ubuntu.com/releases | simplestreams | none        | YES    | YES    | NO     |
+-----------------+------------------------------------------+---------------+-------------+--------+--------+--------+
| ubuntu-daily    | https://cloud-images.ubuntu.com/daily    | simplestreams | none        | YES    | YES    | NO     |
+-----------------+------------------------------------------+---------------+-------------+--------+--------+--------+
";
        assert_eq!(table, expected);
    }
}
