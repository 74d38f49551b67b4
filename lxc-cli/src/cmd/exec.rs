//! `exec`: `POST /1.0/instances/NAME/exec` with `wait-for-websocket`, then the operation's
//! websockets: `control` first, then fd 0 (interactive: one bidirectional pty stream) or fds
//! 0, 1, 2. Local signals are forwarded over `control`; the exit status is the operation's
//! `metadata.return`.

use anyhow::bail;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use lxd_api::exec::{InstanceExecControl, InstanceExecPost};
use reqwest::Method;
use std::collections::BTreeMap;
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::tungstenite::Message;

use super::instance_path;
use crate::client::{Client, WebSocket, ws};
use crate::{Ctx, Exit, term};

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(value_name = "[<remote>:]<instance>")]
    pub instance: String,
    /// The command line to run
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    pub command: Vec<String>,
    /// Environment variable to set (e.g. HOME=/home/foo)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Override the terminal mode (auto, interactive or non-interactive)
    #[arg(long, default_value = "auto")]
    pub mode: String,
    /// Force pseudo-terminal allocation
    #[arg(short = 't', long)]
    pub force_interactive: bool,
    /// Disable pseudo-terminal allocation
    #[arg(short = 'T', long)]
    pub force_noninteractive: bool,
    /// Disable stdin (reads from /dev/null)
    #[arg(short = 'n', long)]
    pub disable_stdin: bool,
    /// User ID to run the command as (default 0)
    #[arg(long, default_value_t = 0)]
    pub user: u32,
    /// Group ID to run the command as (default 0)
    #[arg(long, default_value_t = 0)]
    pub group: u32,
    /// Directory to run the command in (default /root)
    #[arg(long, default_value = "")]
    pub cwd: String,
}

