//! Profiles (LXD `shared/api/profile.go`).

use serde::{Deserialize, Serialize};

use crate::{ConfigMap, DevicesMap};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilePut {
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Profile {
    pub name: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub used_by: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilesPost {
    pub name: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub devices: DevicesMap,
}

/// `POST /1.0/profiles/<name>` (rename).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProfilePost {
    pub name: String,
}
