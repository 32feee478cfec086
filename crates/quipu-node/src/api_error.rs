//! A service's error: an [`ErrorCode`] (whose [`ErrorKind`] each door
//! maps to its protocol's status with one exhaustive match), a message for
//! people and details for programs (a conflict's actual revisions).

use quipu_core::{Conflict, Revision};
use serde_json::{Map, Value, json};

use crate::error_code::{ErrorCode, ErrorKind};

/// Why a service refused or failed a request.
#[derive(Debug)]
pub struct ApiError {
    /// What went wrong, e.g. [`ErrorCode::WrongExpectedRevision`].
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Fields for programs (e.g. `expected`, `actual`), which doors put
    /// beside the code and message.
    pub details: Map<String, Value>,
}

impl ApiError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), details: Map::new() }
    }

    /// Adds a field to the body.
    #[must_use]
    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.details.insert(key.to_string(), value);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<quipu_core::NameError> for ApiError {
    fn from(error: quipu_core::NameError) -> ApiError {
        ApiError::new(ErrorCode::InvalidName, error.to_string())
    }
}

impl From<quipu_core::EventIdError> for ApiError {
    fn from(error: quipu_core::EventIdError) -> ApiError {
        ApiError::new(ErrorCode::InvalidEventId, error.to_string())
    }
}

impl From<quipu_core::Error> for ApiError {
    fn from(error: quipu_core::Error) -> ApiError {
        use quipu_core::Error as E;
        let message = error.to_string();
        let code = match &error {
            E::InvalidName { .. } => ErrorCode::InvalidName,
            E::InvalidEventId { .. } => ErrorCode::InvalidEventId,
            E::InvalidTags { .. } => ErrorCode::InvalidTags,
            E::EmptyAppend => ErrorCode::EmptyAppend,
            E::EmptyQuery => ErrorCode::EmptyQuery,
            E::DuplicateStream { .. } => ErrorCode::DuplicateStream,
            E::DuplicateEventId { .. } => ErrorCode::DuplicateEventId,
            E::ReadLimitTooLarge { .. } => ErrorCode::LimitTooLarge,
            E::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            E::AppendTooLarge { .. } => ErrorCode::AppendTooLarge,
            E::TooManyEvents { .. } => ErrorCode::TooManyEvents,
            E::TooManyStreams { .. } => ErrorCode::TooManyStreams,
            E::EventIdReused { .. } => ErrorCode::EventIdReused,
            E::ScavengeRunning => ErrorCode::ScavengeRunning,
            E::SnapshotBeyondStream { .. } => ErrorCode::InvalidSnapshot,
            E::SnapshotTooLarge { .. } => ErrorCode::SnapshotTooLarge,
            E::StreamNotFound { .. } => ErrorCode::StreamNotFound,
            E::StoreFailed { .. } | E::NotWritten { .. } | E::Closed | E::ClusterUnavailable { .. } => {
                ErrorCode::StoreUnavailable
            }
            E::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
            E::CrossPartition { .. } => ErrorCode::CrossPartition,
            _ => ErrorCode::Internal,
        };
        if matches!(code.kind(), ErrorKind::Unavailable | ErrorKind::Internal) {
            tracing::error!(%error, "request failed in the store");
        }
        ApiError::new(code, message)
    }
}

/// A 409 naming every failed stream with its actual revision, and the
/// conflicting position of a failed DCB condition. The first failed
/// stream's fields are also at the top level, for single-stream clients.
pub fn conflict_error(conflict: &Conflict) -> ApiError {
    let revision = |r: Option<Revision>| r.map_or(Value::Null, |r| json!(r.0));
    let streams: Vec<Value> = conflict
        .streams
        .iter()
        .map(|c| json!({"stream": c.stream.as_str(), "expected": c.expected.to_string(), "actual": revision(c.actual)}))
        .collect();
    let mut error = match conflict.streams.first() {
        Some(first) => ApiError::new(
            ErrorCode::WrongExpectedRevision,
            format!(
                "stream {} is at revision {}, the append expected {}; nothing was written",
                first.stream,
                first.actual.map_or_else(|| "none (no stream)".to_string(), |r| r.0.to_string()),
                first.expected
            ),
        )
        .with("stream", json!(first.stream.as_str()))
        .with("expected", json!(first.expected.to_string()))
        .with("actual", revision(first.actual)),
        None => ApiError::new(
            ErrorCode::ConditionFailed,
            "an event matching the append's condition exists after its position; nothing was written",
        ),
    };
    error = error.with("streams", Value::Array(streams));
    if let Some(position) = conflict.condition_position {
        error = error.with("condition_position", json!(position.0));
    }
    error
}
