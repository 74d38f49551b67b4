//! `GET /1.0`: the server description every client reads first (LXD `shared/api/server.go`).

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerStorageDriverInfo {
    // LXD's struct has no json tags, so the keys are capitalised on the wire.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Remote")]
    pub remote: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerEnvironment {
    pub addresses: Vec<String>,
    pub architectures: Vec<String>,
    pub certificate: String,
    pub certificate_fingerprint: String,
    pub driver: String,
    pub driver_version: String,
    pub firewall: String,
    pub kernel: String,
    pub kernel_architecture: String,
    pub kernel_features: ConfigMap,
    pub kernel_version: String,
    pub lxc_features: ConfigMap,
    pub os_name: String,
    pub os_version: String,
    pub project: String,
    pub server: String,
    pub server_clustered: bool,
    pub server_event_mode: String,
    pub server_name: String,
    pub server_pid: i64,
    pub server_version: String,
    pub storage: String,
    pub storage_version: String,
    pub storage_supported_drivers: Vec<ServerStorageDriverInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Server {
    #[serde(deserialize_with = "crate::lenient_config")]
    pub config: ConfigMap,
    pub api_extensions: Vec<String>,
    pub api_status: String,
    pub api_version: String,
    pub auth: String,
    pub public: bool,
    pub auth_methods: Vec<String>,
    pub environment: ServerEnvironment,
}

/// `PUT`/`PATCH /1.0` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerPut {
    #[serde(default, deserialize_with = "crate::lenient_config")]
    pub config: ConfigMap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_config_values_may_be_booleans() {
        let s: Server = serde_json::from_str(
            r#"{"config":{"core.trust_password":true,"core.https_address":":8443","x":null}}"#,
        )
        .unwrap();
        assert_eq!(s.config["core.trust_password"], "true");
        assert_eq!(s.config["core.https_address"], ":8443");
    }
}
