//! The subset of pongo2 that LXD image templates use (`{{ container.name }}`, `config_get(k, d)`,
//! `properties.x`, `{% if %}`/`{% elif %}`/`{% else %}`, comparisons, `and`/`or`/`not`, filters
//! `default`, `lower`, `upper`), and applying an image's templates into an instance rootfs for a
//! trigger. Writes resolve inside the rootfs (openat2 RESOLVE_IN_ROOT): never onto the host.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use lxd_api::ImageMetadata;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use super::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Values and context

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Nil,
    Str(String),
    Bool(bool),
    Int(i64),
    Map(BTreeMap<String, Value>),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Str(s) => !s.is_empty(),
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// pongo2 prints booleans as `True`/`False`.
    fn render(&self) -> String {
        match self {
            Value::Nil | Value::Map(_) => String::new(),
            Value::Str(s) => s.clone(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(i) => i.to_string(),
        }
    }

    fn loosely_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Nil, Value::Nil) => true,
            (Value::Nil, v) | (v, Value::Nil) => !v.truthy() && matches!(v, Value::Str(_)),
            (a, b) => a.render() == b.render(),
        }
    }
}

/// What a template sees. `container` (and its alias `instance`) holds `name`, `architecture`,
/// `type`, and `privileged`/`ephemeral` as the strings "true"/"false", as LXD passes them.
#[derive(Debug, Clone)]
pub struct TemplateContext<'a> {
    pub name: &'a str,
    pub architecture: &'a str,
    pub privileged: bool,
    pub ephemeral: bool,
    /// The instance's expanded config, read by `config_get`.
    pub config: &'a BTreeMap<String, String>,
    /// Host uid/gid for files and directories the templates create: (0, 0) unless the rootfs
    /// is shifted for an unprivileged container.
    pub root_owner: (u32, u32),
}

struct Scope<'a> {
    ctx: &'a TemplateContext<'a>,
    vars: BTreeMap<String, Value>,
}

