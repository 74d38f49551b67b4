//! `edit` subcommands: YAML from stdin when stdin is not a terminal, else `$VISUAL`/`$EDITOR`
//! on a temporary file, re-opened on a parse error until the user gives up (LXD's loop).

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Failed to read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("Unable to create a temporary file {path}: {source}")]
    TempFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Failed to run the editor {editor}: {source}")]
    Spawn {
        editor: String,
        source: std::io::Error,
    },
    #[error("The editor {0} failed")]
    EditorFailed(String),
    #[error("{0}")]
    Parse(String),
}

/// The editor command LXD would run: `$VISUAL`, `$EDITOR`, else the first of editor, vi, emacs, nano.
fn editor_command() -> String {
    for var in ["VISUAL", "EDITOR"] {
        if let Ok(e) = std::env::var(var)
            && !e.trim().is_empty()
        {
            return e;
        }
    }
    for candidate in ["editor", "vi", "emacs", "nano"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(candidate).is_file()))
            .unwrap_or(false);
        if found {
            return candidate.to_string();
        }
    }
    "vi".to_string()
}

/// Run the editor on `text` and return what the user saved.
pub fn edit_text(text: &str, suffix: &str) -> Result<String, Error> {
    let path = std::env::temp_dir().join(format!(
        "lxd_editor_{}_{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
        suffix
    ));
    let res = (|| {
        std::fs::write(&path, text).map_err(|source| Error::TempFile {
            path: path.clone(),
            source,
        })?;
        let editor = editor_command();
        let mut parts = editor.split_whitespace();
        let prog = parts.next().unwrap_or("vi").to_string();
        let status = std::process::Command::new(&prog)
            .args(parts)
            .arg(&path)
            .status()
            .map_err(|source| Error::Spawn {
                editor: editor.clone(),
                source,
            })?;
        if !status.success() {
            return Err(Error::EditorFailed(editor));
        }
        std::fs::read_to_string(&path).map_err(|source| Error::TempFile {
            path: path.clone(),
            source,
        })
    })();
    let _ = std::fs::remove_file(&path);
    res
}

/// Read all of stdin.
pub fn read_stdin() -> Result<String, Error> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(Error::Stdin)?;
    Ok(s)
}

/// The `edit` flow: stdin when it is not a terminal, else the editor with `header` prepended,
/// re-opened while `apply` rejects the text. `apply` parses and sends; its error is shown.
pub async fn edit_yaml<F, Fut>(header: &str, current: &str, mut apply: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    if !crate::term::stdin_is_tty() {
        let text = read_stdin()?;
        return apply(text).await;
    }
    let mut text = format!("{header}{current}");
    loop {
        text = edit_text(&text, ".yaml")?;
        match apply(strip_comments(&text)).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("Config parsing error: {e}");
                print!("Press enter to open the editor again or ctrl+c to abort change");
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
                    return Err(e);
                }
            }
        }
    }
}

/// Drop the `###` help lines LXD puts at the top of edited documents.
pub fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("###"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Parse YAML into `T`, with errors as one line.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    yaml_serde::from_str(text).map_err(|e| Error::Parse(e.to_string().replace('\n', " ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lxd_api::InstancePut;

    #[test]
    fn comments_are_dropped() {
        assert_eq!(
            strip_comments("### help\n### more\nconfig: {}\n"),
            "config: {}\n"
        );
    }

    #[test]
    fn instance_yaml_round_trips() {
        // `lxc config show c1` from LXD 5.0.2 (trimmed).
        let text = "architecture: x86_64\nconfig:\n  image.os: busybox\n  volatile.idmap.base: \"0\"\n  volatile.idmap.current: '[{\"Isuid\":true}]'\ndevices: {}\nephemeral: false\nprofiles:\n- default\nstateful: false\ndescription: \"\"\n";
        let put: InstancePut = parse_yaml(text).unwrap();
        assert_eq!(put.config["volatile.idmap.base"], "0");
        assert_eq!(put.config["volatile.idmap.current"], "[{\"Isuid\":true}]");
        assert_eq!(put.profiles, ["default"]);
        let again = crate::output::yaml(&put).unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn parse_errors_are_one_line() {
        let e = parse_yaml::<InstancePut>("config: [\n").unwrap_err();
        assert!(!e.to_string().contains('\n'));
    }
}
