//! `remote ...`: the remotes in config.yml. Image-only (simplestreams) remotes, unix sockets,
//! and LXD servers over HTTPS: the server's certificate is shown (or accepted with
//! `--accept-certificate`) and pinned in `servercerts/NAME.crt`, and our client certificate is
//! made trusted with the trust password or a trust token (`lxc remote add NAME TOKEN`).

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
            accept_certificate,
            password,
        } => {
            if name.contains(':') {
                bail!("Remote names may not contain colons");
            }
            let addr = addr.unwrap_or_else(|| name.clone());
            if addr.is_empty() {
                bail!("Remote address must not be empty");
            }
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
            if let Some(token) = decode_token(&addr) {
                return add_with_token(ctx, &name, &addr, &token, &protocol).await;
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
                if !matches!(auth_type.as_str(), "" | "tls") {
                    bail!("Authentication type '{auth_type}' not supported by this client");
                }
                let res = add_https(
                    ctx,
                    &name,
                    &addr,
                    &remote.project,
                    public,
                    accept_certificate,
                    password,
                )
                .await;
                if res.is_err() {
                    // Nothing of a failed add is kept: no remote, no pinned certificate.
                    ctx.conf.remotes.remove(&name);
                    let _ = std::fs::remove_file(ctx.server_cert_path(&name));
                }
                return res;
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
            let _ = std::fs::remove_file(ctx.server_cert_path(&name));
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
            let (from, to) = (ctx.server_cert_path(&old), ctx.server_cert_path(&new));
            if from.exists() {
                std::fs::rename(&from, &to)?;
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

fn decode_token(s: &str) -> Option<lxd_api::certificate::CertificateAddToken> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    let t: lxd_api::certificate::CertificateAddToken = serde_json::from_slice(&bytes).ok()?;
    (!t.secret.is_empty() && !t.fingerprint.is_empty()).then_some(t)
}

fn ensure_client_certificate(ctx: &Ctx) -> anyhow::Result<()> {
    use crate::client::tls::ClientIdentity;
    if !ClientIdentity::exists(&ctx.conf.dir) {
        eprintln!("Generating a client certificate. This may take a minute...");
        ClientIdentity::generate(&ctx.conf.dir)?;
    }
    Ok(())
}

/// Pin `der` as the certificate of remote `name`.
fn save_server_cert(ctx: &Ctx, name: &str, der: &[u8]) -> anyhow::Result<()> {
    let path = ctx.server_cert_path(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|_| anyhow::anyhow!("Could not create server cert dir"))?;
    }
    std::fs::write(&path, crate::client::tls::cert_to_pem(der))?;
    Ok(())
}

fn read_line(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, Write};
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The project to remember for a remote (LXD `findProject`): the only one, else default.
async fn find_project(client: &crate::client::Client, wanted: &str) -> anyhow::Result<String> {
    if !wanted.is_empty() {
        client
            .get::<serde_json::Value>(&format!("/1.0/projects/{}", crate::client::esc(wanted)))
            .await?;
        return Ok(wanted.to_string());
    }
    if !client.has_extension("projects").await? {
        return Ok(String::new());
    }
    let urls: Vec<String> = client.get("/1.0/projects").await?;
    let names: Vec<String> = urls
        .iter()
        .map(|u| u.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    Ok(match names.len() {
        1 => names[0].clone(),
        _ => String::new(),
    })
}

/// An LXD server over HTTPS: pin its certificate (asking first unless
/// `--accept-certificate`), then get our client certificate trusted with the password.
async fn add_https(
    ctx: &mut Ctx,
    name: &str,
    addr: &str,
    project: &str,
    public: bool,
    accept: bool,
    password: Option<String>,
) -> anyhow::Result<()> {
    if !public {
        ensure_client_certificate(ctx)?;
    }
    ctx.conf.remotes.insert(
        name.to_string(),
        Remote {
            addr: addr.to_string(),
            auth_type: String::new(),
            domain: String::new(),
            project: String::new(),
            protocol: "lxd".into(),
            public,
            is_static: false,
            global: false,
        },
    );
    // The system CAs first; a self-signed server's certificate is shown and pinned.
    let first = match ctx.image_server(name) {
        Ok(c) => c.server().await.map(|_| ()).map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    if first.is_err() {
        let der = crate::client::tls::fetch_server_certificate(addr).await?;
        if !accept {
            let digest = crate::client::tls::fingerprint(&der);
            println!("Certificate fingerprint: {digest}");
            let line = read_line("ok (y/n/[fingerprint])? ")?;
            if line != digest {
                match line.chars().next().map(|c| c.to_ascii_lowercase()) {
                    Some('y') => {}
                    Some('n') | None => bail!("Server certificate NACKed by user"),
                    _ => bail!("Please type 'y', 'n' or the fingerprint:"),
                }
            }
        }
        save_server_cert(ctx, name, &der)?;
    }
    if public {
        ctx.image_server(name)?.server().await?;
        if let Some(r) = ctx.conf.remotes.get_mut(name) {
            r.public = true;
        }
        return ctx.save_config();
    }
    let client = ctx.client(name)?;
    let srv = client.server().await?.clone();
    if srv.public {
        if let Some(r) = ctx.conf.remotes.get_mut(name) {
            r.public = true;
        }
        return ctx.save_config();
    }
    if srv.auth != "trusted" {
        let password = match password {
            Some(p) => p,
            None => {
                let p = read_line(&format!("Admin password (or token) for {name}: "))?;
                println!();
                p
            }
        };
        let mut req = lxd_api::certificate::CertificatesPost {
            kind: "client".into(),
            ..Default::default()
        };
        if decode_token(&password).is_some() && client.has_extension("explicit_trust_token").await?
        {
            req.trust_token = password;
        } else {
            req.password = password;
        }
        client
            .send(reqwest::Method::POST, "/1.0/certificates", Some(&req), None)
            .await?;
        let again = ctx.client(name)?;
        if again.server().await?.auth != "trusted" {
            bail!("Server doesn't trust us after authentication");
        }
        println!("Client certificate now trusted by server: {name}");
    }
    let client = ctx.client(name)?;
    let project = find_project(&client, project).await?;
    if let Some(r) = ctx.conf.remotes.get_mut(name) {
        r.auth_type = "tls".into();
        r.public = false;
        r.project = project;
    }
    ctx.save_config()
}

/// `lxc remote add NAME TOKEN`: try the addresses in the token, pin the certificate whose
/// fingerprint the token names, and redeem the token.
async fn add_with_token(
    ctx: &mut Ctx,
    name: &str,
    raw: &str,
    token: &lxd_api::certificate::CertificateAddToken,
    protocol: &str,
) -> anyhow::Result<()> {
    if protocol != "lxd" {
        bail!("Invalid protocol: {protocol}");
    }
    ensure_client_certificate(ctx)?;
    let mut last: Option<anyhow::Error> = None;
    let mut addresses: Vec<String> = token
        .addresses
        .iter()
        .map(|a| format!("https://{a}"))
        .collect();
    loop {
        for addr in std::mem::take(&mut addresses) {
            match add_from_token(ctx, name, &addr, raw, token).await {
                Ok(()) => return Ok(()),
                Err(TokenError::Unavailable(e)) => last = Some(e),
                Err(TokenError::Fatal(e)) => {
                    ctx.conf.remotes.remove(name);
                    let _ = std::fs::remove_file(ctx.server_cert_path(name));
                    return Err(e);
                }
            }
        }
        ctx.conf.remotes.remove(name);
        let _ = std::fs::remove_file(ctx.server_cert_path(name));
        if let Some(e) = &last {
            eprintln!("{e:#}");
        }
        println!("All server addresses are unavailable");
        let line = read_line("Please provide an alternate server address (empty to abort): ")?;
        if line.is_empty() {
            bail!("Failed to add remote");
        }
        addresses.push(normalize_addr(&line, "lxd"));
    }
}

enum TokenError {
    /// This address cannot be reached: try the next one.
    Unavailable(anyhow::Error),
    Fatal(anyhow::Error),
}

async fn add_from_token(
    ctx: &mut Ctx,
    name: &str,
    addr: &str,
    raw: &str,
    token: &lxd_api::certificate::CertificateAddToken,
) -> Result<(), TokenError> {
    let fatal = TokenError::Fatal;
    ctx.conf.remotes.insert(
        name.to_string(),
        Remote {
            addr: addr.to_string(),
            auth_type: String::new(),
            domain: String::new(),
            project: String::new(),
            protocol: "lxd".into(),
            public: false,
            is_static: false,
            global: false,
        },
    );
    let first = match ctx.client(name) {
        Ok(c) => c.server().await.map(|_| ()).map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    if first.is_err() {
        let der = crate::client::tls::fetch_server_certificate(addr)
            .await
            .map_err(|e| {
                TokenError::Unavailable(anyhow::anyhow!("Unavailable remote server: {e}"))
            })?;
        if crate::client::tls::fingerprint(&der) != token.fingerprint {
            return Err(fatal(anyhow::anyhow!(
                "Certificate fingerprint mismatch between certificate token and server \"{addr}\""
            )));
        }
        save_server_cert(ctx, name, &der).map_err(fatal)?;
    }
    let client = ctx.client(name).map_err(fatal)?;
    client
        .server()
        .await
        .map_err(|e| TokenError::Unavailable(anyhow::anyhow!("Unavailable remote server: {e}")))?;
    let mut req = lxd_api::certificate::CertificatesPost::default();
    if client
        .has_extension("explicit_trust_token")
        .await
        .map_err(|e| fatal(e.into()))?
    {
        req.trust_token = raw.trim().to_string();
    } else {
        req.password = raw.trim().to_string();
    }
    client
        .send(reqwest::Method::POST, "/1.0/certificates", Some(&req), None)
        .await
        .map_err(|e| fatal(e.into()))?;
    let client = ctx.client(name).map_err(fatal)?;
    let project = find_project(&client, "").await.map_err(fatal)?;
    if let Some(r) = ctx.conf.remotes.get_mut(name) {
        r.project = project;
    }
    ctx.save_config().map_err(fatal)
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