impl<'a> Scope<'a> {
    fn new(
        ctx: &'a TemplateContext<'a>,
        trigger: &str,
        path: &str,
        properties: &BTreeMap<String, String>,
    ) -> Self {
        let bool_str = |b: bool| Value::Str(if b { "true" } else { "false" }.into());
        let container: BTreeMap<String, Value> = [
            ("name", Value::Str(ctx.name.into())),
            ("architecture", Value::Str(ctx.architecture.into())),
            ("type", Value::Str("container".into())),
            ("privileged", bool_str(ctx.privileged)),
            ("ephemeral", bool_str(ctx.ephemeral)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let to_map = |m: &BTreeMap<String, String>| {
            Value::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                    .collect(),
            )
        };
        let vars = [
            ("container", Value::Map(container.clone())),
            ("instance", Value::Map(container)),
            ("config", to_map(ctx.config)),
            ("properties", to_map(properties)),
            ("trigger", Value::Str(trigger.into())),
            ("path", Value::Str(path.into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Scope { ctx, vars }
    }
}

// ---------------------------------------------------------------------------------------------
// Expressions

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

fn lex_expr(s: &str) -> std::result::Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' || c == b'\'' {
            // Walk chars (not bytes) so multi-byte text never splits a UTF-8 sequence.
            let mut lit = String::new();
            let mut chars = s[i + 1..].char_indices();
            let mut end = None;
            while let Some((k, ch)) = chars.next() {
                if ch as u32 == c as u32 {
                    end = Some(i + 1 + k);
                    break;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some((_, 'n')) => lit.push('\n'),
                        Some((_, 't')) => lit.push('\t'),
                        Some((_, other)) => lit.push(other),
                        None => break,
                    }
                } else {
                    lit.push(ch);
                }
            }
            let Some(j) = end else {
                return Err("unterminated string".into());
            };
            out.push(Tok::Str(lit));
            i = j + 1;
        } else if c.is_ascii_digit() {
            let j = s[i..]
                .find(|ch: char| !ch.is_ascii_digit())
                .map_or(b.len(), |n| i + n);
            out.push(Tok::Int(s[i..j].parse().map_err(|_| "bad number")?));
            i = j;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let j = s[i..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .map_or(b.len(), |n| i + n);
            out.push(Tok::Ident(s[i..j].to_string()));
            i = j;
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let op: &'static str = match two {
                "==" => "==",
                "!=" => "!=",
                "<=" => "<=",
                ">=" => ">=",
                "&&" => "&&",
                "||" => "||",
                _ => match c {
                    b'(' => "(",
                    b')' => ")",
                    b',' => ",",
                    b'.' => ".",
                    b'|' => "|",
                    b':' => ":",
                    b'!' => "!",
                    b'<' => "<",
                    b'>' => ">",
                    _ => return Err(format!("unexpected character {:?}", c as char)),
                },
            };
            i += op.len();
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
enum Expr {
    Lit(Value),
    Var(Vec<String>),
    Call(String, Vec<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    Filter(Box<Expr>, String, Option<Box<Expr>>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

type PResult<T> = std::result::Result<T, String>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(i)) if i == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn parse(toks: Vec<Tok>) -> PResult<Expr> {
        let mut p = Parser { toks, pos: 0 };
        let e = p.or()?;
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {:?}", p.toks[p.pos]));
        }
        Ok(e)
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut l = self.and()?;
        while self.eat_word("or") || self.eat_op("||") {
            l = Expr::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut l = self.not()?;
        while self.eat_word("and") || self.eat_op("&&") {
            l = Expr::And(Box::new(l), Box::new(self.not()?));
        }
        Ok(l)
    }

    fn not(&mut self) -> PResult<Expr> {
        if self.eat_word("not") || self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> PResult<Expr> {
        let l = self.filtered()?;
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if self.eat_op(op) {
                let r = self.filtered()?;
                let op: &'static str = match op {
                    "==" => "==",
                    "!=" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    "<" => "<",
                    _ => ">",
                };
                return Ok(Expr::Cmp(op, Box::new(l), Box::new(r)));
            }
        }
        Ok(l)
    }

    fn filtered(&mut self) -> PResult<Expr> {
        let mut e = self.primary()?;
        while self.eat_op("|") {
            let Some(Tok::Ident(name)) = self.next() else {
                return Err("expected a filter name after '|'".into());
            };
            let arg = if self.eat_op(":") {
                Some(Box::new(self.primary()?))
            } else {
                None
            };
            e = Expr::Filter(Box::new(e), name, arg);
        }
        Ok(e)
    }

    fn primary(&mut self) -> PResult<Expr> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::Str(s))),
            Some(Tok::Int(i)) => Ok(Expr::Lit(Value::Int(i))),
            Some(Tok::Op("(")) => {
                let e = self.or()?;
                if !self.eat_op(")") {
                    return Err("missing ')'".into());
                }
                Ok(e)
            }
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" | "True" => Ok(Expr::Lit(Value::Bool(true))),
                "false" | "False" => Ok(Expr::Lit(Value::Bool(false))),
                "nil" | "None" => Ok(Expr::Lit(Value::Nil)),
                _ if self.eat_op("(") => {
                    let mut args = Vec::new();
                    if !self.eat_op(")") {
                        loop {
                            args.push(self.or()?);
                            if self.eat_op(")") {
                                break;
                            }
                            if !self.eat_op(",") {
                                return Err("expected ',' or ')' in call".into());
                            }
                        }
                    }
                    Ok(Expr::Call(id, args))
                }
                _ => {
                    let mut path = vec![id];
                    while self.eat_op(".") {
                        match self.next() {
                            Some(Tok::Ident(p)) => path.push(p),
                            Some(Tok::Int(i)) => path.push(i.to_string()),
                            _ => return Err("expected a name after '.'".into()),
                        }
                    }
                    Ok(Expr::Var(path))
                }
            },
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of expression".into()),
        }
    }
}

