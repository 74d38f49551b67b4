//! `/1.0/instances/<name>/files`: pull (file, directory listing, symlink), push (file with
//! overwrite or append, directory, symlink) and delete, streamed through `lxd forkfile`, which
//! enters a running instance's namespaces (or works in a stopped one's rootfs) and resolves every
//! path inside the instance's root, so no symlink or `..` can reach a host path.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use lxd_runtime::files::{FileHeader, FileOp, FileRequest};
use std::collections::HashMap;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{AppState, params};
use crate::error::{ApiError, Result};
use crate::instance::runtime as rt;
use crate::response::{ApiResult, empty, sync};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/1.0/instances/{name}/files",
        get(pull).post(push).delete(delete).head(head),
    )
}

/// The 5.0 client sends relative paths on pull (`path=root%2Ff`): they are relative to `/`.
fn instance_path(p: Option<&str>) -> Result<String> {
    let p = p.unwrap_or("");
    if p.is_empty() {
        return Err(ApiError::bad_request("Missing path argument"));
    }
    if p.contains('\0') {
        return Err(ApiError::bad_request("Invalid path"));
    }
    Ok(if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    })
}

/// Where the request runs: inside the running instance, or in the stopped instance's rootfs.
async fn target(d: &AppState, name: &str, mut req: FileRequest) -> Result<FileRequest> {
    let row = d.db.instance(name)?;
    match rt::probe(d, name).init_pid() {
        Some(pid) => req.init_pid = Some(pid),
        None => {
            let pool = d.pool(&row.pool)?;
            let n = name.to_string();
            let volume = tokio::task::spawn_blocking(move || pool.mount_instance(&n)).await??;
            req.rootfs = Some(volume.join("rootfs"));
            req.shifted = row
                .config
                .get("volatile.last_state.idmap")
                .and_then(|v| crate::instance::idmap::from_volatile(v));
        }
    }
    Ok(req)
}

fn request(op: FileOp, path: String) -> FileRequest {
    FileRequest {
        op,
        path,
        init_pid: None,
        rootfs: None,
        shifted: None,
        uid: None,
        gid: None,
        mode: None,
        append: false,
        target: None,
        recursive: false,
    }
}

fn spawn(d: &AppState, req: &FileRequest) -> Result<tokio::process::Child> {
    let json = serde_json::to_string(req)?;
    tokio::process::Command::new(&d.exe)
        .arg("forkfile")
        .arg(json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("Failed to run forkfile: {e}")))
}

fn header_error(h: &FileHeader) -> ApiError {
    let status = h
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let msg = h
        .error
        .clone()
        .unwrap_or_else(|| "File operation failed".into());
    let msg = match status {
        StatusCode::NOT_FOUND => "Not found".to_string(),
        _ => msg,
    };
    ApiError::new(status, msg)
}

async fn read_header<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<FileHeader> {
    let mut line = String::new();
    r.read_line(&mut line)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to read from forkfile: {e}")))?;
    if line.is_empty() {
        return Err(ApiError::internal("forkfile exited without an answer"));
    }
    let h: FileHeader = serde_json::from_str(&line)
        .map_err(|e| ApiError::internal(format!("Invalid answer from forkfile: {e}")))?;
    if !h.ok {
        return Err(header_error(&h));
    }
    Ok(h)
}

/// Run a request that carries no data and answers with a header only.
async fn run_simple(d: &AppState, req: &FileRequest) -> Result<FileHeader> {
    let mut child = spawn(d, req)?;
    drop(child.stdin.take());
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ApiError::internal("no stdout"))?;
    let mut r = BufReader::new(stdout);
    let h = read_header(&mut r).await;
    let _ = child.wait().await;
    h
}

fn lxd_headers(h: &FileHeader, map: &mut HeaderMap) {
    let put = |map: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            map.insert(k, v);
        }
    };
    put(map, "X-LXD-uid", h.uid.unwrap_or(0).to_string());
    put(map, "X-LXD-gid", h.gid.unwrap_or(0).to_string());
    put(
        map,
        "X-LXD-mode",
        format!("{:04o}", h.mode.unwrap_or(0) & 0o7777),
    );
    put(
        map,
        "X-LXD-type",
        h.r#type.clone().unwrap_or_else(|| "file".into()),
    );
    if let Some(m) = h.mtime
        && let Ok(ts) = jiff::Timestamp::from_second(m)
    {
        put(map, "X-LXD-modified", ts.to_string());
    }
}

