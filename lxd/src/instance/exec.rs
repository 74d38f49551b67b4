//! `lxc exec`: run a command in a running instance through `lxd forkexec` and relay its stdio over
//! the operation's websockets (binary frames carry data, an empty text frame is EOF). Interactive
//! sessions get a pty allocated in the container's own devpts; the control socket carries
//! window-resize and signals, and closing it kills the command, as LXD does.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use lxd_api::exec::{InstanceExecControl, InstanceExecPost};
use serde_json::json;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::oneshot;

use super::runtime::{self as rt, RunState};
use crate::daemon::Daemon;
use crate::error::{ApiError, Result};
use crate::operations::{Op, TaskResult, instance_resources, random_secret};

/// How long to wait for the client to connect every websocket it asked for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment LXD gives a command: defaults, then `environment.*`, then the request's.
pub fn exec_env(
    expanded: &lxd_api::ConfigMap,
    req: &BTreeMap<String, String>,
    uid: u32,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in expanded {
        if let Some(k) = k.strip_prefix("environment.") {
            env.insert(k.to_string(), v.clone());
        }
    }
    for (k, v) in req {
        env.insert(k.clone(), v.clone());
    }
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
    if uid == 0 {
        env.entry("HOME".into()).or_insert_with(|| "/root".into());
        env.entry("USER".into()).or_insert_with(|| "root".into());
    }
    env
}

/// Validate and start an exec operation; returns it (class websocket) for the async response.
pub fn start(d: &Arc<Daemon>, name: &str, req: InstanceExecPost) -> Result<Arc<Op>> {
    let row = d.db.instance(name)?;
    let state = rt::probe(d, name);
    let init_pid = match state {
        RunState::Running { init_pid, .. } => init_pid,
        RunState::Frozen { .. } => return Err(ApiError::bad_request("Instance is frozen")),
        RunState::Stopped => return Err(ApiError::bad_request("Instance is not running")),
    };
    if req.command.is_empty() {
        return Err(ApiError::bad_request("No command given"));
    }
    if req.record_output && req.wait_for_websocket {
        return Err(ApiError::bad_request(
            "record-output is not supported together with wait-for-websocket",
        ));
    }
    let expanded = super::expand_row(d, &row)?;
    let env = exec_env(&expanded.config, &req.environment, req.user);
    let resources = instance_resources(&[name]);
    let exec_req = lxd_runtime::attach::ExecRequest {
        init_pid,
        cgroup_name: rt::cgroup_name(name),
        command: req.command.clone(),
        env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cwd: req.cwd.clone(),
        uid: req.user,
        gid: req.group,
        pty: req.interactive && req.wait_for_websocket,
    };
    let name = name.to_string();
    if !req.wait_for_websocket {
        let d2 = d.clone();
        let meta = json!({"command": req.command, "environment": env, "interactive": false});
        let op = d.ops.start_task(
            "Executing command",
            resources,
            false,
            move |op| async move {
                op.extend_metadata(meta);
                run_detached(&d2, &name, exec_req, req.record_output, &op).await
            },
        );
        return Ok(op);
    }
    let names: Vec<&str> = if req.interactive {
        vec!["0", "control"]
    } else {
        vec!["0", "1", "2", "control"]
    };
    let secrets: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), random_secret()))
        .collect();
    let fds: BTreeMap<String, String> = secrets.iter().cloned().collect();
    let meta = json!({
        "fds": fds,
        "command": req.command,
        "environment": env,
        "interactive": req.interactive,
    });
    let d2 = d.clone();
    let interactive = req.interactive;
    let (width, height) = (req.width, req.height);
    Ok(d.ops.start_websocket(
        "Executing command",
        resources,
        meta,
        secrets,
        move |op, sockets| async move {
            run_websocket(&d2, exec_req, interactive, (width, height), sockets, &op).await
        },
    ))
}

async fn collect_sockets(
    sockets: Vec<(String, oneshot::Receiver<WebSocket>)>,
    interactive: bool,
) -> Result<BTreeMap<String, WebSocket>> {
    let mut out = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    for (name, rx) in sockets {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(ws)) => {
                out.insert(name, ws);
            }
            // Old clients never connect the control socket in non-interactive mode.
            _ if name == "control" && !interactive => {}
            _ => {
                return Err(ApiError::bad_request(
                    "Timed out waiting for the exec websockets to connect",
                ));
            }
        }
    }
    Ok(out)
}