fn eval(e: &Expr, scope: &Scope<'_>) -> PResult<Value> {
    Ok(match e {
        Expr::Lit(v) => v.clone(),
        Expr::Var(path) => {
            let mut cur = scope.vars.get(&path[0]).cloned().unwrap_or(Value::Nil);
            for p in &path[1..] {
                cur = match cur {
                    Value::Map(m) => m.get(p).cloned().unwrap_or(Value::Nil),
                    _ => Value::Nil,
                };
            }
            cur
        }
        Expr::Call(name, args) => match name.as_str() {
            "config_get" if args.len() == 2 => {
                let key = eval(&args[0], scope)?.render();
                match scope.ctx.config.get(&key) {
                    // LXD trims trailing newlines from the value.
                    Some(v) => Value::Str(v.trim_end_matches(['\r', '\n']).to_string()),
                    None => eval(&args[1], scope)?,
                }
            }
            "config_get" => return Err("config_get takes two arguments".into()),
            other => return Err(format!("unknown function {other}")),
        },
        Expr::Not(x) => Value::Bool(!eval(x, scope)?.truthy()),
        Expr::And(a, b) => Value::Bool(eval(a, scope)?.truthy() && eval(b, scope)?.truthy()),
        Expr::Or(a, b) => Value::Bool(eval(a, scope)?.truthy() || eval(b, scope)?.truthy()),
        Expr::Cmp(op, a, b) => {
            let (a, b) = (eval(a, scope)?, eval(b, scope)?);
            Value::Bool(match *op {
                "==" => a.loosely_eq(&b),
                "!=" => !a.loosely_eq(&b),
                _ => {
                    let ord = match (&a, &b) {
                        (Value::Int(x), Value::Int(y)) => x.cmp(y),
                        _ => a.render().cmp(&b.render()),
                    };
                    match *op {
                        "<" => ord.is_lt(),
                        ">" => ord.is_gt(),
                        "<=" => ord.is_le(),
                        _ => ord.is_ge(),
                    }
                }
            })
        }
        Expr::Filter(x, name, arg) => {
            let v = eval(x, scope)?;
            match name.as_str() {
                "default" => {
                    if v.truthy() {
                        v
                    } else {
                        match arg {
                            Some(a) => eval(a, scope)?,
                            None => Value::Nil,
                        }
                    }
                }
                "lower" => Value::Str(v.render().to_lowercase()),
                "upper" => Value::Str(v.render().to_uppercase()),
                other => return Err(format!("unknown filter {other}")),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Template structure

#[derive(Debug)]
enum Node {
    Text(String),
    Print(Expr),
    If(Vec<(Expr, Vec<Node>)>, Vec<Node>),
}

enum Piece {
    Text(String),
    Print(String),
    Tag(String),
}

fn split_pieces(src: &str) -> PResult<Vec<Piece>> {
    let mut out = Vec::new();
    let mut rest = src;
    loop {
        let next = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|m| rest.find(m).map(|i| (i, *m)))
            .min();
        let Some((i, open)) = next else {
            if !rest.is_empty() {
                out.push(Piece::Text(rest.to_string()));
            }
            return Ok(out);
        };
        if i > 0 {
            out.push(Piece::Text(rest[..i].to_string()));
        }
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let body_start = i + 2;
        let Some(end) = rest[body_start..].find(close) else {
            return Err(format!("unterminated {open}"));
        };
        let body = rest[body_start..body_start + end].trim().to_string();
        match open {
            "{{" => out.push(Piece::Print(body)),
            "{%" => out.push(Piece::Tag(body)),
            _ => {}
        }
        rest = &rest[body_start + end + 2..];
    }
}

fn parse_nodes(
    pieces: &mut std::iter::Peekable<std::vec::IntoIter<Piece>>,
    depth: usize,
) -> PResult<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some(p) = pieces.next() {
        match p {
            Piece::Text(t) => nodes.push(Node::Text(t)),
            Piece::Print(e) => nodes.push(Node::Print(Parser::parse(lex_expr(&e)?)?)),
            Piece::Tag(tag) => {
                let (word, rest) = tag.split_once(char::is_whitespace).unwrap_or((&tag, ""));
                match word {
                    "if" => {
                        let mut branches = Vec::new();
                        let mut cond = Parser::parse(lex_expr(rest)?)?;
                        let mut otherwise = Vec::new();
                        loop {
                            let (body, end) = parse_nodes(pieces, depth + 1)?;
                            let end = end.ok_or("missing {% endif %}")?;
                            let (ew, erest) =
                                end.split_once(char::is_whitespace).unwrap_or((&end, ""));
                            match ew {
                                "elif" => {
                                    branches.push((cond, body));
                                    cond = Parser::parse(lex_expr(erest)?)?;
                                }
                                "else" => {
                                    branches.push((cond, body));
                                    let (body, end) = parse_nodes(pieces, depth + 1)?;
                                    if end.as_deref() != Some("endif") {
                                        return Err("missing {% endif %}".into());
                                    }
                                    otherwise = body;
                                    break;
                                }
                                _ => {
                                    branches.push((cond, body));
                                    break;
                                }
                            }
                        }
                        nodes.push(Node::If(branches, otherwise));
                    }
                    "elif" | "else" | "endif" if depth > 0 => return Ok((nodes, Some(tag))),
                    other => return Err(format!("unsupported tag {{% {other} %}}")),
                }
            }
        }
    }
    if depth > 0 {
        return Err("missing {% endif %}".into());
    }
    Ok((nodes, None))
}

fn render_nodes(nodes: &[Node], scope: &Scope<'_>, out: &mut String) -> PResult<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Print(e) => out.push_str(&eval(e, scope)?.render()),
            Node::If(branches, otherwise) => {
                let mut taken = false;
                for (cond, body) in branches {
                    if eval(cond, scope)?.truthy() {
                        render_nodes(body, scope, out)?;
                        taken = true;
                        break;
                    }
                }
                if !taken {
                    render_nodes(otherwise, scope, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Render one template. `name` only labels errors.
#[allow(clippy::too_many_arguments)]
pub fn render_template(
    name: &str,
    source: &str,
    ctx: &TemplateContext<'_>,
    trigger: Trigger,
    path: &str,
    properties: &BTreeMap<String, String>,
) -> Result<String> {
    let err = |message: String| Error::Template {
        name: name.to_string(),
        message,
    };
    let pieces = split_pieces(source).map_err(err)?;
    let (nodes, _) = parse_nodes(&mut pieces.into_iter().peekable(), 0).map_err(err)?;
    let scope = Scope::new(ctx, trigger.as_str(), path, properties);
    let mut out = String::new();
    render_nodes(&nodes, &scope, &mut out).map_err(err)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Applying templates into a rootfs

/// When LXD applies an image's templates (`when:` in metadata.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Create,
    Copy,
    Start,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Create => "create",
            Trigger::Copy => "copy",
            Trigger::Start => "start",
        }
    }
}

const MAX_TEMPLATE: u64 = 1024 * 1024;

fn errno_io(op: &'static str, path: &Path, e: Errno) -> Error {
    Error::io(op, path, std::io::Error::from(e))
}

/// Open a directory the caller trusts (the instance volume) without following a final symlink.
fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| errno_io("open", path, e))
}

/// Read a small regular file below `dir` with no symlink anywhere on the way.
fn read_beneath(dir: &Path, rel: &Path, limit: u64) -> Result<String> {
    let dfd = open_dir(dir)?;
    let full = dir.join(rel);
    let fd = openat2(
        dfd.as_fd(),
        rel,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )
    .map_err(|e| errno_io("open", &full, e))?;
    let f = File::from(fd);
    let m = f.metadata().map_err(|e| Error::io("stat", &full, e))?;
    if !m.is_file() {
        return Err(Error::Invalid(format!(
            "{} is not a regular file",
            full.display()
        )));
    }
    if m.len() > limit {
        return Err(Error::Invalid(format!("{} is too large", full.display())));
    }
    let mut s = String::new();
    f.take(limit)
        .read_to_string(&mut s)
        .map_err(|e| Error::io("read", &full, e))?;
    Ok(s)
}

/// The metadata.yaml of an instance volume (copied there from the image).
pub fn read_instance_metadata(instance_dir: &Path) -> Result<ImageMetadata> {
    let text = read_beneath(instance_dir, Path::new("metadata.yaml"), MAX_TEMPLATE)?;
    super::store::parse_metadata(&text)
}

fn relative_in_root(path: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "Invalid template target path {path:?}"
                )));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::Invalid(format!(
            "Invalid template target path {path:?}"
        )));
    }
    Ok(out)
}

