//! `file push|pull|delete|edit` over the files API (`/1.0/instances/NAME/files?path=...` with
//! `X-LXD-*` headers). Contents are streamed in both directions, never held in memory.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::HeaderMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::instance_path;
use crate::client::{Client, esc_query, headers, io_error};
use crate::parse::{base_name, clean_path, split_instance_path};
use crate::term::Progress;
use crate::{Ctx, output};

#[derive(Debug, Subcommand)]
pub enum FileCmd {
    /// Delete files in instances
    #[command(visible_alias = "rm")]
    Delete {
        #[arg(value_name = "[<remote>:]<instance>/<path>", required = true)]
        paths: Vec<String>,
    },
    /// Edit files in instances
    Edit {
        #[arg(value_name = "[<remote>:]<instance>/<path>")]
        path: String,
    },
    /// Pull files from instances
    Pull(PullArgs),
    /// Push files into instances
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[arg(
        value_name = "[<remote>:]<instance>/<path>... <target path>",
        required = true
    )]
    pub args: Vec<String>,
    /// Create any directories necessary
    #[arg(short = 'p', long)]
    pub create_dirs: bool,
    /// Recursively transfer files
    #[arg(short, long)]
    pub recursive: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    #[arg(
        value_name = "<source path>... [<remote>:]<instance>/<path>",
        required = true
    )]
    pub args: Vec<String>,
    /// Recursively transfer files
    #[arg(short, long)]
    pub recursive: bool,
    /// Create any directories necessary
    #[arg(short = 'p', long)]
    pub create_dirs: bool,
    /// Set the file's uid on push
    #[arg(long, allow_negative_numbers = true)]
    pub uid: Option<i64>,
    /// Set the file's gid on push
    #[arg(long, allow_negative_numbers = true)]
    pub gid: Option<i64>,
    /// Set the file's perms on push
    #[arg(long)]
    pub mode: Option<String>,
}

/// What the server said about a path (`X-LXD-*` response headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub kind: String,
    pub mode: u32,
    pub uid: i64,
    pub gid: i64,
}

pub fn file_info(h: &HeaderMap) -> FileInfo {
    let get = |k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let kind = get("X-LXD-type");
    FileInfo {
        kind: if kind.is_empty() { "file".into() } else { kind },
        mode: u32::from_str_radix(get("X-LXD-mode").trim_start_matches("0o"), 8).unwrap_or(0o644),
        uid: get("X-LXD-uid").parse().unwrap_or(0),
        gid: get("X-LXD-gid").parse().unwrap_or(0),
    }
}

/// The `--mode` flag: octal, with LXD's leading-zero fix-up of three-digit modes.
pub fn parse_mode(s: &str) -> anyhow::Result<u32> {
    let s = if s.len() == 3 {
        format!("0{s}")
    } else {
        s.to_string()
    };
    let digits = s
        .strip_prefix("0o")
        .or_else(|| s.strip_prefix('0'))
        .unwrap_or(&s);
    if digits.is_empty() {
        return Ok(0);
    }
    u32::from_str_radix(digits, if s.starts_with('0') { 8 } else { 10 })
        .map_err(|_| anyhow::anyhow!("strconv.ParseInt: parsing {s:?}: invalid syntax"))
}

fn files_path(inst: &str, path: &str) -> String {
    format!("{}/files?path={}", instance_path(inst), esc_query(path))
}

/// `GET .../files`: the open response and its header information.
async fn get_file(
    client: &Client,
    inst: &str,
    path: &str,
) -> anyhow::Result<(reqwest::Response, FileInfo)> {
    let resp = client
        .raw(Method::GET, &files_path(inst, path), HeaderMap::new(), None)
        .await?;
    let info = file_info(resp.headers());
    Ok((resp, info))
}

/// The entries of a directory response (a sync envelope listing names).
async fn dir_entries(resp: reqwest::Response) -> anyhow::Result<Vec<String>> {
    let body = resp.bytes().await?;
    let env: lxd_api::Response = serde_json::from_slice(&body)?;
    Ok(serde_json::from_value(env.metadata).unwrap_or_default())
}

/// Arguments of one `POST .../files`.
#[derive(Debug, Default, Clone)]
pub struct PushHeaders {
    pub kind: String,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub mode: Option<u32>,
    pub write: Option<String>,
    pub modify_perm: Vec<&'static str>,
}

