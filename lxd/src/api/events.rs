//! `GET /1.0/events`: a websocket streaming events as JSON text frames, filtered by `?type=`.
//! The Go client opens it before every async request and waits on it, so it must never stall.

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

use super::{AppState, params};
use crate::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new().route("/1.0/events", get(events))
}

async fn events(
    State(d): State<AppState>,
    q: Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let p = params(q)?;
    let types: Vec<String> = p
        .get("type")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for t in &types {
        if !matches!(t.as_str(), "operation" | "logging" | "lifecycle") {
            return Err(ApiError::bad_request(format!("Invalid event type \"{t}\"")));
        }
    }
    // Subscribe before upgrading so nothing sent after this request is lost.
    let rx = d.events.subscribe();
    let stop = d.stop.clone();
    Ok(ws.on_upgrade(move |socket| stream_events(socket, rx, types, stop)))
}

async fn stream_events(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::events::EventFrame>>,
    types: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if !types.is_empty() && !types.iter().any(|t| t == ev.kind) {
                        continue;
                    }
                    if socket.send(Message::Text(ev.json.clone().into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping("keepalive".as_bytes().to_vec().into())).await.is_err() {
                    return;
                }
            }
            _ = stop.cancelled() => break,
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