/// openat2 flags for a lookup inside the rootfs (openat2 wants mode 0 when not creating).
fn in_root(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn current_ids() -> (u32, u32) {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// Write `content` to `path` as the container would see it: symlinks resolve with the rootfs as
/// `/`. An existing file keeps its owner and mode; a new one (and new parent directories) get
/// `owner`, 0644 (0755 for directories).
fn write_in_rootfs(rootfs: &Path, path: &str, content: &[u8], owner: (u32, u32)) -> Result<()> {
    let rel = relative_in_root(path)?;
    let shown = rootfs.join(&rel);
    let root = open_dir(rootfs)?;
    // Parents, created one level at a time inside the root.
    let mut prefix = PathBuf::new();
    let parent = rel.parent().unwrap_or(Path::new(""));
    let mut dir_fd = root.try_clone().map_err(|e| Error::io("dup", rootfs, e))?;
    for c in parent.components() {
        prefix.push(c);
        let how = in_root(OFlag::O_PATH | OFlag::O_DIRECTORY);
        dir_fd = match openat2(root.as_fd(), &prefix, how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(
                    dir_fd.as_fd(),
                    c.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                )
                .map_err(|e| errno_io("create directory", &rootfs.join(&prefix), e))?;
                if owner != current_ids() {
                    nix::unistd::fchownat(
                        dir_fd.as_fd(),
                        c.as_os_str(),
                        Some(owner.0.into()),
                        Some(owner.1.into()),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| errno_io("chown", &rootfs.join(&prefix), e))?;
                }
                openat2(root.as_fd(), &prefix, how)
                    .map_err(|e| errno_io("open", &rootfs.join(&prefix), e))?
            }
            Err(e) => return Err(errno_io("open", &rootfs.join(&prefix), e)),
        };
    }
    let file = match openat2(root.as_fd(), &rel, in_root(OFlag::O_PATH)) {
        Ok(pfd) => {
            let st = nix::sys::stat::fstat(pfd.as_fd()).map_err(|e| errno_io("stat", &shown, e))?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(Error::Invalid(format!(
                    "Template target {path} is not a regular file"
                )));
            }
            // Reopen the very inode we checked (no second path walk) for writing.
            let proc = PathBuf::from(format!("/proc/self/fd/{}", pfd.as_raw_fd()));
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&proc)
                .map_err(|e| Error::io("open", &shown, e))?
        }
        Err(Errno::ENOENT) => {
            let name = rel.file_name().unwrap_or_default();
            let fd = nix::fcntl::openat(
                dir_fd.as_fd(),
                name,
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map_err(|e| match e {
                Errno::EEXIST => Error::Invalid(format!(
                    "Template target {path} is a symlink to a missing file"
                )),
                e => errno_io("create", &shown, e),
            })?;
            let f = File::from(fd);
            if owner != current_ids() {
                std::os::unix::fs::fchown(&f, Some(owner.0), Some(owner.1))
                    .map_err(|e| Error::io("chown", &shown, e))?;
            }
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io("chmod", &shown, e))?;
            f
        }
        Err(e) => return Err(errno_io("open", &shown, e)),
    };
    let mut file = file;
    file.write_all(content)
        .map_err(|e| Error::io("write", &shown, e))
}

