//! A client of the LXD REST API 1.0: requests in LXD's JSON envelope, ETags, background
//! operations waited for over the events websocket, operation websockets and raw transfers
//! (files, images). It knows nothing of the command line: no printing, no arguments.

pub mod multipart;
pub mod operation;
pub mod simplestreams;
pub mod tls;
pub mod transport;
pub mod ws;

use futures_util::StreamExt;
use lxd_api::{Response, ResponseType, Server};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use tokio::sync::OnceCell;

pub use operation::RemoteOperation;
pub use transport::{BoxedIo, Endpoint};

pub type WebSocket = tokio_tungstenite::WebSocketStream<BoxedIo>;

/// Everything that can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error; `message` is LXD's error text.
    #[error("{message}")]
    Status { status: u16, message: String },
    /// The server could not be reached.
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Http(String),
    #[error("Failed to decode the response of {url}: {reason}")]
    Decode { url: String, reason: String },
    /// A background operation ended in failure; the text is the operation's `err`.
    #[error("{0}")]
    Operation(String),
    #[error("Websocket {url}: {reason}")]
    WebSocket { url: String, reason: String },
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The HTTP status of a server error (404 not found, 409 conflict, ...).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// A connection failure worded as the Go client words it:
    /// `Get "http://unix.socket/1.0": dial unix /path: connect: no such file or directory`.
    pub(crate) fn connect(method: &str, url: &str, path: &Path, e: &std::io::Error) -> Error {
        Error::Connect(format!(
            "{} \"{}\": dial unix {}: connect: {}",
            go_method(method),
            url,
            path.display(),
            errno_text(e)
        ))
    }
}

