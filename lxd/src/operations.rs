//! Background operations (`/1.0/operations`): tasks run on tokio, websocket-class operations
//! (exec) hand their websockets to the task, and every status change is sent as an event.
//! Finished operations stay queryable for a while, as LXD keeps them, then disappear.

use axum::extract::ws::WebSocket;
use lxd_api::{Operation, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::events::{Events, now};

/// How long a finished operation can still be fetched (LXD keeps 5 s; a little longer costs
/// nothing and helps clients on a loaded host).
const RETENTION: Duration = Duration::from_secs(10);

pub type Resources = BTreeMap<String, Vec<String>>;

#[derive(Debug)]
struct OpState {
    status: StatusCode,
    updated_at: String,
    metadata: Value,
    err: String,
}

/// One operation. Cheap to clone through `Arc`.
#[derive(Debug)]
pub struct Op {
    pub id: String,
    pub class: &'static str,
    pub description: String,
    created_at: String,
    resources: Resources,
    may_cancel: bool,
    state: Mutex<OpState>,
    done: watch::Sender<bool>,
    pub cancel: CancellationToken,
    sockets: Mutex<HashMap<String, oneshot::Sender<WebSocket>>>,
    events: Events,
}

impl Op {
    pub fn to_api(&self) -> Operation {
        let st = self.state.lock().expect("operation state lock");
        Operation {
            id: self.id.clone(),
            class: self.class.to_string(),
            description: self.description.clone(),
            created_at: self.created_at.clone(),
            updated_at: st.updated_at.clone(),
            status: st.status.text().to_string(),
            status_code: st.status,
            resources: self.resources.clone(),
            metadata: st.metadata.clone(),
            may_cancel: self.may_cancel && !st.status.is_final(),
            err: st.err.clone(),
            location: "none".into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.state.lock().expect("operation state lock").status
    }

    fn emit(&self) {
        if let Ok(v) = serde_json::to_value(self.to_api()) {
            self.events.send("operation", v);
        }
    }

    fn set_status(&self, status: StatusCode, err: Option<String>) {
        {
            let mut st = self.state.lock().expect("operation state lock");
            st.status = status;
            st.updated_at = now();
            if let Some(e) = err {
                st.err = e;
            }
        }
        self.emit();
        if status.is_final() {
            // send_replace: plain send() drops the value when nobody is subscribed yet.
            self.done.send_replace(true);
        }
    }

    /// Merge keys into the operation's metadata and tell listeners (progress, exec return code).
    pub fn extend_metadata(&self, extra: Value) {
        {
            let mut st = self.state.lock().expect("operation state lock");
            if !st.metadata.is_object() {
                st.metadata = json!({});
            }
            if let (Some(m), Value::Object(extra)) = (st.metadata.as_object_mut(), extra) {
                for (k, v) in extra {
                    m.insert(k, v);
                }
            }
            st.updated_at = now();
        }
        self.emit();
    }

    /// Report progress the way LXD's client renders it: `<stage>_progress` plus `progress{}`.
    pub fn progress(&self, stage: &str, text: &str, percent: Option<u64>) {
        let mut meta = serde_json::Map::new();
        meta.insert(format!("{stage}_progress"), Value::String(text.to_string()));
        if let Some(p) = percent {
            meta.insert(
                "progress".into(),
                json!({"stage": stage, "percent": p.to_string()}),
            );
        }
        self.extend_metadata(Value::Object(meta));
    }

    /// Wait until the operation finishes or `timeout` passes (None: forever). Returns whether done.
    pub async fn wait(&self, timeout: Option<Duration>) -> bool {
        let mut rx = self.done.subscribe();
        let fut = async {
            loop {
                if *rx.borrow_and_update() {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return *rx.borrow();
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, fut).await.unwrap_or(false),
            None => fut.await,
        }
    }

    /// Hand a websocket connection to the task that waits for it; false when the secret is wrong
    /// or already used.
    pub fn connect_socket(&self, secret: &str, ws: WebSocket) -> bool {
        let tx = self.sockets.lock().expect("sockets lock").remove(secret);
        match tx {
            Some(tx) => tx.send(ws).is_ok(),
            None => false,
        }
    }

    pub fn has_socket_secret(&self, secret: &str) -> bool {
        self.sockets
            .lock()
            .expect("sockets lock")
            .contains_key(secret)
    }
}

#[derive(Debug)]
pub struct Operations {
    ops: Mutex<HashMap<String, Arc<Op>>>,
    events: Events,
}

/// The result of a task: optional metadata to merge before it turns `Success`.
pub type TaskResult = Result<Option<Value>, ApiError>;

impl Operations {
    pub fn new(events: Events) -> Arc<Self> {
        Arc::new(Operations {
            ops: Mutex::new(HashMap::new()),
            events,
        })
    }

    fn new_op(
        &self,
        class: &'static str,
        description: &str,
        resources: Resources,
        metadata: Value,
        may_cancel: bool,
    ) -> Arc<Op> {
        let (done, _) = watch::channel(false);
        let created = now();
        let op = Arc::new(Op {
            id: uuid::Uuid::new_v4().to_string(),
            class,
            description: description.to_string(),
            created_at: created.clone(),
            resources,
            may_cancel,
            state: Mutex::new(OpState {
                status: StatusCode::Running,
                updated_at: created,
                metadata,
                err: String::new(),
            }),
            done,
            cancel: CancellationToken::new(),
            sockets: Mutex::new(HashMap::new()),
            events: self.events.clone(),
        });
        self.ops
            .lock()
            .expect("operations lock")
            .insert(op.id.clone(), op.clone());
        op.emit();
        op
    }

    /// Start a task operation running `work`; returns immediately with the operation.
    pub fn start_task<F, Fut>(
        self: &Arc<Self>,
        description: &str,
        resources: Resources,
        may_cancel: bool,
        work: F,
    ) -> Arc<Op>
    where
        F: FnOnce(Arc<Op>) -> Fut + Send + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        let op = self.new_op("task", description, resources, Value::Null, may_cancel);
        self.run(op.clone(), work);
        op
    }

    /// A token-class operation (trust tokens, image secrets): it holds `metadata` and stays
    /// running until it is used or cancelled (`DELETE /1.0/operations/ID`), as LXD's do.
    pub fn start_token(
        self: &Arc<Self>,
        description: &str,
        resources: Resources,
        metadata: Value,
    ) -> Arc<Op> {
        let op = self.new_op("token", description, resources, metadata, true);
        self.run(op.clone(), |_op| std::future::pending::<TaskResult>());
        op
    }

    /// Create a websocket-class operation whose task receives the websockets named in `fds`
    /// (fd name -> secret, as put in the metadata). The task gets the receivers in the same order.
    pub fn start_websocket<F, Fut>(
        self: &Arc<Self>,
        description: &str,
        resources: Resources,
        metadata: Value,
        secrets: Vec<(String, String)>,
        work: F,
    ) -> Arc<Op>
    where
        F: FnOnce(Arc<Op>, Vec<(String, oneshot::Receiver<WebSocket>)>) -> Fut + Send + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        self.start_websocket_with(description, resources, metadata, secrets, false, work)
    }

    /// `start_websocket`, cancellable (`DELETE /1.0/operations/ID`) when `may_cancel`: the task
    /// is dropped, so it must undo its work from a drop guard.
    pub fn start_websocket_with<F, Fut>(
        self: &Arc<Self>,
        description: &str,
        resources: Resources,
        metadata: Value,
        secrets: Vec<(String, String)>,
        may_cancel: bool,
        work: F,
    ) -> Arc<Op>
    where
        F: FnOnce(Arc<Op>, Vec<(String, oneshot::Receiver<WebSocket>)>) -> Fut + Send + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        let op = self.new_op("websocket", description, resources, metadata, may_cancel);
        let mut receivers = Vec::new();
        {
            let mut sockets = op.sockets.lock().expect("sockets lock");
            for (name, secret) in secrets {
                let (tx, rx) = oneshot::channel();
                sockets.insert(secret, tx);
                receivers.push((name, rx));
            }
        }
        self.run(op.clone(), move |op| work(op, receivers));
        op
    }

    fn run<F, Fut>(self: &Arc<Self>, op: Arc<Op>, work: F)
    where
        F: FnOnce(Arc<Op>) -> Fut + Send + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move {
            let cancel = op.cancel.clone();
            let res = tokio::select! {
                r = work(op.clone()) => r,
                _ = cancel.cancelled() => Err(ApiError::bad_request("Operation cancelled")),
            };
            op.sockets.lock().expect("sockets lock").clear();
            match res {
                Ok(meta) => {
                    if let Some(m) = meta {
                        op.extend_metadata(m);
                    }
                    op.set_status(StatusCode::Success, None);
                }
                Err(e) if op.cancel.is_cancelled() => {
                    op.set_status(StatusCode::Cancelled, Some(e.message));
                }
                Err(e) => op.set_status(StatusCode::Failure, Some(e.message)),
            }
            tokio::time::sleep(RETENTION).await;
            this.ops.lock().expect("operations lock").remove(&op.id);
        });
    }

    pub fn get(&self, id: &str) -> Option<Arc<Op>> {
        self.ops.lock().expect("operations lock").get(id).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Op>> {
        let mut v: Vec<_> = self
            .ops
            .lock()
            .expect("operations lock")
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        v
    }

    /// Operations that have not finished (used by shutdown to wait for them).
    pub fn running(&self) -> Vec<Arc<Op>> {
        self.list()
            .into_iter()
            .filter(|o| !o.status().is_final())
            .collect()
    }
}