/// Apply the templates listed in `<instance_dir>/metadata.yaml` whose `when` has `trigger`,
/// rendering `<instance_dir>/templates/<template>` into `<instance_dir>/rootfs/<path>`; entries
/// with `create_only` skip files that already exist. Returns the paths written.
pub fn apply_templates(
    instance_dir: &Path,
    trigger: Trigger,
    ctx: &TemplateContext<'_>,
) -> Result<Vec<String>> {
    let meta = read_instance_metadata(instance_dir)?;
    let rootfs = instance_dir.join("rootfs");
    let templates = instance_dir.join("templates");
    let mut written = Vec::new();
    for (path, tpl) in &meta.templates {
        if !tpl.when.iter().any(|w| w == trigger.as_str()) {
            continue;
        }
        let rel = relative_in_root(path)?;
        if tpl.create_only {
            let root = open_dir(&rootfs)?;
            if openat2(root.as_fd(), &rel, in_root(OFlag::O_PATH)).is_ok() {
                continue;
            }
        }
        let tpl_rel = relative_in_root(&tpl.template).map_err(|_| Error::Template {
            name: tpl.template.clone(),
            message: "invalid template file name".into(),
        })?;
        let source = read_beneath(&templates, &tpl_rel, MAX_TEMPLATE)?;
        let out = render_template(&tpl.template, &source, ctx, trigger, path, &tpl.properties)?;
        write_in_rootfs(&rootfs, path, out.as_bytes(), ctx.root_owner)?;
        written.push(path.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn ctx(config: &BTreeMap<String, String>) -> TemplateContext<'_> {
        TemplateContext {
            name: "c1",
            architecture: "x86_64",
            privileged: false,
            ephemeral: false,
            config,
            // Unit tests run unprivileged too: new files belong to whoever runs them.
            root_owner: current_ids(),
        }
    }

    fn render(src: &str, config: &[(&str, &str)], props: &[(&str, &str)]) -> Result<String> {
        let config: BTreeMap<String, String> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let props: BTreeMap<String, String> = props
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        render_template("t", src, &ctx(&config), Trigger::Create, "/etc/x", &props)
    }

    #[test]
    fn renders_lxd_template_subset() {
        assert_eq!(render("{{ container.name }}\n", &[], &[]).unwrap(), "c1\n");
        assert_eq!(
            render("{{container.architecture}}", &[], &[]).unwrap(),
            "x86_64"
        );
        assert_eq!(
            render("{{ container.privileged }}", &[], &[]).unwrap(),
            "false"
        );
        assert_eq!(
            render("{{ instance.type }} {{ trigger }} {{ path }}", &[], &[]).unwrap(),
            "container create /etc/x"
        );
        assert_eq!(
            render(r#"{{ config_get("user.x", "dflt") }}"#, &[], &[]).unwrap(),
            "dflt"
        );
        assert_eq!(
            render(
                r#"{{ config_get("user.x", "dflt") }}"#,
                &[("user.x", "v\n")],
                &[]
            )
            .unwrap(),
            "v"
        );
        assert_eq!(
            render("{{ properties.default }}", &[], &[("default", "P")]).unwrap(),
            "P"
        );
        assert_eq!(
            render(
                r#"{{ config_get("user.user-data", properties.default) }}"#,
                &[],
                &[("default", "#cloud-config\n{}")]
            )
            .unwrap(),
            "#cloud-config\n{}"
        );
        assert_eq!(
            render("{{ nothing.here }}|{# comment #}|", &[], &[]).unwrap(),
            "||"
        );
        assert_eq!(
            render(
                r#"{{ container.name|upper }} {{ missing|default:"d" }}"#,
                &[],
                &[]
            )
            .unwrap(),
            "C1 d"
        );
        // The cloud-init network template shape from LXD's images.
        let net = r#"{% if config_get("user.network-config", "") == "" %}type: {% if config_get("user.network_mode", "") == "link-local" %}manual{% else %}dhcp{% endif %}{% else %}{{ config_get("user.network-config", "") }}{% endif %}"#;
        assert_eq!(render(net, &[], &[]).unwrap(), "type: dhcp");
        assert_eq!(
            render(net, &[("user.network_mode", "link-local")], &[]).unwrap(),
            "type: manual"
        );
        assert_eq!(
            render(net, &[("user.network-config", "custom")], &[]).unwrap(),
            "custom"
        );
        let elif = "{% if container.name == \"a\" %}A{% elif container.name != \"c1\" %}B{% elif not false and (1 < 2 or x) %}C{% else %}D{% endif %}";
        assert_eq!(render(elif, &[], &[]).unwrap(), "C");
        for bad in [
            "{{ container.name ",
            "{% if x %}y",
            "{% for x in y %}{% endfor %}",
            "{{ evil() }}",
            "{{ a b }}",
            "{% else %}",
            "{{ \"open }}",
        ] {
            let e = render(bad, &[], &[]).unwrap_err();
            assert!(matches!(e, Error::Template { .. }), "{bad}: {e}");
        }
    }

    fn instance(dir: &Path, metadata: &str) {
        fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
        fs::create_dir_all(dir.join("templates")).unwrap();
        fs::write(dir.join("metadata.yaml"), metadata).unwrap();
        fs::write(dir.join("templates/hostname.tpl"), "{{ container.name }}\n").unwrap();
        fs::write(
            dir.join("templates/hosts.tpl"),
            "127.0.1.1 {{ container.name }}\n",
        )
        .unwrap();
    }

    const META: &str = "architecture: x86_64\ntemplates:\n  /etc/hostname:\n    when: [create, copy]\n    template: hostname.tpl\n  /etc/hosts:\n    when: [start]\n    create_only: true\n    template: hosts.tpl\n  /var/lib/new/dir/file:\n    when: [create]\n    template: hosts.tpl\n";

    #[test]
    fn applies_for_trigger_keeping_owner_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let inst = d.path().join("c1");
        instance(&inst, META);
        let host = inst.join("rootfs/etc/hostname");
        fs::write(&host, "old\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = BTreeMap::new();
        let w = apply_templates(&inst, Trigger::Create, &ctx(&cfg)).unwrap();
        assert_eq!(w, vec!["/etc/hostname", "/var/lib/new/dir/file"]);
        assert_eq!(fs::read_to_string(&host).unwrap(), "c1\n");
        assert_eq!(fs::metadata(&host).unwrap().mode() & 0o777, 0o600);
        let newf = inst.join("rootfs/var/lib/new/dir/file");
        assert_eq!(fs::metadata(&newf).unwrap().mode() & 0o777, 0o644);
        assert_eq!(
            fs::metadata(inst.join("rootfs/var/lib/new"))
                .unwrap()
                .mode()
                & 0o777,
            0o755
        );
        // start + create_only: written once, then left alone.
        assert_eq!(
            apply_templates(&inst, Trigger::Start, &ctx(&cfg)).unwrap(),
            vec!["/etc/hosts"]
        );
        fs::write(inst.join("rootfs/etc/hosts"), "mine\n").unwrap();
        assert!(
            apply_templates(&inst, Trigger::Start, &ctx(&cfg))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            fs::read_to_string(inst.join("rootfs/etc/hosts")).unwrap(),
            "mine\n"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let inst = d.path().join("c1");
        instance(&inst, META);
        let victim = d.path().join("victim");
        fs::write(&victim, "host file\n").unwrap();
        // /etc/hostname -> <absolute host path>: resolved inside the rootfs, so the write lands
        // at rootfs/<that path>, never on the host file.
        std::os::unix::fs::symlink(&victim, inst.join("rootfs/etc/hostname")).unwrap();
        // /var -> ../../.. : climbing is clamped at the rootfs.
        std::os::unix::fs::symlink("../../../..", inst.join("rootfs/var")).unwrap();
        let cfg = BTreeMap::new();
        // Dangling inside the rootfs: refused, the host file is untouched.
        assert!(apply_templates(&inst, Trigger::Create, &ctx(&cfg)).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "host file\n");
        let inside = inst.join("rootfs").join(victim.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        fs::write(&inside, "in root\n").unwrap();
        apply_templates(&inst, Trigger::Create, &ctx(&cfg)).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "host file\n");
        assert_eq!(fs::read_to_string(inside).unwrap(), "c1\n");
        assert!(inst.join("rootfs/lib/new/dir/file").exists());
        assert!(!d.path().join("lib").exists());
    }

    #[test]
    fn template_sources_cannot_be_symlinks_or_escape() {
        let d = tempfile::tempdir().unwrap();
        let inst = d.path().join("c1");
        instance(&inst, META);
        fs::write(d.path().join("secret"), "host secret").unwrap();
        fs::remove_file(inst.join("templates/hostname.tpl")).unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), inst.join("templates/hostname.tpl"))
            .unwrap();
        let cfg = BTreeMap::new();
        assert!(apply_templates(&inst, Trigger::Create, &ctx(&cfg)).is_err());
        assert_ne!(
            fs::read_to_string(inst.join("rootfs/etc/hostname")).unwrap_or_default(),
            "host secret"
        );
        let meta = "architecture: x86_64\ntemplates:\n  /etc/x:\n    when: [create]\n    template: ../../secret\n";
        fs::write(inst.join("metadata.yaml"), meta).unwrap();
        assert!(apply_templates(&inst, Trigger::Create, &ctx(&cfg)).is_err());
        assert!(!inst.join("rootfs/etc/x").exists());
    }

    #[test]
    fn refuses_non_regular_targets() {
        let d = tempfile::tempdir().unwrap();
        let inst = d.path().join("c1");
        instance(&inst, META);
        fs::create_dir(inst.join("rootfs/etc/hostname")).unwrap();
        let cfg = BTreeMap::new();
        let e = apply_templates(&inst, Trigger::Copy, &ctx(&cfg)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