fn go_method(m: &str) -> String {
    let lower = m.to_ascii_lowercase();
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// `strerror` in Go's lower-case spelling ("no such file or directory").
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let s = nix::errno::Errno::from_raw(n).desc().to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

/// A local I/O error worded as Go words it: `open /x: no such file or directory`.
pub fn io_error(op: &str, path: &std::path::Path, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("{op} {}: {}", path.display(), errno_text(e))
}

/// Escape one path segment (alias names may contain `/`).
pub fn esc(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Escape a query value.
pub fn esc_query(value: &str) -> String {
    esc(value)
}

/// One server connection.
#[derive(Debug)]
pub struct Client {
    endpoint: Endpoint,
    http: reqwest::Client,
    project: String,
    server: OnceCell<Server>,
    debug: bool,
}

impl Client {
    pub fn new(endpoint: Endpoint, project: &str, debug: bool) -> Result<Client, Error> {
        let http = endpoint.http_client()?;
        Ok(Client {
            endpoint,
            http,
            project: project.to_string(),
            server: OnceCell::new(),
            debug,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn project(&self) -> &str {
        if self.project.is_empty() {
            "default"
        } else {
            &self.project
        }
    }

    /// The URL of an API path, with `project=` appended for a non-default project.
    pub fn url(&self, path: &str) -> String {
        let mut url = format!("{}{}", self.endpoint.base_url(), path);
        self.add_project(&mut url);
        url
    }

    fn add_project(&self, url: &mut String) {
        if !self.project.is_empty() && self.project != "default" && !url.contains("project=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("project=");
            url.push_str(&esc_query(&self.project));
        }
    }

    fn debug(&self, what: std::fmt::Arguments<'_>) {
        if self.debug {
            eprintln!("DEBUG: {what}");
        }
    }

    /// `GET /1.0`, cached for the life of the client (the Go client does the same).
    pub async fn server(&self) -> Result<&Server, Error> {
        self.server
            .get_or_try_init(|| async {
                let (resp, _) = self.query_inner(Method::GET, "/1.0", None, None).await?;
                serde_json::from_value(resp.metadata).map_err(|e| Error::Decode {
                    url: self.url("/1.0"),
                    reason: e.to_string(),
                })
            })
            .await
    }

    /// Forget the cached `GET /1.0` (after changing server config).
    pub fn forget_server(&mut self) {
        self.server = OnceCell::new();
    }

    pub async fn has_extension(&self, name: &str) -> Result<bool, Error> {
        Ok(self
            .server()
            .await?
            .api_extensions
            .iter()
            .any(|e| e == name))
    }

    /// Like the Go client, talk to a server only after `GET /1.0` succeeded: the first error a
    /// user sees for an unreachable server is always that of `GET /1.0`.
    async fn ensure_connected(&self, path: &str) -> Result<(), Error> {
        if path == "/1.0" || self.server.initialized() {
            return Ok(());
        }
        self.server().await.map(|_| ())
    }

    /// Send a request and return the decoded envelope and the ETag.
    pub async fn query(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        etag: Option<&str>,
    ) -> Result<(Response, Option<String>), Error> {
        self.ensure_connected(path).await?;
        self.query_inner(method, path, body, etag).await
    }

    async fn query_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        etag: Option<&str>,
    ) -> Result<(Response, Option<String>), Error> {
        let url = self.url(path);
        self.debug(format_args!("{method} {url}"));
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            self.debug(format_args!("body: {b}"));
            req = req
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(b).map_err(|e| Error::Other(e.to_string()))?);
        }
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            req = req.header("If-Match", e);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.send_error(&method, &url, e))?;
        self.parse_response(resp, &url).await
    }

    fn send_error(&self, method: &Method, url: &str, e: reqwest::Error) -> Error {
        if e.is_connect()
            && let (Some(io), Some(path)) = (find_io_error(&e), self.endpoint.socket_path())
        {
            return Error::connect(method.as_str(), url, path, io);
        }
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        Error::Http(msg)
    }

    async fn parse_response(
        &self,
        resp: reqwest::Response,
        url: &str,
    ) -> Result<(Response, Option<String>), Error> {
        let status = resp.status();
        let etag = resp
            .headers()
            .get("ETag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
        self.debug(format_args!(
            "{} {}",
            status.as_u16(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(4096)])
        ));
        decode_envelope(status, &bytes, url).map(|r| (r, etag))
    }

    /// `GET` an object and decode its metadata.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        Ok(self.get_etag(path).await?.0)
    }

    /// `GET` an object, returning its ETag too (sent back as `If-Match` on PUT).
    pub async fn get_etag<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>), Error> {
        let (resp, etag) = self.query(Method::GET, path, None, None).await?;
        let v = serde_json::from_value(resp.metadata).map_err(|e| Error::Decode {
            url: self.url(path),
            reason: e.to_string(),
        })?;
        Ok((v, etag))
    }

    /// `GET` an object keeping the server's key order (for `--format json|yaml`, which echo
    /// what the server sent as LXD's client re-encodes its own identical structs).
    pub async fn get_ordered(&self, path: &str) -> Result<yaml_serde::Value, Error> {
        #[derive(serde::Deserialize)]
        struct Envelope {
            #[serde(default)]
            metadata: yaml_serde::Value,
        }
        let url = self.url(path);
        let resp = self.raw(Method::GET, path, HeaderMap::new(), None).await?;
        let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
        serde_json::from_slice::<Envelope>(&bytes)
            .map(|e| e.metadata)
            .map_err(|e| Error::Decode {
                url,
                reason: e.to_string(),
            })
    }

    /// `GET` an object both typed and in the server's key order.
    pub async fn get_both<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, yaml_serde::Value), Error> {
        let mut raw = self.get_ordered(path).await?;
        // An empty collection sent as null reads as an empty list.
        if raw.is_null() {
            raw = yaml_serde::Value::Sequence(Vec::new());
        }
        let typed = yaml_serde::from_value(raw.clone()).map_err(|e| Error::Decode {
            url: self.url(path),
            reason: e.to_string(),
        })?;
        Ok((typed, raw))
    }

    /// A synchronous request with a JSON body; returns the envelope's metadata.
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        etag: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let body = body.map(to_json).transpose()?;
        let (resp, _) = self.query(method, path, body.as_ref(), etag).await?;
        Ok(resp.metadata)
    }

    /// A request that starts a background operation. The events websocket is opened before the
    /// request is sent, as the Go client does, so that no update can be missed.
    pub async fn operation<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        etag: Option<&str>,
    ) -> Result<RemoteOperation<'_>, Error> {
        let listener = operation::EventListener::connect(self, "operation")
            .await
            .ok();
        let body = body.map(to_json).transpose()?;
        let (resp, _) = self.query(method, path, body.as_ref(), etag).await?;
        RemoteOperation::from_response(self, resp, listener)
    }

    /// A raw request (files, image upload and export). Errors are decoded from the envelope; a
    /// successful response is returned unread so that its body can be streamed.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, Error> {
        self.ensure_connected(path).await?;
        let url = self.url(path);
        self.debug(format_args!("{method} {url} {headers:?}"));
        let mut req = self.http.request(method.clone(), &url).headers(headers);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.send_error(&method, &url, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.map_err(|e| Error::Http(e.to_string()))?;
        Err(decode_envelope(status, &bytes, &url)
            .err()
            .unwrap_or_else(|| Error::Status {
                status: status.as_u16(),
                message: format!("Failed to fetch {url}: {status}"),
            }))
    }

    /// A raw request whose successful answer is an envelope (file push, image upload).
    pub async fn raw_envelope(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<Response, Error> {
        let url = self.url(path);
        let resp = self.raw(method, path, headers, Some(body)).await?;
        Ok(self.parse_response(resp, &url).await?.0)
    }

    /// Connect a websocket to an API path (`/1.0/events`, `/1.0/operations/ID/websocket?...`).
    pub async fn websocket(&self, path: &str) -> Result<WebSocket, Error> {
        self.ensure_connected(path).await?;
        let mut url = format!("{}{}", self.endpoint.ws_base_url(), path);
        self.add_project(&mut url);
        self.debug(format_args!("websocket {url}"));
        let stream = self.endpoint.connect_stream(&url).await?;
        let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .map_err(|e| ws_error(&url, e))?;
        Ok(ws)
    }

    /// The websocket of one file descriptor of an operation.
    pub async fn operation_websocket(&self, id: &str, secret: &str) -> Result<WebSocket, Error> {
        self.websocket(&format!(
            "/1.0/operations/{}/websocket?secret={}",
            esc(id),
            esc_query(secret)
        ))
        .await
    }

    /// `GET /1.0/operations/ID`.
    pub async fn get_operation(&self, id: &str) -> Result<lxd_api::Operation, Error> {
        self.get(&format!("/1.0/operations/{}", esc(id))).await
    }

    /// Stream a response body into a writer, reporting the running byte count.
    pub async fn copy_body<W: tokio::io::AsyncWrite + Unpin>(
        resp: reqwest::Response,
        out: &mut W,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, Error> {
        use tokio::io::AsyncWriteExt;
        let mut stream = resp.bytes_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Error::Http(e.to_string()))?;
            out.write_all(&chunk)
                .await
                .map_err(|e| Error::Other(e.to_string()))?;
            total += chunk.len() as u64;
            progress(total);
        }
        out.flush().await.map_err(|e| Error::Other(e.to_string()))?;
        Ok(total)
    }
}

