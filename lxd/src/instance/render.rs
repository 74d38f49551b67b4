//! Instances as the API shows them: `Instance`, `InstanceFull` (state + snapshots), `InstanceState`.

use lxd_api::instance::{
    Instance, InstanceFull, InstanceSnapshot, InstanceState, InstanceStateCpu, InstanceStateMemory,
    InstanceStateNetwork, InstanceStateNetworkAddress, InstanceStateNetworkCounters,
};
use std::collections::BTreeMap;

use super::runtime::{self as rt, RunState};
use super::{expand, expand_row};
use crate::daemon::Daemon;
use crate::db::instances::{InstanceRow, SnapshotRow};
use crate::error::Result;

pub fn instance(d: &Daemon, row: &InstanceRow, state: RunState) -> Result<Instance> {
    let ex = expand_row(d, row)?;
    let (status, code) = state.status();
    Ok(Instance {
        architecture: row.architecture.clone(),
        config: row.config.clone(),
        devices: row.devices.clone(),
        ephemeral: row.ephemeral,
        profiles: row.profiles.clone(),
        stateful: row.stateful,
        description: row.description.clone(),
        created_at: row.created_at.clone(),
        expanded_config: ex.config,
        expanded_devices: ex.devices,
        name: row.name.clone(),
        status: status.into(),
        status_code: code,
        last_used_at: row.last_used_at.clone(),
        location: "none".into(),
        kind: "container".into(),
        project: "default".into(),
    })
}

/// Counters and addresses as seen from inside the container's network namespace, read through
/// /proc/PID/net (no namespace switch needed).
fn network(pid: i32) -> BTreeMap<String, InstanceStateNetwork> {
    let mut out = BTreeMap::new();
    let Ok(dev) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return out;
    };
    for line in dev.lines().skip(2) {
        let Some((ifname, rest)) = line.split_once(':') else {
            continue;
        };
        let ifname = ifname.trim().to_string();
        let f: Vec<i64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 16 {
            continue;
        }
        let counters = InstanceStateNetworkCounters {
            bytes_received: f[0],
            packets_received: f[1],
            errors_received: f[2],
            packets_dropped_inbound: f[3],
            bytes_sent: f[8],
            packets_sent: f[9],
            errors_sent: f[10],
            packets_dropped_outbound: f[11],
        };
        let lo = ifname == "lo";
        let mut addresses = Vec::new();
        if lo {
            addresses.push(InstanceStateNetworkAddress {
                family: "inet".into(),
                address: "127.0.0.1".into(),
                netmask: "8".into(),
                scope: "local".into(),
            });
            addresses.push(InstanceStateNetworkAddress {
                family: "inet6".into(),
                address: "::1".into(),
                netmask: "128".into(),
                scope: "local".into(),
            });
        }
        out.insert(
            ifname,
            InstanceStateNetwork {
                addresses,
                counters,
                hwaddr: String::new(),
                host_name: String::new(),
                mtu: if lo { 65536 } else { 1500 },
                state: "up".into(),
                kind: if lo {
                    "loopback".into()
                } else {
                    "broadcast".into()
                },
            },
        );
    }
    out
}

/// Interfaces, addresses, MACs and MTUs read with netlink from inside the container's network
/// namespace (a short-lived thread joins it; see `lxd_network::netns`). None when that fails, and
/// the caller falls back to /proc/PID/net.
fn network_from_netns(
    row: &InstanceRow,
    pid: i32,
) -> Option<BTreeMap<String, InstanceStateNetwork>> {
    let ifaces = lxd_network::netns::interfaces(pid).ok()?;
    let host_name = |ifname: &str| -> String {
        row.config
            .iter()
            .filter_map(|(k, v)| {
                let dev = k.strip_prefix("volatile.")?.strip_suffix(".name")?;
                (v == ifname).then(|| {
                    row.config
                        .get(&format!("volatile.{dev}.host_name"))
                        .cloned()
                        .unwrap_or_default()
                })
            })
            .next()
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for (l, addrs) in ifaces {
        let lo = l.name == "lo";
        out.insert(
            l.name.clone(),
            InstanceStateNetwork {
                addresses: addrs
                    .iter()
                    .map(|a| InstanceStateNetworkAddress {
                        family: if a.addr.is_ipv4() { "inet" } else { "inet6" }.into(),
                        address: a.addr.to_string(),
                        netmask: a.prefix.to_string(),
                        scope: a.scope.into(),
                    })
                    .collect(),
                counters: InstanceStateNetworkCounters {
                    bytes_received: l.rx_bytes as i64,
                    packets_received: l.rx_packets as i64,
                    bytes_sent: l.tx_bytes as i64,
                    packets_sent: l.tx_packets as i64,
                    ..Default::default()
                },
                hwaddr: if lo { String::new() } else { l.mac.clone() },
                host_name: host_name(&l.name),
                mtu: i64::from(l.mtu),
                state: if l.up { "up" } else { "down" }.into(),
                kind: if lo { "loopback" } else { "broadcast" }.into(),
            },
        );
    }
    Some(out)
}

pub fn state(d: &Daemon, row: &InstanceRow, st: RunState) -> InstanceState {
    let (status, code) = st.status();
    let mut s = InstanceState {
        status: status.into(),
        status_code: code,
        disk: crate::storage::instances::disk_state(d, row),
        ..Default::default()
    };
    if let Some(pid) = st.init_pid() {
        s.pid = i64::from(pid);
        if let Some(stats) = rt::stats(d, &row.name) {
            s.processes = stats.processes as i64;
            s.memory = InstanceStateMemory {
                usage: stats.memory_usage as i64,
                usage_peak: stats.memory_max_usage as i64,
                ..Default::default()
            };
            s.cpu = InstanceStateCpu {
                usage: stats.cpu_usage_ns as i64,
            };
        }
        s.network = Some(match network_from_netns(row, pid) {
            Some(n) => n,
            None => network(pid),
        });
    } else {
        s.pid = 0;
        s.processes = 0;
    }
    s
}

pub fn snapshot(d: &Daemon, snap: &SnapshotRow) -> Result<InstanceSnapshot> {
    let ex = expand(d, &snap.profiles, &snap.config, &snap.devices)?;
    Ok(InstanceSnapshot {
        architecture: snap.architecture.clone(),
        config: snap.config.clone(),
        created_at: snap.created_at.clone(),
        devices: snap.devices.clone(),
        ephemeral: snap.ephemeral,
        expanded_config: ex.config,
        expanded_devices: ex.devices,
        last_used_at: lxd_api::ZERO_TIME.into(),
        name: snap.name.clone(),
        profiles: snap.profiles.clone(),
        stateful: snap.stateful,
        expires_at: snap.expires_at.clone(),
        size: -1,
        description: snap.description.clone(),
    })
}

pub fn full(d: &Daemon, row: &InstanceRow) -> Result<InstanceFull> {
    let st = rt::probe(d, &row.name);
    let inst = instance(d, row, st)?;
    let state = state(d, row, st);
    let mut snaps = Vec::new();
    for s in d.db.snapshots(&row.name)? {
        snaps.push(snapshot(d, &s)?);
    }
    Ok(InstanceFull {
        instance: inst,
        state: Some(state),
        snapshots: Some(snaps),
        backups: None,
    })
}
