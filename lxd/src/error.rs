//! The daemon's error type: every failure that reaches a client becomes one short sentence with the
//! HTTP status LXD would use (400 bad request, 403 forbidden, 404 not found, 409 conflict, 500).

use axum::http::StatusCode;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn is_not_found(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(format!("Database error: {e}"))
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::internal(format!("Failed to encode or decode JSON: {e}"))
    }
}

impl From<lxd_storage::Error> for ApiError {
    fn from(e: lxd_storage::Error) -> Self {
        use lxd_storage::Error as E;
        let status = match &e {
            E::NotSupported(_) | E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::AlreadyExists(_) | E::Busy(_) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("Background task failed: {e}"))
    }
}

/// Attach context to an I/O error: "Failed to create /path: No such file or directory".
pub fn io_err(what: &str, path: &std::path::Path, e: std::io::Error) -> ApiError {
    ApiError::internal(format!("Failed to {what} {}: {e}", path.display()))
}

impl From<lxd_network::Error> for ApiError {
    fn from(e: lxd_network::Error) -> Self {
        use lxd_network::Error as E;
        let status = match &e {
            E::Config(_) => StatusCode::BAD_REQUEST,
            E::Addr(lxd_network::addr::Error::BadRange(_))
            | E::Addr(lxd_network::addr::Error::RangeOutside(..)) => StatusCode::BAD_REQUEST,
            E::Link(lxd_network::link::Error::NotFound(_)) => StatusCode::NOT_FOUND,
            E::Link(lxd_network::link::Error::Exists(_)) => StatusCode::CONFLICT,
            E::Proxy(lxd_network::proxy::Error::Parse(..)) => StatusCode::BAD_REQUEST,
            E::Proxy(lxd_network::proxy::Error::InUse(_)) => StatusCode::CONFLICT,
            E::Firewall(lxd_network::firewall::Error::BadName(_)) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let msg = e.to_string();
        // Sentences start with a capital letter, as LXD's errors do.
        let mut c = msg.chars();
        let msg = match c.next() {
            Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
            None => msg,
        };
        ApiError::new(status, msg)
    }
}

macro_rules! from_network_module {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::from(lxd_network::Error::from(e))
            }
        }
    )*};
}

from_network_module!(
    lxd_network::addr::Error,
    lxd_network::config::Error,
    lxd_network::dnsmasq::Error,
    lxd_network::firewall::Error,
    lxd_network::link::Error,
    lxd_network::netns::Error,
    lxd_network::proxy::Error,
    lxd_network::sysctl::Error
);
