//! The per-instance monitor (`lxd forkstart RUN_DIR`): a detached, single-threaded process that
//! owns the container's cgroups and console, reaps its init, restarts it on reboot, records
//! state.json and answers monitor.sock. It must never hold the console as a controlling tty, own
//! threads, or make large allocations: it lives as long as the container.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

use crate::cgroup::{self, CgroupManager};
use crate::error::{Error, IoContext, NixContext, Result};
use crate::spec::ContainerSpec;
use crate::state::{self, Probe, RuntimeState, SOCKET_FILE, SPEC_FILE, Status};
use crate::{container, sys};

/// The console log is rotated to `<log>.1` when it reaches this size.
pub const CONSOLE_LOG_MAX: u64 = 1 << 20;
/// After EIO on the console master (no slave open, e.g. getty's vhangup), retry after this.
const CONSOLE_RETRY: Duration = Duration::from_millis(200);

/// Reads and checks `run_dir/spec.json`.
pub fn read_spec(run_dir: &Path) -> Result<ContainerSpec> {
    let p = run_dir.join(SPEC_FILE);
    let b = std::fs::read(&p).path_ctx("read", &p)?;
    let spec: ContainerSpec = serde_json::from_slice(&b).map_err(|e| Error::Parse {
        what: "container spec",
        path: p.clone(),
        detail: e.to_string(),
    })?;
    cgroup::validate_name(&spec.cgroup_name)?;
    if spec.init.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: the init command is empty",
            p.display()
        )));
    }
    for m in &spec.mounts {
        if !m.target.starts_with('/') || m.target.split('/').any(|c| c == "..") {
            return Err(Error::Invalid(format!(
                "invalid mount target {:?}",
                m.target
            )));
        }
    }
    Ok(spec)
}

/// `lxd forkstart RUN_DIR`: starts the monitor, which starts the container. Returns once the
/// container's init has been exec'd, or with the error the monitor or the init's setup hit.
/// Must be called from a single-threaded process (the monitor is forked, not exec'd).
pub fn forkstart(run_dir: &Path) -> Result<()> {
    if threads() != Some(1) {
        return Err(Error::Invalid(
            "forkstart must run in a single-threaded process".into(),
        ));
    }
    let run_dir = std::fs::canonicalize(run_dir).path_ctx("resolve", run_dir)?;
    read_spec(&run_dir)?;
    if let Probe::Running { .. } | Probe::Frozen { .. } = state::probe(&run_dir) {
        return Err(Error::Invalid("the instance is already running".into()));
    }
    let sock = run_dir.join(SOCKET_FILE);
    if sock.as_os_str().len() >= 108 {
        return Err(Error::Invalid(format!(
            "{} is too long for a unix socket",
            sock.display()
        )));
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_ctx("create a pipe")?;
    // SAFETY: the process is single-threaded (checked above), so the child may run any code.
    match unsafe { nix::unistd::fork() }.sys_ctx("fork the monitor")? {
        ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            // SAFETY: still single-threaded; the grandchild becomes the monitor, re-parented
            // to init once this intermediate process exits, and never a session leader, so it
            // cannot acquire a controlling tty by accident.
            match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Child) => monitor_main(&run_dir, w),
                // SAFETY: leaving the intermediate process without running any destructor.
                _ => unsafe { libc::_exit(0) },
            }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut out = String::new();
            let _ = File::from(r).read_to_string(&mut out);
            let out = out.trim();
            if out.starts_with("OK") {
                Ok(())
            } else if let Some(msg) = out.strip_prefix("ERR ") {
                Err(Error::Child(msg.to_string()))
            } else {
                Err(Error::Child(format!(
                    "the monitor exited before starting the instance; see {}",
                    run_dir.display()
                )))
            }
        }
    }
}

fn threads() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

macro_rules! mlog {
    ($($arg:tt)*) => {
        eprintln!("[{}] {}", unix_now(), format_args!($($arg)*))
    };
}

/// The monitor process: never returns.
fn monitor_main(run_dir: &Path, report: OwnedFd) -> ! {
    // Keep the report pipe away from 0..2, then drop every descriptor we inherited.
    let high = match nix::fcntl::fcntl(&report, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)) {
        // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        // SAFETY: nothing can be reported without the pipe; leave quietly.
        Err(_) => unsafe { libc::_exit(1) },
    };
    drop(report);
    let report = high;
    // Everything else we inherited from the caller (it may be the daemon) is not ours to keep.
    sys::close_fds_except(3, &[report.as_raw_fd()]);
    let code = match Monitor::setup(run_dir) {
        Ok(mut m) => match m.first_start() {
            Ok(pid) => {
                let _ = sys::write_all_fd(report.as_raw_fd(), format!("OK {pid}\n").as_bytes());
                drop(report);
                // Out of the daemon's cgroup2 (its systemd unit) too, now that the start does
                // not wait for it (cgroup::JoinPlan says why it costs).
                if let Err(e) = cgroup::move_to_v2_root(std::process::id() as i32) {
                    mlog!("{e}");
                }
                m.run()
            }
            Err(e) => {
                mlog!("start failed: {e}");
                let _ = sys::write_all_fd(report.as_raw_fd(), format!("ERR {e}\n").as_bytes());
                m.finish(Some(format!("start failed: {e}")));
                1
            }
        },
        Err(e) => {
            let _ = sys::write_all_fd(report.as_raw_fd(), format!("ERR {e}\n").as_bytes());
            1
        }
    };
    std::process::exit(code)
}

