//! The commands, one module per verb group, and what they share: the clap tree, waiting for an
//! operation with LXD's progress line, and small request helpers.

pub mod action;
pub mod config;
pub mod console;
pub mod copy;
pub mod delete;
pub mod exec;
pub mod file;
pub mod image;
pub mod info;
pub mod init;
pub mod list;
pub mod migrate;
pub mod misc;
pub mod network;
pub mod profile;
pub mod publish;
pub mod remote;
pub mod snapshot;
pub mod storage;
pub mod trust;

use clap::{Parser, Subcommand};

use crate::client::{Client, RemoteOperation, esc};
use crate::term::Progress;
use crate::{CLIENT_VERSION, Ctx};

#[derive(Debug, Parser)]
#[command(
    name = "lxc",
    version = CLIENT_VERSION,
    about = "Command line client for LXD",
    long_about = "Command line client for LXD\n\nAll of LXD's features can be driven through the various commands below.\nFor help with any of those, simply call them with --help.",
    disable_help_subcommand = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Show all debug messages
    #[arg(long, global = true)]
    pub debug: bool,
    /// Show all information messages
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Don't show progress information
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Override the source project
    #[arg(long, global = true, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Force using the local unix socket
    #[arg(long, global = true)]
    pub force_local: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage command aliases
    #[command(subcommand)]
    Alias(misc::AliasCmd),
    /// Manage instance and server configuration options
    Config(config::ConfigArgs),
    /// Attach to instance consoles
    Console(console::ConsoleArgs),
    /// Copy instances within or in between LXD servers
    #[command(visible_alias = "cp")]
    Copy(copy::CopyArgs),
    /// Delete instances and snapshots
    #[command(visible_alias = "rm")]
    Delete(delete::DeleteArgs),
    /// Execute commands in instances
    Exec(exec::ExecArgs),
    /// Manage files in instances
    #[command(subcommand)]
    File(file::FileCmd),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Show instance or server information
    Info(info::InfoArgs),
    /// Create instances from images
    #[command(visible_alias = "create")]
    Init(init::InitArgs),
    /// Create and start instances from images
    Launch(init::InitArgs),
    /// List instances
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// Monitor a local or remote LXD server
    Monitor(misc::MonitorArgs),
    /// Move instances within or in between LXD servers
    #[command(visible_alias = "mv")]
    Move(copy::MoveArgs),
    /// Manage and attach instances to networks
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// List, show and delete background operations
    #[command(subcommand)]
    Operation(misc::OperationCmd),
    /// Pause instances
    #[command(visible_alias = "freeze")]
    Pause(action::ActionArgs),
    /// Manage profiles
    #[command(subcommand)]
    Profile(profile::ProfileCmd),
    /// Manage projects
    #[command(subcommand)]
    Project(misc::ProjectCmd),
    /// Publish instances as images
    Publish(publish::PublishArgs),
    /// Send a raw query to LXD
    Query(misc::QueryArgs),
    /// Manage the list of remote servers
    #[command(subcommand)]
    Remote(remote::RemoteCmd),
    /// Rename instances and snapshots
    Rename(copy::RenameArgs),
    /// Restart instances
    Restart(action::StopArgs),
    /// Restore instances from snapshots
    Restore(snapshot::RestoreArgs),
    /// Create instance snapshots
    Snapshot(snapshot::SnapshotArgs),
    /// Start instances
    Start(action::ActionArgs),
    /// Stop instances
    Stop(action::StopArgs),
    /// Manage storage pools and volumes
    #[command(subcommand)]
    Storage(storage::StorageCmd),
    /// Show local and remote versions
    Version(misc::VersionArgs),
}

/// The help text of the (sub)command named by `args`, and how many positional arguments
/// follow it (flags are skipped).
pub fn help_for(args: &[String]) -> (String, usize) {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = String::from("lxc");
    let mut positionals = 0;
    for a in args {
        if a.starts_with('-') {
            continue;
        }
        let next = cmd
            .get_subcommands()
            .find(|c| c.get_name() == a || c.get_all_aliases().any(|al| al == a))
            .cloned();
        match next {
            Some(c) if positionals == 0 => {
                path = format!("{path} {}", c.get_name());
                cmd = c.bin_name(path.clone());
            }
            _ => positionals += 1,
        }
    }
    (cmd.render_help().to_string(), positionals)
}

