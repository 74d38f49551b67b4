//! How bytes reach a server: the unix socket (HTTP to `http://unix.socket`, websockets over a
//! fresh `UnixStream`), or HTTPS to a remote with our client certificate and the server's
//! pinned certificate (`client::tls`). Each provides an HTTP client, a base URL and a byte
//! stream for websockets; nothing above this module knows which.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Error;

/// A bidirectional byte stream a websocket can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug> Io for T {}

pub type BoxedIo = Pin<Box<dyn Io>>;

/// Where a remote lives.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The local daemon (or any `unix://PATH` remote).
    Unix(PathBuf),
    /// An LXD server over HTTPS: its URL (`https://host:port`) and the TLS configuration
    /// (client certificate, pinned server certificate).
    Https {
        url: String,
        tls: Arc<rustls::ClientConfig>,
    },
}

impl Endpoint {
    /// The base URL of HTTP requests. The host part is what the Go client sends over the socket.
    pub fn base_url(&self) -> String {
        match self {
            Endpoint::Unix(_) => "http://unix.socket".into(),
            Endpoint::Https { url, .. } => url.trim_end_matches('/').to_string(),
        }
    }

    /// The base URL of websockets.
    pub fn ws_base_url(&self) -> String {
        match self {
            Endpoint::Unix(_) => "ws://unix.socket".into(),
            Endpoint::Https { url, .. } => {
                format!(
                    "wss://{}",
                    url.trim_start_matches("https://").trim_end_matches('/')
                )
            }
        }
    }

    pub fn http_client(&self) -> Result<reqwest::Client, Error> {
        match self {
            // No TLS over the unix socket: an empty root store keeps reqwest from loading the
            // system's CA bundle, which cost ~10 ms on every command.
            Endpoint::Unix(path) => reqwest::Client::builder()
                .unix_socket(path.as_path())
                .user_agent(concat!("LXD ", env!("CARGO_PKG_VERSION")))
                .tls_certs_only(Vec::<reqwest::Certificate>::new())
                .build()
                .map_err(|e| Error::Http(e.to_string())),
            Endpoint::Https { tls, .. } => reqwest::Client::builder()
                .tls_backend_preconfigured((**tls).clone())
                .user_agent(concat!("LXD ", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(15))
                .no_proxy()
                .build()
                .map_err(|e| Error::Http(e.to_string())),
        }
    }

    /// A raw byte stream for a websocket handshake.
    pub async fn connect_stream(&self, url: &str) -> Result<BoxedIo, Error> {
        match self {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| Error::connect("GET", url, path, &e))?;
                Ok(Box::pin(s))
            }
            Endpoint::Https { url: base, tls } => {
                let (host, port) = super::tls::host_port(base)?;
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(|e| Error::Connect(format!("Unable to connect to {base}: {e}")))?;
                // Keystrokes of `lxc exec` and relayed migration messages go out at once, as
                // with Go's client.
                let _ = tcp.set_nodelay(true);
                let name = super::tls::server_name(&host)?;
                let s = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| Error::Connect(format!("Unable to connect to {url}: {e}")))?;
                Ok(Box::pin(s))
            }
        }
    }

    pub fn socket_path(&self) -> Option<&Path> {
        match self {
            Endpoint::Unix(p) => Some(p),
            Endpoint::Https { .. } => None,
        }
    }
}
