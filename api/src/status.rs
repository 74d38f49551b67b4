//! Operation and instance status codes (LXD `shared/api/status_code.go`).

use serde::{Deserialize, Serialize};

/// A status code as LXD numbers it. Operations end in `Success`, `Failure` or `Cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "i64", into = "i64")]
pub enum StatusCode {
    OperationCreated,
    Started,
    Stopped,
    Running,
    Cancelling,
    Pending,
    Starting,
    Stopping,
    Aborting,
    Freezing,
    Frozen,
    Thawed,
    Error,
    Ready,
    Success,
    Failure,
    Cancelled,
    Other(i64),
}

impl StatusCode {
    pub fn code(self) -> i64 {
        match self {
            StatusCode::OperationCreated => 100,
            StatusCode::Started => 101,
            StatusCode::Stopped => 102,
            StatusCode::Running => 103,
            StatusCode::Cancelling => 104,
            StatusCode::Pending => 105,
            StatusCode::Starting => 106,
            StatusCode::Stopping => 107,
            StatusCode::Aborting => 108,
            StatusCode::Freezing => 109,
            StatusCode::Frozen => 110,
            StatusCode::Thawed => 111,
            StatusCode::Error => 112,
            StatusCode::Ready => 113,
            StatusCode::Success => 200,
            StatusCode::Failure => 400,
            StatusCode::Cancelled => 401,
            StatusCode::Other(c) => c,
        }
    }

    /// The human text LXD pairs with the code ("Running", "Success", ...).
    pub fn text(self) -> &'static str {
        match self {
            StatusCode::OperationCreated => "Operation created",
            StatusCode::Started => "Started",
            StatusCode::Stopped => "Stopped",
            StatusCode::Running => "Running",
            StatusCode::Cancelling => "Cancelling",
            StatusCode::Pending => "Pending",
            StatusCode::Starting => "Starting",
            StatusCode::Stopping => "Stopping",
            StatusCode::Aborting => "Aborting",
            StatusCode::Freezing => "Freezing",
            StatusCode::Frozen => "Frozen",
            StatusCode::Thawed => "Thawed",
            StatusCode::Error => "Error",
            StatusCode::Ready => "Ready",
            StatusCode::Success => "Success",
            StatusCode::Failure => "Failure",
            StatusCode::Cancelled => "Cancelled",
            StatusCode::Other(_) => "Unknown",
        }
    }

    /// Whether an operation with this status is finished.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StatusCode::Success | StatusCode::Failure | StatusCode::Cancelled
        )
    }
}

impl From<i64> for StatusCode {
    fn from(c: i64) -> Self {
        match c {
            100 => StatusCode::OperationCreated,
            101 => StatusCode::Started,
            102 => StatusCode::Stopped,
            103 => StatusCode::Running,
            104 => StatusCode::Cancelling,
            105 => StatusCode::Pending,
            106 => StatusCode::Starting,
            107 => StatusCode::Stopping,
            108 => StatusCode::Aborting,
            109 => StatusCode::Freezing,
            110 => StatusCode::Frozen,
            111 => StatusCode::Thawed,
            112 => StatusCode::Error,
            113 => StatusCode::Ready,
            200 => StatusCode::Success,
            400 => StatusCode::Failure,
            401 => StatusCode::Cancelled,
            other => StatusCode::Other(other),
        }
    }
}

impl From<StatusCode> for i64 {
    fn from(s: StatusCode) -> i64 {
        s.code()
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_as_numbers() {
        let s = serde_json::to_string(&StatusCode::Running).unwrap();
        assert_eq!(s, "103");
        let back: StatusCode = serde_json::from_str("400").unwrap();
        assert_eq!(back, StatusCode::Failure);
        assert!(back.is_final());
        assert!(!StatusCode::Running.is_final());
        assert_eq!(StatusCode::from(999), StatusCode::Other(999));
    }
}
