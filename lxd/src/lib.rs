//! The lxd daemon library: the REST API, operations and events, the database, images, instances.
//! `main.rs` only dispatches; everything it calls lives here.

pub mod api;
pub mod config;
pub mod daemon;
pub mod db;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod fdio;
pub mod filter;
pub mod images;
pub mod init;
pub mod instance;
pub mod local_client;
pub mod migration;
pub mod network;
pub mod operations;
pub mod remotes;
pub mod response;
pub mod run;
pub mod storage;
pub mod tls;
pub mod trust;

/// The LXD server version we speak (the API level of LXD 5.0 LTS, which our clients target).
pub const SERVER_VERSION: &str = "5.0.2";
