//! One migration websocket as a pair of channels, whether we accepted it (an operation
//! websocket, axum) or dialled it (the other server's operation, tungstenite over rustls with
//! the peer's certificate pinned and our server certificate as client identity). Binary frames
//! carry data; an empty text frame ends one stream (LXD's `WebsocketIO.Close`, the "barrier"),
//! so one websocket carries several rsync or send streams in turn.

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::error::{ApiError, Result};

#[derive(Debug)]
pub enum Frame {
    Binary(Vec<u8>),
    /// An empty text frame: end of one stream.
    Barrier,
}

/// A connected websocket: `tx` sends frames (dropping every sender closes the socket), `rx`
/// yields received frames and `None` once the peer closed or the connection broke.
#[derive(Debug)]
pub struct Conn {
    pub tx: mpsc::Sender<Frame>,
    pub rx: mpsc::Receiver<Frame>,
    /// The task writing `tx`'s frames to the socket; it ends after the close frame.
    writer: tokio::task::JoinHandle<()>,
}

/// How long a peer may stay silent before the connection counts as dropped. A closed or reset
/// connection ends at once; this bounds a peer that vanished without a trace. Generous: an
/// rsync receiver checksumming a large file for a refresh sends nothing meanwhile.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

fn dropped() -> ApiError {
    ApiError::bad_request("The migration connection was closed by the other side")
}

impl Conn {
    /// Send one protobuf message as a binary frame.
    pub async fn send_msg(&self, data: Vec<u8>) -> Result<()> {
        self.tx
            .send(Frame::Binary(data))
            .await
            .map_err(|_| dropped())
    }

    /// The next binary message (a protobuf header or control message), within `IDLE_TIMEOUT`.
    pub async fn recv_msg(&mut self) -> Result<Vec<u8>> {
        self.recv_msg_within(Some(IDLE_TIMEOUT)).await
    }

    /// The next binary message; `None` waits as long as the connection lives (a control
    /// channel watched while a long transfer runs on the other websocket).
    pub async fn recv_msg_within(&mut self, idle: Option<Duration>) -> Result<Vec<u8>> {
        loop {
            let next = match idle {
                Some(t) => tokio::time::timeout(t, self.rx.recv()).await,
                None => Ok(self.rx.recv().await),
            };
            match next {
                Err(_) => {
                    return Err(ApiError::bad_request(
                        "Timed out waiting for the other side of the migration",
                    ));
                }
                Ok(None) => return Err(dropped()),
                Ok(Some(Frame::Binary(b))) => return Ok(b),
                Ok(Some(Frame::Barrier)) => continue,
            }
        }
    }

    /// Close our side and wait (a few seconds at most) until what was sent is on the wire.
    pub async fn close(self) {
        let Conn { tx, rx, writer } = self;
        drop(tx);
        drop(rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }

    /// Wrap an accepted operation websocket.
    pub fn from_axum(ws: axum::extract::ws::WebSocket) -> Conn {
        use axum::extract::ws::Message;
        let (mut sink, mut stream) = ws.split();
        let (in_tx, in_rx) = mpsc::channel::<Frame>(64);
        let (out_tx, mut out_rx) = mpsc::channel::<Frame>(64);
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let f = match m {
                    Ok(Message::Binary(b)) => Frame::Binary(b.to_vec()),
                    Ok(Message::Text(_)) => Frame::Barrier,
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                if in_tx.send(f).await.is_err() {
                    break;
                }
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                let m = match f {
                    Frame::Binary(b) => Message::Binary(b.into()),
                    Frame::Barrier => Message::Text("".into()),
                };
                if sink.send(m).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(Message::Close(None)).await;
        });
        Conn {
            tx: out_tx,
            rx: in_rx,
            writer,
        }
    }

    fn from_tungstenite<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> Conn
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use tokio_tungstenite::tungstenite::Message;
        let (mut sink, mut stream) = ws.split();
        let (in_tx, in_rx) = mpsc::channel::<Frame>(64);
        let (out_tx, mut out_rx) = mpsc::channel::<Frame>(64);
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let f = match m {
                    Ok(Message::Binary(b)) => Frame::Binary(b.to_vec()),
                    Ok(Message::Text(_)) => Frame::Barrier,
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                if in_tx.send(f).await.is_err() {
                    break;
                }
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                let m = match f {
                    Frame::Binary(b) => Message::Binary(b.into()),
                    Frame::Barrier => Message::Text("".into()),
                };
                if sink.send(m).await.is_err() {
                    return;
                }
            }
            let _ = sink.send(Message::Close(None)).await;
        });
        Conn {
            tx: out_tx,
            rx: in_rx,
            writer,
        }
    }
}

/// Dial `GET <operation>/websocket?secret=` on another server: TLS with its certificate pinned
/// (`certificate`, PEM; empty means the system CAs) and our server certificate as identity.
pub async fn dial(
    identity: &crate::tls::Identity,
    operation: &str,
    certificate: &str,
    secret: &str,
) -> Result<Conn> {
    let bad = |m: String| ApiError::bad_request(m);
    let rest = operation
        .strip_prefix("https://")
        .ok_or_else(|| bad(format!("Invalid migration operation URL \"{operation}\"")))?;
    let (hostport, path) = rest
        .split_once('/')
        .ok_or_else(|| bad(format!("Invalid migration operation URL \"{operation}\"")))?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|_| bad(format!("Invalid port in \"{operation}\"")))?,
        ),
        _ => (
            hostport
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            8443,
        ),
    };
    let pinned = if certificate.trim().is_empty() {
        None
    } else {
        Some(crate::tls::parse_cert_pem(certificate)?)
    };
    let cfg = crate::tls::client_config(pinned, Some(identity))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let server_name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|_| bad(format!("Invalid host \"{host}\"")))?;
    let addr = format!("{host}:{port}");
    let fail = |e: String| {
        ApiError::bad_request(format!(
            "Failed to connect to the migration source {addr}: {e}"
        ))
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| fail("timed out".into()))?
    .map_err(|e| fail(e.to_string()))?;
    // Small control and rsync protocol messages go out at once (Go, and so LXD, does the same).
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let url = format!("wss://{hostport}/{path}/websocket?secret={secret}");
    let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(Conn::from_tungstenite(ws))
}
