//! The `lxc` client: LXD's command line over the LXD REST API 1.0.
//!
//! `client/` is the API library (transport, envelope, operations, websockets); `cmd/` holds one
//! module per verb group; `config`, `parse`, `output`, `term` and `editor` are the shared plumbing.

pub mod client;
pub mod cmd;
pub mod config;
pub mod editor;
pub mod output;
pub mod parse;
pub mod term;
pub mod yaml;

use anyhow::{Context as _, bail};
use config::{Config, Remote};

/// The version `lxc version` reports for the client.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Ends the process with a given code after printing an optional `Error:` line (exec uses it
/// to return the command's exit status).
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: Option<String>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

impl std::error::Error for Exit {}

/// Asks `main` to print the help of the command being run, as LXD does when a command that
/// needs arguments is given none.
#[derive(Debug)]
pub struct ShowHelp;

impl std::fmt::Display for ShowHelp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Invalid number of arguments")
    }
}

impl std::error::Error for ShowHelp {}

/// Flags every command accepts.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub debug: bool,
    pub verbose: bool,
    pub quiet: bool,
    pub project: String,
    pub force_local: bool,
}

/// What a command needs: the configuration and the global flags.
#[derive(Debug)]
pub struct Ctx {
    pub conf: Config,
    pub global: Global,
}

impl Ctx {
    /// `[remote:]name` with the default remote filled in.
    pub fn parse_remote(&self, raw: &str) -> anyhow::Result<(String, String)> {
        Ok(self.conf.parse_remote(raw)?)
    }

    pub fn remote(&self, name: &str) -> anyhow::Result<&Remote> {
        Ok(self.conf.remote(name)?)
    }

    /// A client of an LXD server remote. Image-only (simplestreams) remotes are refused, as LXD
    /// refuses them for instance commands.
    pub fn client(&self, remote: &str) -> anyhow::Result<client::Client> {
        let r = self.remote(remote)?;
        let project = if !self.global.project.is_empty() {
            self.global.project.clone()
        } else {
            r.project.clone()
        };
        if self.global.force_local {
            let ep = client::Endpoint::Unix(config::local_socket_path());
            return Ok(client::Client::new(ep, &project, self.global.debug)?);
        }
        if r.is_simplestreams() || (r.public && !r.is_unix()) {
            bail!("The remote isn't a private LXD server");
        }
        self.connect(remote, r, &project)
    }

    /// A client of an LXD server for image commands: public (image-only) LXD servers too.
    pub fn image_server(&self, remote: &str) -> anyhow::Result<client::Client> {
        let r = self.remote(remote)?;
        if r.is_simplestreams() {
            bail!("The remote {remote} is a simplestreams image server");
        }
        if self.global.force_local {
            return self.client(remote);
        }
        self.connect(remote, r, &r.project.clone())
    }

    fn connect(&self, name: &str, r: &Remote, project: &str) -> anyhow::Result<client::Client> {
        if r.is_unix() {
            let ep = client::Endpoint::Unix(config::unix_socket_of(&r.addr));
            return Ok(client::Client::new(ep, project, self.global.debug)?);
        }
        if !r.addr.starts_with("https://") {
            bail!("Invalid remote address {} for {name}", r.addr);
        }
        let tls = self.remote_tls(name, r.public)?;
        let ep = client::Endpoint::Https {
            url: r.addr.clone(),
            tls: std::sync::Arc::new(tls),
        };
        Ok(client::Client::new(ep, project, self.global.debug)?)
    }

    /// The TLS setup for an HTTPS remote: its pinned certificate (`servercerts/NAME.crt`) or
    /// the system CAs, and our client certificate unless the remote is public.
    pub fn remote_tls(&self, name: &str, public: bool) -> anyhow::Result<rustls::ClientConfig> {
        use client::tls::{ClientIdentity, ServerTrust, client_config, parse_cert_pem};
        let certf = self.server_cert_path(name);
        let trust = match std::fs::read_to_string(&certf) {
            Ok(pem) => ServerTrust::Pinned(parse_cert_pem(&pem)?),
            Err(_) => ServerTrust::System,
        };
        let identity = if public {
            None
        } else {
            ClientIdentity::load(&self.conf.dir)?
        };
        Ok(client_config(trust, identity.as_ref())?)
    }

    /// Where the pinned certificate of a remote lives (LXD `ServerCertPath`).
    pub fn server_cert_path(&self, name: &str) -> std::path::PathBuf {
        self.conf
            .dir
            .join("servercerts")
            .join(format!("{name}.crt"))
    }

    /// Like [`Ctx::client`] for `[remote:]name`, returning the name too.
    pub fn client_for(&self, raw: &str) -> anyhow::Result<(client::Client, String)> {
        let (remote, name) = self.parse_remote(raw)?;
        Ok((self.client(&remote)?, name))
    }

    pub fn save_config(&self) -> anyhow::Result<()> {
        self.conf
            .save()
            .with_context(|| "Failed to save the client configuration".to_string())
    }
}
