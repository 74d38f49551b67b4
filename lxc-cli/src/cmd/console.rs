//! `console`: `--show-log` reads `GET /1.0/instances/NAME/console`; attaching is `POST
//! .../console` (a websocket operation with fds `0` and `control`), the terminal in raw mode,
//! detached with `<ctrl>+a q`.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio_tungstenite::tungstenite::Message;

use super::exec::resize_message;
use super::{instance_path, print_out};
use crate::client::ws::{Frame, classify};
use crate::{Ctx, term};

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[arg(value_name = "[<remote>:]<instance>")]
    pub instance: String,
    /// Retrieve the instance's console log
    #[arg(long)]
    pub show_log: bool,
    /// Type of connection to establish: 'console' for serial console, 'vga' for SPICE graphical output
    #[arg(short = 't', long = "type", default_value = "console")]
    pub kind: String,
}

/// Scans typed input for the detach sequence `<ctrl>+a q`.
#[derive(Debug, Default)]
pub struct DetachDetector {
    saw_ctrl_a: bool,
}

impl DetachDetector {
    /// Returns the bytes to forward, and whether the user asked to detach.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.saw_ctrl_a {
                self.saw_ctrl_a = false;
                if b == b'q' {
                    return (out, true);
                }
                out.push(0x01);
                if b == 0x01 {
                    self.saw_ctrl_a = true;
                    continue;
                }
                out.push(b);
            } else if b == 0x01 {
                self.saw_ctrl_a = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

pub async fn run(ctx: &Ctx, a: ConsoleArgs) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(&a.instance)?;
    let client = ctx.client(&remote)?;
    if a.show_log {
        let resp = client
            .raw(
                Method::GET,
                &format!("{}/console", instance_path(&name)),
                Default::default(),
                None,
            )
            .await?;
        let body = resp.bytes().await?;
        print_out(&format!(
            "\nConsole log:\n\n{}\n",
            String::from_utf8_lossy(&body)
        ));
        return Ok(());
    }
    if a.kind != "console" {
        anyhow::bail!("Unknown console type {:?}", a.kind);
    }
    let (w, h) = term::size().unwrap_or((0, 0));
    let req = serde_json::json!({"width": w, "height": h, "type": "console"});
    let _raw = if term::stdin_is_tty() {
        Some(term::RawGuard::enable()?)
    } else {
        None
    };
    print_out("To detach from the console, press: <ctrl>+a q\n\r");
    let mut op = client
        .operation(
            Method::POST,
            &format!("{}/console", instance_path(&name)),
            Some(&req),
            None,
        )
        .await?;
    let fds = op.fds();
    let id = op.op.id.clone();
    let control = match fds.get("control") {
        Some(s) => Some(client.operation_websocket(&id, s).await?),
        None => None,
    };
    let data_secret = fds
        .get("0")
        .ok_or_else(|| anyhow::anyhow!("The server sent no console websocket"))?;
    let data = client.operation_websocket(&id, data_secret).await?;
    let (mut data_tx, mut data_rx) = data.split();
    let (detach_tx, mut detach_rx) = tokio::sync::mpsc::channel::<()>(1);

    // Terminal -> console, watching for the detach sequence.
    let input = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut det = DetachDetector::default();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (fwd, detach) = det.feed(&buf[..n]);
            if !fwd.is_empty()
                && data_tx
                    .send(Message::Binary(bytes::Bytes::from(fwd)))
                    .await
                    .is_err()
            {
                break;
            }
            if detach {
                let _ = detach_tx.send(()).await;
                break;
            }
        }
        let _ = data_tx.send(Message::Close(None)).await;
    });
    // Console -> terminal.
    let output = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(Ok(msg)) = data_rx.next().await {
            match classify(&msg) {
                Frame::Data(b) => {
                    if stdout.write_all(&b).await.is_err() {
                        break;
                    }
                    let _ = stdout.flush().await;
                }
                Frame::Eof => break,
                Frame::Skip => {}
            }
        }
    });
    // Window size changes.
    let mut control = control;
    let mut winch = signal(SignalKind::window_change()).ok();
    let res = loop {
        tokio::select! {
            _ = detach_rx.recv() => break Ok(()),
            r = op.wait(|_| {}) => break r.map_err(anyhow::Error::from),
            Some(_) = async { match winch.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                if let (Some(c), Some((w, h))) = (control.as_mut(), term::size())
                    && let Ok(t) = serde_json::to_string(&resize_message(w, h)) {
                        let _ = c.send(Message::Text(t.into())).await;
                    }
            }
        }
    };
    if let Some(mut c) = control {
        let _ = c.send(Message::Close(None)).await;
    }
    input.abort();
    output.abort();
    drop(_raw);
    if res.is_ok() {
        print_out("\n");
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_sequence() {
        let mut d = DetachDetector::default();
        assert_eq!(d.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(d.feed(b"\x01q"), (vec![], true));
        let mut d = DetachDetector::default();
        // ctrl+a then something else is passed through.
        assert_eq!(d.feed(b"\x01"), (vec![], false));
        assert_eq!(d.feed(b"x"), (vec![0x01, b'x'], false));
        assert_eq!(d.feed(b"ab\x01"), (b"ab".to_vec(), false));
        assert_eq!(d.feed(b"q"), (vec![], true));
    }
}
