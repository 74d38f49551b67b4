//! Small verbs: `version`, `monitor`, `project`, `operation`, `query`, `alias`, and the
//! first-run hint LXD prints when the client configuration does not exist yet.

use anyhow::bail;
use clap::{Args, Subcommand};
use lxd_api::{Operation, ResponseType};
use reqwest::Method;
use serde::Serialize;
use std::collections::BTreeMap;

use super::{Command, print_out};
use crate::client::esc;
use crate::client::operation::EventListener;
use crate::{CLIENT_VERSION, Ctx, output};

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[arg(value_name = "[<remote>:]")]
    pub remote: Option<String>,
}

pub async fn version(ctx: &Ctx, a: VersionArgs) -> anyhow::Result<()> {
    println!("Client version: {CLIENT_VERSION}");
    // An unknown remote is reported as an unreachable server, as LXD does.
    let server = match ctx
        .parse_remote(a.remote.as_deref().unwrap_or(""))
        .and_then(|(remote, _)| ctx.client(&remote))
    {
        Ok(c) => c
            .server()
            .await
            .map(|s| s.environment.server_version.clone())
            .unwrap_or_else(|_| "unreachable".into()),
        Err(_) => "unreachable".into(),
    };
    println!("Server version: {server}");
    Ok(())
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[arg(value_name = "[<remote>:]")]
    pub remote: Option<String>,
    /// Event type to listen for
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Pretty rendering (short for --format=pretty)
    #[arg(long)]
    pub pretty: bool,
    /// Minimum level for log messages (only available when using pretty format)
    #[arg(long, value_name = "LEVEL")]
    pub loglevel: Option<String>,
    /// Format (json|pretty|yaml)
    #[arg(short, long, default_value = "yaml")]
    pub format: String,
    /// Show all events from all projects
    #[arg(long)]
    pub all_projects: bool,
}

