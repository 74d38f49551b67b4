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

/// `POST /1.0/storage-pools/<pool>/volumes/<type>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumesPost {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub content_type: String,
    pub source: StorageVolumeSource,
}

/// Where a new volume's contents come from (`type: copy` from another volume or snapshot).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSource {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub pool: String,
    pub volume_only: bool,
    pub refresh: bool,
    pub project: String,
}

/// `PUT /1.0/storage-pools/<pool>/volumes/<type>/<name>` (`restore` names a snapshot).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePut {
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub restore: String,
}

/// `POST /1.0/storage-pools/<pool>/volumes/<type>/<name>`: rename, or move with `pool`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumePost {
    pub name: String,
    pub pool: String,
    pub migration: bool,
    pub volume_only: bool,
    pub project: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshot {
    pub name: String,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub content_type: String,
    pub created_at: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotsPost {
    pub name: String,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeSnapshotPut {
    pub description: String,
    pub expires_at: Option<String>,
}

/// `GET /1.0/storage-pools/<pool>/volumes/<type>/<name>/state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeState {
    pub usage: Option<StorageVolumeStateUsage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageVolumeStateUsage {
    pub used: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}