pub fn push_headers(p: &PushHeaders) -> HeaderMap {
    let mut v: Vec<(&'static str, String)> = vec![
        ("Content-Type", "application/octet-stream".into()),
        (lxd_api::files::HEADER_TYPE, p.kind.clone()),
    ];
    if let Some(u) = p.uid {
        v.push((lxd_api::files::HEADER_UID, u.to_string()));
    }
    if let Some(g) = p.gid {
        v.push((lxd_api::files::HEADER_GID, g.to_string()));
    }
    if let Some(m) = p.mode {
        v.push((lxd_api::files::HEADER_MODE, format!("{m:04o}")));
    }
    if let Some(w) = &p.write {
        v.push((lxd_api::files::HEADER_WRITE, w.clone()));
    }
    if !p.modify_perm.is_empty() {
        v.push((lxd_api::files::HEADER_MODIFY_PERM, p.modify_perm.join(",")));
    }
    headers(&v)
}

async fn post_file(
    client: &Client,
    inst: &str,
    path: &str,
    h: &PushHeaders,
    body: reqwest::Body,
) -> anyhow::Result<()> {
    client
        .raw_envelope(Method::POST, &files_path(inst, path), push_headers(h), body)
        .await?;
    Ok(())
}

/// A streaming request body from a local file that drives a progress line.
fn progress_body(file: tokio::fs::File, len: u64, progress: Arc<Mutex<Progress>>) -> reqwest::Body {
    let start = Instant::now();
    let mut sent = 0u64;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
        if let Ok(c) = &chunk {
            sent += c.len() as u64;
            let pct = (sent * 100).checked_div(len).unwrap_or(100);
            let speed = speed(sent, start);
            if let Ok(mut p) = progress.lock() {
                p.update(&format!("{pct}% ({}/s)", output::byte_size(speed, 2)));
            }
        }
        chunk
    });
    reqwest::Body::wrap_stream(stream)
}

fn speed(bytes: u64, start: Instant) -> i64 {
    let secs = start.elapsed().as_secs_f64();
    if secs <= 0.0 {
        0
    } else {
        (bytes as f64 / secs) as i64
    }
}

pub async fn run(ctx: &Ctx, cmd: FileCmd) -> anyhow::Result<()> {
    match cmd {
        FileCmd::Delete { paths } => {
            for p in &paths {
                let (remote, spec) = ctx.parse_remote(p)?;
                let Some((inst, path)) = split_instance_path(&spec) else {
                    bail!("Invalid path {spec}");
                };
                let client = ctx.client(&remote)?;
                client
                    .send::<()>(Method::DELETE, &files_path(inst, &path), None, None)
                    .await?;
            }
            Ok(())
        }
        FileCmd::Pull(a) => pull(ctx, &a.args, a.create_dirs, a.recursive).await,
        FileCmd::Push(a) => push(ctx, &a, false).await,
        FileCmd::Edit { path } => edit(ctx, &path).await,
    }
}

async fn pull(ctx: &Ctx, args: &[String], mkdir: bool, recursive: bool) -> anyhow::Result<()> {
    super::check_args(args, 2, None)?;
    let (sources, target_arg) = args.split_at(args.len() - 1);
    let target_arg = &target_arg[0];
    let target = if target_arg == "-" {
        PathBuf::from("-")
    } else {
        PathBuf::from(clean_local(target_arg))
    };
    let mut target_is_dir = false;
    match std::fs::metadata(&target) {
        Ok(m) => {
            target_is_dir = m.is_dir();
            if !target_is_dir && sources.len() > 1 {
                bail!("More than one file to download, but target is not a directory");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if target_arg.ends_with('/') || sources.len() > 1 {
                mkdir_all(&target)?;
                target_is_dir = true;
            } else if mkdir
                && let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty())
            {
                mkdir_all(parent)?;
            }
        }
        Err(e) => return Err(e).with_context(|| format!("Failed to stat {}", target.display())),
    }

    for src in sources {
        let (remote, spec) = ctx.parse_remote(src)?;
        let Some((inst, path)) = split_instance_path(&spec) else {
            bail!("Invalid source {spec}");
        };
        let client = ctx.client(&remote)?;
        let (resp, info) = get_file(&client, inst, &path).await?;
        if info.kind == "directory" {
            if !recursive {
                bail!("Can't pull a directory without --recursive");
            }
            if !target.exists() {
                mkdir_all(&target)?;
            }
            drop(resp);
            Box::pin(pull_tree(ctx, &client, inst, &path, &target)).await?;
            continue;
        }
        let target_path = if target_is_dir {
            target.join(base_name(&path))
        } else {
            target.clone()
        };
        let (mut resp, mut info) = (resp, info);
        if info.kind == "symlink" {
            let link = String::from_utf8_lossy(&resp.bytes().await?)
                .trim()
                .to_string();
            if target_path != Path::new("-") && !recursive {
                std::os::unix::fs::symlink(&link, &target_path).with_context(|| {
                    format!("Failed to create symlink {}", target_path.display())
                })?;
                continue;
            }
            // Follow the link inside the instance.
            let mut link = link;
            let mut hops = 0;
            loop {
                let next = if link.starts_with('/') {
                    link.clone()
                } else {
                    clean_path(&format!("{}/{link}", parent_of(&path)))
                };
                let (r, i) = get_file(&client, inst, &next).await?;
                if i.kind != "symlink" {
                    resp = r;
                    info = i;
                    break;
                }
                hops += 1;
                if hops > 255 {
                    bail!("Too many links");
                }
                link = String::from_utf8_lossy(&r.bytes().await?)
                    .trim()
                    .to_string();
            }
        }
        write_file(ctx, resp, &info, &target_path, &path).await?;
    }
    Ok(())
}

