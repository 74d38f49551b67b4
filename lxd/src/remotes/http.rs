//! HTTPS to other servers: a reqwest client over a rustls configuration we build (pinned
//! certificate or system CAs, our server certificate as client identity for LXD servers),
//! small JSON fetches with a size cap, and file downloads that hash while they write, report
//! progress the way LXD renders it, and refuse short, long or corrupt bodies.

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, Result};
use crate::operations::Op;

/// A client for one server: `pinned` pins its certificate (PEM), `identity` is presented as the
/// client certificate.
pub fn client(
    pinned: Option<&str>,
    identity: Option<&crate::tls::Identity>,
) -> Result<reqwest::Client> {
    let pinned = match pinned.filter(|p| !p.trim().is_empty()) {
        Some(p) => Some(crate::tls::parse_cert_pem(p)?),
        None => None,
    };
    let tls = crate::tls::client_config(pinned, identity)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .user_agent(concat!("LXD ", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        // Never follow a server elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| ApiError::internal(format!("Failed to set up HTTPS: {e}")))
}

/// One line for a transport error, with the causes reqwest keeps in its source chain.
pub fn describe(url: &str, e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg = format!("{msg}: {t}");
        }
        src = s.source();
    }
    format!("Failed to fetch {url}: {msg}")
}

/// GET a small document (an index, an API object): at most `limit` bytes.
pub async fn get_bytes(http: &reqwest::Client, url: &str, limit: usize) -> Result<Vec<u8>> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, describe(url, &e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ApiError::new(
            if status == reqwest::StatusCode::NOT_FOUND {
                axum::http::StatusCode::NOT_FOUND
            } else {
                axum::http::StatusCode::BAD_GATEWAY
            },
            format!("Unable to fetch {url}: {status}"),
        ));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, describe(url, &e)))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::bad_request(format!(
                "{url} is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// LXD's byte sizes (`units.GetByteSizeString`): decimal units, two decimals.
pub fn byte_size(n: u64) -> String {
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    for unit in ["kB", "MB", "GB", "TB", "PB", "EB"] {
        v /= 1000.0;
        if v < 1000.0 {
            return format!("{v:.2}{unit}");
        }
    }
    format!("{v:.2}EB")
}

/// Progress of one download, reported to an operation at most every 200 ms.
#[derive(Debug)]
pub struct Progress<'a> {
    op: Option<&'a Arc<Op>>,
    label: &'a str,
    total: u64,
    done: u64,
    start: Instant,
    last: Option<Instant>,
}

impl<'a> Progress<'a> {
    pub fn new(op: Option<&'a Arc<Op>>, label: &'a str, total: u64) -> Self {
        Progress {
            op,
            label,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
        }
    }

    fn add(&mut self, n: u64, force: bool) {
        self.done += n;
        let Some(op) = self.op else { return };
        let now = Instant::now();
        if !force
            && self
                .last
                .is_some_and(|l| now - l < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(now);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let speed = (self.done as f64 / secs) as u64;
        let pct = (self.done * 100)
            .checked_div(self.total)
            .map(|p| p.min(100));
        let text = match pct {
            Some(p) => format!("{}{p}% ({}/s)", self.label, byte_size(speed)),
            None => format!(
                "{}{} ({}/s)",
                self.label,
                byte_size(self.done),
                byte_size(speed)
            ),
        };
        op.extend_metadata(serde_json::json!({
            "download_progress": text,
            "progress": {
                "stage": "download",
                "percent": pct.unwrap_or(0).to_string(),
                "processed": self.done.to_string(),
                "speed": speed.to_string(),
            },
        }));
    }
}

/// What a download must be: its sha256 and size when the index says so.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

/// Stream `url` into `dest` (created, 0600), hashing as it goes. A body shorter or longer than
/// announced, or whose hash differs from `expect`, is an error; the caller removes `dest`.
/// Returns the sha256 and size.
pub async fn download(
    http: &reqwest::Client,
    url: &str,
    dest: &Path,
    expect: &Expect,
    progress: &mut Progress<'_>,
) -> Result<(String, u64)> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, describe(url, &e)))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            format!("Unable to fetch {url}: {status}"),
        ));
    }
    write_body(resp, url, dest, expect, progress).await
}

/// Like [`download`] for a response already in hand (multipart parts go through
/// [`write_stream`]).
pub async fn write_body(
    resp: reqwest::Response,
    url: &str,
    dest: &Path,
    expect: &Expect,
    progress: &mut Progress<'_>,
) -> Result<(String, u64)> {
    let announced = resp.content_length();
    if progress.total == 0 {
        progress.total = expect.size.or(announced).unwrap_or(0);
    }
    let url2 = url.to_string();
    let stream = resp.bytes_stream().map(move |c| {
        c.map_err(|e| {
            let msg = if e.is_body() || e.is_decode() {
                format!("Truncated download of {url2}: the connection closed early")
            } else {
                describe(&url2, &e)
            };
            ApiError::new(axum::http::StatusCode::BAD_GATEWAY, msg)
        })
    });
    let (sha, n) = write_stream(stream, dest, expect.size, progress).await?;
    if let Some(a) = announced
        && a != n
    {
        return Err(ApiError::bad_request(format!(
            "Truncated download of {url}: got {n} of {a} bytes"
        )));
    }
    check(url, expect, &sha, n)?;
    Ok((sha, n))
}

/// Check a finished download against what the index announced.
pub fn check(url: &str, expect: &Expect, sha: &str, n: u64) -> Result<()> {
    if let Some(size) = expect.size
        && size != n
    {
        return Err(ApiError::bad_request(format!(
            "Truncated download of {url}: got {n} of {size} bytes"
        )));
    }
    if let Some(want) = &expect.sha256
        && !want.is_empty()
        && !want.eq_ignore_ascii_case(sha)
    {
        return Err(ApiError::bad_request(format!(
            "Hash mismatch for {url}: {sha} != {want}"
        )));
    }
    Ok(())
}

/// Write a stream of chunks to a new file, hashing; stops as soon as `limit` is exceeded.
pub async fn write_stream<S>(
    mut stream: S,
    dest: &Path,
    limit: Option<u64>,
    progress: &mut Progress<'_>,
) -> Result<(String, u64)>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes>> + Unpin,
{
    use std::os::unix::fs::OpenOptionsExt;
    let std_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| crate::error::io_err("create", dest, e))?;
    let mut f = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(std_file));
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        n += chunk.len() as u64;
        if let Some(l) = limit
            && n > l
        {
            return Err(ApiError::bad_request(format!(
                "Download is larger than the {l} bytes announced"
            )));
        }
        hasher.update(&chunk);
        f.write_all(&chunk)
            .await
            .map_err(|e| crate::error::io_err("write", dest, e))?;
        progress.add(chunk.len() as u64, false);
    }
    f.flush()
        .await
        .map_err(|e| crate::error::io_err("write", dest, e))?;
    progress.add(0, true);
    Ok((hex::encode(hasher.finalize()), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_read_like_lxd() {
        assert_eq!(byte_size(999), "999B");
        assert_eq!(byte_size(1234), "1.23kB");
        assert_eq!(byte_size(12_340_000), "12.34MB");
    }

    #[test]
    fn checks_size_and_hash() {
        let e = Expect {
            sha256: Some("AB".into()),
            size: Some(3),
        };
        assert!(check("u", &e, "ab", 3).is_ok());
        assert!(
            check("u", &e, "ab", 2)
                .unwrap_err()
                .message
                .contains("Truncated")
        );
        assert!(
            check("u", &e, "cd", 3)
                .unwrap_err()
                .message
                .contains("Hash mismatch")
        );
    }
}