/// The request body, from the flags and the local terminal.
pub fn build_request(
    a: &ExecArgs,
    interactive: bool,
    term_env: Option<String>,
    size: Option<(u16, u16)>,
) -> InstanceExecPost {
    let mut env = BTreeMap::new();
    if let Some(t) = term_env {
        env.insert("TERM".to_string(), t);
    }
    for e in &a.env {
        if let Some((k, v)) = e.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let (w, h) = size.unwrap_or((0, 0));
    InstanceExecPost {
        command: a.command.clone(),
        wait_for_websocket: true,
        interactive,
        environment: env,
        width: i64::from(w),
        height: i64::from(h),
        record_output: false,
        user: a.user,
        group: a.group,
        cwd: a.cwd.clone(),
    }
}

/// Interactive mode as LXD decides it: flags first, else stdin AND stdout are terminals.
pub fn interactive_mode(a: &ExecArgs, stdin_tty: bool, stdout_tty: bool) -> anyhow::Result<bool> {
    if a.force_interactive && a.force_noninteractive {
        bail!("You can't pass -t and -T at the same time");
    }
    if a.mode != "auto" && (a.force_interactive || a.force_noninteractive) {
        bail!("You can't pass -t or -T at the same time as --mode");
    }
    Ok(if a.disable_stdin {
        false
    } else if a.mode == "interactive" || a.force_interactive {
        true
    } else if a.mode == "non-interactive" || a.force_noninteractive {
        false
    } else if a.mode == "auto" {
        stdin_tty && stdout_tty
    } else {
        bail!("Invalid mode {:?}", a.mode);
    })
}

/// The control message for a resize.
pub fn resize_message(width: u16, height: u16) -> InstanceExecControl {
    let mut args = BTreeMap::new();
    args.insert("width".to_string(), width.to_string());
    args.insert("height".to_string(), height.to_string());
    InstanceExecControl {
        command: "window-resize".into(),
        args,
        signal: 0,
    }
}

pub fn signal_message(sig: i32) -> InstanceExecControl {
    InstanceExecControl {
        command: "signal".into(),
        args: BTreeMap::new(),
        signal: sig,
    }
}

pub async fn run(ctx: &Ctx, a: ExecArgs) -> anyhow::Result<()> {
    let stdin_tty = term::stdin_is_tty();
    let stdout_tty = term::stdout_is_tty();
    let interactive = interactive_mode(&a, stdin_tty, stdout_tty)?;
    let (remote, name) = ctx.parse_remote(&a.instance)?;
    let client = ctx.client(&remote)?;

    let req = build_request(
        &a,
        interactive,
        std::env::var("TERM").ok(),
        if stdout_tty { term::size() } else { None },
    );
    // Raw mode for the whole session; the guard restores the terminal on every exit path.
    let _raw = if interactive && stdin_tty {
        Some(term::RawGuard::enable()?)
    } else {
        None
    };

    let mut op = client
        .operation(
            Method::POST,
            &format!("{}/exec", instance_path(&name)),
            Some(&req),
            None,
        )
        .await?;
    let fds = op.fds();
    let id = op.op.id.clone();

    let control = match fds.get("control") {
        Some(secret) => Some(client.operation_websocket(&id, secret).await?),
        None => None,
    };
    let io = if interactive {
        let secret = fds
            .get("0")
            .ok_or_else(|| anyhow::anyhow!("The server sent no websocket for fd 0"))?;
        let ws0 = client.operation_websocket(&id, secret).await?;
        interactive_io(ws0)
    } else {
        non_interactive_io(&client, &id, &fds, a.disable_stdin).await?
    };
    let control_task = control.map(|c| tokio::spawn(control_handler(c, interactive)));

    let res = op.wait(|_| {}).await;
    let code = op.op.exec_return();
    // Whatever the command printed before it ended still has to reach us.
    for t in io {
        let _ = t.await;
    }
    if let Some(t) = control_task {
        t.abort();
    }
    drop(_raw);
    match res {
        Err(e) => Err(Exit {
            code: code.map(|c| c as i32).filter(|c| *c != 0).unwrap_or(1),
            message: Some(e.to_string()),
        }
        .into()),
        Ok(()) => match code {
            Some(c) if c != 0 => Err(Exit {
                code: c as i32,
                message: None,
            }
            .into()),
            _ => Ok(()),
        },
    }
}

type Task = tokio::task::JoinHandle<()>;

/// fd 0 carries stdin one way and the pty's output the other; only the output is awaited.
/// Once the server has sent its end-of-stream, we close our side too: LXD's server keeps the
/// operation running until both directions of the mirror are finished.
fn interactive_io(ws0: WebSocket) -> Vec<Task> {
    let (sink, mut stream) = ws0.split();
    let sink = std::sync::Arc::new(tokio::sync::Mutex::new(sink));
    let input = sink.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let msg = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
            if input.lock().await.send(msg).await.is_err() {
                return;
            }
        }
        let _ = input.lock().await.send(ws::eof_message()).await;
    });
    vec![tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let _ = ws::ws_to_writer(&mut stream, &mut stdout).await;
        let mut s = sink.lock().await;
        let _ = s.send(ws::eof_message()).await;
        let _ = s.close().await;
    })]
}

async fn non_interactive_io(
    client: &Client,
    id: &str,
    fds: &BTreeMap<String, String>,
    disable_stdin: bool,
) -> anyhow::Result<Vec<Task>> {
    let mut tasks = Vec::new();
    if let Some(secret) = fds.get("0") {
        let ws0 = client.operation_websocket(id, secret).await?;
        let (mut sink, mut stream) = ws0.split();
        tokio::spawn(async move {
            if disable_stdin {
                let _ = sink.send(ws::eof_message()).await;
            } else {
                let mut stdin = tokio::io::stdin();
                let _ = ws::reader_to_ws(&mut stdin, &mut sink).await;
            }
        });
        // Keep reading so that pings are answered; nothing is expected on it.
        tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    }
    if let Some(secret) = fds.get("1") {
        let mut ws1 = client.operation_websocket(id, secret).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            let _ = ws::ws_to_writer(&mut ws1, &mut out).await;
            let _ = ws1.close(None).await;
        }));
    }
    if let Some(secret) = fds.get("2") {
        let mut ws2 = client.operation_websocket(id, secret).await?;
        tasks.push(tokio::spawn(async move {
            let mut err = tokio::io::stderr();
            let _ = ws::ws_to_writer(&mut ws2, &mut err).await;
            let _ = ws2.close(None).await;
        }));
    }
    Ok(tasks)
}

