//! How bytes reach a server. Today: the unix socket (HTTP to `http://unix.socket`, websockets
//! over a fresh `UnixStream`). An HTTPS endpoint with pinned certificates slots in as another
//! variant of [`Endpoint`]: it must provide an HTTP client, a base URL and a byte stream for
//! websockets, and nothing above this module changes.

use std::path::{Path, PathBuf};
use std::pin::Pin;
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
}

impl Endpoint {
    /// The base URL of HTTP requests. The host part is what the Go client sends over the socket.
    pub fn base_url(&self) -> &'static str {
        match self {
            Endpoint::Unix(_) => "http://unix.socket",
        }
    }

    /// The base URL of websockets.
    pub fn ws_base_url(&self) -> &'static str {
        match self {
            Endpoint::Unix(_) => "ws://unix.socket",
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
        }
    }

    pub fn socket_path(&self) -> Option<&Path> {
        match self {
            Endpoint::Unix(p) => Some(p),
        }
    }
}
