//! `GET /1.0/resources`: the host's CPUs, memory and the storage pools' space, the part of LXD's
//! resources API this daemon can answer. Advertised (`resources`) because the client requires
//! it for `lxc storage info`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::json;

use super::AppState;
use crate::response::{ApiResult, sync};

pub fn routes() -> Router<AppState> {
    Router::new().route("/1.0/resources", get(resources))
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn resources(State(_d): State<AppState>) -> ApiResult {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let total = meminfo("MemTotal:");
    let used = total.saturating_sub(meminfo("MemAvailable:"));
    Ok(sync(json!({
        "cpu": {"architecture": std::env::consts::ARCH, "sockets": [], "total": cpus},
        "memory": {"used": used, "total": total, "nodes": null, "hugepages_total": 0,
                   "hugepages_used": 0, "hugepages_size": 0},
        "gpu": {"cards": [], "total": 0},
        "network": {"cards": [], "total": 0},
        "storage": {"disks": [], "total": 0},
        "usb": {"devices": [], "total": 0},
        "pci": {"devices": [], "total": 0},
        "system": {},
    })))
}
