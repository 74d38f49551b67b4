//! The one place the storage crate runs external tools (`zfs`, `zpool`, `btrfs`, `mkfs.btrfs`,
//! `mount`, `cp`, `rsync`). Output is captured; a non-zero exit becomes `Error::Command` carrying
//! the tool's last stderr line. Never goes through a shell, so names are never interpreted.

use std::ffi::{OsStr, OsString};
use std::process::{Command, Stdio};

use crate::{Error, Result};

fn render(program: &str, args: &[OsString]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// What a failed tool said: its last stderr (or stdout) line, or how it ended when it said
/// nothing.
fn failure(out: &std::process::Output) -> String {
    let line = last_line(&out.stderr, &out.stdout);
    if line == SILENT {
        format!("{SILENT} ({})", out.status)
    } else {
        line
    }
}

/// The start of the message of a tool that failed and printed nothing.
pub(crate) const SILENT: &str = "failed without a message";

fn last_line(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        stderr
    } else {
        stdout
    })
    .into_owned();
    // zfs and btrfs put the reason on the last line ("cannot destroy 'x': dataset is busy").
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(SILENT)
        .to_string()
}

fn command(program: &str, args: &[OsString]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env("LC_ALL", "C").stdin(Stdio::null());
    cmd
}

/// Run `program args...`, returning its stdout.
pub(crate) fn run<I, S>(program: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    tracing::debug!("run {}", render(program, &args));
    let out = command(program, &args)
        .output()
        .map_err(|e| Error::Command {
            command: render(program, &args),
            message: format!("cannot run {program}: {e}"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: render(program, &args),
            message: failure(&out),
        })
    }
}

/// Run `a | b` (e.g. `zfs send ... | zfs receive ...`); fails if either side fails.
pub(crate) fn pipe<I, S, J, T>(a: &str, a_args: I, b: &str, b_args: J) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
    J: IntoIterator<Item = T>,
    T: AsRef<OsStr>,
{
    let a_args: Vec<OsString> = a_args.into_iter().map(|x| x.as_ref().to_owned()).collect();
    let b_args: Vec<OsString> = b_args.into_iter().map(|x| x.as_ref().to_owned()).collect();
    let rendered = format!("{} | {}", render(a, &a_args), render(b, &b_args));
    tracing::debug!("run {rendered}");
    let spawn_err = |e: std::io::Error| Error::Command {
        command: rendered.clone(),
        message: format!("cannot run: {e}"),
    };
    let mut first = command(a, &a_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let Some(first_out) = first.stdout.take() else {
        let _ = first.kill();
        let _ = first.wait();
        return Err(spawn_err(std::io::Error::other("no stdout pipe")));
    };
    let second = command(b, &b_args)
        .stdin(first_out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let second = match second {
        Ok(s) => s,
        Err(e) => {
            let _ = first.kill();
            let _ = first.wait();
            return Err(spawn_err(e));
        }
    };
    let second_out = second.wait_with_output().map_err(spawn_err)?;
    let first_out = first.wait_with_output().map_err(spawn_err)?;
    if !second_out.status.success() {
        return Err(Error::Command {
            command: rendered,
            message: failure(&second_out),
        });
    }
    if !first_out.status.success() {
        return Err(Error::Command {
            command: rendered,
            message: last_line(&first_out.stderr, &first_out.stdout),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_errors() {
        assert_eq!(run("echo", ["hi"]).unwrap(), "hi\n");
        let e = run(
            "sh",
            ["-c", "echo one >&2; echo 'cannot do it' >&2; exit 3"],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sh -c echo one >&2; echo 'cannot do it' >&2; exit 3: cannot do it"
        );
        assert!(run("/nonexistent-tool", ["x"]).is_err());
        pipe("echo", ["abc"], "grep", ["-q", "abc"]).unwrap();
        assert!(pipe("false", [] as [&str; 0], "cat", [] as [&str; 0]).is_err());
    }
}
