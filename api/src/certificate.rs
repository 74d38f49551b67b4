//! Trusted client certificates (LXD `shared/api/certificate.go`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Certificate {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub restricted: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub projects: Vec<String>,
    pub certificate: String,
    pub fingerprint: String,
}
