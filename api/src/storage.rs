//! Storage pools and volumes (LXD `shared/api/storage_pool.go`, `storage_pool_volume.go`).

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePool {
    pub name: String,
    pub driver: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub used_by: Vec<String>,
    pub status: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub locations: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolsPost {
    pub name: String,
    pub driver: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolPut {
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
}

/// `GET /1.0/storage-pools/<name>/resources`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolResources {
    pub space: StoragePoolResourcesSpace,
    pub inodes: StoragePoolResourcesInodes,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolResourcesSpace {
    pub used: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoragePoolResourcesInodes {
    pub used: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolume {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub used_by: Vec<String>,
    pub location: String,
    pub content_type: String,
    pub project: String,
    pub created_at: String,
}