fn parent_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].to_string(),
    }
}

/// `filepath.Clean` for a local path.
fn clean_local(p: &str) -> String {
    if p.starts_with('/') {
        return clean_path(p);
    }
    let cleaned = clean_path(&format!("/{p}"));
    let rel = cleaned.trim_start_matches('/');
    if rel.is_empty() {
        ".".into()
    } else {
        rel.to_string()
    }
}

fn mkdir_all(p: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("Failed to create {}", p.display()))
}

async fn write_file(
    ctx: &Ctx,
    resp: reqwest::Response,
    info: &FileInfo,
    target: &Path,
    src: &str,
) -> anyhow::Result<()> {
    if target == Path::new("-") {
        let mut out = tokio::io::stdout();
        Client::copy_body(resp, &mut out, |_| {}).await?;
        return Ok(());
    }
    let f = tokio::fs::File::create(target)
        .await
        .map_err(|e| io_error("open", target, &e))?;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(info.mode & 0o7777))
        .with_context(|| format!("Failed to chmod {}", target.display()))?;
    // tokio's File hands every write to a blocking thread: batch them.
    let mut f = tokio::io::BufWriter::with_capacity(1 << 20, f);
    let mut progress = Progress::new(
        &format!("Pulling {} from {src}: %s", target.display()),
        ctx.global.quiet,
    );
    let start = Instant::now();
    let res = Client::copy_body(resp, &mut f, |n| {
        progress.update(&format!(
            "{} ({}/s)",
            output::byte_size(n as i64, 2),
            output::byte_size(speed(n, start), 2)
        ));
    })
    .await;
    progress.done("");
    res?;
    Ok(())
}

async fn pull_tree(
    ctx: &Ctx,
    client: &Client,
    inst: &str,
    path: &str,
    target_dir: &Path,
) -> anyhow::Result<()> {
    let (resp, info) = get_file(client, inst, path).await?;
    let target = target_dir.join(base_name(path));
    match info.kind.as_str() {
        "directory" => {
            std::fs::create_dir(&target)
                .with_context(|| format!("Failed to create {}", target.display()))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(info.mode & 0o7777))?;
            for ent in dir_entries(resp).await? {
                let next = if path == "/" {
                    format!("/{ent}")
                } else {
                    format!("{path}/{ent}")
                };
                Box::pin(pull_tree(ctx, client, inst, &next, &target)).await?;
            }
        }
        "file" => write_file(ctx, resp, &info, &target, path).await?,
        "symlink" => {
            let link = String::from_utf8_lossy(&resp.bytes().await?)
                .trim()
                .to_string();
            std::os::unix::fs::symlink(&link, &target)
                .with_context(|| format!("Failed to create symlink {}", target.display()))?;
        }
        other => bail!("Unknown file type '{other}'"),
    }
    Ok(())
}

