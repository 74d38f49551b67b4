//! rsync over a migration websocket, argument for argument as LXD 5.0 runs it
//! (`lxd/rsync/rsync.go`) so either end can be a real LXD: the receiver runs
//! `rsync --server ...` with its stdio bridged to the websocket; the sender runs the rsync
//! client with `-e "<lxd> netcat @SOCKET NAME --"`, whose stdio reaches an abstract unix socket
//! the daemon bridges to the websocket. Each direction ends with a barrier frame.

use std::os::linux::net::SocketAddrExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::conn::{Conn, Frame, IDLE_TIMEOUT};
use super::progress::Tracker;
use crate::error::{ApiError, Result};

/// The extra arguments a negotiated rsync feature adds on both ends (`rsyncFeatureArgs`).
pub fn feature_args(features: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    if features.contains(&"xattrs") {
        args.push("--xattrs".into());
        args.push("--filter=-x security.selinux".into());
    }
    if features.contains(&"delete") {
        args.push("--delete".into());
    }
    if features.contains(&"compress") {
        args.push("--compress".into());
        args.push("--compress-level=2".into());
    }
    args
}

/// The receiving side's command line (`rsync.Recv`).
/// `link_dest`: a previous tree whose unchanged files are hard-linked instead of written (our
/// receiver's choice, invisible to the sender; only ever between read-only snapshots).
pub fn recv_args(path: &Path, features: &[&str], link_dest: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--server",
        "-vlogDtpre.iLsfx",
        "--numeric-ids",
        "--devices",
        "--partial",
        "--sparse",
        // The receiver's quick check, to the nanosecond: the default (whole seconds) takes a
        // file rewritten with the same size within the same second for unchanged, and our
        // receiver seeds volumes (the instance from its oldest snapshot, snapshots through
        // --link-dest), so such a file would keep the older content.
        "--modify-window=-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(feature_args(features));
    if let Some(l) = link_dest {
        args.push(format!("--link-dest={}", l.display()));
    }
    args.push(".".into());
    args.push(format!("{}/", path.display()));
    args
}

/// The sending side's command line (`rsync.Send`).
pub fn send_args(path: &Path, features: &[&str], rsh: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-ar", "--devices", "--numeric-ids", "--partial", "--sparse"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(feature_args(features));
    args.push(format!("{}/", path.display()));
    args.push("localhost:/tmp/foo".into());
    args.push("-e".into());
    args.push(rsh.into());
    args
}

/// Copy websocket frames into `w` until the barrier; None from the channel is a dropped peer.
/// `idle` bounds the silence on the data direction; the other direction (the receiver's
/// replies to a sender) may rightly stay silent while a large file goes the other way.
async fn ws_to_writer<W: AsyncWrite + Unpin>(
    rx: &mut mpsc::Receiver<Frame>,
    mut w: Option<W>,
    tracker: &mut Tracker,
    idle: Option<Duration>,
) -> Result<()> {
    loop {
        let f = match idle {
            Some(t) => tokio::time::timeout(t, rx.recv())
                .await
                .map_err(|_| ApiError::bad_request("Timed out waiting for migration data"))?,
            None => rx.recv().await,
        };
        match f {
            None => {
                return Err(ApiError::bad_request(
                    "The migration connection was closed by the other side",
                ));
            }
            Some(Frame::Barrier) => {
                if let Some(mut w) = w.take() {
                    let _ = w.shutdown().await;
                }
                return Ok(());
            }
            Some(Frame::Binary(b)) => {
                tracker.add(b.len() as u64);
                // After the local process is gone its input is drained, not written.
                if let Some(wr) = w.as_mut()
                    && wr.write_all(&b).await.is_err()
                {
                    w = None;
                }
            }
        }
    }
}

/// Copy `r` into binary frames until EOF, then send the barrier.
async fn reader_to_ws<R: AsyncRead + Unpin>(
    mut r: R,
    tx: mpsc::Sender<Frame>,
    tracker: &mut Tracker,
) -> Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = r.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        tracker.add(n as u64);
        tx.send(Frame::Binary(buf[..n].to_vec()))
            .await
            .map_err(|_| ApiError::bad_request("The migration connection was closed"))?;
    }
    tx.send(Frame::Barrier)
        .await
        .map_err(|_| ApiError::bad_request("The migration connection was closed"))?;
    Ok(())
}

async fn finish(
    what: &str,
    path: &Path,
    mut child: tokio::process::Child,
    stderr: tokio::task::JoinHandle<String>,
) -> Result<()> {
    let status = child
        .wait()
        .await
        .map_err(|e| ApiError::internal(format!("rsync: {e}")))?;
    let err = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(ApiError::internal(format!(
            "Rsync {what} failed: {}: {status}: {}",
            path.display(),
            err.trim()
        )));
    }
    Ok(())
}

