//! Events on the `/1.0/events` websocket (LXD `shared/api/event.go`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event frame: `operation`, `logging` or `lifecycle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub project: String,
}

/// Metadata of a `lifecycle` event (`instance-started`, `image-created`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventLifecycle {
    pub action: String,
    pub source: String,
    #[serde(default)]
    pub context: Value,
    #[serde(default)]
    pub requestor: Value,
}

/// Metadata of a `logging` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventLogging {
    pub message: String,
    pub level: String,
    #[serde(default)]
    pub context: std::collections::BTreeMap<String, String>,
}
