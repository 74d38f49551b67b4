//! Storage in the daemon, above the `lxd-storage` drivers: custom volumes and the disk devices
//! that attach them, instance-volume work the instance code delegates (quotas, copies across
//! pools, refresh, usage), and the scheduled snapshot task. Pool create/update/delete is in
//! `api/storage.rs`. Driver calls run on tokio's blocking pool.

pub mod instances;
pub mod schedule;
pub mod volumes;
