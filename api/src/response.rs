//! The JSON envelope every response travels in (LXD `shared/api/response.go`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    Sync,
    Async,
    Error,
}

/// The envelope: `sync` (200), `async` (202 + Location) or `error` (4xx/5xx).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    #[serde(rename = "type")]
    pub kind: ResponseType,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: i64,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: i64,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub metadata: Value,
}

impl Response {
    pub fn sync(metadata: Value) -> Self {
        Response {
            kind: ResponseType::Sync,
            status: "Success".into(),
            status_code: 200,
            operation: String::new(),
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }

    pub fn async_op(operation_url: String, metadata: Value) -> Self {
        Response {
            kind: ResponseType::Async,
            status: "Operation created".into(),
            status_code: 100,
            operation: operation_url,
            error_code: 0,
            error: String::new(),
            metadata,
        }
    }

    pub fn error(http_status: u16, message: impl Into<String>) -> Self {
        Response {
            kind: ResponseType::Error,
            status: String::new(),
            status_code: 0,
            operation: String::new(),
            error_code: i64::from(http_status),
            error: message.into(),
            metadata: Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_matches_lxd() {
        let v = serde_json::to_value(Response::error(404, "Instance not found")).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error_code"], 404);
        assert_eq!(v["error"], "Instance not found");
        assert!(v["metadata"].is_null());
    }

    #[test]
    fn sync_envelope_matches_lxd() {
        let v = serde_json::to_value(Response::sync(serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(v["type"], "sync");
        assert_eq!(v["status"], "Success");
        assert_eq!(v["status_code"], 200);
        assert_eq!(v["operation"], "");
    }
}