async fn push(ctx: &Ctx, a: &PushArgs, edit: bool) -> anyhow::Result<()> {
    super::check_args(&a.args, 2, None)?;
    let (sources, target) = a.args.split_at(a.args.len() - 1);
    let target = &target[0];
    let (remote, spec) = ctx.parse_remote(target)?;
    let Some((inst, _)) = spec.split_once('/') else {
        bail!("Invalid target {spec}");
    };
    let mut target_is_dir = spec.ends_with('/');
    let target_path = clean_path(&format!("/{}", &spec[inst.len() + 1..]));
    if target_path == "/" {
        target_is_dir = true;
    }
    let client = ctx.client(&remote)?;
    let sources: Vec<String> = sources
        .iter()
        .map(|s| if s == "-" { s.clone() } else { clean_local(s) })
        .collect();

    let mode_flag = a.mode.as_deref().map(parse_mode).transpose()?;
    let modify_perm_ext = client
        .has_extension("instances_files_modify_permissions")
        .await
        .unwrap_or(false);

    if a.recursive {
        if a.uid.is_some() || a.gid.is_some() || a.mode.is_some() {
            bail!("Can't supply uid/gid/mode in recursive mode");
        }
        if a.create_dirs {
            let m = std::fs::metadata(&sources[0])
                .map_err(|e| io_error("stat", Path::new(&sources[0]), &e))?;
            mkdir_p(
                &client,
                inst,
                &target_path,
                Some(m.mode() & 0o7777),
                i64::from(m.uid()),
                i64::from(m.gid()),
            )
            .await?;
        }
        for s in &sources {
            push_tree(ctx, &client, inst, s, &target_path).await?;
        }
        return Ok(());
    }

    if sources.len() > 1 && !target_is_dir {
        bail!("Missing target directory");
    }
    for s in &sources {
        let local = if s == "-" { "/dev/stdin" } else { s.as_str() };
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| io_error("open", Path::new(local), &e))?;
        let meta = file.metadata().await?;
        let fpath = if target_is_dir {
            format!("{}/{}", target_path.trim_end_matches('/'), base_name(local))
        } else {
            target_path.clone()
        };
        let uid = a.uid.filter(|u| *u >= 0);
        let gid = a.gid.filter(|g| *g >= 0);
        if a.create_dirs {
            mkdir_p(
                &client,
                inst,
                &parent_of(&fpath),
                None,
                uid.unwrap_or(i64::from(meta.uid())),
                gid.unwrap_or(i64::from(meta.gid())),
            )
            .await?;
        }
        let mut h = PushHeaders {
            kind: "file".into(),
            write: Some("overwrite".into()),
            ..Default::default()
        };
        if !edit {
            h.uid = Some(uid.unwrap_or(i64::from(meta.uid())));
            h.gid = Some(gid.unwrap_or(i64::from(meta.gid())));
            h.mode = Some(mode_flag.unwrap_or(meta.mode() & 0o777));
        }
        if modify_perm_ext {
            if a.uid.is_some() {
                h.modify_perm.push("uid");
            }
            if a.gid.is_some() {
                h.modify_perm.push("gid");
            }
            if a.mode.is_some() {
                h.modify_perm.push("mode");
            }
        }
        let progress = Arc::new(Mutex::new(Progress::new(
            &format!("Pushing {local} to {fpath}: %s"),
            ctx.global.quiet || edit,
        )));
        let body = progress_body(file, meta.len(), progress.clone());
        let res = post_file(&client, inst, &fpath, &h, body).await;
        if let Ok(mut p) = progress.lock() {
            p.done("");
        }
        res?;
    }
    Ok(())
}

/// Create `p` and its missing parents in the instance (LXD's `recursiveMkdir`).
async fn mkdir_p(
    client: &Client,
    inst: &str,
    p: &str,
    mode: Option<u32>,
    uid: i64,
    gid: i64,
) -> anyhow::Result<()> {
    if p == "/" {
        return Ok(());
    }
    let clean = clean_path(p);
    let parts: Vec<&str> = clean.trim_start_matches('/').split('/').collect();
    let mut existing = 0;
    for i in (1..=parts.len()).rev() {
        let cur = format!("/{}", parts[..i].join("/"));
        match get_file(client, inst, &cur).await {
            Ok((_, info)) => {
                if info.kind != "directory" {
                    bail!("{} is not a directory", cur.trim_start_matches('/'));
                }
                existing = i;
                break;
            }
            Err(_) => continue,
        }
    }
    for i in existing + 1..=parts.len() {
        let cur = format!("/{}", parts[..i].join("/"));
        let h = PushHeaders {
            kind: "directory".into(),
            uid: Some(uid),
            gid: Some(gid),
            mode,
            ..Default::default()
        };
        post_file(client, inst, &cur, &h, reqwest::Body::from(Vec::new())).await?;
    }
    Ok(())
}

