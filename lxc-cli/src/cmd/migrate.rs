//! Copies between servers: LXD's migration API driven from the client, in the three modes
//! LXD's client offers (`client/lxd_instances.go` CopyInstance):
//! - pull: the source opens a migration operation, the target connects to its websockets;
//! - push: the target opens the operation, the source is told to connect to it;
//! - relay: both open operations and this client carries every websocket message between them
//!   (for servers that cannot reach each other).
//!
//! Servers reach each other at the addresses they advertise (`environment.addresses`, plus the
//! URL this client used for an HTTPS remote) and pin each other's certificates.

use std::collections::BTreeMap;

use anyhow::bail;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use lxd_api::{InstancePostTarget, InstancesPost};
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;

use super::{instance_path, wait, wait_progress};
use crate::client::operation::RemoteOperation;
use crate::client::{Client, Endpoint, WebSocket, esc};

/// What is migrated: an instance, or one snapshot of it (which becomes a new instance).
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub instance: &'a str,
    pub snapshot: Option<&'a str>,
}

/// How a cross-server copy runs.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Pull,
    Push,
    Relay,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Mode> {
        match s {
            "pull" => Ok(Mode::Pull),
            "push" => Ok(Mode::Push),
            "relay" => Ok(Mode::Relay),
            _ => bail!("Invalid migration mode '{s}' (pull, push or relay)"),
        }
    }
}

/// Where a server can be reached by another one, and the certificate to pin.
struct Connection {
    urls: Vec<String>,
    certificate: String,
}

