//! `POST /1.0/instances/<name>/exec` and its control messages (LXD `shared/api/instance_exec.go`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceExecPost {
    pub command: Vec<String>,
    #[serde(rename = "wait-for-websocket")]
    pub wait_for_websocket: bool,
    pub interactive: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub environment: BTreeMap<String, String>,
    pub width: i64,
    pub height: i64,
    #[serde(rename = "record-output")]
    pub record_output: bool,
    pub user: u32,
    pub group: u32,
    pub cwd: String,
}

/// A message on the exec `control` websocket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceExecControl {
    /// `window-resize` or `signal`.
    pub command: String,
    /// For `window-resize`: `width` and `height`, as strings.
    #[serde(deserialize_with = "crate::null_default")]
    pub args: BTreeMap<String, String>,
    pub signal: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_5_0_client_body() {
        // traces/api_exec_protocol.txt #12
        let body = r#"{"command":["sh","-c","echo hi; echo err >&2; exit 3"],"wait-for-websocket":true,"interactive":false,"environment":{"TERM":"xterm"},"width":0,"height":0,"record-output":false,"user":0,"group":0,"cwd":""}"#;
        let p: InstanceExecPost = serde_json::from_str(body).unwrap();
        assert_eq!(p.command.len(), 3);
        assert!(p.wait_for_websocket);
        assert_eq!(p.environment["TERM"], "xterm");
    }

    #[test]
    fn parses_resize_with_string_args() {
        let c: InstanceExecControl = serde_json::from_str(
            r#"{"command":"window-resize","args":{"width":"132","height":"43"}}"#,
        )
        .unwrap();
        assert_eq!(c.args["width"], "132");
        let s: InstanceExecControl =
            serde_json::from_str(r#"{"command":"signal","signal":15}"#).unwrap();
        assert_eq!(s.signal, 15);
    }
}