/// The console log file, rotated at `CONSOLE_LOG_MAX`.
#[derive(Debug)]
struct ConsoleLog {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl ConsoleLog {
    fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        ConsoleLog {
            path: path.to_path_buf(),
            file,
            size,
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.size + data.len() as u64 > CONSOLE_LOG_MAX {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            let _ = std::fs::rename(&self.path, old);
            *self = ConsoleLog::open(&self.path.clone());
        }
        if let Some(f) = &mut self.file
            && f.write_all(data).is_ok()
        {
            self.size += data.len() as u64;
        }
    }
}

#[derive(Debug)]
struct Monitor {
    run_dir: PathBuf,
    spec: ContainerSpec,
    cg: Option<Box<dyn CgroupManager>>,
    /// The console pty master of the current boot (allocated in the container's devpts).
    master: Option<OwnedFd>,
    console: ConsoleLog,
    listener: UnixListener,
    sigfd: SignalFd,
    init_pid: i32,
    state: RuntimeState,
    /// Set when a stop was requested through the socket or SIGTERM: wins over the exit status.
    pending_reason: Option<String>,
    /// `console-attach` clients: while any is connected the monitor does not read the console,
    /// so the client sees all of it.
    attached: Vec<UnixStream>,
    console_paused_until: Option<Instant>,
}

impl Monitor {
    fn setup(run_dir: &Path) -> Result<Monitor> {
        let spec = read_spec(run_dir)?;
        // Diagnostics go to the instance's log file; stdin/stdout to /dev/null.
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .path_ctx("open", Path::new("/dev/null"))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&spec.log_file)
            .path_ctx("open", &spec.log_file)?;
        // SAFETY: dup2 onto stdio of this fresh process; the sources are open files.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
        }
        drop((null, log));
        let _ = nix::unistd::chdir("/");
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        set_comm("lxdrs-monitor");
        cgroup::enter_v1_roots()?;

        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            mask.add(s);
        }
        mask.thread_block().sys_ctx("block signals")?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .sys_ctx("create a signalfd")?;
        // SAFETY: ignoring SIGPIPE is always sound; a client that hangs up must not kill us.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };

        let sock = run_dir.join(SOCKET_FILE);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).path_ctx("listen on", &sock)?;
        listener
            .set_nonblocking(true)
            .path_ctx("configure", &sock)?;
        let _ =
            std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600));

        let me = std::process::id() as i32;
        let state = RuntimeState {
            name: spec.name.clone(),
            status: Status::Starting,
            monitor_pid: me,
            monitor_start_time: sys::proc_start_time(me).unwrap_or(0),
            init_pid: None,
            init_start_time: None,
            cgroup_name: spec.cgroup_name.clone(),
            unprivileged: spec.idmap.is_some(),
            started_at: unix_now(),
            stop_reason: None,
            console_log: spec.console_log.clone(),
        };
        state::write_state(run_dir, &state)?;
        mlog!("monitor {me} for {} started", spec.name);
        Ok(Monitor {
            run_dir: run_dir.to_path_buf(),
            console: ConsoleLog::open(&spec.console_log),
            spec,
            cg: None,
            master: None,
            listener,
            sigfd,
            init_pid: 0,
            state,
            pending_reason: None,
            attached: Vec::new(),
            console_paused_until: None,
        })
    }

    fn first_start(&mut self) -> Result<i32> {
        self.start()?;
        Ok(self.init_pid)
    }

    /// Creates the cgroups from the current spec and launches init.
    fn start(&mut self) -> Result<()> {
        let cg = cgroup::open(&self.spec.cgroup_name)?;
        if cg.exists() {
            // Left over from a crashed monitor of this instance: it is ours by name.
            let _ = cg.kill_all();
            cg.remove()?;
        }
        cg.create()?;
        let cg = self.cg.insert(cg);
        let started = cg
            .apply_limits(&self.spec.limits)
            .and_then(|()| container::launch(&self.spec, cg.as_ref()));
        let launched = match started {
            Ok(l) => l,
            Err(e) => {
                self.teardown();
                return Err(e);
            }
        };
        let pid = launched.pid;
        let _ = nix::fcntl::fcntl(
            &launched.console,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        self.master = Some(launched.console);
        self.console_paused_until = None;
        self.init_pid = pid;
        self.pending_reason = None;
        self.state.status = Status::Running;
        self.state.init_pid = Some(pid);
        self.state.init_start_time = sys::proc_start_time(pid);
        self.state.cgroup_name = self.spec.cgroup_name.clone();
        self.state.unprivileged = self.spec.idmap.is_some();
        self.state.started_at = unix_now();
        self.state.stop_reason = None;
        self.save_state();
        mlog!("init {pid} started");
        Ok(())
    }

    fn save_state(&self) {
        if let Err(e) = state::write_state(&self.run_dir, &self.state) {
            mlog!("{e}");
        }
    }

    /// Kills what is left in the cgroups and removes them.
    fn teardown(&mut self) {
        // Keep the last words of this boot, then let the pty go with its devpts.
        if let Some(m) = self.master.take() {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = nix::unistd::read(&m, &mut buf) {
                self.console.write(&buf[..n]);
            }
        }
        if let Some(cg) = self.cg.take() {
            if let Err(e) = cg.kill_all() {
                mlog!("{e}");
            }
            if let Err(e) = cg.remove() {
                mlog!("{e}");
            }
        }
    }

    /// Final state: stopped with `reason`; the socket goes away.
    fn finish(&mut self, reason: Option<String>) {
        self.teardown();
        self.state.status = Status::Stopped;
        self.state.stop_reason = reason;
        self.save_state();
        let _ = std::fs::remove_file(self.run_dir.join(SOCKET_FILE));
        mlog!(
            "stopped: {}",
            self.state.stop_reason.as_deref().unwrap_or("-")
        );
    }

    /// The event loop; returns the exit code.
    fn run(&mut self) -> i32 {
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if self.console_paused_until.is_some_and(|t| t <= now) {
                self.console_paused_until = None;
            }
            let read_console = self.master.is_some()
                && self.attached.is_empty()
                && self.console_paused_until.is_none();
            let (sig_ev, lis_ev, con_ev, att_ev) = {
                let mut fds = vec![
                    PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                ];
                if let (true, Some(m)) = (read_console, &self.master) {
                    fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                }
                for a in &self.attached {
                    fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
                }
                let timeout = match self.console_paused_until {
                    Some(t) => PollTimeout::try_from(t.saturating_duration_since(now))
                        .unwrap_or(PollTimeout::MAX),
                    None => PollTimeout::NONE,
                };
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        mlog!("poll: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                let ev = |f: &PollFd<'_>| f.revents().unwrap_or(PollFlags::empty());
                let base = if read_console { 3 } else { 2 };
                (
                    ev(&fds[0]),
                    ev(&fds[1]),
                    read_console.then(|| ev(&fds[2])),
                    fds[base..].iter().map(ev).collect::<Vec<_>>(),
                )
            };

            if let Some(ev) = con_ev
                && !ev.is_empty()
            {
                self.read_console(&mut buf);
            }
            // Attached console clients: any readable event is a hang-up (they never write).
            for (i, ev) in att_ev.iter().enumerate().rev() {
                if !ev.is_empty() {
                    self.attached.remove(i);
                }
            }
            if !lis_ev.is_empty() {
                self.accept();
            }
            if !sig_ev.is_empty()
                && let Some(code) = self.handle_signals()
            {
                return code;
            }
        }
    }

    fn read_console(&mut self, buf: &mut [u8]) {
        let Some(master) = &self.master else {
            return;
        };
        match nix::unistd::read(master, buf) {
            Ok(0) => self.console_paused_until = Some(Instant::now() + CONSOLE_RETRY),
            Ok(n) => self.console.write(&buf[..n]),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            // EIO: no slave is open right now (getty's vhangup, init between opens); retry
            // later rather than spin, as ptyhold.py does.
            Err(_) => self.console_paused_until = Some(Instant::now() + CONSOLE_RETRY),
        }
    }

    /// Handles pending signals; `Some(code)` when the monitor should exit.
    fn handle_signals(&mut self) -> Option<i32> {
        while let Ok(Some(si)) = self.sigfd.read_signal() {
            match Signal::try_from(si.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => {}
                Ok(s) => {
                    mlog!("received {s}: killing the instance");
                    self.pending_reason = Some("killed".into());
                    self.kill_init();
                }
                Err(_) => {}
            }
        }
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return None,
                Ok(ws) if ws.pid() == Some(Pid::from_raw(self.init_pid)) => {
                    if let Some(code) = self.init_exited(ws) {
                        return Some(code);
                    }
                }
                Ok(_) => {}
            }
        }
    }

    fn kill_init(&self) {
        if self.init_pid > 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(self.init_pid), Signal::SIGKILL);
            // A frozen task only takes its SIGKILL once thawed.
            if let Some(cg) = &self.cg
                && cg.is_frozen().unwrap_or(false)
            {
                let _ = cg.thaw();
            }
        }
    }

    /// Init is gone: restart on reboot (SIGHUP), otherwise stop.
    fn init_exited(&mut self, ws: WaitStatus) -> Option<i32> {
        let reason = match ws {
            // reboot(2) in a child pid namespace kills its init with SIGHUP (restart) or SIGINT
            // (power off / halt): see pid_namespaces(7).
            WaitStatus::Signaled(_, Signal::SIGHUP, _) if self.pending_reason.is_none() => {
                mlog!("init {} rebooted", self.init_pid);
                if !self.spec.reboot_via_daemon {
                    return self.reboot();
                }
                "reboot".to_string()
            }
            WaitStatus::Signaled(_, Signal::SIGINT, _) => "poweroff".to_string(),
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => "killed".to_string(),
            WaitStatus::Signaled(_, s, _) => format!("init killed by {s}"),
            WaitStatus::Exited(_, code) => format!("init exited with status {code}"),
            other => format!("init ended: {other:?}"),
        };
        let reason = self.pending_reason.take().unwrap_or(reason);
        self.init_pid = 0;
        self.finish(Some(reason));
        Some(0)
    }

    fn reboot(&mut self) -> Option<i32> {
        self.init_pid = 0;
        self.state.status = Status::Rebooting;
        self.save_state();
        self.teardown();
        let res = read_spec(&self.run_dir).and_then(|spec| {
            self.spec = spec;
            self.start()
        });
        match res {
            Ok(()) => None,
            Err(e) => {
                mlog!("restart failed: {e}");
                self.finish(Some(format!("reboot failed: {e}")));
                Some(1)
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if let Err(e) = self.serve(stream) {
                mlog!("monitor.sock: {e}");
            }
        }
    }

    /// One request per connection: a command line, answered at once.
    fn serve(&mut self, mut s: UnixStream) -> Result<()> {
        let sock = self.run_dir.join(SOCKET_FILE);
        s.set_nonblocking(false).path_ctx("configure", &sock)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .path_ctx("configure", &sock)?;
        s.set_write_timeout(Some(Duration::from_secs(2)))
            .path_ctx("configure", &sock)?;
        let mut req = [0u8; 64];
        let n = s.read(&mut req).path_ctx("read a request from", &sock)?;
        let cmd = String::from_utf8_lossy(&req[..n]).trim().to_string();
        match cmd.as_str() {
            "status" => {
                let mut body =
                    serde_json::to_vec(&self.state).map_err(|e| Error::Invalid(e.to_string()))?;
                body.push(b'\n');
                s.write_all(&body).path_ctx("answer on", &sock)?;
            }
            "console" | "console-attach" => {
                let fd = self
                    .master
                    .as_ref()
                    .ok_or(Error::NotRunning)?
                    .try_clone()
                    .path_ctx("duplicate the console of", &sock)?;
                sys::send_with_fds(s.as_fd(), b"ok\n", &[fd.as_raw_fd()])
                    .path_ctx("send the console on", &sock)?;
                if cmd == "console-attach" {
                    s.set_nonblocking(true).path_ctx("configure", &sock)?;
                    self.attached.push(s);
                }
            }
            "kill" => {
                self.pending_reason = Some("killed".into());
                self.kill_init();
                s.write_all(b"ok\n").path_ctx("answer on", &sock)?;
            }
            other => {
                s.write_all(format!("error unknown command {other:?}\n").as_bytes())
                    .path_ctx("answer on", &sock)?;
            }
        }
        Ok(())
    }
}

/// Sets the process name shown by ps (comm, 15 bytes at most).
fn set_comm(name: &str) {
    let mut b = [0u8; 16];
    let n = name.len().min(15);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `b`.
    unsafe { libc::prctl(libc::PR_SET_NAME, b.as_ptr(), 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_log_rotates_at_the_limit() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("console.log");
        let mut log = ConsoleLog::open(&p);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..20 {
            log.write(&chunk);
        }
        let cur = std::fs::metadata(&p).unwrap().len();
        let old = std::fs::metadata(t.path().join("console.log.1"))
            .unwrap()
            .len();
        assert!(cur <= CONSOLE_LOG_MAX && old <= CONSOLE_LOG_MAX);
        assert_eq!(cur + old, 20 * 64 * 1024);
    }
}
