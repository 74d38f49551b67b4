//! The local terminal: is-a-tty checks, its size, raw mode behind a guard that restores the
//! previous settings when dropped (also on error paths and panics), and LXD's one-line progress
//! renderer.

use std::io::{IsTerminal, Write};

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// The terminal size as (width, height), if stdout is a terminal.
pub fn size() -> Option<(u16, u16)> {
    if !stdout_is_tty() {
        return None;
    }
    crossterm::terminal::size().ok()
}

/// Raw mode on stdin for the life of the guard.
#[derive(Debug)]
pub struct RawGuard {
    saved: nix::sys::termios::Termios,
}

impl RawGuard {
    pub fn enable() -> std::io::Result<RawGuard> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let saved = tcgetattr(std::io::stdin()).map_err(std::io::Error::from)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(std::io::stdin(), SetArg::TCSANOW, &raw).map_err(std::io::Error::from)?;
        Ok(RawGuard { saved })
    }
}

impl Drop for RawGuard {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// LXD's progress line: updates overwrite each other with `\r`, the last one is cleared (or
/// replaced by a final message) by [`Progress::done`]. Updates are shown only on a terminal.
#[derive(Debug)]
pub struct Progress {
    format: String,
    max_len: usize,
    done: bool,
    enabled: bool,
}

impl Progress {
    /// `format` contains `%s` where the status goes (LXD's `Format`); empty means the status alone.
    pub fn new(format: &str, quiet: bool) -> Progress {
        Progress {
            format: format.to_string(),
            max_len: 0,
            done: false,
            enabled: !quiet && stdout_is_tty(),
        }
    }

    fn truncate(msg: String) -> String {
        match size() {
            Some((w, _)) if (w as usize) < msg.chars().count() => String::new(),
            _ => msg,
        }
    }

    pub fn update(&mut self, status: &str) {
        if self.done || !self.enabled {
            return;
        }
        let msg = if self.format.is_empty() {
            status.to_string()
        } else {
            self.format.replace("%s", status)
        };
        let msg = format!("\r{}", Self::truncate(msg));
        if msg.len() == 1 && self.max_len == 0 {
            return;
        }
        let mut out = std::io::stdout().lock();
        if msg.len() > self.max_len {
            self.max_len = msg.len();
        } else {
            let _ = write!(out, "\r{}", " ".repeat(self.max_len));
        }
        let _ = write!(out, "{msg}");
        let _ = out.flush();
    }

    /// Clear the progress line and print `msg` (if not empty) on its own line.
    pub fn done(&mut self, msg: &str) {
        if self.done {
            return;
        }
        self.done = true;
        let mut out = std::io::stdout().lock();
        if self.max_len > 0 {
            let _ = write!(out, "\r{}\r", " ".repeat(self.max_len));
        }
        if !msg.is_empty() {
            let _ = writeln!(out, "{msg}");
        }
        let _ = out.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done("");
    }
}
