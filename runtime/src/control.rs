//! Quick, blocking requests the daemon makes about a running instance: stop, reboot, kill,
//! freeze, wait, stats, console. They act on the pids and cgroup recorded in state.json after
//! checking the pids are still the ones recorded; they never start anything.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::cgroup::{self, CgroupStats};
use crate::error::{Error, IoContext, Result};
use crate::state::{self, Probe, RuntimeState, SOCKET_FILE};
use crate::sys;

/// What an init looks like from /proc: which signals it blocks and catches, and its binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitInfo {
    pub blocked: u64,
    pub caught: u64,
    pub exe: String,
}

impl InitInfo {
    /// From /proc/PID/status text and the /proc/PID/exe link target.
    pub fn parse(status: &str, exe: &str) -> Self {
        let mask = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        InitInfo {
            blocked: mask("SigBlk:"),
            caught: mask("SigCgt:"),
            exe: exe.to_string(),
        }
    }

    fn has(mask: u64, sig: i32) -> bool {
        sig > 0 && sig <= 64 && mask & (1u64 << (sig - 1)) != 0
    }

    /// systemd blocks SIGRTMIN+3 (its halt signal): the check LXC uses.
    pub fn is_systemd(&self) -> bool {
        Self::has(self.blocked, libc::SIGRTMIN() + 3)
    }

    pub fn is_busybox(&self) -> bool {
        self.exe
            .rsplit('/')
            .next()
            .is_some_and(|b| b.starts_with("busybox"))
    }

    /// The clean power-off signals, sent in order.
    pub fn poweroff_signals(&self) -> Vec<i32> {
        if self.is_systemd() {
            vec![libc::SIGRTMIN() + 4]
        } else if self.is_busybox() {
            vec![libc::SIGUSR2]
        } else if Self::has(self.caught, libc::SIGPWR) {
            vec![libc::SIGPWR]
        } else {
            vec![libc::SIGPWR, libc::SIGTERM]
        }
    }

    /// The clean reboot signal.
    pub fn reboot_signal(&self) -> i32 {
        if self.is_busybox() && !self.is_systemd() {
            libc::SIGTERM
        } else {
            libc::SIGINT
        }
    }
}

/// The recorded state of a live instance.
fn running(run_dir: &Path) -> Result<RuntimeState> {
    match state::probe(run_dir) {
        Probe::Running { .. } | Probe::Frozen { .. } => {}
        Probe::Stopped { .. } => return Err(Error::NotRunning),
    }
    state::read_state(run_dir)?.ok_or(Error::NotRunning)
}

fn live_init(st: &RuntimeState) -> Result<i32> {
    match (st.init_pid, st.init_start_time) {
        (Some(p), Some(t)) if state::pid_matches(p, t) => Ok(p),
        _ => Err(Error::NotRunning),
    }
}

fn init_info(pid: i32) -> InitInfo {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    InitInfo::parse(&status, &exe)
}