fn read_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let mut e = child.stderr.take();
    tokio::spawn(async move {
        let mut s = String::new();
        if let Some(e) = e.as_mut() {
            let _ = e.read_to_string(&mut s).await;
        }
        s
    })
}

/// Receive one rsync stream into `path` (`rsync.Recv`).
pub async fn recv(
    path: &Path,
    link_dest: Option<&Path>,
    conn: &mut Conn,
    features: &[&str],
    tracker: &mut Tracker,
) -> Result<()> {
    let mut child = tokio::process::Command::new("rsync")
        .args(recv_args(path, features, link_dest))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("Failed to run rsync: {e}")))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = read_stderr(&mut child);
    let tx = conn.tx.clone();
    let mut out_tracker = Tracker::silent();
    let (a, b) = tokio::join!(
        ws_to_writer(&mut conn.rx, stdin, tracker, Some(IDLE_TIMEOUT)),
        reader_to_ws(stdout, tx, &mut out_tracker)
    );
    let res = finish("receive", path, child, stderr).await;
    res?;
    a?;
    b
}

/// Send `path` as one rsync stream (`rsync.Send`); `name` is only for the process list.
pub async fn send(
    exe: &Path,
    name: &str,
    path: &Path,
    conn: &mut Conn,
    features: &[&str],
    tracker: &mut Tracker,
) -> Result<()> {
    let sock_name = format!("lxd-rs/{}", uuid::Uuid::new_v4().simple());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(sock_name.as_bytes())
        .map_err(|e| ApiError::internal(format!("Failed to make the rsync socket: {e}")))?;
    let std_listener = std::os::unix::net::UnixListener::bind_addr(&addr)
        .map_err(|e| ApiError::internal(format!("Failed to make the rsync socket: {e}")))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| ApiError::internal(format!("rsync socket: {e}")))?;
    let listener = tokio::net::UnixListener::from_std(std_listener)
        .map_err(|e| ApiError::internal(format!("rsync socket: {e}")))?;
    let rsh = format!("{} netcat @{sock_name} {name} --", exe.display());
    let mut child = tokio::process::Command::new("rsync")
        .args(send_args(path, features, &rsh))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("Failed to run rsync: {e}")))?;
    let stderr = read_stderr(&mut child);
    let sock = tokio::select! {
        r = listener.accept() => r.map(|(s, _)| s).ok(),
        _ = tokio::time::sleep(Duration::from_secs(10)) => None,
        _ = child.wait() => None,
    };
    let Some(sock) = sock else {
        let _ = child.start_kill();
        let _ = child.wait().await;
        let err = stderr.await.unwrap_or_default();
        return Err(ApiError::internal(format!(
            "rsync failed to spawn: {}",
            err.trim()
        )));
    };
    let (rd, wr) = sock.into_split();
    let tx = conn.tx.clone();
    let mut in_tracker = Tracker::silent();
    let (a, b) = tokio::join!(
        reader_to_ws(rd, tx, tracker),
        ws_to_writer(&mut conn.rx, Some(wr), &mut in_tracker, None)
    );
    finish("send", path, child, stderr).await?;
    a?;
    b
}

/// `lxd netcat @SOCKET NAME -- ...`: what rsync runs as its remote shell on the sending side;
/// relays stdin/stdout to the daemon's abstract socket. Runs before any tokio runtime.
pub fn netcat(socket: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let name = socket.strip_prefix('@').unwrap_or(socket);
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let s = std::os::unix::net::UnixStream::connect_addr(&addr)?;
    let mut up = s.try_clone()?;
    let t = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = s;
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                    break;
                }
            }
        }
    }
    drop(t);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_match_lxd() {
        let a = recv_args(
            Path::new("/p/c1"),
            &["xattrs", "delete", "bidirectional"],
            None,
        );
        assert_eq!(a[0], "--server");
        assert_eq!(a[1], "-vlogDtpre.iLsfx");
        assert!(a.contains(&"--xattrs".to_string()));
        assert!(a.contains(&"--delete".to_string()));
        assert!(a.contains(&"--modify-window=-1".to_string()));
        assert_eq!(a[a.len() - 2], ".");
        assert_eq!(a[a.len() - 1], "/p/c1/");
        let s = send_args(Path::new("/p/c1"), &[], "lxd netcat @x c1 --");
        assert_eq!(s[0], "-ar");
        assert_eq!(
            &s[s.len() - 4..],
            ["/p/c1/", "localhost:/tmp/foo", "-e", "lxd netcat @x c1 --"]
        );
    }
}
