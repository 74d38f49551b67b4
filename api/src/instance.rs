//! Instances, their state and snapshots (LXD `shared/api/instance*.go`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::{ConfigMap, DevicesMap};

/// The writable part of an instance (`PUT /1.0/instances/<name>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePut {
    pub architecture: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
    pub ephemeral: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub description: String,
    /// `PUT` with `restore` restores a snapshot (`"C01/snap0"` or `"snap0"`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
}

/// An instance as `GET /1.0/instances/<name>` returns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Instance {
    pub architecture: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
    pub ephemeral: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub description: String,
    pub created_at: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub expanded_config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub expanded_devices: DevicesMap,
    pub name: String,
    pub status: String,
    pub status_code: i64,
    pub last_used_at: String,
    pub location: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub project: String,
}

/// `GET /1.0/instances?recursion=2` and `GET /1.0/instances/<name>?recursion=1`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceFull {
    #[serde(flatten)]
    pub instance: Instance,
    pub state: Option<InstanceState>,
    pub snapshots: Option<Vec<InstanceSnapshot>>,
    pub backups: Option<Vec<Value>>,
}

/// The body of `POST /1.0/instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancesPost {
    pub name: String,
    pub architecture: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
    pub ephemeral: bool,
    /// `None` (JSON null or absent) means the `default` profile; `Some([])` means none.
    pub profiles: Option<Vec<String>>,
    pub stateful: bool,
    pub description: String,
    pub source: InstanceSource,
    pub instance_type: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Create and start in one operation (extension `instance_create_start`).
    pub start: bool,
}

/// Where a new instance comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSource {
    /// `image`, `copy`, `migration` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    pub certificate: String,
    pub alias: String,
    pub fingerprint: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub properties: ConfigMap,
    pub server: String,
    pub secret: String,
    pub protocol: String,
    pub mode: String,
    #[serde(rename = "base-image")]
    pub base_image: String,
    pub source: String,
    pub instance_only: bool,
    pub live: bool,
    pub refresh: bool,
    pub project: String,
    pub allow_inconsistent: bool,
    pub image_type: String,
    /// Migration: the source's operation URL (pull mode).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// Migration: websocket secrets by channel (`control`, `fs`, `criu`).
    #[serde(
        rename = "secrets",
        skip_serializing_if = "std::collections::BTreeMap::is_empty",
        deserialize_with = "crate::null_default"
    )]
    pub websockets: std::collections::BTreeMap<String, String>,
}

/// The body of `POST /1.0/instances/<name>` (rename, or migration when `migration` is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePost {
    pub name: String,
    pub migration: bool,
    pub live: bool,
    pub instance_only: bool,
    pub container_only: bool,
    pub pool: String,
    pub project: String,
    /// Push mode: the target server's operation to connect to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<InstancePostTarget>,
}

/// Where a pushed migration goes (LXD's `InstancePostTarget`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstancePostTarget {
    /// The target server's certificate (PEM), pinned by the source.
    pub certificate: String,
    /// The target's operation URL.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operation: String,
    /// Websocket secrets by channel.
    #[serde(
        rename = "secrets",
        skip_serializing_if = "std::collections::BTreeMap::is_empty",
        deserialize_with = "crate::null_default"
    )]
    pub websockets: std::collections::BTreeMap<String, String>,
}

/// The body of `PUT /1.0/instances/<name>/state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStatePut {
    /// `start`, `stop`, `restart`, `freeze` or `unfreeze`.
    pub action: String,
    /// Seconds; -1 means LXD's default.
    pub timeout: i64,
    pub force: bool,
    pub stateful: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceState {
    pub status: String,
    pub status_code: i64,
    #[serde(deserialize_with = "crate::null_default")]
    pub disk: BTreeMap<String, InstanceStateDisk>,
    pub memory: InstanceStateMemory,
    pub network: Option<BTreeMap<String, InstanceStateNetwork>>,
    pub pid: i64,
    pub processes: i64,
    pub cpu: InstanceStateCpu,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateDisk {
    pub usage: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateCpu {
    /// Nanoseconds of CPU time.
    pub usage: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateMemory {
    pub usage: i64,
    pub usage_peak: i64,
    pub total: i64,
    pub swap_usage: i64,
    pub swap_usage_peak: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetwork {
    pub addresses: Vec<InstanceStateNetworkAddress>,
    pub counters: InstanceStateNetworkCounters,
    pub hwaddr: String,
    pub host_name: String,
    pub mtu: i64,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetworkAddress {
    pub family: String,
    pub address: String,
    pub netmask: String,
    pub scope: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStateNetworkCounters {
    pub bytes_received: i64,
    pub bytes_sent: i64,
    pub packets_received: i64,
    pub packets_sent: i64,
    pub errors_received: i64,
    pub errors_sent: i64,
    pub packets_dropped_outbound: i64,
    pub packets_dropped_inbound: i64,
}

/// A snapshot of an instance (`GET /1.0/instances/<name>/snapshots/<snap>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSnapshot {
    pub architecture: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub created_at: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
    pub ephemeral: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub expanded_config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub expanded_devices: DevicesMap,
    pub last_used_at: String,
    pub name: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub profiles: Vec<String>,
    pub stateful: bool,
    pub expires_at: String,
    pub size: i64,
    pub description: String,
}

/// `POST /1.0/instances/<name>/snapshots`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSnapshotsPost {
    pub name: String,
    pub stateful: bool,
    pub expires_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_client_create_body_parses() {
        // The body the LXD 5.0.2 client sends for `lxc launch busybox w1` (traces/api_exec_protocol.txt #5).
        let body = r#"{"architecture":"","config":{},"devices":{},"ephemeral":false,"profiles":null,"stateful":false,"description":"","name":"w1","source":{"type":"image","certificate":"","fingerprint":"c9ca818f7b7852a4e4b5c6b54b2e388bd19a6eca227c697919ff89e7060902a0","allow_inconsistent":false},"instance_type":"","type":"container"}"#;
        let p: InstancesPost = serde_json::from_str(body).unwrap();
        assert_eq!(p.name, "w1");
        assert!(p.profiles.is_none());
        assert_eq!(p.source.kind, "image");
        assert!(!p.start);
    }

    #[test]
    fn empty_profiles_list_is_not_null() {
        let p: InstancesPost = serde_json::from_str(r#"{"name":"a","profiles":[]}"#).unwrap();
        assert_eq!(p.profiles, Some(vec![]));
    }

    #[test]
    fn instance_emits_empty_maps_not_null() {
        let v = serde_json::to_value(Instance::default()).unwrap();
        assert!(v["config"].is_object());
        assert!(v["devices"].is_object());
        assert!(v["expanded_devices"].is_object());
        assert!(v["profiles"].is_array());
    }

    #[test]
    fn full_instance_flattens() {
        let mut f = InstanceFull::default();
        f.instance.name = "c1".into();
        f.state = Some(InstanceState::default());
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["name"], "c1");
        assert!(v["state"].is_object());
        assert!(v["backups"].is_null());
    }
}