/// Walk a local tree (as Go's `filepath.Walk`: lexical order, the root first) and push each
/// entry under `target`, keeping the top directory's name.
async fn push_tree(
    ctx: &Ctx,
    client: &Client,
    inst: &str,
    source: &str,
    target: &str,
) -> anyhow::Result<()> {
    let source_dir_len = match source.rfind('/') {
        Some(i) => i + 1,
        None => 0,
    };
    let mut stack = vec![PathBuf::from(source)];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| anyhow::anyhow!("Failed to walk path for {}: {e}", p.display()))?;
        let ps = p.to_string_lossy().to_string();
        let rel = ps.get(source_dir_len..).unwrap_or(&ps);
        let target_path = clean_path(&format!("{target}/{rel}"));
        let ft = meta.file_type();
        let mut h = PushHeaders {
            uid: Some(i64::from(meta.uid())),
            gid: Some(i64::from(meta.gid())),
            mode: Some(meta.mode() & 0o7777),
            ..Default::default()
        };
        if ft.is_dir() {
            h.kind = "directory".into();
            post_file(
                client,
                inst,
                &target_path,
                &h,
                reqwest::Body::from(Vec::new()),
            )
            .await?;
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("Failed to read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            // Reverse so that the lexically first entry is popped first.
            stack.extend(entries.into_iter().rev());
        } else if ft.is_symlink() {
            h.kind = "symlink".into();
            let link = std::fs::read_link(&p)?;
            post_file(
                client,
                inst,
                &target_path,
                &h,
                reqwest::Body::from(link.to_string_lossy().into_owned()),
            )
            .await?;
        } else if ft.is_file() {
            h.kind = "file".into();
            let file = tokio::fs::File::open(&p)
                .await
                .map_err(|e| io_error("open", &p, &e))?;
            let progress = Arc::new(Mutex::new(Progress::new(
                &format!("Pushing {ps} to {target_path}: %s"),
                ctx.global.quiet,
            )));
            let body = progress_body(file, meta.len(), progress.clone());
            let res = post_file(client, inst, &target_path, &h, body).await;
            if let Ok(mut pr) = progress.lock() {
                pr.done("");
            }
            res?;
        } else {
            bail!("'{ps}' isn't a supported file type");
        }
    }
    Ok(())
}

async fn edit(ctx: &Ctx, spec_arg: &str) -> anyhow::Result<()> {
    let push_args = |src: String| PushArgs {
        args: vec![src, spec_arg.to_string()],
        recursive: false,
        create_dirs: false,
        uid: None,
        gid: None,
        mode: None,
    };
    if !crate::term::stdin_is_tty() {
        return push(ctx, &push_args("-".into()), true).await;
    }
    let tmp = std::env::temp_dir().join(format!("lxd_file_edit_{}", std::process::id()));
    let tmp_s = tmp.to_string_lossy().to_string();
    let res = async {
        pull(ctx, &[spec_arg.to_string(), tmp_s.clone()], false, false).await?;
        let text = std::fs::read_to_string(&tmp).unwrap_or_default();
        let new = crate::editor::edit_text(&text, "")?;
        std::fs::write(&tmp, new)?;
        push(ctx, &push_args(tmp_s.clone()), true).await
    }
    .await;
    let _ = std::fs::remove_file(&tmp);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("644").unwrap(), 0o644);
        assert_eq!(parse_mode("0755").unwrap(), 0o755);
        assert!(parse_mode("abc").is_err());
    }

    #[test]
    fn push_headers_match_lxd() {
        let h = push_headers(&PushHeaders {
            kind: "file".into(),
            uid: Some(1000),
            gid: Some(1000),
            mode: Some(0o644),
            write: Some("overwrite".into()),
            modify_perm: vec!["uid", "mode"],
        });
        assert_eq!(h["X-LXD-type"], "file");
        assert_eq!(h["X-LXD-uid"], "1000");
        assert_eq!(h["X-LXD-mode"], "0644");
        assert_eq!(h["X-LXD-write"], "overwrite");
        assert_eq!(h["X-LXD-modify-perm"], "uid,mode");
        assert_eq!(h["Content-Type"], "application/octet-stream");
        let d = push_headers(&PushHeaders {
            kind: "directory".into(),
            ..Default::default()
        });
        assert!(d.get("X-LXD-mode").is_none());
    }

    #[test]
    fn response_headers() {
        let h = headers(&[
            ("X-LXD-type", "file".into()),
            ("X-LXD-mode", "0600".into()),
            ("X-LXD-uid", "1000".into()),
            ("X-LXD-gid", "100".into()),
        ]);
        assert_eq!(
            file_info(&h),
            FileInfo {
                kind: "file".into(),
                mode: 0o600,
                uid: 1000,
                gid: 100
            }
        );
    }

    #[test]
    fn local_paths() {
        assert_eq!(clean_local("./a//b/"), "a/b");
        assert_eq!(clean_local("/tmp/../etc"), "/etc");
        assert_eq!(clean_local("."), ".");
        assert_eq!(parent_of("/etc/hosts"), "/etc");
        assert_eq!(parent_of("/hosts"), "/");
    }
}
