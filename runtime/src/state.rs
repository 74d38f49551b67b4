//! The runtime state of one instance as the monitor records it in `run_dir/state.json`, and
//! `probe`, which tells the daemon whether that record is still true (pids are checked against
//! their recorded start times, so a pid reused after a host reboot reads as stopped).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::sys;

pub const STATE_FILE: &str = "state.json";
pub const SPEC_FILE: &str = "spec.json";
pub const SOCKET_FILE: &str = "monitor.sock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting,
    Running,
    Rebooting,
    Stopped,
}

/// What the monitor writes (atomically) whenever the instance changes state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeState {
    pub name: String,
    pub status: Status,
    pub monitor_pid: i32,
    /// Clock ticks since boot (field 22 of /proc/PID/stat).
    pub monitor_start_time: u64,
    #[serde(default)]
    pub init_pid: Option<i32>,
    #[serde(default)]
    pub init_start_time: Option<u64>,
    pub cgroup_name: String,
    #[serde(default)]
    pub unprivileged: bool,
    /// Unix time of the last (re)start of init.
    #[serde(default)]
    pub started_at: u64,
    /// Why the instance stopped: "poweroff", "killed", "init exited with status 1", ...
    #[serde(default)]
    pub stop_reason: Option<String>,
    pub console_log: PathBuf,
}

/// What `probe` finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    Stopped { reason: Option<String> },
    Running { init_pid: i32, monitor_pid: i32 },
    Frozen { init_pid: i32, monitor_pid: i32 },
}

/// Reads `run_dir/state.json`; `Ok(None)` when there is none.
pub fn read_state(run_dir: &Path) -> Result<Option<RuntimeState>> {
    let p = run_dir.join(STATE_FILE);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Parse {
                what: "runtime state",
                path: p,
                detail: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", &p, e)),
    }
}

/// Writes `run_dir/state.json` atomically (temporary file + rename).
pub fn write_state(run_dir: &Path, st: &RuntimeState) -> Result<()> {
    let p = run_dir.join(STATE_FILE);
    let tmp = run_dir.join(".state.json.tmp");
    let body = serde_json::to_vec_pretty(st).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&tmp, body).path_ctx("write", &tmp)?;
    std::fs::rename(&tmp, &p).path_ctx("rename into place", &p)?;
    Ok(())
}

/// Whether `pid` is alive (not a zombie) and started at `start_time`.
pub fn pid_matches(pid: i32, start_time: u64) -> bool {
    pid > 0 && sys::proc_start_time(pid) == Some(start_time) && sys::proc_state(pid) != Some('Z')
}

/// The live state of the instance whose runtime directory is `run_dir`.
pub fn probe(run_dir: &Path) -> Probe {
    match read_state(run_dir) {
        Ok(Some(st)) => probe_state(&st, &pid_matches, &|name| {
            crate::cgroup::open(name)
                .and_then(|cg| cg.is_frozen())
                .unwrap_or(false)
        }),
        Ok(None) => Probe::Stopped { reason: None },
        Err(e) => Probe::Stopped {
            reason: Some(e.to_string()),
        },
    }
}

/// `probe` over a parsed state with injectable liveness and freezer checks (unit-tested).
pub fn probe_state(
    st: &RuntimeState,
    alive: &dyn Fn(i32, u64) -> bool,
    frozen: &dyn Fn(&str) -> bool,
) -> Probe {
    if st.status == Status::Stopped {
        return Probe::Stopped {
            reason: st.stop_reason.clone(),
        };
    }
    let monitor_alive = alive(st.monitor_pid, st.monitor_start_time);
    let init_alive = match (st.init_pid, st.init_start_time) {
        (Some(p), Some(t)) => alive(p, t),
        _ => false,
    };
    let init_pid = if init_alive {
        st.init_pid.unwrap_or(0)
    } else {
        0
    };
    // While the monitor (re)starts init there is no live init yet, but the instance is not
    // stopped either: report it running (init_pid 0 until state.json names the new init).
    let transient = matches!(st.status, Status::Starting | Status::Rebooting);
    if init_alive || (monitor_alive && transient) {
        if init_alive && frozen(&st.cgroup_name) {
            return Probe::Frozen {
                init_pid,
                monitor_pid: st.monitor_pid,
            };
        }
        return Probe::Running {
            init_pid,
            monitor_pid: st.monitor_pid,
        };
    }
    Probe::Stopped {
        reason: Some(
            st.stop_reason
                .clone()
                .unwrap_or_else(|| "the monitor is gone (host reboot or crash)".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(status: Status) -> RuntimeState {
        RuntimeState {
            name: "c1".into(),
            status,
            monitor_pid: 100,
            monitor_start_time: 5000,
            init_pid: Some(101),
            init_start_time: Some(5001),
            cgroup_name: "lxdrs.payload.c1".into(),
            unprivileged: true,
            started_at: 1_700_000_000,
            stop_reason: None,
            console_log: "/run/c1/console.log".into(),
        }
    }

    #[test]
    fn parse_and_probe() {
        let json = r#"{"name":"c1","status":"running","monitor_pid":100,"monitor_start_time":5000,
            "init_pid":101,"init_start_time":5001,"cgroup_name":"lxdrs.payload.c1",
            "console_log":"/run/c1/console.log"}"#;
        let parsed: RuntimeState = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.status, Status::Running);
        let live = |p: i32, t: u64| (p, t) == (100, 5000) || (p, t) == (101, 5001);
        let no = |_: &str| false;
        assert_eq!(
            probe_state(&parsed, &live, &no),
            Probe::Running {
                init_pid: 101,
                monitor_pid: 100
            }
        );
        assert_eq!(
            probe_state(&parsed, &live, &|_| true),
            Probe::Frozen {
                init_pid: 101,
                monitor_pid: 100
            }
        );
    }

    #[test]
    fn reused_pids_read_as_stopped() {
        // Same pids, different start times: a host reboot happened.
        let stale = |p: i32, t: u64| (p == 100 || p == 101) && t == 42;
        match probe_state(&st(Status::Running), &stale, &|_| false) {
            Probe::Stopped { reason: Some(r) } => assert!(r.contains("monitor is gone")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stopped_keeps_its_reason() {
        let mut s = st(Status::Stopped);
        s.stop_reason = Some("poweroff".into());
        assert_eq!(
            probe_state(&s, &|_, _| true, &|_| false),
            Probe::Stopped {
                reason: Some("poweroff".into())
            }
        );
    }

    #[test]
    fn rebooting_counts_as_running_while_the_monitor_lives() {
        let mon = |p: i32, t: u64| (p, t) == (100, 5000);
        for status in [Status::Rebooting, Status::Starting] {
            assert_eq!(
                probe_state(&st(status), &mon, &|_| false),
                Probe::Running {
                    init_pid: 0,
                    monitor_pid: 100
                }
            );
        }
        // Without its monitor, a half-started instance is stopped.
        assert!(matches!(
            probe_state(&st(Status::Starting), &|_, _| false, &|_| false),
            Probe::Stopped { .. }
        ));
    }
}
