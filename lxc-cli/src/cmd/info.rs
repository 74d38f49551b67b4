//! `info`: the server as YAML, or an instance as LXD 5.0 prints it (`GET
//! /1.0/instances/NAME?recursion=1`), with `--show-log` fetching `logs/lxc.log`.

use anyhow::bail;
use clap::Args;
use lxd_api::{InstanceFull, Server};
use std::fmt::Write as _;

use super::{instance_path, print_out};
use crate::Ctx;
use crate::output::{self, byte_size, byte_size_iec, time_short};

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[arg(value_name = "[<remote>:][<instance>]")]
    pub name: Option<String>,
    /// Show the instance's last 100 log lines?
    #[arg(long)]
    pub show_log: bool,
    /// Show the resources available to the server
    #[arg(long)]
    pub resources: bool,
    /// Cluster member name
    #[arg(long, value_name = "MEMBER")]
    pub target: Option<String>,
}

pub async fn run(ctx: &Ctx, a: InfoArgs) -> anyhow::Result<()> {
    let (remote, name) = ctx.parse_remote(a.name.as_deref().unwrap_or(""))?;
    let client = ctx.client(&remote)?;
    if name.is_empty() {
        if a.resources {
            bail!("The server doesn't implement the newer v2 resources API");
        }
        let server: Server = client.get("/1.0").await?;
        let mut v = yaml_serde::to_value(&server)?;
        lowercase_driver_keys(&mut v);
        print_out(&output::yaml(&v)?);
        return Ok(());
    }
    if a.target.is_some() {
        bail!("--target cannot be used with instances");
    }
    let inst = get_full(&client, &name).await?;
    print_out(&render(&inst));
    if a.show_log {
        let log_name = if inst.instance.kind == "virtual-machine" {
            "qemu.log"
        } else {
            "lxc.log"
        };
        let resp = client
            .raw(
                reqwest::Method::GET,
                &format!("{}/logs/{log_name}", instance_path(&name)),
                Default::default(),
                None,
            )
            .await?;
        let body = resp.bytes().await?;
        print_out(&format!("\nLog:\n\n{}\n", String::from_utf8_lossy(&body)));
    }
    Ok(())
}

/// yaml.v2 lower-cases the fields of LXD's untagged `ServerStorageDriverInfo`.
fn lowercase_driver_keys(v: &mut yaml_serde::Value) {
    let drivers = v
        .get_mut("environment")
        .and_then(|e| e.get_mut("storage_supported_drivers"))
        .and_then(|d| d.as_sequence_mut());
    for d in drivers.into_iter().flatten() {
        if let yaml_serde::Value::Mapping(m) = d {
            let lowered: yaml_serde::Mapping = std::mem::take(m)
                .into_iter()
                .map(|(k, v)| {
                    let key = k.as_str().map(str::to_lowercase).unwrap_or_default();
                    (yaml_serde::Value::from(key), v)
                })
                .collect();
            *m = lowered;
        }
    }
}

/// The full instance: `?recursion=1` when the server has `instance_get_full`, else assembled.
pub async fn get_full(client: &crate::client::Client, name: &str) -> anyhow::Result<InstanceFull> {
    let path = instance_path(name);
    if client.has_extension("instance_get_full").await? {
        return Ok(client.get(&format!("{path}?recursion=1")).await?);
    }
    let instance = client.get(&path).await?;
    let state = client.get(&format!("{path}/state")).await.ok();
    let snapshots = client
        .get(&format!("{path}/snapshots?recursion=1"))
        .await
        .ok();
    Ok(InstanceFull {
        instance,
        state,
        snapshots,
        backups: None,
    })
}