/// Run one parsed command.
pub async fn dispatch(ctx: &mut Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Alias(c) => misc::alias(ctx, c),
        Command::Config(a) => config::run(ctx, a).await,
        Command::Console(a) => console::run(ctx, a).await,
        Command::Copy(a) => copy::copy(ctx, a).await,
        Command::Delete(a) => delete::run(ctx, a).await,
        Command::Exec(a) => exec::run(ctx, a).await,
        Command::File(c) => file::run(ctx, c).await,
        Command::Image(c) => image::run(ctx, c).await,
        Command::Info(a) => info::run(ctx, a).await,
        Command::Init(a) => init::run(ctx, a, false).await,
        Command::Launch(a) => init::run(ctx, a, true).await,
        Command::List(a) => list::run(ctx, a).await,
        Command::Monitor(a) => misc::monitor(ctx, a).await,
        Command::Move(a) => copy::mv(ctx, a).await,
        Command::Network(c) => network::run(ctx, c).await,
        Command::Operation(c) => misc::operation(ctx, c).await,
        Command::Pause(a) => action::run(ctx, "freeze", "pause", a, None).await,
        Command::Profile(c) => profile::run(ctx, c).await,
        Command::Project(c) => misc::project(ctx, c).await,
        Command::Publish(a) => publish::run(ctx, a).await,
        Command::Query(a) => misc::query(ctx, a).await,
        Command::Remote(c) => remote::run(ctx, c).await,
        Command::Rename(a) => copy::rename(ctx, a).await,
        Command::Restart(a) => action::run_stop(ctx, "restart", a).await,
        Command::Restore(a) => snapshot::restore(ctx, a).await,
        Command::Snapshot(a) => snapshot::snapshot(ctx, a).await,
        Command::Start(a) => action::run(ctx, "start", "start", a, None).await,
        Command::Stop(a) => action::run_stop(ctx, "stop", a).await,
        Command::Storage(c) => storage::run(ctx, c).await,
        Command::Version(a) => misc::version(ctx, a).await,
    }
}

/// `/1.0/instances/NAME`.
pub fn instance_path(name: &str) -> String {
    format!("/1.0/instances/{}", esc(name))
}

/// Wait for an operation, rendering its `*_progress` metadata with `format` (LXD's
/// `ProgressRenderer` Format; `%s` is replaced by the status).
pub async fn wait_progress(
    op: &mut RemoteOperation<'_>,
    format: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(format, quiet);
    let res = op
        .wait(|o| {
            if let Some(t) = crate::client::operation::progress_text(o) {
                progress.update(&t);
            }
        })
        .await;
    progress.done("");
    Ok(res?)
}

/// Wait for an operation without progress output.
pub async fn wait(op: &mut RemoteOperation<'_>) -> anyhow::Result<()> {
    Ok(op.wait(|_| {}).await?)
}

/// Fail with LXD's message when an argument list has the wrong length.
pub fn check_args(args: &[String], min: usize, max: Option<usize>) -> anyhow::Result<()> {
    if args.is_empty() && min > 0 {
        return Err(crate::ShowHelp.into());
    }
    if args.len() < min || max.is_some_and(|m| args.len() > m) {
        anyhow::bail!("Invalid number of arguments");
    }
    Ok(())
}

/// Parse a `--format` value.
pub fn format(s: &str) -> anyhow::Result<crate::output::Format> {
    Ok(s.parse()?)
}

/// Print without a trailing newline (the renderers already end lines).
pub fn print_out(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// The items of a raw (server-ordered) list whose `key` field is in `keep`, for json/yaml output.
pub fn filter_raw(raw: &yaml_serde::Value, key: &str, keep: &[&str]) -> yaml_serde::Value {
    match raw {
        yaml_serde::Value::Sequence(items) => yaml_serde::Value::Sequence(
            items
                .iter()
                .filter(|i| {
                    i.get(key)
                        .and_then(|v| v.as_str())
                        .is_some_and(|v| keep.contains(&v))
                })
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A `GET` of an instance with its ETag.
pub async fn get_instance(
    client: &Client,
    name: &str,
) -> anyhow::Result<(lxd_api::Instance, Option<String>)> {
    Ok(client.get_etag(&instance_path(name)).await?)
}

/// `PUT` an instance's writable part and wait for the operation.
pub async fn put_instance(
    client: &Client,
    name: &str,
    put: &lxd_api::InstancePut,
    etag: Option<&str>,
) -> anyhow::Result<()> {
    let mut op = client
        .operation(reqwest::Method::PUT, &instance_path(name), Some(put), etag)
        .await?;
    wait(&mut op).await
}

/// The writable part of an instance (LXD `Instance.Writable()`).
pub fn writable(inst: &lxd_api::Instance) -> lxd_api::InstancePut {
    lxd_api::InstancePut {
        architecture: inst.architecture.clone(),
        config: inst.config.clone(),
        devices: inst.devices.clone(),
        ephemeral: inst.ephemeral,
        profiles: inst.profiles.clone(),
        stateful: inst.stateful,
        description: inst.description.clone(),
        restore: String::new(),
    }
}
