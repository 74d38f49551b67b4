//! Background operations: wait for one over the `/1.0/events` websocket (opened before the
//! request that creates it), with one `GET /1.0/operations/ID` to close the race, as LXD's Go
//! client does. If the events stream breaks, fall back to polling the operation.

use futures_util::StreamExt;
use lxd_api::{Event, Operation, Response, ResponseType, StatusCode};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, Error, WebSocket, esc_query};

/// A subscription to `/1.0/events?type=...`.
#[derive(Debug)]
pub struct EventListener {
    ws: WebSocket,
}

impl EventListener {
    pub async fn connect(client: &Client, types: &str) -> Result<EventListener, Error> {
        let path = if types.is_empty() {
            "/1.0/events".to_string()
        } else {
            format!("/1.0/events?type={}", esc_query(types))
        };
        Self::connect_path(client, &path).await
    }

    /// Subscribe with a ready-made path (`/1.0/events?type=...&all-projects=true`).
    pub async fn connect_path(client: &Client, path: &str) -> Result<EventListener, Error> {
        Ok(EventListener {
            ws: client.websocket(path).await?,
        })
    }

    /// The next event; `None` when the server closed the stream. Frames without a `type` are
    /// skipped, as the Go client skips them.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            let msg = match self.ws.next().await? {
                Ok(m) => m,
                Err(e) => {
                    return Some(Err(Error::WebSocket {
                        url: "/1.0/events".into(),
                        reason: e.to_string(),
                    }));
                }
            };
            let data = match msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return None,
                _ => continue,
            };
            match serde_json::from_slice::<Event>(&data) {
                Ok(ev) if !ev.kind.is_empty() => return Some(Ok(ev)),
                _ => continue,
            }
        }
    }
}

/// An operation the server is running for us.
#[derive(Debug)]
pub struct RemoteOperation<'a> {
    client: &'a Client,
    pub op: Operation,
    listener: Option<EventListener>,
    done: bool,
}

impl<'a> RemoteOperation<'a> {
    pub fn from_response(
        client: &'a Client,
        resp: Response,
        listener: Option<EventListener>,
    ) -> Result<RemoteOperation<'a>, Error> {
        match resp.kind {
            ResponseType::Async => {
                let op: Operation =
                    serde_json::from_value(resp.metadata).map_err(|e| Error::Decode {
                        url: resp.operation.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(RemoteOperation {
                    client,
                    op,
                    listener,
                    done: false,
                })
            }
            // A server that finished the work synchronously: treat it as a completed operation.
            _ => Ok(RemoteOperation {
                client,
                op: Operation {
                    id: String::new(),
                    class: "task".into(),
                    description: String::new(),
                    created_at: lxd_api::ZERO_TIME.into(),
                    updated_at: lxd_api::ZERO_TIME.into(),
                    status: "Success".into(),
                    status_code: StatusCode::Success,
                    resources: Default::default(),
                    metadata: resp.metadata,
                    may_cancel: false,
                    err: String::new(),
                    location: String::new(),
                },
                listener: None,
                done: true,
            }),
        }
    }

    /// Follow an operation we did not start (no listener was opened beforehand: poll).
    pub fn from_operation(client: &'a Client, op: Operation) -> RemoteOperation<'a> {
        RemoteOperation {
            client,
            op,
            listener: None,
            done: false,
        }
    }

    /// The secrets of a websocket operation (`metadata.fds`).
    pub fn fds(&self) -> std::collections::BTreeMap<String, String> {
        self.op
            .metadata
            .get("fds")
            .and_then(|f| serde_json::from_value(f.clone()).ok())
            .unwrap_or_default()
    }

    /// Wait for the end of the operation, calling `progress` on each update. A failed operation
    /// is an error whose text is the operation's `err`; the final state stays in `self.op`.
    pub async fn wait(&mut self, mut progress: impl FnMut(&Operation)) -> Result<(), Error> {
        if !self.done {
            self.wait_inner(&mut progress).await?;
            self.done = true;
        }
        match self.op.status_code {
            StatusCode::Success => Ok(()),
            StatusCode::Cancelled if self.op.err.is_empty() => {
                Err(Error::Operation("Operation cancelled".into()))
            }
            _ if self.op.err.is_empty() => Err(Error::Operation(format!(
                "Operation {}",
                self.op.status.to_lowercase()
            ))),
            _ => Err(Error::Operation(self.op.err.clone())),
        }
    }

    async fn wait_inner(&mut self, progress: &mut impl FnMut(&Operation)) -> Result<(), Error> {
        // The operation may have finished before the listener saw it.
        match self.client.get_operation(&self.op.id).await {
            Ok(op) => {
                self.op = op;
                progress(&self.op);
                if self.op.status_code.is_final() {
                    return Ok(());
                }
            }
            Err(e) if e.is_not_found() => {
                return Err(Error::Operation(format!(
                    "Operation {} disappeared",
                    self.op.id
                )));
            }
            Err(e) => return Err(e),
        }
        if let Some(listener) = self.listener.as_mut() {
            while let Some(ev) = listener.next().await {
                let Ok(ev) = ev else { break };
                if ev.kind != "operation" {
                    continue;
                }
                let Ok(op) = serde_json::from_value::<Operation>(ev.metadata) else {
                    continue;
                };
                if op.id != self.op.id {
                    continue;
                }
                self.op = op;
                progress(&self.op);
                if self.op.status_code.is_final() {
                    return Ok(());
                }
            }
        }
        // No event stream (or it broke): poll.
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let op = self.client.get_operation(&self.op.id).await?;
            self.op = op;
            progress(&self.op);
            if self.op.status_code.is_final() {
                return Ok(());
            }
        }
    }

    /// The first URL of a resource kind the operation created (`instances`, `images`, ...).
    pub fn resource(&self, kind: &str) -> Option<String> {
        self.op.resources.get(kind)?.first().cloned()
    }
}

/// The text to show for an operation update: the first `*_progress` string of its metadata
/// (LXD `ProgressRenderer.UpdateOp`).
pub fn progress_text(op: &Operation) -> Option<String> {
    let m = op.metadata.as_object()?;
    m.iter()
        .find(|(k, v)| k.ends_with("_progress") && v.is_string())
        .and_then(|(_, v)| v.as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(meta: serde_json::Value) -> Operation {
        serde_json::from_value(serde_json::json!({
            "id": "x", "class": "task", "status": "Running", "status_code": 103, "metadata": meta
        }))
        .unwrap()
    }

    #[test]
    fn progress_from_metadata() {
        let o = op(serde_json::json!({
            "create_instance_from_image_unpack_progress": "Unpack: 10% (415.86MB/s)",
            "progress": {"percent": "10", "speed": "415860432", "stage": "create_instance_from_image_unpack"}
        }));
        assert_eq!(progress_text(&o).unwrap(), "Unpack: 10% (415.86MB/s)");
        assert_eq!(progress_text(&op(serde_json::Value::Null)), None);
    }
}