/// The result of the command as the operation reports it.
fn finish(code: i32, op: &Op) -> TaskResult {
    op.extend_metadata(json!({"return": code}));
    match code {
        126 => Err(ApiError::bad_request("Command not executable")),
        127 => Err(ApiError::bad_request("Command not found")),
        _ => Ok(None),
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// `lxd forkexec REQUEST`: nothing to do between fork and exec, so std spawns it with
/// posix_spawn (a vfork) rather than forking the whole daemon.
fn forkexec_command(d: &Daemon, req: &lxd_runtime::attach::ExecRequest) -> Result<Command> {
    let json = serde_json::to_string(req)?;
    let mut cmd = Command::new(&d.exe);
    cmd.arg("forkexec").arg(json).kill_on_drop(true);
    Ok(cmd)
}

async fn run_detached(
    d: &Daemon,
    name: &str,
    req: lxd_runtime::attach::ExecRequest,
    record: bool,
    op: &Op,
) -> TaskResult {
    let mut cmd = forkexec_command(d, &req)?;
    cmd.stdin(std::process::Stdio::null());
    let mut output = None;
    if record {
        let dir = d.log_dir(name);
        crate::daemon::create_dir_mode(&dir, 0o700)?;
        let base = format!("exec_{}", op.id);
        let out = std::fs::File::create(dir.join(format!("{base}.stdout")))
            .map_err(|e| ApiError::internal(format!("Failed to create the output file: {e}")))?;
        let err = std::fs::File::create(dir.join(format!("{base}.stderr")))
            .map_err(|e| ApiError::internal(format!("Failed to create the output file: {e}")))?;
        cmd.stdout(out).stderr(err);
        output = Some(json!({
            "1": format!("/1.0/instances/{name}/logs/{base}.stdout"),
            "2": format!("/1.0/instances/{name}/logs/{base}.stderr"),
        }));
    } else {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("Failed to run forkexec: {e}")))?;
    drop(cmd);
    let status = child
        .wait()
        .await
        .map_err(|e| ApiError::internal(format!("Failed to wait for the command: {e}")))?;
    if let Some(o) = output {
        op.extend_metadata(json!({"output": o}));
    }
    finish(exit_code(status), op)
}

/// Pump a reader into a websocket as binary frames, then send the EOF barrier.
async fn pump_out<R: AsyncRead + Unpin>(
    mut r: R,
    mut ws: futures_util::stream::SplitSink<WebSocket, Message>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if ws
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = ws.send(Message::Text("".into())).await;
    let _ = ws.close().await;
}

/// Pump a websocket's frames into a writer until EOF (empty text frame or close).
async fn pump_in<W: AsyncWrite + Unpin>(
    mut ws: futures_util::stream::SplitStream<WebSocket>,
    mut w: W,
) {
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Binary(b) => {
                if w.write_all(&b).await.is_err() {
                    break;
                }
                let _ = w.flush().await;
            }
            Message::Text(t) if t.is_empty() => break,
            Message::Text(t) if w.write_all(t.as_bytes()).await.is_err() => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    let _ = w.shutdown().await;
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags);
    if !flags.contains(nix::fcntl::OFlag::O_NONBLOCK) {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK),
        )?;
    }
    Ok(())
}

/// The pty master as an async byte stream.
pub(crate) struct PtyMaster(AsyncFd<OwnedFd>);

impl PtyMaster {
    pub(crate) fn new(fd: OwnedFd) -> std::io::Result<Self> {
        set_nonblocking(&fd)?;
        Ok(PtyMaster(crate::fdio::register(
            fd,
            tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE,
        )?))
    }

    pub(crate) async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            // The console master's file description is shared with the monitor: make sure a
            // read can never block a runtime worker, whatever the other side did to the flags.
            set_nonblocking(self.0.get_ref())?;
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(std::io::Error::from))
            {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    pub(crate) async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(std::io::Error::from))
            {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub(crate) fn resize(&self, cols: u16, rows: u16) {
        let _ = lxd_runtime::attach::set_window_size(self.0.get_ref().as_fd(), cols, rows);
    }
}

