//! Images and aliases (LXD `shared/api/image.go`), plus `metadata.yaml` inside an image tarball.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ConfigMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAlias {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageSource {
    pub alias: String,
    pub certificate: String,
    pub protocol: String,
    pub server: String,
    pub image_type: String,
}

/// An image as `GET /1.0/images/<fingerprint>` returns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Image {
    pub auto_update: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub properties: ConfigMap,
    pub public: bool,
    pub expires_at: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub profiles: Vec<String>,
    #[serde(deserialize_with = "crate::null_default")]
    pub aliases: Vec<ImageAlias>,
    pub architecture: String,
    pub cached: bool,
    pub filename: String,
    pub fingerprint: String,
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_source: Option<ImageSource>,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub last_used_at: String,
    pub uploaded_at: String,
    pub project: String,
}

/// The writable part of an image (`PUT /1.0/images/<fingerprint>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagePut {
    pub auto_update: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub properties: ConfigMap,
    pub public: bool,
    pub expires_at: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub profiles: Vec<String>,
}

/// `POST /1.0/images` with a JSON body (copy from a remote, publish); uploads use raw bodies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesPost {
    pub auto_update: bool,
    #[serde(deserialize_with = "crate::null_default")]
    pub properties: ConfigMap,
    pub public: bool,
    /// RFC 3339; left out when empty (LXD rejects `""` as a time).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expires_at: String,
    pub profiles: Option<Vec<String>>,
    pub filename: String,
    pub source: Option<ImagesPostSource>,
    pub compression_algorithm: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub aliases: Vec<ImageAlias>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesPostSource {
    #[serde(rename = "type")]
    pub kind: String,
    pub mode: String,
    pub server: String,
    pub protocol: String,
    pub certificate: String,
    pub secret: String,
    pub fingerprint: String,
    pub alias: String,
    pub image_type: String,
    pub name: String,
    pub url: String,
    pub project: String,
}

/// `GET /1.0/images/aliases/<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesEntry {
    pub name: String,
    pub description: String,
    pub target: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /1.0/images/aliases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesPost {
    pub name: String,
    pub description: String,
    pub target: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `PUT`/`PATCH /1.0/images/aliases/<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesEntryPut {
    pub description: String,
    pub target: String,
}

/// `POST /1.0/images/aliases/<name>` (rename).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageAliasesEntryPost {
    pub name: String,
}

/// A template entry in `metadata.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageMetadataTemplate {
    pub when: Vec<String>,
    pub create_only: bool,
    pub template: String,
    #[serde(deserialize_with = "crate::null_default")]
    pub properties: ConfigMap,
}

/// `metadata.yaml` at the top of an image tarball (LXD `doc/reference/image_format.md`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageMetadata {
    pub architecture: String,
    pub creation_date: i64,
    pub expiry_date: i64,
    #[serde(deserialize_with = "crate::null_default")]
    pub properties: ConfigMap,
    #[serde(deserialize_with = "crate::null_default")]
    pub templates: BTreeMap<String, ImageMetadataTemplate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_post_leaves_out_an_empty_expiry() {
        let v = serde_json::to_value(ImagesPost::default()).unwrap();
        assert!(v.get("expires_at").is_none());
        let p: ImagesPost =
            serde_json::from_str(r#"{"expires_at":"2030-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(p.expires_at, "2030-01-01T00:00:00Z");
    }
}