fn signal(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: kill(2) with integer arguments; `pid` was verified against its start time.
    if unsafe { libc::kill(pid, sig) } < 0 {
        return Err(Error::sys(
            format!("send signal {sig} to {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Asks init to power off cleanly (systemd SIGRTMIN+4, busybox SIGUSR2, else SIGPWR/SIGTERM).
pub fn shutdown(run_dir: &Path) -> Result<()> {
    let st = running(run_dir)?;
    if let Probe::Frozen { .. } = state::probe(run_dir) {
        return Err(Error::Frozen);
    }
    let pid = live_init(&st)?;
    for sig in init_info(pid).poweroff_signals() {
        signal(pid, sig)?;
    }
    Ok(())
}

/// Asks init to reboot cleanly (systemd SIGINT, busybox SIGTERM).
pub fn reboot(run_dir: &Path) -> Result<()> {
    let st = running(run_dir)?;
    if let Probe::Frozen { .. } = state::probe(run_dir) {
        return Err(Error::Frozen);
    }
    let pid = live_init(&st)?;
    signal(pid, init_info(pid).reboot_signal())
}

/// Force stop: the monitor SIGKILLs init (the pid namespace takes everything else with it) and
/// records "killed". Without a monitor, the cgroup is killed directly.
pub fn kill(run_dir: &Path) -> Result<()> {
    let st = running(run_dir)?;
    match request(run_dir, "kill") {
        Ok((reply, _, _)) if reply.starts_with("ok") => Ok(()),
        _ => {
            let cg = cgroup::open(&st.cgroup_name)?;
            cg.kill_all()
        }
    }
}

pub fn freeze(run_dir: &Path) -> Result<()> {
    let st = running(run_dir)?;
    cgroup::open(&st.cgroup_name)?.freeze()
}

pub fn thaw(run_dir: &Path) -> Result<()> {
    let st = running(run_dir)?;
    cgroup::open(&st.cgroup_name)?.thaw()
}

/// Applies new limits to a running instance (the daemon also rewrites spec.json so a reboot
/// keeps them).
pub fn update_limits(run_dir: &Path, limits: &crate::spec::Limits) -> Result<()> {
    let st = running(run_dir)?;
    cgroup::open(&st.cgroup_name)?.apply_limits(limits)
}

pub fn stats(run_dir: &Path) -> Result<CgroupStats> {
    let st = running(run_dir)?;
    cgroup::open(&st.cgroup_name)?.stats()
}

/// Waits until the monitor has exited (the instance is stopped and cleaned up); true if it did
/// within `timeout`. A reboot does not end the wait.
pub fn wait_stopped(run_dir: &Path, timeout: Duration) -> bool {
    let Ok(Some(st)) = state::read_state(run_dir) else {
        return true;
    };
    if !state::pid_matches(st.monitor_pid, st.monitor_start_time) {
        return true;
    }
    let Ok(pidfd) = sys::pidfd_open(st.monitor_pid) else {
        return !state::pid_matches(st.monitor_pid, st.monitor_start_time);
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return !state::pid_matches(st.monitor_pid, st.monitor_start_time),
        }
    }
}

/// One request on monitor.sock: the reply text, any descriptors, and the connection.
pub fn request(run_dir: &Path, cmd: &str) -> Result<(String, Vec<OwnedFd>, UnixStream)> {
    let path = run_dir.join(SOCKET_FILE);
    let mut s = UnixStream::connect(&path).path_ctx("connect to", &path)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .path_ctx("configure", &path)?;
    s.write_all(format!("{cmd}\n").as_bytes())
        .path_ctx("send a request to", &path)?;
    let mut buf = vec![0u8; 4096];
    let (n, fds) =
        sys::recv_with_fds(s.as_fd(), &mut buf).path_ctx("read the reply from", &path)?;
    let mut text = String::from_utf8_lossy(&buf[..n]).into_owned();
    if fds.is_empty() && !text.ends_with('\n') {
        let mut rest = String::new();
        let _ = s.read_to_string(&mut rest);
        text.push_str(&rest);
    }
    Ok((text, fds, s))
}

/// The monitor's view of the instance (its state.json as it holds it).
pub fn monitor_status(run_dir: &Path) -> Result<RuntimeState> {
    let (text, _, _) = request(run_dir, "status")?;
    serde_json::from_str(text.trim()).map_err(|e| Error::Parse {
        what: "monitor status",
        path: run_dir.join(SOCKET_FILE),
        detail: e.to_string(),
    })
}

fn console_fd(run_dir: &Path, cmd: &str) -> Result<(OwnedFd, UnixStream)> {
    let (reply, mut fds, conn) = request(run_dir, cmd)?;
    if !reply.starts_with("ok") || fds.is_empty() {
        return Err(Error::Child(format!(
            "the monitor refused the console: {}",
            reply.trim()
        )));
    }
    Ok((fds.remove(0), conn))
}

/// A duplicate of the console pty master (for `lxc console`). The monitor keeps logging the
/// console, so output is shared with the log; prefer `attach_console` for interactive use.
pub fn console(run_dir: &Path) -> Result<OwnedFd> {
    running(run_dir)?;
    Ok(console_fd(run_dir, "console")?.0)
}

/// An exclusive console session: the monitor stops reading the console while `conn` is open,
/// so the holder sees all output. Drop it to give the console back to the log.
#[derive(Debug)]
pub struct ConsoleAttachment {
    pub master: OwnedFd,
    pub conn: UnixStream,
}

pub fn attach_console(run_dir: &Path) -> Result<ConsoleAttachment> {
    running(run_dir)?;
    let (master, conn) = console_fd(run_dir, "console-attach")?;
    Ok(ConsoleAttachment { master, conn })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(blk: u64, cgt: u64) -> String {
        format!(
            "Name:\tinit\nSigQ:\t0/1\nSigPnd:\t0000000000000000\nSigBlk:\t{blk:016x}\nSigIgn:\t0000000000000000\nSigCgt:\t{cgt:016x}\n"
        )
    }

    #[test]
    fn systemd_is_told_by_its_blocked_mask() {
        let rt3 = 1u64 << (libc::SIGRTMIN() + 3 - 1);
        let i = InitInfo::parse(&status(rt3 | 0x4000, 0), "/usr/lib/systemd/systemd");
        assert!(i.is_systemd());
        assert_eq!(i.poweroff_signals(), vec![libc::SIGRTMIN() + 4]);
        assert_eq!(i.reboot_signal(), libc::SIGINT);
    }

    #[test]
    fn busybox_gets_usr2_and_term() {
        let i = InitInfo::parse(&status(0, 0x0000_0000_0001_4a07), "/bin/busybox");
        assert!(!i.is_systemd());
        assert_eq!(i.poweroff_signals(), vec![libc::SIGUSR2]);
        assert_eq!(i.reboot_signal(), libc::SIGTERM);
    }

    #[test]
    fn others_get_pwr_then_term() {
        let i = InitInfo::parse(&status(0, 0), "/sbin/init");
        assert_eq!(i.poweroff_signals(), vec![libc::SIGPWR, libc::SIGTERM]);
        let pwr = 1u64 << (libc::SIGPWR - 1);
        let i = InitInfo::parse(&status(0, pwr), "/sbin/init");
        assert_eq!(i.poweroff_signals(), vec![libc::SIGPWR]);
        assert_eq!(InitInfo::parse("garbage", "").poweroff_signals().len(), 2);
    }
}