/// Signal the command of the `forkexec` helper `helper` (the helper itself before it forked).
fn send_signal(helper: Option<u32>, sig: i32) {
    let Some(helper) = helper.and_then(|h| i32::try_from(h).ok()) else {
        return;
    };
    let pid = lxd_runtime::attach::command_pid(helper).unwrap_or(helper);
    if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

async fn run_websocket(
    d: &Daemon,
    req: lxd_runtime::attach::ExecRequest,
    interactive: bool,
    (width, height): (i64, i64),
    sockets: Vec<(String, oneshot::Receiver<WebSocket>)>,
    op: &Op,
) -> TaskResult {
    let mut socks = collect_sockets(sockets, interactive).await?;
    let mut cmd = forkexec_command(d, &req)?;
    let mut relays = Vec::new();
    let mut pty: Option<Arc<PtyMaster>> = None;
    let mut child;
    if interactive {
        let (master, slave) = lxd_runtime::attach::open_container_pty(req.init_pid)
            .map_err(|e| ApiError::internal(format!("Failed to allocate a pty: {e}")))?;
        if width > 0 && height > 0 {
            let _ =
                lxd_runtime::attach::set_window_size(master.as_fd(), width as u16, height as u16);
        }
        let dup = |fd: &OwnedFd| -> Result<std::process::Stdio> {
            Ok(std::process::Stdio::from(fd.try_clone().map_err(|e| {
                ApiError::internal(format!("Failed to duplicate the pty: {e}"))
            })?))
        };
        cmd.stdin(dup(&slave)?)
            .stdout(dup(&slave)?)
            .stderr(dup(&slave)?);
        child = cmd
            .spawn()
            .map_err(|e| ApiError::internal(format!("Failed to run forkexec: {e}")))?;
        drop(slave);
        let m = Arc::new(
            PtyMaster::new(master)
                .map_err(|e| ApiError::internal(format!("Failed to set up the pty: {e}")))?,
        );
        pty = Some(m.clone());
        if let Some(ws) = socks.remove("0") {
            let (mut tx, mut rx) = ws.split();
            let m_out = m.clone();
            relays.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                // EIO once the last slave closes: the command is gone.
                while let Ok(n) = m_out.read(&mut buf).await {
                    if n == 0
                        || tx
                            .send(Message::Binary(buf[..n].to_vec().into()))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
                let _ = tx.send(Message::Text("".into())).await;
                let _ = tx.close().await;
            }));
            let m_in = m.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = rx.next().await {
                    let data = match msg {
                        Message::Binary(b) => b.to_vec(),
                        Message::Text(t) if !t.is_empty() => t.as_bytes().to_vec(),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if m_in.write_all(&data).await.is_err() {
                        break;
                    }
                }
            });
        }
    } else {
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        child = cmd
            .spawn()
            .map_err(|e| ApiError::internal(format!("Failed to run forkexec: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        if let (Some(ws), Some(stdin)) = (socks.remove("0"), stdin) {
            let (_tx, rx) = ws.split();
            tokio::spawn(pump_in(rx, stdin));
        }
        if let (Some(ws), Some(out)) = (socks.remove("1"), stdout) {
            let (tx, _rx) = ws.split();
            relays.push(tokio::spawn(pump_out(out, tx)));
        }
        if let (Some(ws), Some(err)) = (socks.remove("2"), stderr) {
            let (tx, _rx) = ws.split();
            relays.push(tokio::spawn(pump_out(err, tx)));
        }
    }
    drop(cmd);
    let pid = child.id();

    // Control: resize, signals; closing it while the command runs kills the command.
    let (ctl_done_tx, mut ctl_done_rx) = oneshot::channel::<()>();
    let control = socks.remove("control").map(|ws| {
        let pty = pty.clone();
        tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            while let Some(Ok(msg)) = rx.next().await {
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(c) = serde_json::from_str::<InstanceExecControl>(&text) else {
                    continue;
                };
                match c.command.as_str() {
                    "window-resize" => {
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
                        if let (Some(p), true) = (&pty, w > 0 && h > 0) {
                            p.resize(w, h);
                        }
                    }
                    "signal" => send_signal(pid, c.signal),
                    _ => {}
                }
            }
            let _ = ctl_done_tx.send(());
        })
    });

    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            r = &mut ctl_done_rx, if control.is_some() => {
                if r.is_ok() {
                    // The client went away: kill the command as LXD does.
                    send_signal(pid, libc::SIGKILL);
                }
                ctl_done_rx = oneshot::channel().1;
            }
        }
    };
    let status =
        status.map_err(|e| ApiError::internal(format!("Failed to wait for the command: {e}")))?;
    // Drain output before reporting the exit code, so the client sees everything.
    for r in relays {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    if let Some(c) = control {
        c.abort();
    }
    drop(pty);
    finish(exit_code(status), op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_defaults_and_precedence() {
        let mut cfg = lxd_api::ConfigMap::new();
        cfg.insert("environment.FOO".into(), "from-config".into());
        cfg.insert("environment.BAR".into(), "bar".into());
        let mut req = BTreeMap::new();
        req.insert("FOO".into(), "from-request".into());
        req.insert("TERM".into(), "xterm".into());
        let env = exec_env(&cfg, &req, 0);
        assert_eq!(env["FOO"], "from-request");
        assert_eq!(env["BAR"], "bar");
        assert_eq!(env["HOME"], "/root");
        assert_eq!(env["USER"], "root");
        assert_eq!(env["LANG"], "C.UTF-8");
        assert!(env["PATH"].contains("/usr/bin"));
        let env = exec_env(&cfg, &BTreeMap::new(), 1000);
        assert!(!env.contains_key("HOME"));
    }
}
