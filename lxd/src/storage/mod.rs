//! Storage in the daemon, above the `lxd-storage` drivers: custom volumes and the disk devices
//! that attach them, instance-volume work the instance code delegates (quotas, copies across
//! pools, refresh, usage), and the scheduled snapshot task. Pool create/update/delete is in
//! `api/storage.rs`. Driver calls run on tokio's blocking pool.

pub mod instances;
pub mod schedule;
pub mod volumes;

/// An error with its causes, each once: "failed to unpack x: No space left on device (os error
/// 28)". Library errors often keep the reason only in `source()`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}
