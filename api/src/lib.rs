//! Serde types of the LXD REST API 1.0, shared by the daemon (`lxd`) and the client (`lxc`).
//!
//! Field names and JSON shapes follow LXD's `shared/api` package so that the real Go client decodes
//! what we send. Maps that the Go client writes into (`config`, `devices`) are always emitted as `{}`,
//! never `null`, and timestamps are RFC 3339 strings (the zero time is `0001-01-01T00:00:00Z`).

pub mod certificate;
pub mod event;
pub mod exec;
pub mod extensions;
pub mod files;
pub mod image;
pub mod instance;
pub mod network;
pub mod operation;
pub mod profile;
pub mod project;
pub mod response;
pub mod server;
pub mod simplestreams;
pub mod status;
pub mod storage;

pub use event::Event;
pub use image::{Image, ImageAlias, ImageAliasesEntry, ImageMetadata, ImagesPost};
pub use instance::{
    Instance, InstanceFull, InstancePost, InstancePostTarget, InstancePut, InstanceSnapshot,
    InstanceState, InstanceStatePut, InstancesPost,
};
pub use operation::Operation;
pub use profile::{Profile, ProfilePut, ProfilesPost};
pub use response::{Response, ResponseType};
pub use server::{Server, ServerEnvironment, ServerPut};
pub use status::StatusCode;

use std::collections::BTreeMap;

/// A config map as LXD sends it: string keys and string values.
pub type ConfigMap = BTreeMap<String, String>;
/// Devices: device name -> (key -> value), `type` among the keys.
pub type DevicesMap = BTreeMap<String, ConfigMap>;

/// The zero time as Go's encoding/json writes it; the Go client rejects an empty string.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn zero_time() -> String {
    ZERO_TIME.to_string()
}

/// Deserialize `null` as the type's default (Go clients send `null` for empty maps and lists).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Deserialize a config map whose values may be any JSON scalar (LXD's server config is a
/// `map[string]any`: `core.trust_password` comes back as the boolean `true`).
pub(crate) fn lenient_config<'de, D>(d: D) -> Result<ConfigMap, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, s)
        })
        .collect())
}
