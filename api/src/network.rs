//! Networks (LXD `shared/api/network.go`).

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub managed: bool,
    pub status: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub used_by: Vec<String>,
    #[serde(deserialize_with = "crate::null_default")]
    pub locations: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworksPost {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
}
