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
        if r.is_unix() {
            let ep = client::Endpoint::Unix(config::unix_socket_of(&r.addr));
            return Ok(client::Client::new(ep, &project, self.global.debug)?);
        }
        bail!(
            "Remote {remote} ({}) uses HTTPS, which this client does not support yet",
            r.addr
        )
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
