//! runctl: drives lxd-runtime the way the daemon's hidden helpers do, for tests and by hand.
//!
//!   runctl start RUN_DIR            forkstart (spec.json must exist)
//!   runctl exec JSON                forkexec an ExecRequest (exits with the command's status)
//!   runctl exec-pty JSON            the same with a pty allocated inside the container
//!   runctl file JSON                forkfile a FileRequest (stdin/stdout carry the data)
//!   runctl state RUN_DIR            probe, as JSON
//!   runctl shutdown|reboot|kill|freeze|thaw RUN_DIR
//!   runctl wait RUN_DIR SECONDS     exit 0 when stopped in time, 1 otherwise
//!   runctl stats RUN_DIR
//!   runctl idmap                    the host's id map for unprivileged containers
//!   runctl shift DIR                chown DIR by the host map (on-disk shifting)
//!   runctl idmapped-ok PATH         whether PATH's filesystem supports idmapped mounts

use std::path::Path;
use std::time::Duration;

use lxd_runtime::{attach, control, idmap, monitor, state};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or("") };
    let res: anyhow::Result<()> = (|| {
        match a(0) {
            "start" => monitor::forkstart(Path::new(a(1)))?,
            "exec" => {
                let req: attach::ExecRequest = serde_json::from_str(a(1))?;
                attach::forkexec(&req)
            }
            "exec-pty" => {
                let mut req: attach::ExecRequest = serde_json::from_str(a(1))?;
                req.pty = true;
                exec_pty(&req)?;
            }
            "file" => {
                let req: lxd_runtime::files::FileRequest = serde_json::from_str(a(1))?;
                lxd_runtime::files::forkfile(&req)
            }
            "state" => println!("{}", serde_json::to_string(&state::probe(Path::new(a(1))))?),
            "shutdown" => control::shutdown(Path::new(a(1)))?,
            "reboot" => control::reboot(Path::new(a(1)))?,
            "kill" => control::kill(Path::new(a(1)))?,
            "freeze" => control::freeze(Path::new(a(1)))?,
            "thaw" => control::thaw(Path::new(a(1)))?,
            "stats" => println!(
                "{}",
                serde_json::to_string(&control::stats(Path::new(a(1)))?)?
            ),
            "wait" => {
                let secs: f64 = a(2).parse().unwrap_or(10.0);
                if !control::wait_stopped(Path::new(a(1)), Duration::from_secs_f64(secs)) {
                    std::process::exit(1);
                }
            }
            "idmap" => println!("{}", serde_json::to_string(&idmap::host_idmap())?),
            "shift" => idmap::shift_tree(Path::new(a(1)), &idmap::host_idmap(), false)?,
            "idmapped-ok" => println!("{}", idmap::idmapped_mounts_supported(Path::new(a(1)))),
            other => anyhow::bail!("unknown command {other:?}"),
        }
        Ok(())
    })();
    if let Err(e) = res {
        eprintln!("Error: {e}");
        std::process::exit(1);
    }
}

/// Runs the request on a pty from the container's devpts and copies its output to stdout, as
/// the daemon's exec websocket would.
fn exec_pty(req: &attach::ExecRequest) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let (master, slave) = attach::open_container_pty(req.init_pid)?;
    attach::set_window_size(master.as_fd(), 120, 40)?;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .arg("exec")
        .arg(serde_json::to_string(req)?)
        .stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave)
        .spawn()?;
    let mut m = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match m.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break, // EIO: every slave is closed
        }
    }
    let st = child.wait()?;
    std::io::stdout().write_all(&out)?;
    std::process::exit(st.code().unwrap_or(255));
}
