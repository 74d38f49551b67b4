//! `lxc console`: attach to an instance's console through its monitor, which hands over the pty
//! master and stops logging while the session is held; `--show-log` reads the console log.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use lxd_api::exec::InstanceExecControl;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use super::exec::PtyMaster;
use super::runtime::{self as rt, RunState};
use crate::daemon::Daemon;
use crate::error::{ApiError, Result};
use crate::operations::{Op, TaskResult, instance_resources, random_secret};

pub fn start(d: &Arc<Daemon>, name: &str, width: i64, height: i64) -> Result<Arc<Op>> {
    d.db.instance(name)?;
    match rt::probe(d, name) {
        RunState::Running { .. } => {}
        RunState::Frozen { .. } => return Err(ApiError::bad_request("Instance is frozen")),
        RunState::Stopped => return Err(ApiError::bad_request("Instance is not running")),
    }
    let secrets: Vec<(String, String)> = ["0", "control"]
        .iter()
        .map(|n| (n.to_string(), random_secret()))
        .collect();
    let fds: BTreeMap<String, String> = secrets.iter().cloned().collect();
    let d2 = d.clone();
    let name = name.to_string();
    Ok(d.ops.start_websocket(
        "Showing console",
        instance_resources(&[&name]),
        json!({ "fds": fds }),
        secrets,
        move |op, sockets| async move { run(&d2, &name, width, height, sockets, &op).await },
    ))
}

async fn run(
    d: &Daemon,
    name: &str,
    width: i64,
    height: i64,
    sockets: Vec<(String, oneshot::Receiver<WebSocket>)>,
    _op: &Op,
) -> TaskResult {
    let mut socks = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for (n, rx) in sockets {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(ws)) => {
                socks.insert(n, ws);
            }
            _ if n == "control" => {}
            _ => {
                return Err(ApiError::bad_request(
                    "Timed out waiting for the console websocket",
                ));
            }
        }
    }
    let run_dir = d.run_dir(name);
    let att = tokio::task::spawn_blocking(move || lxd_runtime::control::attach_console(&run_dir))
        .await?
        .map_err(|e| ApiError::bad_request(format!("Failed to attach to the console: {e}")))?;
    let lxd_runtime::control::ConsoleAttachment { master, conn } = att;
    let pty = Arc::new(
        PtyMaster::new(master)
            .map_err(|e| ApiError::internal(format!("Failed to set up the console: {e}")))?,
    );
    if width > 0 && height > 0 {
        pty.resize(width as u16, height as u16);
    }
    let Some(ws) = socks.remove("0") else {
        return Ok(None);
    };
    let (mut tx, mut rx) = ws.split();
    let stop_out = tokio_util::sync::CancellationToken::new();
    let out = {
        let pty = pty.clone();
        let stop = stop_out.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let r = tokio::select! {
                    r = pty.read(&mut buf) => r,
                    _ = stop.cancelled() => break,
                };
                match r {
                    Ok(n) if n > 0 => {
                        if tx
                            .send(Message::Binary(buf[..n].to_vec().into()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // EIO: nothing holds the slave right now (init restarting); keep trying.
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => break,
                }
            }
            let _ = tx.close().await;
        })
    };
    // The client detaches (ctrl-a q) by closing the control socket, as LXD's does.
    let (detach_tx, mut detach_rx) = oneshot::channel::<()>();
    let control = socks.remove("control").map(|ws| {
        let pty = pty.clone();
        tokio::spawn(async move {
            let _detach = detach_tx;
            let (_tx, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(t) = msg else {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                if let Ok(c) = serde_json::from_str::<InstanceExecControl>(&t)
                    && c.command == "window-resize"
                {
                    let w = c
                        .args
                        .get("width")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let h = c
                        .args
                        .get("height")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if w > 0 && h > 0 {
                        pty.resize(w, h);
                    }
                }
            }
        })
    });
    // Input until the client detaches (closes the control or the data socket).
    loop {
        let msg = tokio::select! {
            m = rx.next() => m,
            _ = &mut detach_rx, if control.is_some() => break,
        };
        let Some(Ok(msg)) = msg else { break };
        let data = match msg {
            Message::Binary(b) => b.to_vec(),
            Message::Text(t) if !t.is_empty() => t.as_bytes().to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        if pty.write_all(&data).await.is_err() {
            break;
        }
    }
    stop_out.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), out).await;
    if let Some(c) = control {
        c.abort();
    }
    // Dropping the monitor connection hands the console back to the log.
    drop(conn);
    Ok(None)
}

/// The console log (what `lxc console --show-log` prints).
pub fn log(d: &Daemon, name: &str) -> Result<Vec<u8>> {
    d.db.instance(name)?;
    let path = d.log_dir(name).join("console.log");
    match std::fs::read(&path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(crate::error::io_err("read", &path, e)),
    }
}