/// One event as `lxc monitor` prints it: a YAML document with sorted keys, then a blank line.
pub fn render_event(ev: &lxd_api::Event, format: &str) -> anyhow::Result<String> {
    let v = serde_json::to_value(ev)?;
    Ok(match format {
        "json" => format!("{}\n", serde_json::to_string(&v)?),
        "pretty" => {
            let ctx = ev
                .metadata
                .get("context")
                .and_then(|c| c.as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let msg = ev
                .metadata
                .get("message")
                .or_else(|| ev.metadata.get("action"))
                .or_else(|| ev.metadata.get("description"))
                .and_then(|m| m.as_str())
                .unwrap_or_default();
            format!("{} {}: {msg} {ctx}\n", ev.timestamp, ev.kind)
        }
        _ => format!("{}\n\n", output::yaml_strings(&v)?),
    })
}

pub async fn monitor(ctx: &Ctx, a: MonitorArgs) -> anyhow::Result<()> {
    let format = if a.pretty {
        "pretty"
    } else {
        a.format.as_str()
    };
    if !matches!(format, "yaml" | "json" | "pretty") {
        bail!("Invalid format: {format}");
    }
    let (remote, _) = ctx.parse_remote(a.remote.as_deref().unwrap_or(""))?;
    let client = ctx.client(&remote)?;
    let mut path = format!("/1.0/events?type={}", esc(&a.types.join(",")));
    if a.types.is_empty() {
        path = "/1.0/events".into();
    }
    if a.all_projects {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("all-projects=true");
    }
    let mut listener = EventListener::connect_path(&client, &path).await?;
    while let Some(ev) = listener.next().await {
        let ev = ev?;
        print_out(&render_event(&ev, format)?);
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// List projects
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Show project options
    Show {
        #[arg(value_name = "[<remote>:]<project>")]
        name: String,
    },
}

pub async fn project(ctx: &Ctx, cmd: ProjectCmd) -> anyhow::Result<()> {
    match cmd {
        ProjectCmd::List { remote, format } => {
            let format = super::format(&format)?;
            let (remote, _) = ctx.parse_remote(remote.as_deref().unwrap_or(""))?;
            let client = ctx.client(&remote)?;
            let (projects, raw): (Vec<lxd_api::project::Project>, _) =
                client.get_both("/1.0/projects?recursion=1").await?;
            let current = client.project().to_string();
            let yes = |p: &lxd_api::project::Project, k: &str| {
                output::yes_no(matches!(
                    p.config.get(k).map(String::as_str),
                    Some("true" | "1" | "yes" | "on")
                ))
            };
            let mut rows: Vec<Vec<String>> = projects
                .iter()
                .map(|p| {
                    let name = if p.name == current {
                        format!("{} (current)", p.name)
                    } else {
                        p.name.clone()
                    };
                    vec![
                        name,
                        yes(p, "features.images"),
                        yes(p, "features.profiles"),
                        yes(p, "features.storage.volumes"),
                        yes(p, "features.networks"),
                        p.description.clone(),
                        p.used_by.len().to_string(),
                    ]
                })
                .collect();
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &[
                    "NAME",
                    "IMAGES",
                    "PROFILES",
                    "STORAGE VOLUMES",
                    "NETWORKS",
                    "DESCRIPTION",
                    "USED BY",
                ],
                &rows,
                &raw,
            )?);
        }
        ProjectCmd::Show { name } => {
            let (client, name) = ctx.client_for(&name)?;
            let p: lxd_api::project::Project =
                client.get(&format!("/1.0/projects/{}", esc(&name))).await?;
            print_out(&output::yaml_ordered(
                &p,
                &["config", "description", "name", "used_by"],
            )?);
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum OperationCmd {
    /// Delete a background operation (will attempt to cancel)
    #[command(visible_alias = "rm", visible_alias = "cancel")]
    Delete {
        #[arg(value_name = "[<remote>:]<operation>")]
        id: String,
    },
    /// List background operations
    #[command(visible_alias = "ls")]
    List {
        #[arg(value_name = "[<remote>:]")]
        remote: Option<String>,
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Show details on a background operation
    Show {
        #[arg(value_name = "[<remote>:]<operation>")]
        id: String,
    },
}

pub fn operation_rows(ops: &[Operation]) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = ops
        .iter()
        .map(|o| {
            vec![
                o.id.clone(),
                o.class.to_uppercase(),
                o.description.clone(),
                o.status.to_uppercase(),
                output::yes_no(o.may_cancel),
                output::time_short_utc(&o.created_at).unwrap_or_default(),
            ]
        })
        .collect();
    output::sort_rows(&mut rows);
    rows
}

pub async fn operation(ctx: &Ctx, cmd: OperationCmd) -> anyhow::Result<()> {
    match cmd {
        OperationCmd::Delete { id } => {
            let (client, id) = ctx.client_for(&id)?;
            client
                .send::<()>(
                    Method::DELETE,
                    &format!("/1.0/operations/{}", esc(&id)),
                    None,
                    None,
                )
                .await?;
            if !ctx.global.quiet {
                println!("Operation {id} deleted");
            }
        }
        OperationCmd::List { remote, format } => {
            let format = super::format(&format)?;
            let (remote, _) = ctx.parse_remote(remote.as_deref().unwrap_or(""))?;
            let client = ctx.client(&remote)?;
            let by_status: Option<BTreeMap<String, Option<Vec<Operation>>>> =
                client.get("/1.0/operations?recursion=1").await?;
            let ops: Vec<Operation> = by_status
                .unwrap_or_default()
                .into_values()
                .flatten()
                .flatten()
                .collect();
            let rows = operation_rows(&ops);
            print_out(&output::render(
                format,
                &[
                    "ID",
                    "TYPE",
                    "DESCRIPTION",
                    "STATUS",
                    "CANCELABLE",
                    "CREATED",
                ],
                &rows,
                &ops,
            )?);
        }
        OperationCmd::Show { id } => {
            let (client, id) = ctx.client_for(&id)?;
            let op = client.get_operation(&id).await?;
            print_out(&output::yaml(&op)?);
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[arg(value_name = "[<remote>:]<API path>")]
    pub path: String,
    /// Action (defaults to GET)
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub action: String,
    /// Input data
    #[arg(short, long)]
    pub data: Option<String>,
    /// Wait for the operation to complete
    #[arg(long)]
    pub wait: bool,
    /// Print the raw response
    #[arg(long)]
    pub raw: bool,
}

/// JSON indented with tabs, as Go's `json.MarshalIndent(v, "", "\t")`.
pub fn json_tabs<T: Serialize>(v: &T) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

pub async fn query(ctx: &Ctx, a: QueryArgs) -> anyhow::Result<()> {
    let (remote, path) = ctx.parse_remote(&a.path)?;
    if !path.starts_with('/') {
        bail!("Query path must start with /");
    }
    let client = ctx.client(&remote)?;
    let method = Method::from_bytes(a.action.to_uppercase().as_bytes())?;
    let body = match a.data.as_deref() {
        None => None,
        Some("-") => Some(crate::editor::read_stdin()?),
        Some(d) => Some(d.to_string()),
    }
    .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d)));
    let (mut resp, _) = client.query(method, &path, body.as_ref(), None).await?;
    if a.wait && resp.kind == ResponseType::Async {
        let op: Operation = serde_json::from_value(resp.metadata.clone())?;
        let mut rop = crate::client::RemoteOperation::from_operation(&client, op);
        rop.wait(|_| {}).await?;
        resp.metadata = serde_json::to_value(&rop.op)?;
    }
    if a.raw {
        print_out(&format!("{}\n\n", json_tabs(&resp)?));
    } else if !resp.metadata.is_null()
        && resp.metadata != serde_json::Value::Object(Default::default())
    {
        print_out(&format!("{}\n\n", json_tabs(&resp.metadata)?));
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Add new aliases
    Add { alias: String, target: String },
    /// List aliases
    #[command(visible_alias = "ls")]
    List {
        /// Format (csv|json|table|yaml|compact)
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Remove aliases
    #[command(visible_alias = "rm")]
    Remove { alias: String },
    /// Rename aliases
    #[command(visible_alias = "mv")]
    Rename { old: String, new: String },
}

pub fn alias(ctx: &mut Ctx, cmd: AliasCmd) -> anyhow::Result<()> {
    match cmd {
        AliasCmd::Add { alias, target } => {
            if ctx.conf.aliases.contains_key(&alias) {
                bail!("Alias {alias} already exists");
            }
            ctx.conf.aliases.insert(alias, target);
            ctx.save_config()
        }
        AliasCmd::List { format } => {
            let format = super::format(&format)?;
            let mut rows: Vec<Vec<String>> = ctx
                .conf
                .aliases
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            output::sort_rows(&mut rows);
            print_out(&output::render(
                format,
                &["ALIAS", "TARGET"],
                &rows,
                &ctx.conf.aliases,
            )?);
            Ok(())
        }
        AliasCmd::Remove { alias } => {
            if ctx.conf.aliases.remove(&alias).is_none() {
                bail!("Alias {alias} doesn't exist");
            }
            ctx.save_config()
        }
        AliasCmd::Rename { old, new } => {
            if ctx.conf.aliases.contains_key(&new) {
                bail!("Alias {new} already exists");
            }
            let Some(target) = ctx.conf.aliases.remove(&old) else {
                bail!("Alias {old} doesn't exist");
            };
            ctx.conf.aliases.insert(new, target);
            ctx.save_config()
        }
    }
}

/// On the very first run (no config.yml yet) LXD saves the default configuration and prints a
/// hint on stderr, unless the daemon's directory is missing (the user may target a remote).
pub async fn first_run(ctx: &Ctx, cmd: &Command) {
    if ctx.global.force_local {
        return;
    }
    let sock = crate::config::local_socket_path();
    if !sock.parent().is_some_and(|p| p.exists()) {
        return;
    }
    if ctx.save_config().is_err() {
        return;
    }
    let mut flush = false;
    if let Ok(client) = ctx.client(crate::config::DEFAULT_REMOTE)
        && let Ok(server) = client.server().await
        && server.environment.storage.is_empty()
    {
        eprintln!(
            "If this is your first time running LXD on this machine, you should also run: lxd init"
        );
        flush = true;
    }
    if !matches!(cmd, Command::Init(_) | Command::Launch(_)) {
        eprintln!(
            "To start your first container, try: lxc launch ubuntu:22.04\nOr for a virtual machine: lxc launch ubuntu:22.04 --vm"
        );
        flush = true;
    }
    if flush {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_list_matches_lxd() {
        // From `lxc operation list --format csv` on LXD 5.0.2.
        let op: Operation = serde_json::from_value(serde_json::json!({
            "id": "9181f571-54e5-4ce0-9a38-dc2a2dc49bb9", "class": "task",
            "description": "Updating instance", "created_at": "2026-11-27T23:20:02.1Z",
            "status": "Success", "status_code": 200, "may_cancel": false
        }))
        .unwrap();
        assert_eq!(
            output::csv(&operation_rows(&[op])),
            "9181f571-54e5-4ce0-9a38-dc2a2dc49bb9,TASK,Updating instance,SUCCESS,NO,2026/11/27 23:20 UTC\n"
        );
    }

    #[test]
    fn monitor_events_render_like_lxd() {
        let ev: lxd_api::Event = serde_json::from_value(serde_json::json!({
            "type": "lifecycle", "timestamp": "2026-11-27T23:20:02.14137336Z",
            "metadata": {"action": "instance-updated", "source": "/1.0/instances/c1"},
            "location": "none", "project": "default"
        }))
        .unwrap();
        assert_eq!(
            render_event(&ev, "yaml").unwrap(),
            "location: none\nmetadata:\n  action: instance-updated\n  source: /1.0/instances/c1\nproject: default\ntimestamp: \"2026-11-27T23:20:02.14137336Z\"\ntype: lifecycle\n\n\n"
        );
    }

    #[test]
    fn query_output_uses_tabs() {
        assert_eq!(
            json_tabs(&serde_json::json!(["/1.0/instances/c1"])).unwrap(),
            "[\n\t\"/1.0/instances/c1\"\n]"
        );
    }
}