/// The text of `lxc info NAME` (LXD 5.0 `instanceInfo`).
pub fn render(full: &InstanceFull) -> String {
    let inst = &full.instance;
    let mut s = String::new();
    let _ = writeln!(s, "Name: {}", inst.name);
    let _ = writeln!(s, "Status: {}", inst.status.to_uppercase());
    let kind = if inst.kind.is_empty() {
        "container"
    } else {
        &inst.kind
    };
    if inst.ephemeral {
        let _ = writeln!(s, "Type: {kind} (ephemeral)");
    } else {
        let _ = writeln!(s, "Type: {kind}");
    }
    let _ = writeln!(s, "Architecture: {}", inst.architecture);
    let state = full.state.clone().unwrap_or_default();
    if state.pid != 0 {
        let _ = writeln!(s, "PID: {}", state.pid);
    }
    if let Some(t) = time_short(&inst.created_at) {
        let _ = writeln!(s, "Created: {t}");
    }
    if let Some(t) = time_short(&inst.last_used_at) {
        let _ = writeln!(s, "Last Used: {t}");
    }
    if state.pid != 0 {
        let _ = writeln!(s, "\nResources:");
        let _ = writeln!(s, "  Processes: {}", state.processes);
        let disk: String = state
            .disk
            .iter()
            .filter(|(_, d)| d.usage != 0)
            .map(|(k, d)| format!("    {k}: {}\n", byte_size_iec(d.usage, 2)))
            .collect();
        if !disk.is_empty() {
            let _ = write!(s, "  Disk usage:\n{disk}");
        }
        if state.cpu.usage != 0 {
            let _ = write!(
                s,
                "  CPU usage:\n    CPU usage (in seconds): {}\n",
                state.cpu.usage / 1_000_000_000
            );
        }
        let m = &state.memory;
        let mut mem = String::new();
        for (label, v) in [
            ("Memory (current)", m.usage),
            ("Memory (peak)", m.usage_peak),
            ("Swap (current)", m.swap_usage),
            ("Swap (peak)", m.swap_usage_peak),
        ] {
            if v != 0 {
                let _ = writeln!(mem, "    {label}: {}", byte_size_iec(v, 2));
            }
        }
        if !mem.is_empty() {
            let _ = write!(s, "  Memory usage:\n{mem}");
        }
        if let Some(net) = &state.network {
            let mut n = String::new();
            for (name, iface) in net {
                let _ = writeln!(n, "    {name}:");
                let _ = writeln!(n, "      Type: {}", iface.kind);
                let _ = writeln!(n, "      State: {}", iface.state.to_uppercase());
                if !iface.host_name.is_empty() {
                    let _ = writeln!(n, "      Host interface: {}", iface.host_name);
                }
                if !iface.hwaddr.is_empty() {
                    let _ = writeln!(n, "      MAC address: {}", iface.hwaddr);
                }
                if iface.mtu != 0 {
                    let _ = writeln!(n, "      MTU: {}", iface.mtu);
                }
                let c = &iface.counters;
                let _ = writeln!(
                    n,
                    "      Bytes received: {}",
                    byte_size(c.bytes_received, 2)
                );
                let _ = writeln!(n, "      Bytes sent: {}", byte_size(c.bytes_sent, 2));
                let _ = writeln!(n, "      Packets received: {}", c.packets_received);
                let _ = writeln!(n, "      Packets sent: {}", c.packets_sent);
                let _ = writeln!(n, "      IP addresses:");
                for a in &iface.addresses {
                    let sep = if a.family == "inet" { "  " } else { " " };
                    let _ = writeln!(
                        n,
                        "        {}:{sep}{}/{} ({})",
                        a.family, a.address, a.netmask, a.scope
                    );
                }
            }
            if !n.is_empty() {
                let _ = write!(s, "  Network usage:\n{n}");
            }
        }
    }
    if let Some(snaps) = full.snapshots.as_ref().filter(|v| !v.is_empty()) {
        let _ = writeln!(s, "\nSnapshots:");
        // LXD 5.0.2 prints snapshots in the server's (creation) order.
        let rows: Vec<Vec<String>> = snaps
            .iter()
            .map(|snap| {
                vec![
                    snap.name
                        .rsplit('/')
                        .next()
                        .unwrap_or(&snap.name)
                        .to_string(),
                    time_short(&snap.created_at).unwrap_or_else(|| " ".into()),
                    time_short(&snap.expires_at).unwrap_or_else(|| " ".into()),
                    output::yes_no(snap.stateful),
                ]
            })
            .collect();
        s.push_str(&output::table(
            &["Name", "Taken at", "Expires at", "Stateful"],
            &rows,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_lxd_5_0() {
        // State of a running busybox container on LXD 5.0.2 (trimmed to what info reads).
        let full: InstanceFull = serde_json::from_value(serde_json::json!({
            "name": "c1", "status": "Running", "status_code": 103, "type": "container",
            "architecture": "x86_64",
            "created_at": "2026-11-27T23:01:44.814058671Z",
            "last_used_at": "2026-11-27T23:01:45.1Z",
            "state": {"pid": 11304, "processes": 2, "cpu": {"usage": 40000000},
                "memory": {"usage": 880640, "usage_peak": 1667072},
                "network": {"lo": {"type": "loopback", "state": "down", "mtu": 65536,
                    "counters": {}, "addresses": []}}},
            "snapshots": [
                {"name": "snap0", "created_at": "2026-11-27T23:03:10Z", "expires_at": "0001-01-01T00:00:00Z"},
                {"name": "s2", "created_at": "2026-11-27T23:03:20Z"}
            ]
        }))
        .unwrap();
        let text = render(&full);
        let expected_tail = "Resources:\n  Processes: 2\n  CPU usage:\n    CPU usage (in seconds): 0\n  Memory usage:\n    Memory (current): 860.00KiB\n    Memory (peak): 1.59MiB\n  Network usage:\n    lo:\n      Type: loopback\n      State: DOWN\n      MTU: 65536\n      Bytes received: 0B\n      Bytes sent: 0B\n      Packets received: 0\n      Packets sent: 0\n      IP addresses:\n\nSnapshots:\n";
        assert!(text.starts_with("Name: c1\nStatus: RUNNING\nType: container\nArchitecture: x86_64\nPID: 11304\nCreated: "), "{text}");
        assert!(text.contains(expected_tail), "{text}");
        assert!(text.contains("| NAME  |"), "{text}");
        // Server order, as LXD 5.0.2 prints it.
        assert!(text.find("| snap0").unwrap() < text.find("| s2 ").unwrap());
    }

    #[test]
    fn stopped_instance_has_no_resources() {
        let full: InstanceFull = serde_json::from_value(serde_json::json!({
            "name": "c2", "status": "Stopped", "status_code": 102, "type": "container",
            "architecture": "x86_64", "ephemeral": true,
            "created_at": "0001-01-01T00:00:00Z", "state": {"pid": 0}
        }))
        .unwrap();
        assert_eq!(
            render(&full),
            "Name: c2\nStatus: STOPPED\nType: container (ephemeral)\nArchitecture: x86_64\n"
        );
    }
}