/// Forward signals (and, when interactive, window size changes) as LXD's `exec_unix.go` does.
async fn control_handler(control: WebSocket, interactive: bool) {
    let (mut sink, mut stream) = control.split();
    // Drain the control socket so that its pings get answered.
    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });

    let kinds = [
        libc::SIGWINCH,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGABRT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGCONT,
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
    for k in kinds {
        let Ok(mut s) = signal(SignalKind::from_raw(k)) else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(k).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    while let Some(sig) = rx.recv().await {
        let msg = if sig == libc::SIGWINCH {
            if !interactive {
                continue;
            }
            match term::size() {
                Some((w, h)) => resize_message(w, h),
                None => continue,
            }
        } else if sig == libc::SIGHUP {
            // With no controlling terminal left, the command gets SIGTERM instead.
            let has_tty = std::fs::File::open("/dev/tty").is_ok();
            signal_message(if has_tty { libc::SIGHUP } else { libc::SIGTERM })
        } else {
            signal_message(sig)
        };
        let Ok(text) = serde_json::to_string(&msg) else {
            continue;
        };
        if sink.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: ExecArgs,
    }

    fn parse(args: &[&str]) -> ExecArgs {
        T::try_parse_from(std::iter::once("exec").chain(args.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn command_lines() {
        let a = parse(&["C01", "--", "sh", "-c", "echo hi"]);
        assert_eq!(a.instance, "C01");
        assert_eq!(a.command, ["sh", "-c", "echo hi"]);
        let a = parse(&["C01", "ls", "-la", "/"]);
        assert_eq!(a.command, ["ls", "-la", "/"]);
        let a = parse(&["-T", "--env", "A=b", "--cwd", "/tmp", "C01", "bash"]);
        assert!(a.force_noninteractive);
        assert_eq!(a.command, ["bash"]);
    }

    #[test]
    fn body_matches_the_5_0_client() {
        let a = parse(&["w1", "--", "sh", "-c", "echo hi; echo err >&2; exit 3"]);
        let body = build_request(&a, false, Some("xterm".into()), None);
        // traces/api_exec_protocol.txt #12
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"command":["sh","-c","echo hi; echo err >&2; exit 3"],"wait-for-websocket":true,"interactive":false,"environment":{"TERM":"xterm"},"width":0,"height":0,"record-output":false,"user":0,"group":0,"cwd":""}"#
        );
        let a = parse(&[
            "--env", "FOO=bar", "--env", "junk", "--user", "1000", "w1", "bash",
        ]);
        let body = build_request(&a, true, None, Some((120, 40)));
        assert_eq!(body.environment.len(), 1);
        assert_eq!(body.environment["FOO"], "bar");
        assert_eq!((body.width, body.height, body.user), (120, 40, 1000));
    }

    #[test]
    fn modes() {
        let a = parse(&["c", "sh"]);
        assert!(interactive_mode(&a, true, true).unwrap());
        assert!(!interactive_mode(&a, true, false).unwrap());
        assert!(interactive_mode(&parse(&["-t", "c", "sh"]), false, false).unwrap());
        assert!(!interactive_mode(&parse(&["-n", "-t", "c", "sh"]), true, true).unwrap());
        assert_eq!(
            interactive_mode(&parse(&["-t", "-T", "c", "sh"]), true, true)
                .unwrap_err()
                .to_string(),
            "You can't pass -t and -T at the same time"
        );
        assert_eq!(
            interactive_mode(
                &parse(&["-t", "--mode", "interactive", "c", "sh"]),
                true,
                true
            )
            .unwrap_err()
            .to_string(),
            "You can't pass -t or -T at the same time as --mode"
        );
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            serde_json::to_value(resize_message(132, 43)).unwrap(),
            serde_json::json!({"command":"window-resize","args":{"width":"132","height":"43"},"signal":0})
        );
        assert_eq!(
            serde_json::to_value(signal_message(15)).unwrap()["signal"],
            15
        );
    }
}
