//! Transfer progress in operation metadata, as LXD reports it (`fs_progress`:
//! "NAME: 12.34MB (5.67MB/s)"), at most a few times a second.

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::operations::Op;

#[derive(Debug)]
pub struct Tracker {
    op: Option<Arc<Op>>,
    label: String,
    done: u64,
    start: Instant,
    last: Instant,
}

impl Tracker {
    pub fn new(op: &Arc<Op>, label: &str) -> Tracker {
        let now = Instant::now();
        Tracker {
            op: Some(op.clone()),
            label: label.to_string(),
            done: 0,
            start: now,
            last: now,
        }
    }

    pub fn silent() -> Tracker {
        let now = Instant::now();
        Tracker {
            op: None,
            label: String::new(),
            done: 0,
            start: now,
            last: now,
        }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        let Some(op) = &self.op else { return };
        let now = Instant::now();
        if now.duration_since(self.last) < Duration::from_millis(500) {
            return;
        }
        self.last = now;
        let secs = now.duration_since(self.start).as_secs_f64().max(0.001);
        let speed = (self.done as f64 / secs) as u64;
        let size = crate::remotes::http::byte_size;
        op.extend_metadata(json!({
            "fs_progress": format!("{}: {} ({}/s)", self.label, size(self.done), size(speed)),
        }));
    }
}
