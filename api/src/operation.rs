//! Background operations (LXD `shared/api/operation.go`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::StatusCode;

/// An operation as `GET /1.0/operations/<id>` returns it and as operation events carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Operation {
    pub id: String,
    /// `task`, `websocket` or `token`.
    pub class: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "crate::zero_time")]
    pub created_at: String,
    #[serde(default = "crate::zero_time")]
    pub updated_at: String,
    pub status: String,
    pub status_code: StatusCode,
    #[serde(default, deserialize_with = "crate::null_default")]
    pub resources: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub may_cancel: bool,
    #[serde(default)]
    pub err: String,
    #[serde(default)]
    pub location: String,
}

impl Operation {
    /// The exit code of an exec operation (`metadata.return`).
    pub fn exec_return(&self) -> Option<i64> {
        self.metadata.get("return").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    }
}
