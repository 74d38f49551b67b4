//! The event bus behind `/1.0/events`: operation, logging and lifecycle events fan out to every
//! listener. Sending never blocks: a listener that falls behind loses old events, not the daemon.

use lxd_api::Event;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One serialised event, with its type for listener-side filtering.
#[derive(Debug)]
pub struct EventFrame {
    pub kind: &'static str,
    pub json: String,
}

#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<EventFrame>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Events {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Events { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EventFrame>> {
        self.tx.subscribe()
    }

    pub fn send(&self, kind: &'static str, metadata: Value) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let ev = Event {
            kind: kind.to_string(),
            timestamp: now(),
            metadata,
            location: "none".into(),
            project: "default".into(),
        };
        if let Ok(json) = serde_json::to_string(&ev) {
            let _ = self.tx.send(Arc::new(EventFrame { kind, json }));
        }
    }

    /// A lifecycle event such as `instance-started` for `/1.0/instances/C01`.
    pub fn lifecycle(&self, action: &str, source: &str, context: Value) {
        self.send(
            "lifecycle",
            json!({"action": action, "source": source, "context": context, "requestor": null}),
        );
    }

    /// A logging event (what `lxc monitor --type=logging` shows).
    pub fn logging(&self, level: &str, message: &str, context: Value) {
        self.send(
            "logging",
            json!({"message": message, "level": level, "context": context}),
        );
    }
}