async fn connection(c: &Client, role: &str) -> anyhow::Result<Connection> {
    let server = c.server().await?;
    let mut urls = Vec::new();
    if let Endpoint::Https { url, .. } = c.endpoint() {
        urls.push(url.trim_end_matches('/').to_string());
    }
    for a in &server.environment.addresses {
        let u = format!("https://{a}");
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    if urls.is_empty() {
        bail!("The {role} server isn't listening on the network (set core.https_address)");
    }
    Ok(Connection {
        urls,
        certificate: server.environment.certificate.clone(),
    })
}

/// The websocket secrets a migration operation holds in its metadata.
fn secrets(op: &RemoteOperation<'_>) -> BTreeMap<String, String> {
    op.op
        .metadata
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The source side's request: `POST /1.0/instances/NAME` or `.../snapshots/SNAP`.
fn source_request(
    from: Source<'_>,
    live: bool,
    instance_only: bool,
    target: Option<InstancePostTarget>,
) -> (String, serde_json::Value) {
    match from.snapshot {
        Some(snap) => (
            format!("{}/snapshots/{}", instance_path(from.instance), esc(snap)),
            serde_json::json!({
                "name": "",
                "migration": true,
                "live": live,
                "target": target,
            }),
        ),
        None => {
            let body = lxd_api::InstancePost {
                migration: true,
                live,
                instance_only,
                target,
                ..Default::default()
            };
            (
                instance_path(from.instance),
                serde_json::to_value(body).unwrap_or_default(),
            )
        }
    }
}

/// Cancel an operation we no longer need (the other side failed); errors are moot.
async fn cancel(client: &Client, op: &RemoteOperation<'_>) {
    if !op.op.id.is_empty() {
        let _ = client
            .send::<()>(
                Method::DELETE,
                &format!("/1.0/operations/{}", esc(&op.op.id)),
                None,
                None,
            )
            .await;
    }
}

/// Run one attempt per URL until one succeeds; the error names each failed address.
fn attempts_error(errors: Vec<(String, anyhow::Error)>) -> anyhow::Error {
    match errors.len() {
        1 => errors
            .into_iter()
            .next()
            .map(|(_, e)| e)
            .unwrap_or_else(|| anyhow::anyhow!("Migration failed")),
        _ => anyhow::anyhow!(
            "Failed instance creation: {}",
            errors
                .iter()
                .map(|(u, e)| format!("{u}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// Copy `from` on `src` into a new (or, with `req.source.refresh`, existing) instance on `dst`
/// described by `req` (its `source` carries `instance_only`, `live`, `refresh`).
pub async fn copy(
    src: &Client,
    dst: &Client,
    from: Source<'_>,
    mut req: InstancesPost,
    mode: Mode,
    quiet: bool,
) -> anyhow::Result<()> {
    let (live, instance_only) = (req.source.live, req.source.instance_only);
    req.source.kind = "migration".into();
    match mode {
        Mode::Pull => {
            let conn = connection(src, "source").await?;
            let (path, body) = source_request(from, live, instance_only, None);
            let src_op = src
                .operation(Method::POST, &path, Some(&body), None)
                .await?;
            req.source.mode = "pull".into();
            req.source.websockets = secrets(&src_op);
            req.source.certificate = conn.certificate.clone();
            let mut errors = Vec::new();
            for url in &conn.urls {
                req.source.operation = format!("{url}/1.0/operations/{}", esc(&src_op.op.id));
                let res = async {
                    let mut op = dst
                        .operation(Method::POST, "/1.0/instances", Some(&req), None)
                        .await?;
                    wait_progress(&mut op, "Transferring instance: %s", quiet).await
                }
                .await;
                match res {
                    Ok(()) => return Ok(()),
                    Err(e) => errors.push((url.clone(), e)),
                }
            }
            cancel(src, &src_op).await;
            Err(attempts_error(errors))
        }
        Mode::Push => {
            let conn = connection(dst, "target").await?;
            req.source.mode = "push".into();
            let mut dst_op = dst
                .operation(Method::POST, "/1.0/instances", Some(&req), None)
                .await?;
            let mut errors = Vec::new();
            for url in &conn.urls {
                let target = InstancePostTarget {
                    certificate: conn.certificate.clone(),
                    operation: format!("{url}/1.0/operations/{}", esc(&dst_op.op.id)),
                    websockets: secrets(&dst_op),
                };
                let (path, body) = source_request(from, live, instance_only, Some(target));
                let res = async {
                    let mut op = src
                        .operation(Method::POST, &path, Some(&body), None)
                        .await?;
                    wait_progress(&mut op, "Transferring instance: %s", quiet).await
                }
                .await;
                match res {
                    Ok(()) => return wait(&mut dst_op).await,
                    Err(e) => errors.push((url.clone(), e)),
                }
            }
            cancel(dst, &dst_op).await;
            Err(attempts_error(errors))
        }
        Mode::Relay => {
            let (path, body) = source_request(from, live, instance_only, None);
            let mut src_op = src
                .operation(Method::POST, &path, Some(&body), None)
                .await?;
            req.source.mode = "push".into();
            let mut dst_op = match dst
                .operation(Method::POST, "/1.0/instances", Some(&req), None)
                .await
            {
                Ok(op) => op,
                Err(e) => {
                    cancel(src, &src_op).await;
                    return Err(e.into());
                }
            };
            let (src_secrets, dst_secrets) = (secrets(&src_op), secrets(&dst_op));
            let relays = async {
                let mut tasks = Vec::new();
                for (name, dst_secret) in &dst_secrets {
                    let Some(src_secret) = src_secrets.get(name) else {
                        bail!(
                            "Migration target expects the \"{name}\" socket but source isn't providing it"
                        );
                    };
                    let a = src.operation_websocket(&src_op.op.id, src_secret).await?;
                    let b = dst.operation_websocket(&dst_op.op.id, dst_secret).await?;
                    tasks.push(tokio::spawn(relay(a, b)));
                }
                Ok(tasks)
            }
            .await;
            let tasks = match relays {
                Ok(t) => t,
                Err(e) => {
                    cancel(src, &src_op).await;
                    cancel(dst, &dst_op).await;
                    return Err(e);
                }
            };
            let res = wait_progress(&mut dst_op, "Transferring instance: %s", quiet).await;
            if let Err(e) = res {
                cancel(src, &src_op).await;
                for t in tasks {
                    t.abort();
                }
                return Err(e);
            }
            wait(&mut src_op).await
        }
    }
}

/// Carry every message between two websockets, both ways, until both sides have closed.
async fn relay(a: WebSocket, b: WebSocket) {
    let (a_tx, a_rx) = a.split();
    let (b_tx, b_rx) = b.split();
    tokio::join!(forward(a_rx, b_tx), forward(b_rx, a_tx));
}

/// One direction of a relay: data and end-of-stream markers pass as they are; a close on one
/// side closes the other.
async fn forward(mut rx: SplitStream<WebSocket>, mut tx: SplitSink<WebSocket, Message>) {
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => break,
            msg => {
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}
