//! The lxd daemon library: the REST API, operations and events, the database, images, instances.
//! `main.rs` only dispatches; everything it calls lives here.
pub mod images;