fn to_json<B: Serialize + ?Sized>(b: &B) -> Result<serde_json::Value, Error> {
    serde_json::to_value(b).map_err(|e| Error::Other(e.to_string()))
}

fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = c.source();
    }
    None
}

pub(crate) fn ws_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::Error as WsErr;
    if let WsErr::Http(resp) = &e {
        // A refused upgrade carries LXD's error envelope in its body.
        if let Some(body) = resp.body()
            && let Ok(r) = serde_json::from_slice::<Response>(body)
            && r.kind == ResponseType::Error
        {
            return Error::Status {
                status: resp.status().as_u16(),
                message: r.error,
            };
        }
        return Error::Status {
            status: resp.status().as_u16(),
            message: format!("Websocket {url}: {}", resp.status()),
        };
    }
    Error::WebSocket {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

/// Decode LXD's envelope: an `error` envelope becomes [`Error::Status`] with the HTTP status.
pub fn decode_envelope(status: StatusCode, body: &[u8], url: &str) -> Result<Response, Error> {
    match serde_json::from_slice::<Response>(body) {
        Ok(r) if r.kind == ResponseType::Error => Err(Error::Status {
            status: if status.is_success() {
                u16::try_from(r.error_code).unwrap_or(500)
            } else {
                status.as_u16()
            },
            message: r.error,
        }),
        Ok(r) => Ok(r),
        Err(_) if !status.is_success() => Err(Error::Status {
            status: status.as_u16(),
            message: format!("Failed to fetch {url}: {status}"),
        }),
        Err(e) => Err(Error::Decode {
            url: url.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Header map helper for raw requests.
pub fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_carry_status_and_text() {
        let body =
            br#"{"type":"error","error":"Instance not found","error_code":404,"metadata":null}"#;
        let e = decode_envelope(
            StatusCode::NOT_FOUND,
            body,
            "http://unix.socket/1.0/instances/x",
        )
        .unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert_eq!(e.to_string(), "Instance not found");
        assert!(e.is_not_found());
    }

    #[test]
    fn non_json_errors_name_the_url() {
        let e = decode_envelope(StatusCode::BAD_GATEWAY, b"<html>", "http://unix.socket/1.0")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Failed to fetch http://unix.socket/1.0: 502 Bad Gateway"
        );
    }

    #[test]
    fn sync_envelope_decodes() {
        let body = br#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":{"a":1}}"#;
        let r = decode_envelope(StatusCode::OK, body, "u").unwrap();
        assert_eq!(r.metadata["a"], 1);
    }

    #[test]
    fn connect_errors_read_like_go() {
        let e = Error::connect(
            "GET",
            "http://unix.socket/1.0",
            Path::new("/tmp/nonexist/unix.socket"),
            &std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        assert_eq!(
            e.to_string(),
            "Get \"http://unix.socket/1.0\": dial unix /tmp/nonexist/unix.socket: connect: no such file or directory"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a/b/"), "a%2Fb%2F");
        assert_eq!(esc("c1"), "c1");
        assert_eq!(esc_query("/etc/hosts"), "%2Fetc%2Fhosts");
    }
}
