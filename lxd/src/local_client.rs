//! A minimal client of the local daemon over its unix socket, for `lxd init`, `lxd waitready` and
//! `lxd shutdown` (the `lxc` client is its own crate).

use lxd_api::Response as Envelope;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug)]
pub struct LocalClient {
    http: reqwest::Client,
}

pub fn socket_path(lxd_dir: &Path) -> PathBuf {
    std::env::var_os("LXD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| lxd_dir.join("unix.socket"))
}

impl LocalClient {
    pub fn new(lxd_dir: &Path) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .unix_socket(socket_path(lxd_dir))
            .tls_certs_only(Vec::<reqwest::Certificate>::new())
            .timeout(Duration::from_secs(600))
            .build()?;
        Ok(LocalClient { http })
    }

    /// One request; returns the metadata of a sync response, waits for async ones.
    pub async fn query(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("http://unix.socket{path}");
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(m, &url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let env: Envelope = resp
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("Invalid response from the daemon ({status}): {e}"))?;
        match env.kind {
            lxd_api::ResponseType::Error => anyhow::bail!("{}", env.error),
            lxd_api::ResponseType::Sync => Ok(env.metadata),
            lxd_api::ResponseType::Async => {
                let id = env.metadata["id"].as_str().unwrap_or_default().to_string();
                let op = Box::pin(self.query("GET", &format!("/1.0/operations/{id}/wait"), None))
                    .await?;
                if op["status_code"].as_i64() != Some(200) {
                    anyhow::bail!("{}", op["err"].as_str().unwrap_or("operation failed"));
                }
                Ok(op["metadata"].clone())
            }
        }
    }

    /// Whether the daemon answers `/internal/ready` with success.
    pub async fn ready(&self) -> bool {
        self.query("GET", "/internal/ready", None).await.is_ok()
    }
}
