//! Projects: only `default` exists for now (LXD `shared/api/project.go`).

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    pub name: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub config: ConfigMap,
    pub description: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub used_by: Vec<String>,
}