async fn head(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> Result<Response> {
    let p = params(q)?;
    let path = instance_path(p.get("path"))?;
    let req = target(&d, &name, request(FileOp::Stat, path)).await?;
    let h = run_simple(&d, &req).await?;
    let mut r = StatusCode::OK.into_response();
    lxd_headers(&h, r.headers_mut());
    if let Some(size) = h.size {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    Ok(r)
}

async fn pull(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> Result<Response> {
    let p = params(q)?;
    let path = instance_path(p.get("path"))?;
    // A symlink is answered with its target (LXD's file_get_symlink), so stat it first.
    let st = target(&d, &name, request(FileOp::Stat, path.clone())).await?;
    let sh = run_simple(&d, &st).await?;
    if sh.r#type.as_deref() == Some("symlink") {
        let mut r = (StatusCode::OK, sh.target.clone().unwrap_or_default()).into_response();
        lxd_headers(&sh, r.headers_mut());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(r);
    }
    let mut req = st;
    req.op = FileOp::Read;
    let mut child = spawn(&d, &req)?;
    drop(child.stdin.take());
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ApiError::internal("no stdout"))?;
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let h = match read_header(&mut reader).await {
        Ok(h) => h,
        Err(e) => {
            let _ = child.wait().await;
            return Err(e);
        }
    };
    if h.r#type.as_deref() == Some("directory") {
        let _ = child.wait().await;
        let mut r = sync(h.entries.clone().unwrap_or_default());
        lxd_headers(&h, r.headers_mut());
        return Ok(r);
    }
    // Stream the file; the child is reaped when the stream ends (kill_on_drop if the client goes).
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 64 * 1024);
    let stream =
        futures_util::stream::unfold((stream, Some(child)), |(mut s, mut child)| async move {
            match s.next().await {
                Some(item) => Some((item, (s, child))),
                None => {
                    if let Some(mut c) = child.take() {
                        let _ = c.wait().await;
                    }
                    None
                }
            }
        });
    let mut r = (StatusCode::OK, Body::from_stream(stream)).into_response();
    lxd_headers(&h, r.headers_mut());
    let h2 = r.headers_mut();
    h2.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = h.size {
        h2.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    let fname = path.rsplit('/').next().unwrap_or("file").to_string();
    if let Ok(v) = HeaderValue::from_str(&format!("inline;filename={fname}")) {
        h2.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

fn header_num(h: &HeaderMap, k: &str, radix: u32) -> Result<Option<u32>> {
    match h.get(k).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => {
            let n = i64::from_str_radix(v, radix)
                .map_err(|_| ApiError::bad_request(format!("Invalid {k} header \"{v}\"")))?;
            // LXD's clients send -1 for "not set".
            if n < 0 {
                Ok(None)
            } else {
                u32::try_from(n)
                    .map(Some)
                    .map_err(|_| ApiError::bad_request(format!("Invalid {k} header \"{v}\"")))
            }
        }
    }
}

async fn push(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Request,
) -> ApiResult {
    let p = params(q)?;
    let path = instance_path(p.get("path"))?;
    let kind = headers
        .get("X-LXD-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("file")
        .to_string();
    let write = headers
        .get("X-LXD-write")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("overwrite")
        .to_string();
    let op = match kind.as_str() {
        "file" | "" => FileOp::Write,
        "directory" => FileOp::Mkdir,
        "symlink" => FileOp::Symlink,
        other => {
            return Err(ApiError::bad_request(format!(
                "Unknown file type \"{other}\""
            )));
        }
    };
    let append = match write.as_str() {
        "overwrite" | "" => false,
        "append" => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "Unknown write mode \"{other}\""
            )));
        }
    };
    let mut req = request(op, path);
    req.uid = header_num(&headers, "X-LXD-uid", 10)?;
    req.gid = header_num(&headers, "X-LXD-gid", 10)?;
    req.mode = header_num(&headers, "X-LXD-mode", 8)?;
    req.append = append;
    let mut req = target(&d, &name, req).await?;
    let mut body = body.into_body().into_data_stream();
    if op == FileOp::Symlink {
        let mut t = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("Failed to read the body: {e}")))?;
            t.extend_from_slice(&chunk);
            if t.len() > 4096 {
                return Err(ApiError::bad_request("Symlink target too long"));
            }
        }
        req.target = Some(String::from_utf8_lossy(&t).into_owned());
        run_simple(&d, &req).await?;
        return Ok(empty());
    }
    if op == FileOp::Mkdir {
        // Creating an existing directory succeeds, as in LXD.
        match run_simple(&d, &req).await {
            Ok(_) => return Ok(empty()),
            Err(e) if e.status == StatusCode::CONFLICT => {
                let mut st = req.clone();
                st.op = FileOp::Stat;
                let h = run_simple(&d, &st).await?;
                if h.r#type.as_deref() == Some("directory") {
                    return Ok(empty());
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    let mut child = spawn(&d, &req)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| ApiError::internal("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ApiError::internal("no stdout"))?;
    // Feed the body while the child writes it out; a failure on either side ends both.
    let feed = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request(format!("Failed to read the body: {e}")))?;
            if stdin.write_all(&chunk).await.is_err() {
                // The child stopped reading: its header says why.
                return Ok(());
            }
        }
        drop(stdin);
        Ok::<(), ApiError>(())
    };
    let mut reader = BufReader::new(stdout);
    let (fed, header) = tokio::join!(feed, read_header(&mut reader));
    let _ = child.wait().await;
    header?;
    fed?;
    Ok(empty())
}

async fn delete(
    State(d): State<AppState>,
    Path(name): Path<String>,
    q: Query<HashMap<String, String>>,
) -> ApiResult {
    let p = params(q)?;
    let path = instance_path(p.get("path"))?;
    if path.trim_end_matches('/').is_empty() {
        return Err(ApiError::bad_request(
            "Refusing to delete the instance's root",
        ));
    }
    let req = target(&d, &name, request(FileOp::Delete, path)).await?;
    run_simple(&d, &req).await?;
    Ok(empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_relative_to_root() {
        assert_eq!(instance_path(Some("root/f")).unwrap(), "/root/f");
        assert_eq!(instance_path(Some("/etc/hosts")).unwrap(), "/etc/hosts");
        assert!(instance_path(None).is_err());
        assert!(instance_path(Some("")).is_err());
    }

    #[test]
    fn numeric_headers_accept_lxd_forms() {
        let mut h = HeaderMap::new();
        h.insert("X-LXD-mode", HeaderValue::from_static("0644"));
        h.insert("X-LXD-uid", HeaderValue::from_static("-1"));
        assert_eq!(header_num(&h, "X-LXD-mode", 8).unwrap(), Some(0o644));
        assert_eq!(header_num(&h, "X-LXD-uid", 10).unwrap(), None);
        h.insert("X-LXD-gid", HeaderValue::from_static("abc"));
        assert!(header_num(&h, "X-LXD-gid", 10).is_err());
    }
}