/// `{"instances": ["/1.0/instances/C01"]}`, plus LXD's legacy `containers` key the 5.0 client shows.
pub fn instance_resources(names: &[&str]) -> Resources {
    let mut r = Resources::new();
    r.insert(
        "instances".into(),
        names
            .iter()
            .map(|n| format!("/1.0/instances/{n}"))
            .collect(),
    );
    r.insert(
        "containers".into(),
        names
            .iter()
            .map(|n| format!("/1.0/containers/{n}"))
            .collect(),
    );
    r
}

/// A fresh random secret for an operation websocket (64 hex chars, as LXD).
pub fn random_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn task_succeeds_and_emits_events() {
        let events = Events::new();
        let mut rx = events.subscribe();
        let ops = Operations::new(events);
        let op = ops.start_task("Doing", Resources::new(), false, |_op| async {
            Ok(Some(json!({"x": 1})))
        });
        assert!(op.wait(Some(Duration::from_secs(5))).await);
        let api = op.to_api();
        assert_eq!(api.status_code, StatusCode::Success);
        assert_eq!(api.metadata["x"], 1);
        let first = rx.recv().await.unwrap();
        assert_eq!(first.kind, "operation");
        assert!(ops.get(&op.id).is_some());
    }

    #[tokio::test]
    async fn failure_sets_err_and_cancel_cancels() {
        let ops = Operations::new(Events::new());
        let op = ops.start_task("Failing", Resources::new(), false, |_op| async {
            Err(ApiError::bad_request("nope"))
        });
        op.wait(None).await;
        assert_eq!(op.to_api().status_code, StatusCode::Failure);
        assert_eq!(op.to_api().err, "nope");

        let op = ops.start_task("Slow", Resources::new(), true, |_op| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(None)
        });
        assert!(op.to_api().may_cancel);
        op.cancel.cancel();
        assert!(op.wait(Some(Duration::from_secs(5))).await);
        assert_eq!(op.to_api().status_code, StatusCode::Cancelled);
    }

    #[tokio::test]
    async fn wait_sees_an_operation_that_finished_before_anyone_waited() {
        let ops = Operations::new(Events::new());
        let op = ops.start_task("Quick", Resources::new(), false, |_op| async { Ok(None) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(op.wait(Some(Duration::from_secs(1))).await);
    }

    #[tokio::test]
    async fn wait_times_out_on_running_op() {
        let ops = Operations::new(Events::new());
        let op = ops.start_task("Slow", Resources::new(), false, |_op| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(None)
        });
        assert!(!op.wait(Some(Duration::from_millis(50))).await);
        assert_eq!(op.to_api().status_code, StatusCode::Running);
    }
}
