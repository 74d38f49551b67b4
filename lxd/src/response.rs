//! Turning results into LXD envelopes: sync (200), async (202 + Location), error (4xx/5xx, JSON).

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lxd_api::Response as Envelope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

fn json_response(status: StatusCode, body: &Envelope) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &Envelope::error(self.status.as_u16(), self.message),
        )
    }
}

/// A sync response carrying `metadata`.
pub fn sync<T: Serialize>(metadata: T) -> Response {
    match serde_json::to_value(metadata) {
        Ok(v) => json_response(StatusCode::OK, &Envelope::sync(v)),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A sync response with an ETag header (the client echoes it as If-Match).
pub fn sync_etag<T: Serialize>(metadata: T, etag: &str) -> Response {
    let mut r = sync(metadata);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// An empty sync response (`metadata: {}` as LXD sends for writes).
pub fn empty() -> Response {
    json_response(
        StatusCode::OK,
        &Envelope::sync(Value::Object(Default::default())),
    )
}

/// A sync 201 with a Location header (creates that complete immediately).
pub fn created(location: &str) -> Response {
    let mut r = json_response(
        StatusCode::CREATED,
        &Envelope::sync(Value::Object(Default::default())),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// An async response for a freshly created operation.
pub fn async_op(op: &lxd_api::Operation) -> Response {
    let url = format!("/1.0/operations/{}", op.id);
    let meta = serde_json::to_value(op).unwrap_or(Value::Null);
    let mut r = json_response(StatusCode::ACCEPTED, &Envelope::async_op(url.clone(), meta));
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub type ApiResult = std::result::Result<Response, ApiError>;

/// A JSON request body; malformed JSON is a 400 with a one-line reason (not axum's plain text).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(
        req: Request<axum::body::Body>,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("Failed to read request body: {e}")))?;
        parse_json(&bytes).map(Json)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_str("{}")
            .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

/// A weak ETag over any serialisable value (the client only echoes it back).
pub fn etag_of<T: Serialize>(v: &T) -> String {
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// Check an `If-Match` header against the current ETag: 412 when it does not match.
pub fn check_etag(headers: &axum::http::HeaderMap, current: &str) -> Result<(), ApiError> {
    let Some(v) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let v = v.trim().trim_matches('"');
    if v.is_empty() || v == "*" || v == current {
        Ok(())
    } else {
        Err(ApiError::precondition_failed("ETag doesn't match"))
    }
}
